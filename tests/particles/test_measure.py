"""Measurements of particles in pixels: ECD, Feret max / min, aspect ratio, circularity,
solidity, edge and data-bar flags."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.particles import feret, measure


def disc(h, w, cx, cy, r):
    yy, xx = np.mgrid[:h, :w]
    return ((xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r)


def test_disc_measures_as_a_disc():
    lab = disc(80, 80, 40, 40, 15).astype(np.int32)
    (p,) = measure(lab, lab.astype(np.float32))
    assert p.ecd_px == pytest.approx(30, rel=0.02)
    assert p.feret_max_px == pytest.approx(30, rel=0.05)
    assert p.feret_min_px == pytest.approx(30, rel=0.05)
    assert p.aspect_ratio == pytest.approx(1.0, abs=0.05)
    assert p.circularity > 0.85 and p.solidity > 0.95
    assert (p.centroid_x_px, p.centroid_y_px) == pytest.approx((40, 40), abs=0.1)
    assert p.excluded == ""


@pytest.mark.parametrize("angle", [0, 30, 45, 70])
def test_rotated_rectangle_feret(angle):
    a = math.radians(angle)
    pts = np.array([[0, 0], [40, 0], [40, 10], [0, 10]], float)
    rot = pts @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    fmax, fmin, area = feret(rot)
    assert fmax == pytest.approx(math.hypot(40, 10), rel=1e-6)
    assert fmin == pytest.approx(10, rel=1e-6)
    assert area == pytest.approx(400, rel=1e-6)


def test_single_pixel_is_one_by_one():
    lab = np.zeros((5, 5), np.int32)
    lab[2, 2] = 1
    (p,) = measure(lab)
    assert p.area_px == 1 and p.feret_min_px == pytest.approx(1, abs=1e-3)
    assert p.feret_max_px == pytest.approx(math.sqrt(2), abs=1e-3)


def test_edge_and_databar_flags():
    lab = np.zeros((40, 60), np.int32)
    lab[0:5, 20:25] = 1  # top edge
    lab[35:40, 20:25] = 2  # last scan row, above a data bar
    lab[10:15, 10:15] = 3
    ps = {round(p.centroid_x_px + p.centroid_y_px): p for p in measure(lab, databar_px=12)}
    flags = sorted(p.excluded for p in measure(lab, databar_px=12))
    assert flags == ["", "databar", "edge"]
    assert sorted(p.excluded for p in measure(lab, databar_px=0)) == ["", "edge", "edge"]
    del ps
