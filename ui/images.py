"""Display images: the review image and data bar as PNGs (cached by path and mtime, the next
one prefetched in the background) and the full-resolution view."""


from __future__ import annotations

import base64
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import streamlit as st

from core.images import WORK_SIDE, encode_png, read_image, resize
from ui.common import DISPLAY_MAX_PX
from ui.state import settings


@st.cache_data(max_entries=48, show_spinner=False)
def _view(path: str, mtime: float, max_side: int) -> dict[str, Any]:
    img = read_image(path, max_pixels=settings().max_pixels, max_side=WORK_SIDE)
    scan = img.scan
    h, w = scan.shape
    f = min(1.0, max_side / max(h, w))
    shown = resize(scan, (max(1, round(h * f)), max(1, round(w * f)))) if f < 1 else scan
    bar = img.databar
    return {
        "scan": encode_png(shown),
        "bar": encode_png(bar) if bar is not None else None,
        "scaled": f < 1,
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


@st.cache_data(max_entries=4, show_spinner="Encoding the full-resolution image…")
def _full(path: str, mtime: float) -> bytes:
    return encode_png(read_image(path, max_pixels=settings().max_pixels).data)


def full_resolution_html(path: str, height_px: int = 720) -> str:
    """The whole frame at 1:1 in a scrolling box, as HTML for ``st.html`` (our PNG bytes only;
    no user text goes into it)."""
    b64 = base64.b64encode(_full(path, os.path.getmtime(path))).decode("ascii")
    return (f'<div style="overflow:auto;max-height:{int(height_px)}px;border:1px solid #d0d7de;'
            f'border-radius:6px"><img alt="" style="max-width:none;display:block" '
            f'src="data:image/png;base64,{b64}"></div>')
