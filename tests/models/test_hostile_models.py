"""Issue 18, findings 5 and 6: models that pass a naive check and then break every ingest.

A model answering NaN / infinity (an fp16 export overflowing) used to validate, become active
and make every ingest and predict fail with a raw IntegrityError on predictions.p1; a model
declaring a 4096 x 4096 x 3 input ran at the usual batch size and pipeline depth and was
OOM-killed. Real ONNX Runtime sessions, real SQLite, real files.
"""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ModelError
from core.intake import ingest, predict_pending
from core.models import Classifier, NonFiniteOutput, batch_limit, register_model
from core.store import open_db
from tests.helpers import build_tiny_model, write_images


def test_a_model_answering_infinity_is_refused_at_registration(tmp_path):
    path = build_tiny_model(tmp_path / "fp16.onnx", overflow_above=0.4)  # a test batch overflows
    db = open_db(tmp_path / "t.db")
    with pytest.raises(NonFiniteOutput, match="NaN or infinity"):
        register_model(db, path, activate=True)
    assert db.execute("SELECT COUNT(*) FROM models").fetchone()[0] == 0


def test_an_image_the_model_overflows_on_fails_alone_and_the_rest_goes_on(tmp_path):
    """Finite on the test batches, infinite on bright images: those fail with the reason,
    every other image is stored and predicted, and predict later says the same."""
    path = build_tiny_model(tmp_path / "m.onnx", overflow_above=0.7)
    db = open_db(tmp_path / "t.db")
    model = register_model(db, path, activate=True)
    clf = Classifier(model["path"])
    write_images(tmp_path / "imgs", 12)  # brightness 0.04 … 0.96
    rep = ingest(db, [tmp_path / "imgs"], classifier=clf, model_id=model["id"])
    bright = [p for p, r in rep.failed if "NaN or infinity" in r]
    assert rep.added == 12 and 1 <= len(bright) < 12 and rep.predicted == 12 - len(bright), rep.summary()
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 12 - len(bright)
    assert db.execute("SELECT COUNT(*) FROM predictions WHERE p1 IS NULL OR p1 != p1").fetchone()[0] == 0
    again = predict_pending(db, clf, model["id"])
    assert again.predicted == 0 and len(again.failed) == len(bright)
    assert all("NaN or infinity" in r for _, r in again.failed)


def test_a_huge_input_runs_in_batches_no_larger_than_the_test_run(tmp_path):
    assert batch_limit(4096 * 4096 * 3 * 4) == 1
    assert batch_limit(1 * 128 * 128 * 4) >= 32
    path = build_tiny_model(tmp_path / "huge.onnx", size=2048, channels=3)  # 50 MB per input
    clf = Classifier(path)
    assert clf.info.input_bytes == 3 * 2048 * 2048 * 4
    assert clf.info.max_batch == 1
    db = open_db(tmp_path / "t.db")
    model = register_model(db, path, activate=True)
    write_images(tmp_path / "imgs", 3, size=64)
    rep = ingest(db, [tmp_path / "imgs"], classifier=clf, model_id=model["id"], workers=2)
    assert (rep.added, rep.predicted, rep.failed) == (3, 3, [])
    probs = clf.run(np.stack([clf.prepare(np.full((64, 64), v, np.float32)) for v in (0.1, 0.9)]))
    assert probs.shape == (2, 3) and np.isfinite(probs).all()


def test_the_input_size_is_still_bounded(tmp_path):
    path = build_tiny_model(tmp_path / "x.onnx", size=32, metadata={"input_size": [8192, 8192]})
    with pytest.raises(ModelError):
        Classifier(path)


# ---------------------------------------------------------------- finding 9: names as markup


@pytest.mark.parametrize("name", ["![x](http://evil.example/p.png)", "<a href='http://e'>x</a>",
                                  "[click](http://evil.example)", "**bold**"])
def test_class_names_that_would_render_as_markup_are_refused(tmp_path, name):
    path = build_tiny_model(tmp_path / "m.onnx", ("fibres", name, "powder"))
    with pytest.raises(ModelError, match="cannot be labels"):
        Classifier(path)


def test_a_version_that_is_markup_is_refused_and_a_file_name_is_tamed(tmp_path):
    path = build_tiny_model(tmp_path / "m.onnx", metadata={"version": "![v](http://evil.example/a.png)"})
    with pytest.raises(ModelError, match="not a plain name"):
        Classifier(path)
    odd = build_tiny_model(tmp_path / "x.onnx", metadata={"version": ""})
    named = odd.rename(tmp_path / "![v](http:__evil).onnx")
    m = register_model(open_db(tmp_path / "t.db"), named)
    assert "[" not in m["version"] and "(" in m["version"] and "!" not in m["version"]
