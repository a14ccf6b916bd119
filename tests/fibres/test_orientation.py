"""The structure-tensor field: the angle convention (counter-clockwise from x as displayed),
coherency high on straight stripes and low on noise, and the colour overlay."""

import numpy as np
import pytest

from core import fibres


def stripes(theta_deg: float, size: int = 128, period: float = 9.0) -> np.ndarray:
    """Stripes running along theta (counter-clockwise from x as displayed; rows go down)."""
    y, x = np.mgrid[0:size, 0:size].astype(float)
    t = np.radians(theta_deg)
    # displayed coordinates: up = −row; the stripe normal is perpendicular to the direction
    across = -x * np.sin(t) + (-y) * np.cos(t)
    return 0.5 + 0.4 * np.sin(2 * np.pi * across / period)


@pytest.mark.parametrize("theta", [0, 20, 45, 90, 135, 160])
def test_stripes_give_their_direction_with_high_coherency(theta):
    f = fibres.orientation_field(stripes(theta), 3.0)
    inner = (slice(16, -16), slice(16, -16))
    h = fibres.angle_histogram(f.angle_deg[inner], f.coherency[inner])
    assert fibres.angle_diff(fibres.dominant_direction(h), theta) < 1.0
    assert float(np.median(f.coherency[inner])) > 0.9


def test_a_bright_line_from_bottom_left_to_top_right_lies_at_45_degrees():
    img = np.zeros((101, 101))
    for i in range(101):
        img[100 - i, i] = 1.0  # row 100 (bottom) at column 0 → row 0 (top) at column 100
    f = fibres.orientation_field(img, 2.0)
    on = img > 0
    h = fibres.angle_histogram(f.angle_deg[on], f.coherency[on])
    assert fibres.angle_diff(fibres.dominant_direction(h), 45) < 2


def test_noise_has_low_coherency():
    f = fibres.orientation_field(np.random.default_rng(0).random((128, 128)), 2.0)
    assert float(np.median(f.coherency)) < 0.35


def test_overlay_hue_is_direction_brightness_is_coherency():
    img = stripes(0.0)
    f = fibres.orientation_field(img, 3.0)
    rgb = fibres.overlay_rgb(img, f)
    assert rgb.shape == (128, 128, 3) and rgb.dtype == np.uint8
    c = rgb[40:80, 40:80].reshape(-1, 3).mean(axis=0)
    assert c[0] > 200 and c[1] < 60 and c[2] < 60  # 0° is red, bright where coherent
    with pytest.raises(ValueError):
        fibres.overlay_rgb(img, f, mode="nope")
