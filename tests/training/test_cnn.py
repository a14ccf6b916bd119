"""core.train and the training CLI: a short real training run, ONNX export round trip,
calibration maths, data splits, synth / train / card commands."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from core import images, models, synth, training
from core.cli import card
from core.cli import synth as synth_cmd
from core.cli import train as train_cmd
from core.training import cnn

CLASSES3 = ["fibres", "particles", "patterned"]


def _scans(n_per_class: int, seed: int, size: int = 96) -> list[tuple[np.ndarray, str]]:
    """In-memory items: synthetic scans with the data bar cut off, scaled to [0, 1]."""
    items = []
    for i in range(n_per_class):
        for c in CLASSES3:
            img, t = synth.generate(c, seed + i, size)
            items.append((img[: size - t["databar_px"]].astype(np.float32) / 255.0, c))
    return items


@pytest.fixture(scope="module")
def small_run():
    train_items = _scans(40, 0)
    val_items = _scans(30, 10_000)
    res = training.train(train_items, val_items, class_names=CLASSES3, epochs=12, seed=0,
                   input_size=(64, 64), widths=(16, 24, 32, 48), batch_size=16, min_area=0.8)
    return res, val_items


def test_short_training_beats_chance_on_held_out_images(small_run):
    res, _ = small_run
    # chance is 1/3 (± 0.05 on 90 images)
    assert res.metrics["accuracy"] > 0.45, res.history
    assert res.counts["train"] == {c: 40 for c in CLASSES3}
    assert res.counts["val"] == {c: 30 for c in CLASSES3}
    assert len(res.history) == 12 and res.temperature > 0


def test_onnx_export_round_trip(small_run, tmp_path):
    import onnxruntime as ort

    from core.models import Classifier

    res, val_items = small_run
    out = training.export_onnx(res, tmp_path / "m.onnx", version="test-v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.card.json", "m.onnx"]
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["class_names"]) == CLASSES3
    assert json.loads(meta["input_size"]) == [64, 64]
    assert meta["channels"] == "1" and meta["output"] == "logits" and meta["version"] == "test-v1"
    assert json.loads(meta["mean"]) == [0.5] and json.loads(meta["std"]) == [0.25]
    assert float(meta["temperature"]) == pytest.approx(res.temperature)
    assert isinstance(json.loads(meta["training_data"]), dict)
    # onnxruntime vs torch, on real inputs and a batch size other than the export's
    x = np.stack([images.prepare(s, (64, 64)) for s, _ in val_items[:7]])
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    assert np.allclose(got, res.predict_logits(x), atol=1e-4)
    # the engine's classifier loads it and applies the temperature
    clf = Classifier(out)
    assert clf.class_names == CLASSES3
    p = clf.predict([s for s, _ in val_items[:7]])
    assert np.allclose(p, models.softmax(got, res.temperature), atol=1e-4)
    c = json.loads((tmp_path / "m.card.json").read_text())
    for key in ("data_counts", "accuracy", "per_class", "confusion_matrix", "ece_15_bins",
                "temperature", "training_time_s", "parameters", "epochs", "seed", "input_size"):
        assert key in c, key
    assert c["confusion_matrix"]["classes"] == CLASSES3


def test_init_from_restores_the_weights(small_run, tmp_path):
    res, _ = small_run
    out = training.export_onnx(res, tmp_path / "m.onnx", version="v")
    again = training.SemNet(3, 1, res.model.widths)
    cnn._init_from_onnx(again, out, CLASSES3)
    x = np.random.default_rng(0).normal(0, 1, (4, 1, 64, 64)).astype(np.float32)
    assert np.allclose(cnn._logits(again, x), res.predict_logits(x), atol=1e-5)
    # a new class list: known rows copied by name, the new class gets fresh weights
    other = training.SemNet(2, 1, res.model.widths)
    cnn._init_from_onnx(other, out, ["patterned", "mems"])
    assert np.allclose(other.head.weight.detach()[0], res.model.head.weight.detach()[2])


def test_ece_on_a_hand_computed_case():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    labels = np.array([0, 1, 0])
    # three bins with one sample each: |1 − 0.9|, |0 − 0.6|, |1 − 0.8|
    assert models.expected_calibration_error(probs, labels, 15) == pytest.approx(0.3)
    assert models.expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_fit_temperature_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    n, k = 2000, 5
    labels = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.7, labels, rng.integers(0, k, n))
    logits = 6.0 * np.eye(k)[pred] + rng.normal(0, 0.5, (n, k))  # ~99 % sure, ~75 % right
    t = models.fit_temperature(logits, labels)
    before = models.expected_calibration_error(models.softmax(logits), labels)
    after = models.expected_calibration_error(models.softmax(logits, t), labels)
    assert t > 1.5 and before > 0.15 and after < before / 3


def test_stratified_split_is_seeded_and_keeps_every_class():
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 1
    tr1, va1 = training.stratified_split(labels, 0.2, seed=1)
    tr2, va2 = training.stratified_split(labels, 0.2, seed=1)
    assert (tr1, va1) == (tr2, va2) and not set(tr1) & set(va1)
    assert sorted(tr1 + va1) == list(range(31))
    assert [labels[i] for i in va1].count("a") == 4 and [labels[i] for i in va1].count("b") == 2
    assert 30 in tr1, "a class with one image stays in training"


def test_labels_outside_the_class_list_are_refused():
    items = _scans(2, 0, 48)
    with pytest.raises(ValueError, match="not in class_names"):
        training.train(items, items, class_names=["fibres", "particles"], epochs=1, seed=0,
                 input_size=(32, 32))


def test_train_from_records_reads_files(tmp_path):
    gt = synth.write_dataset(tmp_path / "d", 24, seed=5, size=64, fmt="png",
                             classes=["fibres", "patterned"])
    recs = [{"path": str(tmp_path / "d" / r["file"]), "label": r["class"]}
            for r in synth.read_ground_truth(gt)]
    res = training.train_from_records(recs, tmp_path / "labels.onnx", epochs=1, seed=0)
    assert res.class_names == ["fibres", "patterned"]
    assert sum(res.counts["val"].values()) == 4 and sum(res.counts["train"].values()) == 20
    assert (tmp_path / "labels.card.json").is_file()


def test_cli_synth_writes_a_dataset(tmp_path):
    out = tmp_path / "ds"
    r = CliRunner().invoke(synth_cmd, [str(out), "--n", "12", "--seed", "0", "--mixed-fraction",
                                       "0.25", "--format", "png", "--layout", "folders",
                                       "--size", "64", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["images"] == 12 and info["mixed"] == 3
    assert len(synth.read_ground_truth(out)) == 12
    assert (out / "_mixed").is_dir()


def test_cli_train_needs_exactly_one_source_and_an_output(tmp_path):
    r = CliRunner().invoke(train_cmd, ["--out", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2 and "exactly one" in r.output
    r = CliRunner().invoke(train_cmd, ["--from-db", "--synthetic", "4"])
    assert r.exit_code == 2 and "exactly one" in r.output
    r = CliRunner().invoke(train_cmd, ["--synthetic", "4"])
    assert r.exit_code == 2 and "--out" in r.output


def test_cli_train_folder_and_card(tmp_path):
    synth.write_dataset(tmp_path / "tree", 20, seed=4, size=64, fmt="png", layout="folders",
                        classes=["films", "nanowires"], mixed_fraction=0.1)
    model = tmp_path / "f.onnx"
    r = CliRunner().invoke(train_cmd, ["--folder", str(tmp_path / "tree"), "--out", str(model),
                                       "--epochs", "1", "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)
    assert c["class_names"] == ["films", "nanowires"], "_mixed/ is not a class"
    r = CliRunner().invoke(card, [str(model)])
    assert r.exit_code == 0 and "held-out" in r.output, r.output
    r = CliRunner().invoke(card, [str(tmp_path / "missing.onnx")])
    assert r.exit_code != 0


def test_train_synthetic_end_to_end_writes_model_and_card(tmp_path):
    seen = []
    res = training.train_synthetic(tmp_path / "s.onnx", n_per_class=4, epochs=1, seed=1,
                             progress=lambda f, m: seen.append(f), classes=CLASSES3, size=64,
                             val_per_class=2, version="tiny-synth")
    assert res.counts["train"] == {c: 4 for c in CLASSES3}
    assert res.training_data["mixed_images_soft_labels"] == 4  # 30 % of 12, two-class pairs
    assert res.training_data["held_out_mixed_images"] == 2
    assert "mixed_held_out" in res.metrics
    c = models.read_card(tmp_path / "s.onnx")
    assert c["version"] == "tiny-synth" and c["training_data"]["source"] == "synthetic"
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.card.json", "s.onnx"]


def test_cancel_stops_training_within_a_batch():
    """A set cancel event stops train_arrays before the next batch with a clear error."""
    import threading

    from core.errors import Cancelled

    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (64, 1, 32, 32)).astype(np.float32)
    y = np.arange(64) % 2
    stop = threading.Event()
    seen: list[str] = []

    def progress(f: float, m: str) -> None:
        seen.append(m)
        stop.set()  # cancel after the first epoch's report

    with pytest.raises(Cancelled, match="epoch 2/50"):
        training.train_arrays(x, y, x[:8], y[:8], class_names=["a", "b"], epochs=50, seed=0,
                           batch_size=16, progress=progress, cancel=stop)
    assert len([m for m in seen if m.startswith("epoch")]) == 1
