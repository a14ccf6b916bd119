"""Measurements of every particle of an instance label image, in pixels.

Per particle: centroid (full-image pixel coordinates), area, equivalent-circle diameter (ECD),
Feret diameters max and min (rotating calipers on the convex hull of the pixel *corners*, so
a single pixel measures 1 × 1 and a 10-px disc about 10), aspect ratio (Feret max / min),
circularity 4πA / P² with P from ``skimage.measure.perimeter`` (4-connected boundary with
Benkrid–Crookes weights: 1 for straight steps, √2 for diagonals; clipped to ≤ 1), solidity
(area / convex-hull area of the corners), mean intensity (of the windowed [0, 1] image) and
whether the particle touches the image edge or the data bar (it is then left out of size
distributions and counted).

Every label of a frame is measured at once (:func:`measure`): sums per label by ``bincount``,
the boundary pixels of the whole frame, each label's hull from the leftmost and rightmost
corners of its rows (the hull of all corners) pruned in bulk, Feret diameters over every pair of
hull vertices in one array, the perimeter's neighbour codes from the same boundary pixels —
the numbers :func:`feret` and ``skimage.measure.perimeter`` give on each particle's own mask
(tests/particles/test_measure.py compares them), ~5× faster on ~500 particles.

Nanometres come later, from the image's pixel size (:func:`core.particles.to_nm`), so a pixel
size set after detection changes no stored number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

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


# --------------------------------------------------------------------------------------------
# Every label at once: whole-frame numpy over boundary pixels, no loop per particle but the
# last (building each Particle and its mask)

_UP, _DOWN, _LEFT, _RIGHT = (-1, 0), (1, 0), (0, -1), (0, 1)
_DIAGONALS = ((-1, -1), (-1, 1), (1, -1), (1, 1))
# skimage.measure.perimeter's weights, indexed by 1 + 2 × (4-neighbours on the border)
# + 10 × (diagonal neighbours on the border) of a border pixel
_PERIMETER_WEIGHTS = np.zeros(50, np.float64)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = math.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + math.sqrt(2)) / 2


@dataclass
class _Boundary:
    """The boundary pixels of every label: a pixel of label k with a 4-neighbour that is not k
    (outside the frame counts as not k), in raster order."""

    rows: np.ndarray
    cols: np.ndarray
    label: np.ndarray


def _boundary(padded: np.ndarray) -> _Boundary:
    """``padded``: the labels with one row / column of 0 around them."""
    core = padded[1:-1, 1:-1]
    edge = core != padded[:-2, 1:-1]
    edge |= core != padded[2:, 1:-1]
    edge |= core != padded[1:-1, :-2]
    edge |= core != padded[1:-1, 2:]
    edge &= core > 0
    rr, cc = np.nonzero(edge)
    return _Boundary(rr, cc, core[rr, cc])


def _perimeters(padded: np.ndarray, b: _Boundary, n: int) -> np.ndarray:
    """skimage.measure.perimeter(mask of k, 4) for every label k (index k; 0 unused): each
    border pixel weighted by which of its 8 neighbours are border pixels of the same label."""
    h, w = padded.shape[0] - 2, padded.shape[1] - 2
    on = np.zeros((h + 2, w + 2), bool)
    on[b.rows + 1, b.cols + 1] = True
    code = np.ones(len(b.rows), np.int64)
    for (dy, dx), weight in [*((d, 2) for d in (_UP, _DOWN, _LEFT, _RIGHT)), *((d, 10) for d in _DIAGONALS)]:
        r, c = b.rows + 1 + dy, b.cols + 1 + dx
        code += weight * (on[r, c] & (padded[r, c] == b.label))
    return np.bincount(b.label, weights=_PERIMETER_WEIGHTS[code], minlength=n + 1)


def _chains(b: _Boundary, h: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The left and right outlines of every label's pixel corners, one point per corner row y
    (pixel (r, c) spans x c..c+1, y r..r+1): (label, y, x of the left outline, x of the right
    outline), sorted by label then y. The convex hull of these is that of every corner."""
    key = b.label.astype(np.int64) * (h + 2) + b.rows
    order = np.argsort(key, kind="stable")  # raster order within a (label, row): cols ascending
    key, cols = key[order], b.cols[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    last = np.r_[first[1:], len(key)] - 1
    lab, row = key[first] // (h + 2), key[first] % (h + 2)
    xmin, xmax = cols[first], cols[last] + 1
    # each row gives its top (y = r) and bottom (y = r + 1) corners; rows r and r + 1 share y
    lab2, y2 = np.repeat(lab, 2), np.stack([row, row + 1], 1).ravel()
    left2, right2 = np.repeat(xmin, 2), np.repeat(xmax, 2)
    key2 = lab2 * (h + 2) + y2  # non-decreasing already
    start = np.flatnonzero(np.r_[True, key2[1:] != key2[:-1]])
    return (lab2[start], y2[start], np.minimum.reduceat(left2, start), np.maximum.reduceat(right2, start))


def _convex(lab: np.ndarray, y: np.ndarray, x: np.ndarray, side: int) -> np.ndarray:
    """Indices of the points of y-monotone chains (one per label, sorted by y) that lie on
    their convex side: ``side`` -1 keeps the left outline's hull, +1 the right's. A point on or
    inside the chord of its neighbours is never a hull vertex, so all such points are dropped
    at once, again until none is left (a label's first and last point always stay)."""
    keep = np.arange(len(lab))
    while len(keep) > 2:
        lk, yk, xk = lab[keep], y[keep], x[keep]
        inner = np.zeros(len(keep), bool)
        inner[1:-1] = (lk[1:-1] == lk[:-2]) & (lk[1:-1] == lk[2:])
        i = np.flatnonzero(inner)
        cross = (xk[i] - xk[i - 1]) * (yk[i + 1] - yk[i - 1]) - (yk[i] - yk[i - 1]) * (xk[i + 1] - xk[i - 1])
        drop = i[cross * side <= 0]
        if not len(drop):
            break
        keep = np.delete(keep, drop)
    return keep


def _hulls(b: _Boundary, h: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Feret max, Feret min, convex-hull area) of every label's pixel corners (index k),
    rotating calipers over each hull's vertices as :func:`feret` does, all labels in bulk."""
    lab, y, xl, xr = _chains(b, h)
    left = _convex(lab, y, xl, -1)
    right = _convex(lab, y, xr, +1)
    # each hull: its left outline top to bottom, then its right outline bottom to top
    hl = np.concatenate([lab[left], lab[right]])
    hy = np.concatenate([y[left], y[right]])
    hx = np.concatenate([xl[left], xr[right]])
    side = np.r_[np.zeros(len(left), np.int64), np.ones(len(right), np.int64)]
    order = np.lexsort((np.where(side == 0, hy, -hy), side, hl))
    hl, px, py = hl[order], hx[order].astype(np.float64), hy[order].astype(np.float64)
    start = np.flatnonzero(np.r_[True, hl[1:] != hl[:-1]])
    count = np.diff(np.r_[start, len(hl)])
    labels = hl[start]
    nxt = np.arange(len(hl)) + 1  # the next vertex round the same hull
    nxt[start + count - 1] = start
    area = np.abs(np.add.reduceat(px * py[nxt] - px[nxt] * py, start)) / 2
    # every ordered pair (i, j) of vertices of one hull: i's hull repeated over j
    per_i = np.repeat(count, count)  # vertices of i's hull
    i = np.repeat(np.arange(len(hl)), per_i)
    block = np.repeat(np.cumsum(per_i) - per_i, per_i)  # where i's run of pairs starts
    j = np.repeat(np.repeat(start, count), per_i) + (np.arange(len(i)) - block)
    dx, dy = px[j] - px[i], py[j] - py[i]
    pair_start = np.cumsum(per_i) - per_i
    dmax = np.sqrt(np.maximum.reduceat(dx * dx + dy * dy, pair_start[start]))
    ex, ey = px[nxt] - px, py[nxt] - py  # edge i → i + 1, its unit normal
    norm = np.maximum(1e-12, np.hypot(ex, ey))
    nx, ny = -ey / norm, ex / norm
    widths = np.maximum.reduceat(np.abs(dx * nx[i] + dy * ny[i]), pair_start)
    dmin = np.minimum.reduceat(widths, start)
    out = np.zeros((3, n + 1))
    out[0, labels], out[1, labels], out[2, labels] = dmax, dmin, area
    return out[0], out[1], out[2]


def measure(labels: np.ndarray, image: np.ndarray | None = None, *,
            scores: np.ndarray | dict[int, float] | None = None, databar_px: int = 0,
            offset: tuple[int, int] = (0, 0)) -> list[Particle]:
    """Measure every label 1..N of ``labels`` (the scan area, data bar already cut off).

    ``image``: the pixels the labels were found on (mean intensity); ``scores``: detection
    score per label (index = label); ``databar_px``: > 0 when a data bar sat right below the
    scan, so particles on the last row were cut by it; ``offset``: (x, y) added to centroids and
    bboxes (a crop of a larger frame).

    All labels are measured at once (sums per label, the boundary pixels of the whole frame,
    every hull in one pass); the numbers are those of :func:`feret` and
    ``skimage.measure.perimeter`` applied to each particle's mask."""
    labels = np.asarray(labels)
    h, w = labels.shape
    lab = labels if labels.dtype.kind in "iu" else labels.astype(np.int64)
    slices = ndimage.find_objects(lab)
    n = len(slices)
    if n == 0:
        return []
    flat = lab.ravel()
    idx = np.flatnonzero(flat)
    of = flat[idx]  # the label of each particle pixel
    area = np.bincount(of, minlength=n + 1)
    sum_y = np.bincount(of, weights=idx // w, minlength=n + 1)
    sum_x = np.bincount(of, weights=idx % w, minlength=n + 1)
    if image is not None:
        mean_int = np.bincount(of, weights=np.asarray(image).ravel()[idx], minlength=n + 1) / np.maximum(area, 1)
    padded = np.zeros((h + 2, w + 2), lab.dtype)
    padded[1:-1, 1:-1] = lab
    b = _boundary(padded)
    per = _perimeters(padded, b, n)
    fmax, fmin, hull_area = _hulls(b, h, n)
    out: list[Particle] = []
    ox, oy = int(offset[0]), int(offset[1])
    for k, sl in enumerate(slices, 1):
        if sl is None or area[k] == 0:
            continue
        a = int(area[k])
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        # as the mean of the coordinates inside the bbox (the same float as measuring the crop)
        cy = float((sum_y[k] - a * y0) / a + y0 + 0.5)
        cx = float((sum_x[k] - a * x0) / a + x0 + 0.5)
        p = float(per[k])
        circ = min(1.0, 4 * math.pi * a / p ** 2) if p > 0 else 1.0
        ha = float(hull_area[k])
        solidity = min(1.0, a / ha) if ha > 0 else 1.0
        mi = float(mean_int[k]) if image is not None else float("nan")
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
        fx, fn = float(fmax[k]), float(fmin[k])
        out.append(Particle(
            centroid_x_px=round(cx + ox, 2), centroid_y_px=round(cy + oy, 2), area_px=a,
            ecd_px=round(2 * math.sqrt(a / math.pi), 3), feret_max_px=round(fx, 3),
            feret_min_px=round(fn, 3), aspect_ratio=round(fx / fn, 3) if fn > 0 else 1.0,
            circularity=round(circ, 4), solidity=round(solidity, 4),
            mean_intensity=round(mi, 4), score=round(sc, 4), excluded=excluded,
            bbox=(x0 + ox, y0 + oy, x1 + ox, y1 + oy), mask=labels[sl] == k))
    return out


def to_nm(px: float, pixel_size_m: float | None) -> float | None:
    """A length in pixels as nanometres (None when the pixel size is unknown)."""
    return None if pixel_size_m is None else px * pixel_size_m * 1e9
