"""Axial angle statistics: differences wrap at 180°, the dominant direction is the histogram's
peak, the order parameter is 1 for parallel fibres and ≈ 0 for an isotropic mat."""

import numpy as np
import pytest

from core import fibres


@pytest.mark.parametrize(("a", "b", "d"), [(0, 179, 1), (10, 170, 20), (45, 135, 90),
                                           (0, 90, 90), (5, 185, 0), (-10, 10, 20)])
def test_angle_difference_is_axial(a, b, d):
    assert fibres.angle_diff(a, b) == pytest.approx(d)


@pytest.mark.parametrize("theta", [0.4, 37.0, 89.5, 120.0, 178.0])
def test_dominant_direction_and_order_parameter_of_one_population(theta):
    rng = np.random.default_rng(1)
    angles = (theta + rng.normal(0, 5, 5000)) % 180
    h = fibres.angle_histogram(angles)
    t0 = fibres.dominant_direction(h)
    assert fibres.angle_diff(t0, theta) < 1.0
    s = fibres.order_parameter(h, t0)
    assert s == pytest.approx(np.exp(-2 * np.radians(5) ** 2), abs=0.02)  # ⟨cos 2ε⟩, ε ~ N(0, 5°)
    assert fibres.fraction_within(h, t0, 10) == pytest.approx(0.954, abs=0.02)  # ± 2 SD


def test_isotropic_angles_have_order_near_zero_and_tolerance_share_of_pixels():
    angles = np.random.default_rng(2).uniform(0, 180, 50_000)
    h = fibres.angle_histogram(angles)
    t0 = fibres.dominant_direction(h)
    assert abs(fibres.order_parameter(h, t0)) < 0.05
    assert fibres.fraction_within(h, t0, 15) == pytest.approx(30 / 180, abs=0.02)


def test_two_populations_peak_at_the_larger_one():
    rng = np.random.default_rng(3)
    angles = np.concatenate([rng.normal(30, 4, 3000), rng.normal(120, 4, 1500)]) % 180
    h = fibres.angle_histogram(angles)
    assert fibres.angle_diff(fibres.dominant_direction(h), 30) < 1.5
    # a third of the mass sits perpendicular: S = (2/3)·c − (1/3)·c with c = ⟨cos 2ε⟩
    assert fibres.order_parameter(h, 30) == pytest.approx(np.exp(-2 * np.radians(4) ** 2) / 3,
                                                          abs=0.03)


def test_empty_histogram_gives_no_direction():
    h = fibres.angle_histogram(np.array([np.nan, np.nan]))
    assert h.sum() == 0
    assert fibres.dominant_direction(h) is None
    assert fibres.order_parameter(h, None) is None
    assert fibres.fraction_within(h, None, 15) is None
