"""The review view of an image's particles: the scan with every outline drawn (selected ones
in another colour), fitted for display or a zoomed window of it (the closer look's
core.images.zoom_window, panned by half a view), the click on it as full-image pixels, and the
particle under a click.

Zoom levels are image pixels drawn as z × z pixels of the picture (core.images.ZOOM_LEVELS);
a zoomed picture is as large as the fitted one, so the page keeps its layout while zooming.
Only the window is rendered: the outlines of a zoomed view are drawn on its magnified labels
(one picture pixel wide at every zoom)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from core.images import ZOOM_LEVELS, ZoomWindow, magnify, pan, to_uint8, zoom_window

OUTLINE = (0, 230, 255)
SELECTED = (255, 60, 200)
EXCLUDED = (255, 170, 0)


MAX_SIDE, MIN_SIDE = 1400, 800  # the fitted picture's longest side: shrunk above, enlarged below


@dataclass
class Overlay:
    """The review picture: ``rgb`` shows image pixels ``x0`` .. ``x0 + rgb width / scale``
    (and likewise in y), each as ``scale`` × ``scale`` picture pixels."""

    rgb: np.ndarray  # (h, w, 3) uint8, display size
    scale: float  # display px per image px
    x0: int = 0
    y0: int = 0

    def to_image(self, x: float, y: float, shown_width: float | None = None) -> tuple[float, float]:
        """A point of the picture as full-image pixel coordinates (pixel (r, c) spans x
        c..c+1). ``x``, ``y``: where on the picture, as the browser reports it; ``shown_width``:
        the width the browser drew the picture at (it may shrink it to fit the page)."""
        f = self.rgb.shape[1] / shown_width if shown_width else 1.0
        return self.x0 + x * f / self.scale, self.y0 + y * f / self.scale


def fit_scale(height: int, width: int, max_side: int = MAX_SIDE, min_side: int = MIN_SIDE) -> float:
    """Picture pixels per image pixel of the fitted view: frames larger than ``max_side`` are
    shrunk, smaller than ``min_side`` enlarged (whole-pixel steps, up to 4×) for clicking."""
    longest = max(int(height), int(width), 1)
    if longest < min_side:
        return float(min(4, max(1, min_side // longest)))
    return min(1.0, max_side / longest)


def zoom_levels(height: int, width: int) -> tuple[int, ...]:
    """The zoom levels that magnify an image beyond its fitted view."""
    return tuple(z for z in ZOOM_LEVELS if z > fit_scale(height, width))


def review_window(height: int, width: int, zoom: int,
                  centre: tuple[float, float] | None = None) -> ZoomWindow:
    """The window of a ``height`` × ``width`` image a review picture at ``zoom`` shows: as many
    image pixels as fill the fitted picture's size, centred on ``centre`` (full-image pixels;
    None: the middle) and moved inside the image at its edges."""
    s = fit_scale(height, width)
    box_w, box_h = max(1, round(width * s)), max(1, round(height * s))
    fx, fy = (0.5, 0.5) if centre is None else (centre[0] / max(1, width), centre[1] / max(1, height))
    return zoom_window(width, height, fx, fy, box_w, box_h, zoom)


def window_centre(win: ZoomWindow) -> tuple[float, float]:
    """The centre of a window, in full-image pixels."""
    return win.x0 + win.width / 2, win.y0 + win.height / 2


def panned_centre(height: int, width: int, zoom: int, centre: tuple[float, float] | None,
                  dx: int, dy: int) -> tuple[float, float]:
    """The centre of the review window at ``zoom`` after a pan by ``dx``, ``dy`` half views
    (-1 left / up, +1 right / down; core.images.pan), stopping at the image's edges."""
    win = review_window(height, width, zoom, centre)
    return window_centre(pan(win, max(-1, min(int(dx), 1)), max(-1, min(int(dy), 1))))


def overlay(scan: np.ndarray, labels: np.ndarray, *, selected: Collection[int] = (),
            excluded: Collection[int] = (), outlines: bool = True, max_side: int = MAX_SIDE,
            min_side: int = MIN_SIDE, window: ZoomWindow | None = None) -> Overlay:
    """``labels``: instance labels of the scan (k = the k-th particle); ``selected`` /
    ``excluded``: label values drawn in their own colour. The whole frame fitted
    (:func:`fit_scale`), or only ``window`` magnified ``window.zoom`` times (sharp pixels)."""
    if window is not None:
        return _zoomed(scan, labels, window, selected, excluded, outlines)
    grey = to_uint8(scan)
    h, w = grey.shape
    scale = fit_scale(h, w, max_side, min_side)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    if outlines and labels.any():
        _draw(rgb, labels[:h, :w], selected, excluded)
    if scale != 1.0:
        im = Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                         Image.Resampling.BOX if scale < 1 else Image.Resampling.NEAREST)
        rgb = np.asarray(im)
    return Overlay(rgb, scale)


def _draw(rgb: np.ndarray, lab: np.ndarray, selected: Collection[int], excluded: Collection[int],
          margin: int = 0) -> None:
    """Outline every label of ``lab`` on ``rgb`` (``lab`` with ``margin`` extra pixels on each
    side, so outlines at the picture's edges are those of the whole image)."""
    edge = (ndimage.grey_dilation(lab, size=3) != ndimage.grey_erosion(lab, size=3)) & (lab > 0)
    if margin:
        edge, lab = edge[margin:-margin, margin:-margin], lab[margin:-margin, margin:-margin]
    rgb[edge] = OUTLINE
    for ids, colour in ((excluded, EXCLUDED), (selected, SELECTED)):
        if ids:
            rgb[edge & np.isin(lab, list(ids))] = colour


def _zoomed(scan: np.ndarray, labels: np.ndarray, win: ZoomWindow, selected: Collection[int],
            excluded: Collection[int], outlines: bool) -> Overlay:
    h, w = scan.shape
    x0, y0 = min(max(win.x0, 0), max(0, w - 1)), min(max(win.y0, 0), max(0, h - 1))
    x1, y1 = min(w, x0 + win.width), min(h, y0 + win.height)
    z = max(1, int(win.zoom))
    grey = magnify(to_uint8(scan[y0:y1, x0:x1]), z)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    if outlines:
        # one image pixel around the window (past the image's edges: the edge pixel again, as
        # the fitted view's filters see it), magnified
        ya, yb, xa, xb = max(0, y0 - 1), min(h, y1 + 1), max(0, x0 - 1), min(w, x1 + 1)
        lab = np.pad(labels[ya:yb, xa:xb], ((1 - (y0 - ya), 1 - (yb - y1)), (1 - (x0 - xa), 1 - (xb - x1))),
                     mode="edge")
        if lab.any():
            _draw(rgb, magnify(lab, z), selected, excluded, margin=z)
    return Overlay(rgb, float(z), x0, y0)


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
