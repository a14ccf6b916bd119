"""Fibre / nanowire measurement of one image by the gradient method: orientation histogram,
dominant direction, order parameter, coherency, aligned fraction and the diameter
distribution — and the same numbers from a synthetic image's truth (:func:`truth_summary`).

Conventions (README, "Fibres and nanowires"):

- angles in degrees in [0, 180), counter-clockwise from the image x axis as the image is
  displayed (row 0 at the top; ``θ = atan2(−Δrow, Δcol)``): a fibre from bottom-left to
  top-right lies at 45°;
- ``dominant_deg``: the peak of the coherency-weighted orientation histogram of wire pixels;
- ``order_parameter`` S = ⟨cos 2(θ − θ₀)⟩ over wire pixels, weighted by coherency: 1 = all
  along θ₀, 0 = isotropic;
- ``coherency``: the mean structure-tensor coherency of wire pixels;
- ``aligned_fraction``: the area fraction of wire pixels whose direction lies within
  ± ``tolerance_deg`` of θ₀ *and* whose coherency is at least ``min_coherency`` (a crossing or
  a bead has no direction, so it is not aligned);
- diameters: 2·(distance transform on the skeleton) − 1 px, times the pixel size when known.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.errors import InvalidValue, MeasurementError
from core.fibres.circular import (
    angle_diff,
    angle_histogram,
    dominant_direction,
    order_parameter,
)
from core.fibres.orientation import OrientationField, orientation_field
from core.fibres.segment import (
    MAX_FOREGROUND,
    MIN_FOREGROUND,
    Segmentation,
    segment_wires,
    skeleton_diameters,
)

MIN_SIDE = 32  # px: smaller images are refused
STORED_BINS = 36  # the histogram kept per image: 5° bins
METHODS = ("gradient", "learned")
MIN_DIAMETER_SAMPLES = 20


@dataclass(frozen=True)
class FibreParams:
    """How to measure. ``sigma``: the structure tensor's window SD in px (None = from the
    fibres: half their median diameter, 2–12 px); ``tolerance_deg``: the aligned fraction's
    tolerance; ``min_coherency``: below it a wire pixel has no direction."""

    sigma: float | None = None
    tolerance_deg: float = 15.0
    min_coherency: float = 0.2

    def __post_init__(self) -> None:
        if self.sigma is not None and not 0.3 <= self.sigma <= 64:
            raise InvalidValue(f"sigma must be between 0.3 and 64 px, got {self.sigma!r}")
        if not 0 < self.tolerance_deg <= 90:
            raise InvalidValue(
                f"tolerance must be in (0, 90] degrees, got {self.tolerance_deg!r}")
        if not 0 <= self.min_coherency < 1:
            raise InvalidValue(f"min coherency must be in [0, 1), got {self.min_coherency!r}")


@dataclass
class Diameters:
    """A diameter distribution: samples along the skeleton, in px and (when the pixel size is
    known) nm."""

    n: int
    px: dict[str, float] = field(default_factory=dict)  # mean, sd, d10, d50, d90
    nm: dict[str, float] | None = None


def diameter_stats(samples_px: np.ndarray, pixel_size_m: float | None) -> Diameters:
    s = np.asarray(samples_px, float)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return Diameters(0)
    px = {"mean": float(s.mean()), "sd": float(s.std(ddof=1)) if s.size > 1 else 0.0,
          "d10": float(np.percentile(s, 10)), "d50": float(np.percentile(s, 50)),
          "d90": float(np.percentile(s, 90))}
    nm = None if pixel_size_m is None else {k: v * pixel_size_m * 1e9 for k, v in px.items()}
    return Diameters(int(s.size), px, nm)


@dataclass
class FibreResult:
    """The measurement of one image. ``status``: 'ok', 'no fibres' (nothing wire-like found:
    the numbers are None) or 'no signal' (a blank scan)."""

    method: str
    status: str
    width: int
    height: int
    pixel_size_m: float | None
    dominant_deg: float | None = None
    order_parameter: float | None = None
    coherency: float | None = None
    aligned_fraction: float | None = None
    wire_fraction: float | None = None
    tolerance_deg: float = 15.0
    sigma_px: float | None = None
    histogram: list[float] = field(default_factory=list)  # STORED_BINS bins over [0, 180)
    diameters: Diameters = field(default_factory=lambda: Diameters(0))
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # kept only when asked (the page draws them); never stored
    field: OrientationField | None = None
    segmentation: Segmentation | None = None

    def summary(self) -> dict[str, Any]:
        """The JSON-able numbers (no arrays)."""
        d = asdict(self)
        d.pop("field")
        d.pop("segmentation")
        return d

    @property
    def diameter_unit(self) -> str:
        return "nm" if self.diameters.nm is not None else "px"


def check_image(scan: np.ndarray, name: str = "image") -> np.ndarray:
    """The scan as float32 [0, 1] 2-D, or :class:`MeasurementError` saying why not."""
    a = np.asarray(scan)
    if a.ndim != 2:
        raise MeasurementError(f"{name}: expected a 2-D grey image, got shape {a.shape}")
    h, w = a.shape
    if min(h, w) < MIN_SIDE:
        raise MeasurementError(f"{name}: too small to measure ({w}×{h} px without the data "
                               f"bar); need at least {MIN_SIDE}×{MIN_SIDE}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise MeasurementError(f"{name}: the pixels contain NaN or infinity")
    return a


def _stored_hist(h180: np.ndarray) -> list[float]:
    return [round(float(v), 6) for v in h180.reshape(STORED_BINS, -1).sum(axis=1)]


def auto_sigma(d50_px: float | None) -> float:
    return float(np.clip(0.5 * d50_px, 2.0, 12.0)) if d50_px else 2.0


def measure_gradient(scan: np.ndarray, pixel_size_m: float | None = None,
                     params: FibreParams | None = None, *, name: str = "image",
                     keep_arrays: bool = False) -> FibreResult:
    """Measure one scan (2-D, [0, 1], without the data bar) by the gradient method."""
    t0 = time.perf_counter()
    params = params or FibreParams()
    a = check_image(scan, name)
    h, w = a.shape
    res = FibreResult("gradient", "ok", w, h, pixel_size_m, tolerance_deg=params.tolerance_deg)
    if pixel_size_m is None:
        res.warnings.append("pixel size unknown: diameters in px")
    if float(a.max() - a.min()) < 1.0 / 255:
        res.status = "no signal"
        res.warnings.append("blank scan: less than one grey level of variation")
        res.seconds = time.perf_counter() - t0
        return res
    seg = segment_wires(a)
    res.wire_fraction = seg.foreground
    samples = skeleton_diameters(seg)
    res.diameters = diameter_stats(samples, pixel_size_m)
    if not MIN_FOREGROUND <= seg.foreground <= MAX_FOREGROUND or seg.skeleton.sum() < 10:
        res.status = "no fibres"
        res.warnings.append(f"no fibres found (wire area {100 * seg.foreground:.1f} % of the "
                            "image)")
        res.diameters = Diameters(0)
        res.seconds = time.perf_counter() - t0
        return res
    if res.diameters.n < MIN_DIAMETER_SAMPLES:
        res.warnings.append(f"only {res.diameters.n} diameter samples")
    d50 = res.diameters.px.get("d50")
    sigma = params.sigma if params.sigma is not None else auto_sigma(d50)
    dsig = float(np.clip((d50 or 4.0) / 8.0, 0.7, 2.5))
    fld = orientation_field(a, sigma, derivative_sigma=dsig)
    res.sigma_px = sigma
    m = seg.mask
    ang, coh, en = fld.angle_deg[m], fld.coherency[m], fld.energy[m]
    floor = 0.01 * float(np.percentile(fld.energy, 99))
    wgt = np.where(en > floor, coh, 0.0)
    h180 = angle_histogram(ang, wgt)
    theta0 = dominant_direction(h180)
    res.histogram = _stored_hist(h180)
    res.dominant_deg = theta0
    res.order_parameter = order_parameter(h180, theta0)
    res.coherency = float(coh.mean())
    if theta0 is not None:
        aligned = (angle_diff(ang, theta0) <= params.tolerance_deg) & (coh >= params.min_coherency)
        res.aligned_fraction = float(aligned.mean())
    if keep_arrays:
        res.field, res.segmentation = fld, seg
    res.seconds = time.perf_counter() - t0
    return res


def truth_orientation(mask: np.ndarray, angle_deg: np.ndarray,
                      tolerance_deg: float = 15.0) -> dict[str, Any]:
    """The orientation numbers of known wire pixels (``mask``) and their directions
    (``angle_deg``, NaN = no direction, e.g. a bead): the histogram (``STORED_BINS`` bins), its
    dominant direction, order parameter and the aligned fraction (wire pixels within the
    tolerance of the dominant direction)."""
    ang = angle_deg[mask]
    h180 = angle_histogram(ang)
    theta0 = dominant_direction(h180)
    af = None
    if ang.size and theta0 is not None:
        within = np.isfinite(ang) & (angle_diff(np.nan_to_num(ang), theta0) <= tolerance_deg)
        af = float(within.mean())
    return {"dominant_deg": theta0, "order_parameter": order_parameter(h180, theta0),
            "aligned_fraction": af, "histogram": _stored_hist(h180),
            "wire_fraction": float(mask.mean())}


def truth_summary(truth: dict[str, Any], tolerance_deg: float = 15.0) -> dict[str, Any]:
    """The true numbers of a synthetic wire image (core.synth.generate_wires) over its scan
    area, measured the same way (:func:`truth_orientation`), and its diameters: the median
    wire diameter and the median over wire pixels, in px."""
    rows = truth["mask"].shape[0] - int(truth.get("databar_px") or 0)
    mask = truth["mask"][:rows]
    out = truth_orientation(mask, truth["angle_deg"][:rows], tolerance_deg)
    d = truth["diameter_px"][:rows][mask]
    wd = truth["wire_diameters_px"]
    out["diameter_px_median"] = float(np.median(wd)) if wd else None
    out["diameter_px_area_median"] = float(np.nanmedian(d)) if np.isfinite(d).any() else None
    return out
