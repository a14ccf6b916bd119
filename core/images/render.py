"""Pixels for people: 8-bit conversion, JPEG thumbnails and PNG display images."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


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
    cw, ch = max(1, min(int(width), w)), max(1, min(int(height), h))
    fx = min(max(float(fx), 0.0), 1.0) if np.isfinite(fx) else 0.5
    fy = min(max(float(fy), 0.0), 1.0) if np.isfinite(fy) else 0.5
    x0 = min(max(round(fx * w - cw / 2), 0), w - cw)
    y0 = min(max(round(fy * h - ch / 2), 0), h - ch)
    return arr[y0 : y0 + ch, x0 : x0 + cw]
