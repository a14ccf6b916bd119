"""Grey levels: windowing raw samples (16-bit, 32-bit, float) to [0, 1] between robust
percentiles, and the even sampling those percentiles are computed on."""

from __future__ import annotations

import math

import numpy as np


def window(arr: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Map ``arr`` to float32 [0, 1] between its ``lo_pct`` and ``hi_pct`` percentiles.

    Values outside the window are clipped; NaN becomes 0, +inf 1, -inf 0. When the percentiles
    coincide the finite min / max are used instead; a constant image gives zeros.
    """
    a = np.asarray(arr)
    lo, hi = _percentiles(a, lo_pct, hi_pct)
    return _apply_window(a, lo, hi)


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
        counts = np.bincount(a.reshape(-1).view(np.uint8) if a.dtype == np.bool_ else a.reshape(-1))
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
