"""The review picture of an image's particles: fitted or zoomed into a window (panned by half a
view), and a click on it mapped back to full-image pixels — the picture shows the image pixel
the click is mapped to, at every zoom, pan and browser shrink; the particle under the click is
the one drawn there."""

from __future__ import annotations

import numpy as np
import pytest

from core.images import ZOOM_LEVELS, to_uint8
from core.particles import (
    OUTLINE,
    SELECTED,
    fit_scale,
    overlay,
    panned_centre,
    particle_at,
    review_window,
    window_centre,
    zoom_levels,
)

SHAPES = [(256, 320), (768, 1024), (1536, 2048), (300, 1200)]
CENTRES = [None, (0.0, 0.0), (1e9, 1e9), (37.5, 200.2), (-5.0, 90.0)]


def discs(h, w, n=40, seed=0):
    """Labels of ``n`` non-overlapping discs (radius 3–9) and their centres (x, y)."""
    rng = np.random.default_rng(seed)
    lab = np.zeros((h, w), np.int32)
    yy, xx = np.mgrid[:h, :w]
    centres = []
    while len(centres) < n:
        r = rng.uniform(3, 9)
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        d = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy) <= r
        if lab[d].any():
            continue
        lab[d] = len(centres) + 1
        centres.append((cx, cy))
    return lab, centres


@pytest.mark.parametrize("shape", SHAPES)
def test_zoom_levels_magnify_beyond_the_fitted_view(shape):
    h, w = shape
    levels = zoom_levels(h, w)
    assert levels and all(z > fit_scale(h, w) for z in levels)
    assert set(levels) <= set(ZOOM_LEVELS)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("centre", CENTRES)
def test_zoomed_window_fills_the_fitted_picture_inside_the_image(shape, centre):
    h, w = shape
    s = fit_scale(h, w)
    for z in zoom_levels(h, w):
        win = review_window(h, w, z, centre)
        assert 0 <= win.x0 <= w - win.width and 0 <= win.y0 <= h - win.height
        assert win.width == min(w, round(w * s) // z) and win.height == min(h, round(h * s) // z)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("centre", CENTRES)
@pytest.mark.parametrize("shown", [None, 0.73, 1.0])
def test_a_click_maps_to_the_image_pixel_the_picture_shows(shape, centre, shown):
    """Every zoom level, centre and browser shrink (``shown`` × the picture's width): the grey
    value under a click on the picture is the image's own pixel at the mapped coordinates."""
    h, w = shape
    scan = np.random.default_rng(1).random((h, w), dtype=np.float32)
    grey = to_uint8(scan)
    lab = np.zeros((h, w), np.int32)
    rng = np.random.default_rng(2)
    for win in [None, *(review_window(h, w, z, centre) for z in zoom_levels(h, w))]:
        ov = overlay(scan, lab, window=win)
        ph, pw = ov.rgb.shape[:2]
        shown_w = pw * shown if shown else None
        f = shown if shown else 1.0
        for px, py in zip(rng.uniform(0, pw, 200), rng.uniform(0, ph, 200)):
            x, y = ov.to_image(px * f, py * f, shown_w)
            assert 0 <= x < w and 0 <= y < h
            if win is None and ov.scale < 1:
                continue  # a shrunk picture's pixel is a mean of several image pixels
            assert ov.rgb[int(py), int(px), 0] == grey[int(y), int(x)], (win, px, py, x, y)
        if win is not None:
            assert (ov.x0, ov.y0, ov.scale) == (win.x0, win.y0, win.zoom)
            assert ov.rgb.shape[:2] == (win.height * win.zoom, win.width * win.zoom)


@pytest.mark.parametrize("zoom", [2, 4, 8])
def test_a_click_on_a_particle_in_a_zoomed_panned_view_finds_it(zoom):
    h, w = 256, 320
    lab, centres = discs(h, w, n=80)
    scan = np.zeros((h, w), np.float32)
    centre = (w * 0.7, h * 0.4)
    seen = 0
    for pan in [(0, 0), (1, 0), (-1, 1), (1, 1), (-1, -1)]:
        centre = panned_centre(h, w, zoom, centre, *pan)
        win = review_window(h, w, zoom, centre)
        ov = overlay(scan, lab, window=win)
        for k, (cx, cy) in enumerate(centres, 1):
            if not (win.x0 + 2 <= cx < win.x0 + win.width - 2 and win.y0 + 2 <= cy < win.y0 + win.height - 2):
                continue
            seen += 1
            # where the browser reports the click: the picture shrunk to 600 px wide
            f = 600 / ov.rgb.shape[1]
            x, y = ov.to_image((cx - win.x0) * zoom * f, (cy - win.y0) * zoom * f, 600)
            assert (x, y) == pytest.approx((cx, cy), abs=1e-6)
            assert particle_at(lab, x, y) == k
    assert seen >= 5, "particles lie in the windows"


def test_pan_moves_half_a_view_and_stops_at_the_edges():
    h, w = 768, 1024
    win = review_window(h, w, 4, None)
    c = window_centre(win)
    right = review_window(h, w, 4, panned_centre(h, w, 4, c, 1, 0))
    assert right.x0 == win.x0 + win.width // 2 and right.y0 == win.y0
    down = review_window(h, w, 4, panned_centre(h, w, 4, c, 0, 5))  # clamped to one half view
    assert down.y0 == win.y0 + win.height // 2
    far = c
    for _ in range(50):
        far = panned_centre(h, w, 4, far, 1, 1)
    end = review_window(h, w, 4, far)
    assert (end.x0 + end.width, end.y0 + end.height) == (w, h)
    for _ in range(50):
        far = panned_centre(h, w, 4, far, -1, -1)
    assert (review_window(h, w, 4, far).x0, review_window(h, w, 4, far).y0) == (0, 0)


def test_zoomed_outlines_are_those_of_the_particles_under_them():
    """Outline pixels of a zoomed view lie on the particle's own pixels, the selected one's in
    its colour; the view's edges cut no false outline into a particle running past them."""
    h, w = 256, 320
    lab, centres = discs(h, w, n=30, seed=3)
    win = review_window(h, w, 8, centres[4])
    ov = overlay(np.zeros((h, w), np.float32), lab, selected={5}, window=win)
    for colour, ok in ((OUTLINE, lambda k: k > 0), (SELECTED, lambda k: k == 5)):
        ys, xs = np.nonzero((ov.rgb == colour).all(-1))
        assert len(ys), colour
        for py, px in zip(ys, xs):
            x, y = ov.to_image(px + 0.5, py + 0.5)
            assert ok(lab[int(y), int(x)]), (colour, px, py)
    big = np.zeros((h, w), np.int32)
    big[40:200, 50:300] = 1
    ov = overlay(np.zeros((h, w), np.float32), big, window=review_window(h, w, 8, (170, 120)))
    assert not (ov.rgb == OUTLINE).all(-1).any(), "a window inside one big particle shows no outline"
    edge = overlay(np.zeros((h, w), np.float32), big, window=review_window(h, w, 4, (100, 60)))
    assert (edge.rgb == OUTLINE).all(-1).any(), "its real edge does show"


def test_fitted_view_maps_clicks_through_its_scale():
    lab, centres = discs(256, 320)
    ov = overlay(np.zeros((256, 320), np.float32), lab)
    assert ov.scale == fit_scale(256, 320) == 2.0 and (ov.x0, ov.y0) == (0, 0)
    for k, (cx, cy) in enumerate(centres, 1):
        assert particle_at(lab, *ov.to_image(cx * 2 * 0.5, cy * 2 * 0.5, ov.rgb.shape[1] * 0.5)) == k
    big = overlay(np.zeros((1536, 2048), np.float32), np.zeros((1536, 2048), np.int32))
    assert big.scale == pytest.approx(1400 / 2048)
    assert big.to_image(700, 100) == pytest.approx((700 * 2048 / 1400, 100 * 2048 / 1400))
