"""Display images: the review image and data bar as PNGs (cached by path and mtime, the next
one prefetched in the background); the closer look (zoomed windows and the reviewer's levels)
drawn from the full-resolution stored values, decoded once per image into a bounded cache."""


from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import streamlit as st

from core.images import (
    WORK_SIDE,
    RawFrame,
    ZoomWindow,
    encode_png,
    fit_png,
    read_frame,
    read_image,
    resize,
    value_range,
    zoom_png,
)
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
def _frame(path: str, mtime: float) -> RawFrame:
    # the stored samples of the scan area (data bar cut off), kept for the zooms, pans and
    # level changes that follow the first: two images at most (the one on screen, the one
    # before), read-only once made, so sessions may share them
    return read_frame(path, max_pixels=settings().max_pixels)


def raw_frame(path: str) -> RawFrame:
    """The full-resolution stored values of one image's scan area and its default window,
    decoded once per image (by path and modification time) for every zoom, pan and level
    change. Raises ImageReadError like image_view."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        mtime = -1.0
    return _frame(path, mtime)


@st.cache_data(max_entries=8, show_spinner=False)
def _range(path: str, mtime: float) -> tuple[float, float]:
    return value_range(_frame(path, mtime).raw)


def frame_range(path: str) -> tuple[float, float]:
    """The smallest and largest stored value of the image's scan area (the level sliders'
    bounds), computed once per image."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        mtime = -1.0
    return _range(path, mtime)


def zoom_view(path: str, win: ZoomWindow, lo: float, hi: float) -> bytes:
    """PNG of the window ``win`` of the image (at its zoom), windowed between the stored values
    ``lo`` (black) and ``hi`` (white). Raises ImageReadError like image_view."""
    return zoom_png(raw_frame(path).raw, win, lo, hi)


def levels_view(path: str, lo: float, hi: float, max_side: int = DISPLAY_MAX_PX) -> bytes:
    """PNG of the whole scan (at most ``max_side`` px) between the stored values ``lo`` and
    ``hi`` — the fitted view once the reviewer has changed the levels."""
    return fit_png(raw_frame(path).raw, lo, hi, max_side)
