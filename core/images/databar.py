"""The instrument's data bar: the strip of text and scale bar at the bottom of many SEM images,
found by a conservative heuristic when the metadata does not say how tall it is."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from core.images.levels import _sample

MAX_DATABAR_FRACTION = 0.25
"""A data bar is never taller than this fraction of the image height."""


def detect_databar(arr2d: np.ndarray) -> int:
    """Height in rows of an instrument data bar at the bottom of ``arr2d`` (0 when none found).

    A data bar is a full-width strip of at most 25% of the height whose rows are mostly one exact
    value at an extreme of the image's range (black or white background), holding high-contrast
    marks (text, scale bar), and separated from the micrograph by a sharp horizontal boundary.
    Conservative: anything ambiguous returns 0, since a false bar would cut real data.
    """
    a = np.asarray(arr2d)
    if a.ndim != 2:
        raise ValueError(f"detect_databar expects a 2-D array, got shape {a.shape}")
    h, w = a.shape
    if h < 32 or w < 32 or a.dtype.kind not in "biuf":
        return 0
    max_bar = int(h * MAX_DATABAR_FRACTION)
    ctx = max(4, math.ceil(h * 0.03))
    r0 = max(0, h - max_bar - ctx - 1)
    region = a[r0:]
    if w > 1024:  # a column subsample is plenty for row statistics
        region = region[:, :: -(-w // 1024)]
    if region.dtype == np.bool_:
        region = region.view(np.uint8)
    mf, mode = _row_modes(region)
    n = len(mf)

    # 1. From the bottom, climb through bar-like rows (mostly one exact value). Allowed: a few
    #    stray rows below the bar (some instruments leave one) and short runs of weaker rows
    #    (dense text) when a bar-like row lies above them.
    strong = mf >= 0.5
    weak = mf >= 0.2
    skip = max(2, h // 200)
    max_gap = max(5, h // 40)
    i = n - 1
    while i >= 0 and not weak[i] and (n - 1 - i) < skip:
        i -= 1
    end = i + 1  # rows [end, n) are strays, not bar
    gap = 0
    while i >= 0 and weak[i] and not strong[i] and gap < max_gap:
        i -= 1
        gap += 1
    if i < 0 or not strong[i]:
        return 0
    top = i
    j = i - 1
    while j >= 0:
        if strong[j]:
            top = j
            j -= 1
            continue
        gap = 0
        while j - gap >= 0 and weak[j - gap] and not strong[j - gap] and gap <= max_gap:
            gap += 1
        if 0 < gap <= max_gap and j - gap >= 0 and strong[j - gap]:
            j -= gap
            continue
        break
    if top < n - max_bar or top < ctx:
        return 0  # bar-like rows run higher than any data bar: a flat image, not a bar
    if np.count_nonzero(strong[top:end]) < 0.4 * (end - top):
        return 0

    # 2. A sharp, straight boundary: the rows just above the band are clearly micrograph
    #    (few repeated values), or the band starts with uniform rows right under rows that
    #    are far from uniform (a dark micrograph over a black bar).
    above = mf[top - ctx : top]
    clear = mf[top - 1] < 0.3 and float(np.median(above)) < 0.2
    jump = (
        float(mf[top : top + 2].min()) >= 0.95
        and mf[top - 1] <= 0.5
        and float(np.median(above)) <= 0.4
    )
    if not (clear or jump):
        return 0
    if float(mf[top:end].mean()) - float(above.mean()) < 0.3:
        return 0  # not much flatter than the micrograph above it (e.g. scan-line noise)

    # 3. Background at an extreme of the micrograph's range, and high-contrast marks on it.
    band_modes = mode[top:end][strong[top:end]]
    values, counts = np.unique(band_modes, return_counts=True)
    bg = float(values[np.argmax(counts)])
    scan_rows = a[max(0, r0 + top - max_bar) : r0 + top]
    sample = _sample(scan_rows, 65536)
    sample = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    if sample.size == 0:
        return 0
    p5, p95 = (float(v) for v in np.percentile(sample, [5.0, 95.0]))
    if p5 < bg < p95:
        return 0
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    span = max(hi, bg) - min(lo, bg)
    if not math.isfinite(span) or span <= 0:
        return 0
    band = region[top:end].astype(np.float32)
    dist = np.abs(band - np.float32(bg))
    ink = dist > 0.25 * span
    if not 0.002 <= float(ink.mean()) <= 0.6:
        return 0

    # 4. Trim flat micrograph rows (e.g. saturated) caught at the top: the bar's own rows are
    #    drawn in its two colours, background and ink (a frame line, a margin, text).
    ink_values, ink_counts = np.unique(band[ink], return_counts=True)
    ink_value = np.float32(ink_values[np.argmax(ink_counts)])
    tol = 0.02 * span
    in_palette = ((dist <= tol) | (np.abs(band - ink_value) <= tol)).mean(axis=1)
    keep = np.flatnonzero(in_palette >= 0.9)
    if keep.size == 0:
        return 0
    cut = int(keep[0])
    top += cut
    bar = h - (r0 + top)
    if bar < max(6, math.ceil(h * 0.02)):
        return 0
    # 5. Overall, the strip must look drawn: mostly uniform rows in mostly two colours.
    if float(mf[top:end].mean()) < 0.45 or float(in_palette[cut:].mean()) < 0.55:
        return 0
    return int(bar)


def _row_modes(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: fraction of pixels equal to the row's most common value, and that value."""
    n, w = region.shape
    if region.dtype == np.uint8:
        keys = (np.arange(n, dtype=np.intp)[:, None] << 8) | region
        counts = np.bincount(keys.reshape(-1), minlength=n << 8).reshape(n, 256)
        return counts.max(axis=1) / w, counts.argmax(axis=1).astype(np.float64)
    s = np.sort(region, axis=1)
    change = np.ones((n, w), dtype=bool)
    change[:, 1:] = s[:, 1:] != s[:, :-1]
    starts = np.flatnonzero(change.reshape(-1))
    lengths = np.diff(np.append(starts, n * w))
    first = np.searchsorted(starts, np.arange(n) * w)
    longest = np.maximum.reduceat(lengths, first)
    # Where one value fills at least half the row, the median is that value.
    return longest / w, s[:, w // 2].astype(np.float64)


def annotation_boxes(arr2d: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (y0, y1, x0, x1) of instrument overlays drawn *inside* the frame: a rectangle of
    one exact value (black, white or a flat grey) holding text or a scale bar, in
    the top or bottom third, not spanning the full width (a full-width strip is a data bar:
    :func:`detect_databar`). Real micrographs often carry one (an "E Beam / Spot / Magn" box
    over the bottom-left corner); a detector must not measure its letters.

    Conservative: a region counts only when it is large (≥ 2.5 % of the height, ≥ 12 % of the
    width), nearly solid once its text is closed over, and its exact background value covers
    at least 40 % of it — noise never repeats one value over such an area."""
    a = np.asarray(arr2d)
    if a.ndim != 2 or a.size == 0 or a.dtype.kind not in "biuf":
        return []
    h, w = a.shape
    if h < 32 or w < 32:
        return []
    step = max(1, -(-max(h, w) // 1024))  # work on at most ~1024 px a side
    s = a[::step, ::step]
    sh, sw = s.shape
    # candidate values: those filling long horizontal runs (≥ 8 equal pixels), as a drawn box
    # does and noise never does
    eq = s[:, 1:] == s[:, :-1]
    runs = ndimage.minimum_filter1d(eq.view(np.uint8), 7, axis=1).astype(bool)
    if runs.mean() < 0.002:
        return []
    values, counts = np.unique(s[:, :-1][runs], return_counts=True)
    common = [v for v in values[np.argsort(-counts)[:3]] if counts[values == v][0] >= 0.002 * s.size]
    out: list[tuple[int, int, int, int]] = []
    k = max(3, min(sh, sw) // 60)
    for v in common:
        m = s == v
        if m.mean() < 0.002:
            continue
        # closing (dilate, then erode) with a k × k square, separable and on uint8: fast
        grown = ndimage.maximum_filter(m.view(np.uint8), size=k, mode="constant")
        closed = ndimage.minimum_filter(grown, size=k, mode="nearest").astype(bool)
        regions, _n = ndimage.label(closed)
        for sl in ndimage.find_objects(regions):
            if sl is None:
                continue
            y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
            bh, bw = y1 - y0, x1 - x0
            if bh < max(4, 0.025 * sh) or bw < 0.12 * sw or bh > 0.34 * sh:
                continue
            if bw >= 0.98 * sw:
                continue
            if not (y1 >= 0.66 * sh or y0 <= 0.34 * sh):
                continue
            solid = float(closed[sl].mean())
            raw = float(m[sl].mean())
            if solid < 0.9 or not 0.4 <= raw <= 0.995:  # nearly solid, with some text on it
                continue
            out.append((int(y0 * step), min(h, int(y1 * step)), int(x0 * step), min(w, int(x1 * step))))
    return out
