"""The shipped ONNX particle detector through ONNX Runtime: one self-contained file with its
metadata and card, runs on any frame size (tiled when large), refuses models that do not fit
with the file and the reason."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from core.config import DEFAULT_MODEL
from core.errors import ModelError
from core.models import read_card
from core.particles import (
    DEFAULT_DETECTOR,
    SEED_FLOOR,
    SEED_H,
    MatchResult,
    ParticleSegmenter,
    instances,
    match,
    targets,
)
from core.synth import particle_micrograph


def test_default_detector_is_one_file_with_metadata_and_card():
    assert DEFAULT_DETECTOR.is_file()
    assert not DEFAULT_DETECTOR.with_name(DEFAULT_DETECTOR.name + ".data").exists()
    seg = ParticleSegmenter(DEFAULT_DETECTOR)
    assert seg.output_kinds == ["foreground", "boundary", "distance"]
    assert seg.version == "particles-default-v3"
    card = read_card(DEFAULT_DETECTOR)
    assert card and card["training_data"]["real_images"] == 0


@pytest.mark.parametrize("shape", [(61, 97), (256, 320), (700, 1100)])
def test_any_frame_size_gives_maps_of_that_size(shape):
    seg = ParticleSegmenter(DEFAULT_DETECTOR)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    m = seg.maps(x)
    assert m.shape == (3, *shape)


def test_finds_most_particles_of_held_out_synthetic_images():
    """A floor, not the target: the bench prints the real numbers (README)."""
    seg = ParticleSegmenter(DEFAULT_DETECTOR)
    tot = MatchResult()
    for s in range(9001, 9007):  # six: on three, one image's sizes swing D50 by ±5 %
        img, t = particle_micrograph(s, (256, 320), databar=False)
        lab, _ = seg.detect(img / 255.0)
        tot = tot + match(lab, t["labels"])
    assert tot.f1 > 0.3, tot.summary()
    assert tot.summary()["d50_rel_err"] is not None and abs(tot.summary()["d50_rel_err"]) < 0.3


def test_a_classifier_is_refused_as_a_particle_detector():
    with pytest.raises(ModelError, match="default.onnx"):
        ParticleSegmenter(DEFAULT_MODEL)


def _identity(path, outputs, channels_out=1, meta=None):
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, "h", "w"])
    y = helper.make_tensor_value_info("maps", TensorProto.FLOAT, ["n", channels_out, "h", "w"])
    node = helper.make_node("Identity", ["input"], ["maps"])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in {"task": json.dumps("particle-segmentation"), "outputs": json.dumps(outputs),
                 **(meta or {})}.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(model, str(path))
    return path


def test_a_lab_model_keeping_the_contract_runs(tmp_path):
    seg = ParticleSegmenter(_identity(tmp_path / "lab.onnx", ["foreground"]))
    img = np.full((40, 40), -5.0, np.float32)
    img[10:20, 10:20] = 5.0
    lab, _scores = seg.detect((img - img.min()) / 10)
    assert lab.max() >= 1


def test_outputs_that_do_not_fit_are_refused_naming_the_file(tmp_path):
    seg = ParticleSegmenter(_identity(tmp_path / "bad.onnx", ["foreground", "boundary", "distance"]))
    with pytest.raises(ModelError, match="bad.onnx.*output shape"):
        seg.detect(np.zeros((32, 32), np.float32))
    with pytest.raises(ModelError, match="outputs"):
        ParticleSegmenter(_identity(tmp_path / "bad2.onnx", ["distance"]))


def _disc_maps(labels: np.ndarray) -> np.ndarray:
    """The maps a perfect network would give for ``labels`` (logits ±10, distance as trained)."""
    t = targets(labels)
    return np.stack([np.where(t[0] > 0, 10.0, -10.0), np.where(t[1] > 0, 10.0, -10.0),
                     t[2]]).astype(np.float32)


def test_touching_particles_of_different_sizes_come_out_one_each():
    yy, xx = np.mgrid[:80, :120]
    labels = np.zeros((80, 120), np.int32)
    labels[np.hypot(yy - 40, xx - 40) < 20] = 1
    labels[(np.hypot(yy - 40, xx - 68) < 9) & (labels == 0)] = 2  # small, touching the big one
    labels[np.hypot(yy - 40, xx - 100) < 3.5] = 3  # a tiny one, 7 px across
    got, score = instances(_disc_maps(labels), ["foreground", "boundary", "distance"])
    assert got.max() == 3, "one instance per particle: no split, no merge, the tiny one kept"
    assert match(got, labels).f1 == 1.0
    assert len(score) == 4 and (score[1:] > 0.9).all()


def test_a_lab_models_seed_settings_are_read_from_its_metadata(tmp_path):
    plain = ParticleSegmenter(_identity(tmp_path / "plain.onnx", ["foreground"]))
    assert (plain.seed_h, plain.seed_threshold) == (SEED_H, SEED_FLOOR)
    own = ParticleSegmenter(_identity(tmp_path / "own.onnx", ["foreground"],
                                      meta={"seed_h": "0.4", "seed_threshold": "0.1"}))
    assert (own.seed_h, own.seed_threshold) == (0.4, 0.1)
