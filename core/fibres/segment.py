"""Wires vs background, and fibre diameters along the skeleton.

Segmentation (fibres and nanowires are brighter than what lies behind them in a
secondary-electron image): the slow background is removed (a Gaussian of SD 1/20 of the image
side, so the same at any magnification of one field), light denoising, Otsu's threshold, holes
smaller than a fibre's cross-section filled (the dark core of a thick fibre between its bright
edges), specks removed.

Diameters (DiameterJ's approach): the Euclidean distance transform of the mask read on its
skeleton gives the local half-width; the diameter at a skeleton pixel is ``2·d − 1`` px (d is
measured to the nearest background pixel centre). Skeleton pixels at branch points (where the
distance is that of a crossing, not a fibre) and near the image border are left out. Every
remaining skeleton pixel is one sample, so the distribution is weighted by fibre length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree
from skimage.filters import apply_hysteresis_threshold, threshold_otsu
from skimage.morphology import remove_small_holes, remove_small_objects, skeletonize

from core.fibres.parallel import both
from core.images import block_mean, resize

BACKGROUND_FRACTION = 1 / 20  # background Gaussian SD, as a fraction of the longer side
DENOISE_PX = 1.0
HYSTERESIS = 0.35  # strong pixels: Otsu + this share of the way to the 99.5th percentile
MIN_FOREGROUND = 0.005  # less wire area than this → "no fibres found"
MAX_FOREGROUND = 0.95


@dataclass
class Segmentation:
    mask: np.ndarray  # bool: wire / fibre pixels
    skeleton: np.ndarray  # bool: one-pixel centre lines
    threshold: float
    foreground: float  # wire area fraction
    distance: np.ndarray | None = None  # float32: Euclidean distance of each pixel to the background


def _threshold(flat: np.ndarray, smooth_px: float, side: int,
               hole_px: float) -> tuple[np.ndarray, float]:
    sm = ndi.gaussian_filter(flat, smooth_px, mode="reflect")
    t = float(threshold_otsu(sm))
    spread = float(np.percentile(sm, 99.5) - t)
    # hysteresis: a wire is a connected run above Otsu's threshold holding pixels well above it
    mask = apply_hysteresis_threshold(sm, t, t + HYSTERESIS * max(spread, 1e-6))
    speck = max(4, int((side / 200.0) ** 2 * 6))
    mask = remove_small_objects(mask, max_size=speck)
    mask = remove_small_holes(mask, max_size=max(4, int(hole_px)))
    return mask, t


def segment_wires(img: np.ndarray) -> Segmentation:
    """Wire / fibre pixels of a grey image in [0, 1] (no data bar).

    Two passes: a first at light smoothing finds the typical fibre width w (area / centre-line
    length); the second smooths at w / 4 (noise goes, fibres stay) and fills holes up to a
    fibre's cross-section (w²: the dark core of a thick fibre between its bright edges).
    """
    a = np.asarray(img, np.float32)
    h, w = a.shape
    side = max(h, w)
    flat = a - _background(a, BACKGROUND_FRACTION * side)
    if float(flat.max() - flat.min()) < 1e-6:
        empty = np.zeros_like(a, bool)
        return Segmentation(empty, empty, 0.0, 0.0)
    # first pass: only the typical width, so on a 2x coarser grid above 512 px (as it is read)
    f = 2 if side > 512 else 1
    coarse = flat if f == 1 else block_mean(flat, f)
    mask, t = _threshold(coarse, DENOISE_PX / f, side // f, (side / 60.0 / f) ** 2)
    width = _mean_width(mask, f)
    if width is not None:
        mask, t = _threshold(flat, float(np.clip(width / 4.0, DENOISE_PX, 6.0)), side,
                             max((side / 60.0) ** 2, 2.0 * width * width))
    # the skeleton and the distance transform (the diameters) side by side on two cores
    dist, skel = both(lambda: ndi.distance_transform_edt(mask).astype(np.float32), lambda: skeletonize(mask))
    return Segmentation(mask, skel, t, float(mask.mean()), dist)


def _background(a: np.ndarray, sigma: float) -> np.ndarray:
    """A wide Gaussian blur, computed on a grid coarser by sigma / 4 and resized back (the
    same result to a few per cent of the contrast, at a fraction of the time)."""
    k = max(1, int(sigma // 4))
    if k == 1:
        return ndi.gaussian_filter(a, sigma, mode="reflect")
    h, w = a.shape
    hh, ww = h // k * k, w // k * k
    small = a[:hh, :ww].reshape(hh // k, k, ww // k, k).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sigma / k, mode="reflect")
    return resize(small, (h, w))


def _mean_width(mask: np.ndarray, f: int = 1) -> float | None:
    """Area / centre-line length of the mask (a quick typical width), on a 2× coarser grid
    above 512 px; ``f``: the mask is already that much coarser than the image."""
    m = mask
    while max(m.shape) > 512:
        m = m[::2, ::2]
        f *= 2
    skel = skeletonize(m)
    n = int(skel.sum())
    return float(m.sum() / n * f) if n >= 10 else None


def skeleton_diameters(seg: Segmentation) -> np.ndarray:
    """Diameter samples in px: one per skeleton pixel away from branch points and borders."""
    mask, skel = seg.mask, seg.skeleton
    if not skel.any():
        return np.zeros(0, np.float32)
    dist = seg.distance if seg.distance is not None else ndi.distance_transform_edt(mask).astype(np.float32)
    neighbours = ndi.convolve(skel.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant")
    branch = skel & (neighbours >= 4)  # itself + ≥ 3 neighbours
    ys, xs = np.nonzero(skel)
    d = dist[ys, xs]
    keep = np.ones(len(ys), bool)
    if branch.any():  # leave out the skeleton within a crossing's reach of a branch point
        by, bx = np.nonzero(branch)
        reach, _ = cKDTree(np.column_stack([by, bx])).query(np.column_stack([ys, xs]))
        keep &= reach > 1.5 * d + 1.0
    h, w = mask.shape
    # a fibre end at the border: a half-cut cross-section
    keep &= (ys >= d) & (xs >= d) & (ys < h - d) & (xs < w - d)
    return (2.0 * d[keep] - 1.0).astype(np.float32)
