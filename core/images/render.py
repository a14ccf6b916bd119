"""Pixels for people: 8-bit conversion, JPEG thumbnails and PNG display images; the Review
page's closer look (zoom windows at 1:1, 2:1, ..., panning by half a view, the reviewer's
window / level on the stored values) and the scale bar drawn over it."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.images.levels import apply_window, block_mean


def to_uint8(arr01: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 [0, 255], rounded; out-of-range values clipped, NaN -> 0."""
    out = np.multiply(arr01, 255.0, dtype=np.float32)
    out += 0.5
    np.clip(out, 0.0, 255.0, out=out)
    np.nan_to_num(out, copy=False, nan=0.0)
    return out.astype(np.uint8)


def thumbnail_jpeg(arr01: np.ndarray, max_side: int = 256, quality: int = 85) -> bytes:
    """A grey JPEG no larger than ``max_side`` on its longest side (aspect ratio kept).

    A frame of at least twice ``max_side`` (float32 in [0, 1], as decoded) is first averaged over
    whole k×k blocks in float, leaving at most 2× for the Lanczos filter: no full-size 8-bit
    copy is made, 8× faster on a 1024×768 frame (bench/ingest_predict.py)."""
    if np.ndim(arr01) != 2:
        raise ValueError(f"thumbnail_jpeg expects a 2-D image, got shape {np.shape(arr01)}")
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side!r}")
    k = max(np.shape(arr01)) // max_side
    if k >= 2 and arr01.dtype == np.float32 and 0.0 <= float(arr01.min()) and float(arr01.max()) <= 1.0:
        arr01 = np.asarray(Image.fromarray(np.ascontiguousarray(arr01), mode="F").reduce(k))
    im = Image.fromarray(to_uint8(arr01), mode="L")
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def encode_png(arr01: np.ndarray) -> bytes:
    """The full-resolution image as an 8-bit grey PNG (for display)."""
    if np.ndim(arr01) != 2:
        raise ValueError(f"encode_png expects a 2-D image, got shape {np.shape(arr01)}")
    buf = io.BytesIO()
    Image.fromarray(to_uint8(arr01), mode="L").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def crop_around(arr: np.ndarray, fx: float, fy: float, width: int, height: int) -> np.ndarray:
    """The ``width`` × ``height`` window of ``arr`` (at 1:1, no resampling) centred on the point
    at fractions (``fx``, ``fy``) of its width and height — what click-to-zoom shows. The window
    is moved inside the image at its edges and is never larger than the image."""
    if np.ndim(arr) != 2:
        raise ValueError(f"crop_around expects a 2-D image, got shape {np.shape(arr)}")
    h, w = arr.shape
    win = zoom_window(w, h, fx, fy, width, height, 1)
    return arr[win.y0 : win.y0 + win.height, win.x0 : win.x0 + win.width]


# --------------------------------------------------------------------------------------------
# A closer look: zoom windows, panning, window / level


ZOOM_LEVELS = (1, 2, 4, 8)
"""Screen pixels per image pixel of the zoomed views (1:1, 2:1, 4:1, 8:1)."""


@dataclass(frozen=True)
class ZoomWindow:
    """The part of an image a zoomed view shows: ``width`` × ``height`` image pixels from
    (``x0``, ``y0``), each drawn as ``zoom`` × ``zoom`` screen pixels."""

    x0: int
    y0: int
    width: int
    height: int
    zoom: int
    image_width: int
    image_height: int

    @property
    def centre(self) -> tuple[float, float]:
        """The window's centre as fractions of the image's width and height."""
        return ((self.x0 + self.width / 2) / self.image_width,
                (self.y0 + self.height / 2) / self.image_height)

    @property
    def display_size(self) -> tuple[int, int]:
        """Screen pixels the view takes: (width, height) × zoom."""
        return self.width * self.zoom, self.height * self.zoom


def zoom_window(image_width: int, image_height: int, fx: float, fy: float,
                box_width: int, box_height: int, zoom: int = 1) -> ZoomWindow:
    """The window of an ``image_width`` × ``image_height`` image that fills a box of
    ``box_width`` × ``box_height`` screen pixels at ``zoom`` screen pixels per image pixel,
    centred on (``fx``, ``fy``) — fractions of the image's width and height (NaN: the middle).
    At the image's edges the window is moved inside it; it is never larger than the image."""
    w, h = max(1, int(image_width)), max(1, int(image_height))
    z = max(1, int(zoom))
    cw = max(1, min(int(box_width) // z, w))
    ch = max(1, min(int(box_height) // z, h))
    fx = min(max(float(fx), 0.0), 1.0) if math.isfinite(fx) else 0.5
    fy = min(max(float(fy), 0.0), 1.0) if math.isfinite(fy) else 0.5
    x0 = min(max(round(fx * w - cw / 2), 0), w - cw)
    y0 = min(max(round(fy * h - ch / 2), 0), h - ch)
    return ZoomWindow(x0, y0, cw, ch, z, w, h)


def pan(win: ZoomWindow, dx: int, dy: int) -> ZoomWindow:
    """The window moved by ``dx``, ``dy`` half views (-1 left / up, +1 right / down), stopping
    at the image's edges."""
    x0 = min(max(win.x0 + int(dx) * (win.width // 2 or 1), 0), win.image_width - win.width)
    y0 = min(max(win.y0 + int(dy) * (win.height // 2 or 1), 0), win.image_height - win.height)
    return ZoomWindow(x0, y0, win.width, win.height, win.zoom, win.image_width, win.image_height)


def click_zoom(fitted_scale: float) -> int:
    """The zoom a click on the fitted view goes to: 1:1 where that is a real zoom (the image
    shown at most 0.8 of its size), else the first level at least twice the fitted view."""
    f = float(fitted_scale) if math.isfinite(fitted_scale) and fitted_scale > 0 else 1.0
    if f <= 0.8:
        return 1
    return next((z for z in ZOOM_LEVELS if z >= 2 * f), ZOOM_LEVELS[-1])


def magnify(arr: np.ndarray, zoom: int) -> np.ndarray:
    """Each pixel of ``arr`` (2-D) repeated ``zoom`` × ``zoom`` times (nearest neighbour: the
    pixels stay sharp squares)."""
    z = max(1, int(zoom))
    if z == 1:
        return arr
    return np.repeat(np.repeat(arr, z, axis=0), z, axis=1)


def zoom_png(raw: np.ndarray, win: ZoomWindow, lo: float, hi: float) -> bytes:
    """PNG of the window ``win`` of the stored samples ``raw`` (2-D), windowed between the raw
    values ``lo`` (black) and ``hi`` (white), each pixel ``win.zoom`` screen pixels wide."""
    if np.ndim(raw) != 2:
        raise ValueError(f"zoom_png expects a 2-D image, got shape {np.shape(raw)}")
    part = raw[win.y0 : win.y0 + win.height, win.x0 : win.x0 + win.width]
    return encode_png(magnify(apply_window(part, lo, hi), win.zoom))


def fit_png(raw: np.ndarray, lo: float, hi: float, max_side: int) -> bytes:
    """PNG of the whole of ``raw`` (2-D stored samples) reduced by a whole factor (block means)
    to at most ``max_side`` on its longest side, windowed between ``lo`` and ``hi``."""
    if np.ndim(raw) != 2:
        raise ValueError(f"fit_png expects a 2-D image, got shape {np.shape(raw)}")
    f = -(-max(raw.shape) // max(1, int(max_side)))
    reduced = block_mean(raw, f) if f > 1 else raw
    return encode_png(apply_window(reduced, lo, hi))


# --------------------------------------------------------------------------------------------
# Scale bar


@dataclass(frozen=True)
class ScaleBar:
    """A scale bar of a round length (1, 2 or 5 × 10^n m) for one view."""

    length_m: float
    image_px: float  # its length in image pixels (length_m / pixel_size_m)
    screen_px: float  # on screen: image_px × the view's zoom (screen pixels per image pixel)
    fraction: float  # of the view's width
    label: str  # '500 nm', '2 µm'


def nice_length(max_m: float) -> float:
    """The largest 1, 2 or 5 × 10^n not above ``max_m`` (> 0)."""
    if not (math.isfinite(max_m) and max_m > 0):
        raise ValueError(f"nice_length needs a positive length, got {max_m!r}")
    e = math.floor(math.log10(max_m))
    for m in (5, 2, 1):
        v = float(f"{m}e{e}")  # exact decimal: 5e-07, not 5 * 10**-7 = 4.9999999999999996e-07
        if v <= max_m * (1 + 1e-9):
            return v
    return float(f"1e{e - 1}")  # pragma: no cover - 1 × 10^e is always <= max_m


def length_label(m: float) -> str:
    """A round length in the unit that keeps it between 1 and 999: '500 nm', '2 µm', '1 mm'."""
    for unit, f in (("m", 1.0), ("mm", 1e-3), ("µm", 1e-6), ("nm", 1e-9), ("pm", 1e-12)):
        if m >= f * (1 - 1e-9) or unit == "pm":
            return f"{round(m / f, 6):g} {unit}"
    return f"{m:g} m"  # pragma: no cover


def scale_bar(pixel_size_m: float | None, view_width_px: float, zoom: float = 1.0,
              max_fraction: float = 0.25) -> ScaleBar | None:
    """The scale bar for a view ``view_width_px`` image pixels wide, shown at ``zoom`` screen
    pixels per image pixel: the longest round length (1 / 2 / 5 × 10^n) at most
    ``max_fraction`` of the view's width, so between 10 % and 25 % of it. None when the pixel
    size is unknown (or not positive)."""
    if not pixel_size_m or not math.isfinite(pixel_size_m) or pixel_size_m <= 0 or view_width_px <= 0:
        return None
    length = nice_length(view_width_px * pixel_size_m * max_fraction)
    px = length / pixel_size_m
    return ScaleBar(length_m=length, image_px=px, screen_px=px * float(zoom),
                    fraction=px / float(view_width_px), label=length_label(length))
