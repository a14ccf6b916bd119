"""The review view of an image's particles: the scan with every outline drawn (selected ones
in another colour), downscaled for display, and the particle under a click."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from core.images import to_uint8

OUTLINE = (0, 230, 255)
SELECTED = (255, 60, 200)
EXCLUDED = (255, 170, 0)


@dataclass
class Overlay:
    rgb: np.ndarray  # (h, w, 3) uint8, display size
    scale: float  # display px per image px


def overlay(scan: np.ndarray, labels: np.ndarray, *, selected: Collection[int] = (),
            excluded: Collection[int] = (), outlines: bool = True, max_side: int = 1400,
            min_side: int = 800) -> Overlay:
    """``labels``: instance labels of the scan (k = the k-th particle); ``selected`` /
    ``excluded``: label values drawn in their own colour. Frames larger than ``max_side`` are
    shrunk, smaller than ``min_side`` enlarged (whole-pixel steps, up to 4×) for clicking."""
    grey = to_uint8(scan)
    h, w = grey.shape
    scale = min(1.0, max_side / max(h, w))
    if max(h, w) < min_side:
        scale = float(min(4, max(1, min_side // max(h, w))))
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    if outlines and labels.any():
        lab = labels[:h, :w]
        edge = (ndimage.grey_dilation(lab, size=3) != ndimage.grey_erosion(lab, size=3)) & (lab > 0)
        rgb[edge] = OUTLINE
        for ids, colour in ((excluded, EXCLUDED), (selected, SELECTED)):
            if ids:
                rgb[edge & np.isin(lab, list(ids))] = colour
    if scale != 1.0:
        im = Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                         Image.Resampling.BOX if scale < 1 else Image.Resampling.NEAREST)
        rgb = np.asarray(im)
    return Overlay(rgb, scale)


def particle_at(labels: np.ndarray, x: float, y: float, radius: int = 3) -> int:
    """The label under (x, y) in image pixels, or the nearest within ``radius``; 0 if none."""
    h, w = labels.shape
    cx, cy = int(x), int(y)
    if not (0 <= cx < w and 0 <= cy < h):
        return 0
    if labels[cy, cx]:
        return int(labels[cy, cx])
    ya, yb, xa, xb = max(0, cy - radius), min(h, cy + radius + 1), max(0, cx - radius), min(w, cx + radius + 1)
    win = labels[ya:yb, xa:xb]
    if not win.any():
        return 0
    ys, xs = np.nonzero(win)
    j = int(np.argmin((ys + ya - cy) ** 2 + (xs + xa - cx) ** 2))
    return int(win[ys[j], xs[j]])
