"""core.texture: fixed texture features + a trainable head; trains on a few images, exports to
an ONNX model that core.model.Classifier runs like any other, and stops when cancelled."""

from __future__ import annotations

import json
import threading

import numpy as np
import onnx
import pytest
import torch

from core import models, synth, training
from core.errors import Cancelled
from core.images import prepare
from core.models import Classifier
from core.training import TextureNet, texture_features, train_texture

CLASSES3 = ["fibres", "particles", "patterned"]
SIZE = (64, 64)


def _scans(n_per_class: int, seed: int, size: int = 96) -> tuple[list[np.ndarray], np.ndarray]:
    scans, labels = [], []
    for i in range(n_per_class):
        for k, c in enumerate(CLASSES3):
            img, t = synth.generate(c, seed + i, size)
            scans.append(img[: size - t["databar_px"]].astype(np.float32) / 255.0)
            labels.append(k)
    return scans, np.array(labels)


def _inputs(scans: list[np.ndarray]) -> np.ndarray:
    return np.stack([prepare(s, SIZE, 1, training.MEAN, training.STD) for s in scans])


@pytest.fixture(scope="module")
def data():
    torch.set_num_threads(1)
    s_tr, y_tr = _scans(12, 0)
    s_va, y_va = _scans(10, 20_000)
    return _inputs(s_tr), y_tr, _inputs(s_va), y_va, s_va


@pytest.fixture(scope="module")
def trained(data):
    xtr, ytr, xva, yva, _ = data
    return train_texture(xtr, ytr, xva, yva, class_names=CLASSES3, epochs=150, seed=0)


def test_only_the_head_is_trainable_and_features_are_fixed(data, trained):
    xtr = torch.from_numpy(data[0][:6])
    net = trained.model
    assert isinstance(net, TextureNet)
    assert {n.split(".")[0] for n, _ in net.named_parameters()} == {"head"}
    buffers = dict(net.named_buffers())
    assert {"gabor", "feat_mean", "feat_std"} <= set(buffers)
    assert not any(b.requires_grad for b in buffers.values())
    with torch.no_grad():
        f1 = net.features(xtr)
        net.head.weight.add_(1.0)  # changing the head changes nothing in the features
        f2 = net.features(xtr)
        net.head.weight.sub_(1.0)
    assert f1.shape == (6, net.n_features) and 50 <= net.n_features <= 300
    assert torch.equal(f1, f2) and torch.isfinite(f1).all()
    # the standalone extractor computes the same numbers
    assert np.allclose(texture_features(data[0][:6]), f1.numpy(), atol=1e-5)
    # a fresh net's features are the same as the trained one's: nothing in them was learnt
    fresh = TextureNet(3, SIZE)
    with torch.no_grad():
        assert torch.allclose(fresh.features(xtr), f1, atol=1e-6)


def test_tiny_training_beats_chance_and_fills_the_metrics(trained):
    m = trained.metrics
    assert m["accuracy"] > 0.6, trained.history  # chance is 1/3 (30 held-out images)
    for key in ("per_class", "confusion_matrix", "ece_before", "ece_after", "nll_before",
                "nll_after", "evaluated_on"):
        assert key in m
    assert sum(map(sum, m["confusion_matrix"]["matrix"])) == 30
    assert trained.counts["train"] == {c: 12 for c in CLASSES3}
    assert trained.temperature > 0 and trained.val_logits.shape == (30, 3)
    arch = trained.model.architecture()
    assert arch["name"] == "TextureNet" and arch["n_features"] == trained.model.n_features
    card = training.build_card(trained, "tex-v1")
    assert card["architecture"].startswith("TextureNet") and card["parameters"] < 2000


def test_onnx_export_runs_in_the_classifier_with_matching_probabilities(data, trained,
                                                                        tmp_path):
    out = training.export_onnx(trained, tmp_path / "tex.onnx", version="tex-v1")
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["architecture"])["name"] == "TextureNet"
    assert json.loads(meta["input_size"]) == list(SIZE)
    clf = Classifier(out)
    assert clf.class_names == CLASSES3
    scans = data[4]
    got = clf.predict(scans)
    want = models.softmax(trained.predict_logits(_inputs(scans)), trained.temperature)
    assert got.shape == (30, 3)
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("cancel_after, stops_before", [(0.0, 0.7), (0.8, 0.96)])
def test_cancel_stops_feature_extraction_and_head_training(data, cancel_after, stops_before):
    """Cancelled during the training features (progress < 0.7) or during the head's steps
    (progress > 0.8): the next check raises, long before the work would have finished."""
    xtr, ytr, xva, yva, _ = data
    stop = threading.Event()
    seen: list[float] = []

    def progress(f: float, msg: str) -> None:
        seen.append(f)
        if f > cancel_after:
            stop.set()

    with pytest.raises(Cancelled, match="cancelled"):
        train_texture(xtr, ytr, xva, yva, class_names=CLASSES3, epochs=10_000,
                      progress=progress, cancel=stop, batch_size=8)
    assert cancel_after < max(seen) < stops_before, seen


def test_cancel_before_start_computes_nothing(data):
    xtr, ytr, xva, yva, _ = data
    stop = threading.Event()
    stop.set()
    seen: list[float] = []
    with pytest.raises(Cancelled):
        train_texture(xtr, ytr, xva, yva, class_names=CLASSES3, cancel=stop,
                      progress=lambda f, m: seen.append(f))
    assert seen == []


def test_without_a_validation_split_and_bad_input(data):
    xtr, ytr, _, _, _ = data
    empty = np.zeros((0, 1, *SIZE), np.float32)
    res = train_texture(xtr, ytr, empty, np.zeros(0, np.int64), class_names=CLASSES3,
                        epochs=20)
    assert res.temperature == 1.0 and res.metrics == {"evaluated_on": "0 held-out single-class "
                                                                      "images"}
    with pytest.raises(ValueError, match="outside"):
        train_texture(xtr, ytr + 5, empty, np.zeros(0, np.int64), class_names=CLASSES3)
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        train_texture(xtr, np.zeros_like(ytr), empty, np.zeros(0, np.int64),
                      class_names=CLASSES3)
    with pytest.raises(ValueError, match="too small"):
        TextureNet(3, (12, 12))
