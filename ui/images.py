"""Display images: the review image and data bar as PNGs (cached by path and mtime, the next
one prefetched in the background) and the 1:1 region around a click (zoom)."""


from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import streamlit as st

from core.images import crop_around, encode_png, read_image, resize
from ui.common import DISPLAY_MAX_PX
from ui.state import settings


@st.cache_data(max_entries=48, show_spinner=False)
def _view(path: str, mtime: float, max_side: int) -> dict[str, Any]:
    img = read_image(path, max_pixels=settings().max_pixels)
    scan = img.scan
    h, w = scan.shape
    f = min(1.0, max_side / max(h, w))
    shown = resize(scan, (max(1, round(h * f)), max(1, round(w * f)))) if f < 1 else scan
    bar = img.databar
    return {
        "scan": encode_png(shown),
        "bar": encode_png(bar) if bar is not None else None,
        "scaled": f < 1,
        "width": w,  # the scan area's size in image pixels (data bar cut off)
        "height": h,
        "bit_depth": img.bit_depth,
        "warnings": img.warnings,
    }


def image_view(path: str, max_side: int = DISPLAY_MAX_PX) -> dict[str, Any]:
    """Display PNGs of one image (scan at most ``max_side`` px, data bar apart), cached by
    path and modification time. Raises ImageReadError when the file is gone or unreadable."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        mtime = -1.0  # read_image will say what is wrong
    return _view(path, mtime, max_side)


_prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semtriage-prefetch")


def _view_quietly(path: str, mtime: float, max_side: int) -> None:
    # an unreadable file is reported by the page when it shows that image
    with contextlib.suppress(Exception):
        _view(path, mtime, max_side)


def prefetch(path: str, max_side: int = DISPLAY_MAX_PX) -> None:
    """Start decoding and encoding ``path`` for display in a background thread (into the same
    cache ``image_view`` reads; a page asking for it meanwhile waits for this work instead of
    repeating it). Pillow releases the GIL while it encodes, so this overlaps the page run."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        return
    _prefetcher.submit(_view_quietly, path, mtime, max_side)


@st.cache_resource(max_entries=2, show_spinner="Reading the full-resolution image…")
def _scan(path: str, mtime: float) -> Any:
    # the decoded scan area (data bar cut off), kept for the zoom clicks that follow the first
    return read_image(path, max_pixels=settings().max_pixels).scan


def zoom_view(path: str, fx: float, fy: float, width: int, height: int) -> bytes:
    """PNG of the ``width`` × ``height`` region at 1:1 around (``fx``, ``fy``) — fractions of
    the scan's width and height — for click-to-zoom. Raises ImageReadError like image_view."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        mtime = -1.0
    return encode_png(crop_around(_scan(path, mtime), fx, fy, width, height))
