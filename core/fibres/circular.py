"""Statistics of axial angles (a fibre at 10° is the fibre at 190°): histograms over 0–180°,
the dominant direction, the order parameter and the aligned fraction.

Angles are degrees in [0, 180), counter-clockwise from the image x axis as the image is
displayed (row 0 at the top): ``θ = atan2(−Δrow, Δcol)``, OrientationJ's convention.
Axial statistics work on doubled angles: ``exp(2iθ)`` turns 0° and 180° into one direction.
"""

from __future__ import annotations

import numpy as np

HIST_BINS = 180  # 1° bins over [0, 180)
PEAK_SMOOTH_DEG = 4.0  # the histogram is smoothed by this much (circular Gaussian SD) to find its peak
REFINE_DEG = 15.0  # the peak is refined by the doubled-angle mean within ± this


def angle_diff(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """Smallest difference between axial angles, in degrees, in [0, 90]."""
    d = np.abs((np.asarray(a, float) - np.asarray(b, float)) % 180.0)
    return np.minimum(d, 180.0 - d)


def angle_histogram(angles: np.ndarray, weights: np.ndarray | None = None,
                    bins: int = HIST_BINS) -> np.ndarray:
    """Weighted histogram of axial angles over [0, 180), normalised to sum 1 (zeros when
    nothing is weighted). NaN angles are left out."""
    a = np.asarray(angles, float).ravel()
    w = np.ones_like(a) if weights is None else np.asarray(weights, float).ravel()
    ok = np.isfinite(a) & np.isfinite(w) & (w > 0)
    h, _ = np.histogram(a[ok] % 180.0, bins=bins, range=(0.0, 180.0), weights=w[ok])
    total = h.sum()
    return h / total if total > 0 else h.astype(float)


def bin_centres(bins: int = HIST_BINS) -> np.ndarray:
    return (np.arange(bins) + 0.5) * 180.0 / bins


def _smooth_circular(hist: np.ndarray, sd_deg: float) -> np.ndarray:
    n = len(hist)
    step = 180.0 / n
    k = np.fft.rfftfreq(n, d=step)  # cycles per degree
    return np.fft.irfft(np.fft.rfft(hist) * np.exp(-2 * (np.pi * k * sd_deg) ** 2), n)


def dominant_direction(hist: np.ndarray) -> float | None:
    """The peak of an axial histogram (smoothed by ``PEAK_SMOOTH_DEG``), refined by the
    doubled-angle mean of the histogram within ± ``REFINE_DEG`` of it; None for an empty
    histogram."""
    h = np.asarray(hist, float)
    if not h.sum() > 0:
        return None
    centres = bin_centres(len(h))
    peak = centres[int(np.argmax(_smooth_circular(h, PEAK_SMOOTH_DEG)))]
    near = angle_diff(centres, peak) <= REFINE_DEG
    z = np.sum(h[near] * np.exp(2j * np.radians(centres[near])))
    return float(np.degrees(np.angle(z)) / 2.0 % 180.0) if abs(z) > 0 else float(peak)


def order_parameter(hist: np.ndarray, theta0: float | None) -> float | None:
    """S = ⟨cos 2(θ − θ₀)⟩ over the histogram: 1 when every fibre lies along θ₀, 0 for an
    isotropic mat, −1 when all are perpendicular to it."""
    h = np.asarray(hist, float)
    if theta0 is None or not h.sum() > 0:
        return None
    c = bin_centres(len(h))
    return float(np.sum(h * np.cos(2 * np.radians(c - theta0))) / h.sum())


def mean_resultant(hist: np.ndarray) -> tuple[float | None, float]:
    """The doubled-angle mean direction (deg) and its length R in [0, 1] (R = the order
    parameter about the mean direction)."""
    h = np.asarray(hist, float)
    if not h.sum() > 0:
        return None, 0.0
    z = np.sum(h * np.exp(2j * np.radians(bin_centres(len(h))))) / h.sum()
    return float(np.degrees(np.angle(z)) / 2.0 % 180.0), float(abs(z))


def fraction_within(hist: np.ndarray, theta0: float | None, tolerance_deg: float) -> float | None:
    """Share of the histogram's mass within ± ``tolerance_deg`` of ``theta0`` (partial bins
    counted in proportion)."""
    h = np.asarray(hist, float)
    if theta0 is None or not h.sum() > 0:
        return None
    n = len(h)
    width = 180.0 / n
    d = angle_diff(bin_centres(n), theta0)
    cover = np.clip((tolerance_deg - d) / width + 0.5, 0.0, 1.0)
    return float(np.sum(h * cover) / h.sum())
