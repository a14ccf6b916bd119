"""The gradient method against synthetic truth (core.synth.generate_wires), bad input, and the
pixel-size handling of diameters."""

import numpy as np
import pytest

from core import fibres, synth
from core.errors import InvalidValue, MeasurementError


def scan_of(img, truth):
    return img[: img.shape[0] - truth["databar_px"]].astype(np.float32) / 255.0


def test_synthetic_generator_truth_matches_the_pixels():
    img, t = synth.generate_wires(3, 192, kind="nanowires", databar=False,
                                  populations=[{"angle_deg": 30.0, "spread_deg": 3.0,
                                                "weight": 1.0}])
    again, _ = synth.generate_wires(3, 192, kind="nanowires", databar=False,
                                    populations=[{"angle_deg": 30.0, "spread_deg": 3.0,
                                                  "weight": 1.0}])
    assert np.array_equal(img, again)
    on, off = img[t["mask"]], img[~t["mask"]]
    assert on.mean() > off.mean() + 10, "wires are brighter than the substrate"
    s = fibres.truth_summary(t)
    assert fibres.angle_diff(s["dominant_deg"], 30) < 3
    assert s["order_parameter"] > 0.9


@pytest.mark.parametrize("seed", range(6))
def test_aligned_images_dominant_direction_within_3_degrees(seed):
    theta = 15.0 + 27.0 * seed
    img, t = synth.generate_wires(seed, 256, populations=[
        {"angle_deg": theta, "spread_deg": 4.0, "weight": 1.0}], databar=seed % 2 == 0)
    r = fibres.measure_gradient(scan_of(img, t), t["pixel_size_m"])
    truth = fibres.truth_summary(t)
    assert r.status == "ok", r.warnings
    assert fibres.angle_diff(r.dominant_deg, truth["dominant_deg"]) < 3
    assert r.order_parameter == pytest.approx(truth["order_parameter"], abs=0.12)
    assert r.aligned_fraction == pytest.approx(truth["aligned_fraction"], abs=0.2)


def test_order_parameter_ranks_aligned_above_random_mats():
    def s(spread):
        vals = []
        for seed in range(4):
            img, t = synth.generate_wires(seed, 256, kind="fibres", databar=False,
                                          populations=[{"angle_deg": 60.0, "spread_deg": spread,
                                                        "weight": 1.0}])
            vals.append(fibres.measure_gradient(scan_of(img, t)).order_parameter)
        return float(np.mean(vals))

    aligned, loose, random = s(4.0), s(25.0), s(float("inf"))
    assert aligned > loose > random
    assert random < 0.35


def test_diameters_follow_the_drawn_wires_and_carry_the_pixel_size():
    ratios = []
    for seed in range(5):
        img, t = synth.generate_wires(seed, 256, kind="nanowires", diameter_px=8.0,
                                      density=0.6, databar=False)
        r = fibres.measure_gradient(scan_of(img, t), t["pixel_size_m"])
        ratios.append(r.diameters.px["d50"] / fibres.truth_summary(t)["diameter_px_median"])
        assert r.diameters.nm["d50"] == pytest.approx(r.diameters.px["d50"]
                                                      * t["pixel_size_m"] * 1e9)
        d = r.diameters.px
        assert d["d10"] <= d["d50"] <= d["d90"] and d["sd"] >= 0
    assert np.median(ratios) == pytest.approx(1.0, abs=0.2)


def test_unknown_pixel_size_gives_px_with_a_warning():
    img, t = synth.generate_wires(1, 128, kind="nanowires", databar=False)
    r = fibres.measure_gradient(scan_of(img, t), None)
    assert r.diameters.nm is None and r.diameters.px and r.diameter_unit == "px"
    assert any("pixel size unknown" in w for w in r.warnings)


def test_bad_input_is_a_clear_result_or_error():
    with pytest.raises(MeasurementError, match="too small"):
        fibres.measure_gradient(np.zeros((20, 300)), name="tiny.png")
    with pytest.raises(MeasurementError, match="2-D"):
        fibres.measure_gradient(np.zeros((64, 64, 3)))
    with pytest.raises(MeasurementError, match="NaN"):
        fibres.measure_gradient(np.full((64, 64), np.nan))
    blank = fibres.measure_gradient(np.full((256, 256), 0.4, np.float32))
    assert blank.status == "no signal" and blank.dominant_deg is None
    flat = np.random.default_rng(0).normal(0.5, 0.002, (256, 256)).clip(0, 1)
    flat[:, :] = np.round(flat * 255) / 255  # a nearly flat grey scan: quantised noise only
    r = fibres.measure_gradient(flat)
    assert r.status in ("ok", "no fibres")
    with pytest.raises(InvalidValue):
        fibres.FibreParams(tolerance_deg=0)
    with pytest.raises(InvalidValue):
        fibres.FibreParams(sigma=1000)


def test_a_scan_without_fibres_says_so():
    y, x = np.mgrid[0:256, 0:256]
    blobs = np.zeros((256, 256))
    for cy, cx in [(60, 60), (180, 90), (120, 200)]:  # three round particles, no fibre
        blobs += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 200.0)
    r = fibres.measure_gradient(0.2 + 0.6 * blobs)
    assert r.status == "no fibres" or r.diameters.n < fibres.MIN_DIAMETER_SAMPLES
