"""The learned orientation estimator: the shipped ONNX file (one file, its card, run by ONNX
Runtime) finds the direction of held-out synthetic images and turns with them; a model that is
not one is refused; the training code exports a loadable single-file model."""

from __future__ import annotations

import numpy as np
import pytest

from core import fibres, synth
from core.config import DEFAULT_MODEL
from core.errors import MeasurementError, ModelError
from core.models import read_card

needs_model = pytest.mark.skipif(not fibres.FIBRE_MODEL.is_file(),
                                 reason="data/models/fibres-orientation.onnx not built")


@needs_model
def test_shipped_model_is_one_file_with_a_card():
    assert not fibres.FIBRE_MODEL.with_name(fibres.FIBRE_MODEL.name + ".data").exists()
    card = read_card(fibres.FIBRE_MODEL)
    assert card and card["kind"] == fibres.FIBRE_MODEL_KIND
    assert "synthetic" in card["training_data"]


@needs_model
@pytest.mark.parametrize("theta", [10.0, 65.0, 140.0])
def test_direction_of_held_out_aligned_images_and_quarter_turns(theta):
    net = fibres.OrientationNet()
    errs, turned = [], []
    for seed in range(3):
        img, t = synth.generate_wires(5_000_000 + seed, 256, databar=False, populations=[
            {"angle_deg": theta, "spread_deg": 4.0, "weight": 1.0}])
        true = fibres.truth_summary(t)["dominant_deg"]
        r = fibres.measure_learned(net, img / 255.0)
        errs.append(float(fibres.angle_diff(r.dominant_deg, true)))
        r90 = fibres.measure_learned(net, np.rot90(img) / 255.0)
        turned.append(float(fibres.angle_diff(r90.dominant_deg, true + 90)))
        assert 0 <= r.aligned_fraction <= 1 and len(r.histogram) == fibres.STORED_BINS
    assert np.median(errs) < 6, errs
    assert np.median(turned) < 6, turned


@needs_model
def test_bad_input_to_the_learned_method():
    net = fibres.OrientationNet()
    with pytest.raises(MeasurementError, match="too small"):
        fibres.measure_learned(net, np.zeros((10, 10)), name="tiny.png")
    assert fibres.measure_learned(net, np.full((64, 64), 0.3)).status == "no signal"
    r = fibres.measure_learned(net, np.random.default_rng(0).random((120, 300)),
                               params=fibres.FibreParams(tolerance_deg=30))
    assert any("tolerance" in w for w in r.warnings)  # not the model's: from the histogram


def test_a_classifier_is_refused_as_an_orientation_model():
    if not DEFAULT_MODEL.is_file():
        pytest.skip("default classifier absent")
    with pytest.raises(ModelError, match="not a fibre orientation model"):
        fibres.OrientationNet(DEFAULT_MODEL)


def test_net_tiles_cover_the_long_side_and_are_standardised():
    t = fibres.net_tiles(np.random.default_rng(1).random((100, 250)), 32)
    assert t.shape == (3, 1, 32, 32)
    assert np.allclose(t.mean(axis=(1, 2, 3)), 0, atol=1e-4)


@pytest.mark.slow
def test_training_exports_a_single_file_model_that_onnx_runtime_runs(tmp_path):
    from core import training

    net, info = training.train_fibre_net(48, 16, 1, 0)
    out = training.export_fibre_net(net, tmp_path / "f.onnx", info)
    assert out.is_file() and not (tmp_path / "f.onnx.data").exists()
    model = fibres.OrientationNet(out)
    r = fibres.measure_learned(model, np.random.default_rng(0).random((96, 96)))
    assert r.status == "ok" and abs(sum(r.histogram) - 1) < 1e-3
