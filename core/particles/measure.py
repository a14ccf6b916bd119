"""Measurements of every particle of an instance label image, in pixels.

Per particle: centroid (full-image pixel coordinates), area, equivalent-circle diameter (ECD),
Feret diameters max and min (rotating calipers on the convex hull of the pixel *corners*, so
a single pixel measures 1 × 1 and a 10-px disc about 10), aspect ratio (Feret max / min),
circularity 4πA / P² with P from ``skimage.measure.perimeter`` (4-connected boundary with
Benkrid–Crookes weights: 1 for straight steps, √2 for diagonals; clipped to ≤ 1), solidity
(area / convex-hull area of the corners), mean intensity (of the windowed [0, 1] image) and
whether the particle touches the image edge or the data bar (it is then left out of size
distributions and counted).

Nanometres come later, from the image's pixel size (:func:`core.particles.to_nm`), so a pixel
size set after detection changes no stored number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.measure import perimeter

COLUMNS = ("centroid_x_px", "centroid_y_px", "area_px", "ecd_px", "feret_max_px", "feret_min_px",
           "aspect_ratio", "circularity", "solidity", "mean_intensity")
PERIMETER_NOTE = ("circularity = 4πA/P², P = skimage.measure.perimeter (4-connected boundary, "
                  "weights 1 / √2), clipped to 1")


@dataclass
class Particle:
    """One measured particle; ``bbox`` = (x0, y0, x1, y1) in full-image pixels, ``mask`` its
    boolean footprint inside the bbox."""

    centroid_x_px: float
    centroid_y_px: float
    area_px: int
    ecd_px: float
    feret_max_px: float
    feret_min_px: float
    aspect_ratio: float
    circularity: float
    solidity: float
    mean_intensity: float
    score: float
    excluded: str  # '' | 'edge' | 'databar'
    bbox: tuple[int, int, int, int]
    mask: np.ndarray

    def row(self) -> dict[str, float | int | str]:
        return {c: getattr(self, c) for c in (*COLUMNS, "score", "excluded")}


def feret(points: np.ndarray) -> tuple[float, float, float]:
    """(max, min Feret diameter, hull area) of 2-D points (n, 2) by rotating calipers."""
    if len(points) < 3:
        d = float(np.ptp(points, axis=0).max()) if len(points) else 0.0
        return d, 0.0, 0.0
    try:
        hull = ConvexHull(points)
    except QhullError:  # collinear
        d = float(np.ptp(points, axis=0).max())
        return d, 0.0, 0.0
    v = points[hull.vertices]
    diff = v[:, None, :] - v[None, :, :]
    dmax = float(np.sqrt((diff ** 2).sum(-1).max()))
    e = np.roll(v, -1, axis=0) - v
    n = np.stack([-e[:, 1], e[:, 0]], 1)
    n /= np.maximum(1e-12, np.linalg.norm(n, axis=1))[:, None]
    widths = np.abs(np.einsum("ijk,ik->ij", v[None, :, :] - v[:, None, :], n))
    dmin = float(widths.max(axis=1).min())
    return dmax, dmin, float(hull.volume)


def _corners(mask: np.ndarray) -> np.ndarray:
    """Corner points of the boundary pixels of a boolean mask (pixel (r, c) spans c..c+1)."""
    inner = ndimage.binary_erosion(mask)
    rr, cc = np.nonzero(mask & ~inner)
    if len(rr) == 0:
        rr, cc = np.nonzero(mask)
    # the four corners of every boundary pixel, each once: unique over one int64 key per point
    # (np.unique(axis=0) sorts row views: several times slower on ~500 particles a frame)
    span = int(rr.max()) + 2
    keys = np.concatenate([(cc + dx).astype(np.int64) * span + (rr + dy) for dx in (0, 1) for dy in (0, 1)])
    u = np.unique(keys)
    return np.stack([u // span, u % span], 1).astype(np.float64)


def measure(labels: np.ndarray, image: np.ndarray | None = None, *,
            scores: np.ndarray | dict[int, float] | None = None, databar_px: int = 0,
            offset: tuple[int, int] = (0, 0)) -> list[Particle]:
    """Measure every label 1..N of ``labels`` (the scan area, data bar already cut off).

    ``image``: the pixels the labels were found on (mean intensity); ``scores``: detection
    score per label (index = label); ``databar_px``: > 0 when a data bar sat right below the
    scan, so particles on the last row were cut by it; ``offset``: (x, y) added to centroids and
    bboxes (a crop of a larger frame)."""
    labels = np.asarray(labels)
    h, w = labels.shape
    out: list[Particle] = []
    slices = ndimage.find_objects(labels.astype(np.int64, copy=False))
    ox, oy = int(offset[0]), int(offset[1])
    for k, sl in enumerate(slices, 1):
        if sl is None:
            continue
        m = labels[sl] == k
        area = int(m.sum())
        if area == 0:
            continue
        ys, xs = np.nonzero(m)
        cy = float(ys.mean() + sl[0].start + 0.5)
        cx = float(xs.mean() + sl[1].start + 0.5)
        pts = _corners(m)
        fmax, fmin, hull_area = feret(pts)
        per = float(perimeter(np.pad(m, 1), 4))
        circ = min(1.0, 4 * math.pi * area / per ** 2) if per > 0 else 1.0
        solidity = min(1.0, area / hull_area) if hull_area > 0 else 1.0
        mean_int = float(image[sl][m].mean()) if image is not None else float("nan")
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        excluded = ""
        if databar_px > 0 and y1 == h:
            excluded = "databar"
        elif y0 == 0 or x0 == 0 or x1 == w or y1 == h:
            excluded = "edge"
        if scores is None:
            sc = 1.0
        elif isinstance(scores, dict):
            sc = float(scores.get(k, 1.0))
        else:
            sc = float(scores[k]) if k < len(scores) else 1.0
        out.append(Particle(
            centroid_x_px=round(cx + ox, 2), centroid_y_px=round(cy + oy, 2), area_px=area,
            ecd_px=round(2 * math.sqrt(area / math.pi), 3), feret_max_px=round(fmax, 3),
            feret_min_px=round(fmin, 3), aspect_ratio=round(fmax / fmin, 3) if fmin > 0 else 1.0,
            circularity=round(circ, 4), solidity=round(solidity, 4),
            mean_intensity=round(mean_int, 4), score=round(sc, 4), excluded=excluded,
            bbox=(x0 + ox, y0 + oy, x1 + ox, y1 + oy), mask=m))
    return out


def to_nm(px: float, pixel_size_m: float | None) -> float | None:
    """A length in pixels as nanometres (None when the pixel size is unknown)."""
    return None if pixel_size_m is None else px * pixel_size_m * 1e9
