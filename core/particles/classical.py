"""The classical detector (scikit-image): background flattening, smoothing, a global (Otsu) or
local threshold, the distance transform with h-maxima seeds and a watershed that splits
touching particles. Every parameter has a default that works on the synthetic benchmark and is
shown in the app."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import gaussian, threshold_local, threshold_otsu
from skimage.morphology import h_maxima
from skimage.segmentation import watershed

from core.errors import InvalidValue
from core.images import wide_blur

POLARITIES = ("auto", "bright", "dark")
THRESHOLDS = ("otsu", "local")


@dataclass(frozen=True)
class ClassicalParams:
    """Parameters of :func:`detect_classical` (lengths in pixels)."""

    polarity: str = "auto"  # particles brighter or darker than the background; auto: skewness
    background_sigma: float = 15.0  # Gaussian σ of the background removed (0 = none)
    smooth_sigma: float = 1.0  # Gaussian σ of the smoothing before the threshold
    threshold: str = "otsu"  # 'otsu' (global) or 'local' (mean over local_block)
    local_block: int = 101  # odd window of the local threshold
    offset: float = 0.0  # added to the threshold (in flattened-intensity units)
    min_contrast: float = 3.0  # otsu: at least this many robust SDs above the background side
    min_area: int = 8  # smaller objects are noise
    h: float = 1.0  # h-maxima depth of the distance transform: larger = fewer splits
    distance_sigma: float = 1.0  # smoothing of the distance map before seeding

    def __post_init__(self) -> None:
        if self.polarity not in POLARITIES:
            raise InvalidValue(f"polarity {self.polarity!r}: expected one of {POLARITIES}")
        if self.threshold not in THRESHOLDS:
            raise InvalidValue(f"threshold {self.threshold!r}: expected one of {THRESHOLDS}")
        for f in ("background_sigma", "smooth_sigma", "h", "distance_sigma", "min_contrast"):
            if not float(getattr(self, f)) >= 0:
                raise InvalidValue(f"{f} = {getattr(self, f)!r}: expected a number ≥ 0")
        if int(self.min_area) < 1:
            raise InvalidValue(f"min_area = {self.min_area!r}: expected an integer ≥ 1")
        if int(self.local_block) < 3:
            raise InvalidValue(f"local_block = {self.local_block!r}: expected an odd integer ≥ 3")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ClassicalParams:
        names = {f.name for f in fields(cls)}
        unknown = set(d or {}) - names
        if unknown:
            raise InvalidValue(f"Unknown classical parameter(s) {sorted(unknown)}; expected {sorted(names)}")
        return cls(**(d or {}))


def flatten(image: np.ndarray, params: ClassicalParams) -> tuple[np.ndarray, bool]:
    """The background-flattened, smoothed image with particles bright; and whether the
    particles were found bright (True) or dark in the input."""
    x = np.asarray(image, np.float32)
    if params.background_sigma > 0:
        # the slow background: from σ = 8 px on a grid coarser by σ / 4 (a seventh of the time)
        sigma = params.background_sigma
        x = x - wide_blur(x, sigma, int(sigma // 4) if sigma >= 8 else 1)
    if params.smooth_sigma > 0:
        x = gaussian(x, params.smooth_sigma, preserve_range=True)
    bright = params.polarity == "bright"
    if params.polarity == "auto":
        c = x - float(np.median(x))
        skew = float((c ** 3).mean() / max(1e-12, float((c ** 2).mean()) ** 1.5))
        bright = skew >= 0
    return (x if bright else -x).astype(np.float32), bright


def split_touching(fg: np.ndarray, h: float, distance_sigma: float,
                   energy: np.ndarray | None = None) -> np.ndarray:
    """Instance labels of a foreground mask: distance transform, h-maxima seeds, watershed.

    The h-maxima (a morphological reconstruction, the costly step) run per connected object
    on its own crop, so the cost follows the foreground, not the frame."""
    dist = ndimage.distance_transform_edt(fg).astype(np.float32)
    if distance_sigma > 0:
        dist = gaussian(dist, distance_sigma, preserve_range=True).astype(np.float32)
    if energy is None:
        energy = dist
    comp, n_comp = ndimage.label(fg)
    # an object whose energy has one local-maximum plateau has one regional maximum, so at most
    # one h-maximum (none when it is lower than h): no reconstruction needed (most objects)
    peaks = (energy == ndimage.maximum_filter(energy, size=3)) & fg
    peak_labels, _ = ndimage.label(peaks, structure=np.ones((3, 3), bool))
    pairs = np.unique(np.stack([comp[peaks], peak_labels[peaks]]), axis=1)
    plateaus = np.bincount(pairs[0], minlength=n_comp + 1)
    seeds = np.zeros(fg.shape, bool)
    for k, sl in enumerate(ndimage.find_objects(comp), 1):
        if sl is None:
            continue
        sl = tuple(slice(max(0, a.start - 1), a.stop + 1) for a in sl)
        own = comp[sl] == k
        e = np.where(own, energy[sl], 0).astype(np.float32)
        if h > 0 and own.sum() > 4 and plateaus[k] <= 1:
            if float(e.max()) >= h:  # what h_maxima gives here: one seed (none below h)
                seeds[sl] |= own
            continue
        if h > 0 and own.sum() > 4:
            seeds[sl] |= h_maxima(e, h).astype(bool) & own
        else:
            seeds[sl] |= own
    markers, _ = ndimage.label(seeds)
    return watershed(-energy, markers, mask=fg).astype(np.int32)


def detect_classical(image: np.ndarray, params: ClassicalParams | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels (int32, 0 = background) and a score per label (index = label, in
    [0, 1]: contrast over noise, squashed) of the particles in ``image`` (2-D, [0, 1])."""
    p = params or ClassicalParams()
    img = np.asarray(image, np.float32)
    if img.ndim != 2:
        raise InvalidValue(f"expected a 2-D grey image, got shape {img.shape}")
    if img.size == 0 or float(np.ptp(img)) < 1e-6:
        return np.zeros(img.shape, np.int32), np.zeros(1, np.float32)
    x, _ = flatten(img, p)
    if p.threshold == "local":
        block = int(p.local_block) | 1
        t = threshold_local(x, block, method="mean")
    else:
        t = threshold_otsu(x)
        if p.min_contrast > 0:  # sparse particles: Otsu would split the background texture
            below = x[x <= t]
            med = float(np.median(below))
            sd = 1.4826 * float(np.median(np.abs(below - med)))
            t = max(t, med + p.min_contrast * sd)
    fg = x > (t + p.offset)
    fg = ndimage.binary_fill_holes(fg)
    fg = ndimage.binary_opening(fg)
    labels = split_touching(fg, p.h, p.distance_sigma)
    # drop small objects after the split
    areas = np.bincount(labels.ravel())
    small = areas < p.min_area
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
    labels = _renumber(labels)
    n = int(labels.max())
    if n == 0:
        return labels, np.zeros(1, np.float32)
    inside = ndimage.mean(x, labels, np.arange(1, n + 1))
    bg = x[labels == 0]
    bg_level = float(np.median(bg)) if bg.size else float(np.median(x))
    noise = float(np.median(np.abs(bg - bg_level))) * 1.4826 if bg.size else 1.0
    z = (np.asarray(inside) - bg_level) / max(1e-6, noise)
    scores = np.concatenate([[0.0], 1.0 / (1.0 + np.exp(-(z - 2.0)))]).astype(np.float32)
    return labels, scores


def _renumber(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels]
