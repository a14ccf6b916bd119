"""Grey levels: windowing raw samples (16-bit, 32-bit, float) to [0, 1] between robust
percentiles, and the even sampling those percentiles are computed on; the reviewer's own
window / level (``apply_window`` between chosen raw values, ``percentile_window``,
``value_range`` for the bounds of the controls)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def window(arr: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Map ``arr`` to float32 [0, 1] between its ``lo_pct`` and ``hi_pct`` percentiles.

    Values outside the window are clipped; NaN becomes 0, +inf 1, -inf 0. When the percentiles
    coincide the finite min / max are used instead; a constant image gives zeros.
    """
    a = np.asarray(arr)
    lo, hi = _percentiles(a, lo_pct, hi_pct)
    return _apply_window(a, lo, hi)


def apply_window(arr: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map raw samples to float32 [0, 1]: ``lo`` (and below) to 0, ``hi`` (and above) to 1,
    linear between (window / level on the stored values, 8- or 16-bit or float). NaN becomes 0;
    ``hi <= lo`` (or a bound not finite) gives zeros."""
    return _apply_window(np.asarray(arr), float(lo), float(hi))


def percentile_window(arr: np.ndarray, lo_pct: float, hi_pct: float) -> tuple[float, float]:
    """The raw values at the ``lo_pct`` and ``hi_pct`` percentiles of ``arr`` (finite values;
    exact for 8- and 16-bit integers, on an even sample of at most 2^18 values otherwise).
    When they coincide, the finite min / max. Percentiles outside [0, 100] are clipped and
    swapped ones put in order."""
    lo_pct, hi_pct = sorted(min(max(float(p), 0.0), 100.0) for p in (lo_pct, hi_pct))
    return _percentiles(np.asarray(arr), lo_pct, hi_pct)


def value_range(arr: np.ndarray) -> tuple[float, float]:
    """The finite minimum and maximum of ``arr`` ((0.0, 0.0) when it holds none)."""
    a = np.asarray(arr)
    if a.size == 0:
        return 0.0, 0.0
    if a.dtype == np.bool_:
        a = a.view(np.uint8)
    if a.dtype.kind == "f":
        finite = a[np.isfinite(a)]
        return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return float(a.min()), float(a.max())


def _sample(a: np.ndarray, n: int) -> np.ndarray:
    """At most about ``n`` values of ``a``, evenly spread (a stride that avoids column aliasing)."""
    flat = a.reshape(-1)
    if flat.size <= n:
        return flat
    step = flat.size // n + 1
    width = a.shape[-1] if a.ndim > 1 else 1
    while width > 1 and math.gcd(step, width) != 1:
        step += 1
    return flat[::step]


def _percentiles(a: np.ndarray, lo_pct: float, hi_pct: float) -> tuple[float, float]:
    """Robust (lo, hi) of the finite values of ``a``; falls back to min / max when they meet."""
    if a.size == 0:
        return 0.0, 0.0
    if a.dtype.kind in "ub" and a.dtype.itemsize <= 2:
        counts = _histogram(a.view(np.uint8) if a.dtype == np.bool_ else a)
        cdf = np.cumsum(counts)
        total = int(cdf[-1])
        lo = float(np.searchsorted(cdf, total * lo_pct / 100.0, side="left"))
        hi = float(np.searchsorted(cdf, total * hi_pct / 100.0, side="left"))
        if hi <= lo:
            nz = np.flatnonzero(counts)
            lo, hi = float(nz[0]), float(nz[-1])
        return lo, hi
    s = _sample(a, 1 << 18)
    if s.dtype.kind == "f":
        s = s[np.isfinite(s)]
    if s.size == 0:
        return 0.0, 0.0
    lo, hi = (float(v) for v in np.percentile(s, [lo_pct, hi_pct]))
    if hi <= lo:
        lo, hi = float(s.min()), float(s.max())
    return lo, hi


_CHUNK = 1 << 22  # elements per step: numpy's bincount casts its input to intp (8 bytes each)


def _histogram(a: np.ndarray) -> np.ndarray:
    """Counts of every value of an unsigned array of at most 16 bits, row band by row band, so
    a 196 Mpx 16-bit frame needs no 1.6 GB intp copy."""
    top = 256 if a.dtype.itemsize == 1 else 65536
    flat = a.reshape(-1) if a.ndim != 2 or a.flags.c_contiguous else None
    if flat is not None and flat.size <= _CHUNK:
        return np.bincount(flat, minlength=top)
    counts = np.zeros(top, dtype=np.int64)
    if flat is not None:
        for i in range(0, flat.size, _CHUNK):
            counts += np.bincount(flat[i : i + _CHUNK], minlength=top)
        return counts
    rows = max(1, _CHUNK // max(1, a.shape[1]))
    for r in range(0, a.shape[0], rows):
        counts += np.bincount(a[r : r + rows].reshape(-1), minlength=top)
    return counts


def block_mean(a: np.ndarray, f: int) -> np.ndarray:
    """``a`` (2-D) reduced by ``f`` on both axes, each output pixel the float32 mean of its
    f x f block (partial blocks at the right and bottom edges: the mean of what is there, as
    Pillow's ``Image.reduce``). Works through row bands: no full-size float copy is made."""
    if f <= 1:
        return a.astype(np.float32, copy=False)
    h, w = a.shape
    oh = -(-h // f)
    cols = np.arange(0, w, f)
    col_n = np.diff(np.append(cols, w)).astype(np.float32)
    out = np.empty((oh, cols.size), dtype=np.float32)
    per = max(1, _CHUNK // max(1, w * f))  # output rows per band
    src = a.view(np.uint8) if a.dtype == np.bool_ else a
    for i in range(0, oh, per):
        band = src[i * f : min(h, (i + per) * f)].astype(np.float32)
        starts = np.arange(0, band.shape[0], f)
        row_n = np.diff(np.append(starts, band.shape[0])).astype(np.float32)
        sums = np.add.reduceat(np.add.reduceat(band, starts, axis=0), cols, axis=1)
        out[i : i + starts.size] = sums / (row_n[:, None] * col_n[None, :])
    return out


def _apply_window(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(a - lo) / (hi - lo) as float32, clipped to [0, 1]; NaN -> 0; zeros when hi <= lo."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return np.zeros(a.shape, dtype=np.float32)
    out = np.subtract(a, lo, dtype=np.float32)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    if a.dtype.kind == "f":
        np.nan_to_num(out, copy=False, nan=0.0)
    return out


def wide_blur(a: np.ndarray, sigma: float, block: int) -> np.ndarray:
    """A Gaussian blur of SD ``sigma`` px of the 2-D ``a`` (float32), worked on a grid coarser by
    ``block`` (block means, the blur for the rest of the SD at that scale, bilinear back to every
    pixel); ``block`` < 2: at full resolution. For a blur wide against a block (σ ≥ 3 blocks) the
    result is the full one to well under a per cent of the contrast at a fraction of the time:
    the slow background of a micrograph, a structure tensor's window."""
    x = np.asarray(a, np.float32)
    if block < 2 or min(x.shape) < 2 * block:
        return ndimage.gaussian_filter(x, sigma, mode="reflect")
    h, w = x.shape
    small = block_mean(x, block)
    # a block mean already averages over a box of SD block / sqrt(12): the Gaussian adds the rest
    rest = math.sqrt(max(sigma * sigma - block * block / 12.0, 0.25 * sigma * sigma)) / block
    small = ndimage.gaussian_filter(small, rest, mode="reflect")
    return ndimage.zoom(small, block, order=1, grid_mode=True, mode="nearest")[:h, :w].astype(np.float32)
