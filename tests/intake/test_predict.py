"""Prediction without a database (predict_files, what an archive worker runs) and the one
writer of its answers (store_predictions), joined by predict_pending."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.images import read_image
from core.intake import ingest, predict_files, predict_pending, store_predictions
from core.models import Classifier, register_model
from core.review import get_thresholds, route
from core.store import open_db
from tests.helpers import CLASSES, build_tiny_model, write_images


@pytest.mark.parametrize("batch_size,workers", [(1, 1), (3, 2), (32, 2)])
def test_predict_files_answers_every_path_in_order(tmp_path, batch_size, workers):
    files = write_images(tmp_path / "img", n=7)
    bad = tmp_path / "img" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    paths = [*files[:3], bad, *files[3:], tmp_path / "gone.png"]
    clf = Classifier(build_tiny_model(tmp_path / "m.onnx"))
    timings: dict[str, float] = {}
    got = list(predict_files(paths, clf, batch_size=batch_size, workers=workers, timings=timings))
    assert [g.path for g in got] == [str(p) for p in paths]
    assert [g.probs is None for g in got] == [p in (bad, tmp_path / "gone.png") for p in paths]
    assert "PNG" in got[3].error and got[-1].error == "no such file"
    ok = [g for g in got if g.probs is not None]
    np.testing.assert_allclose(np.stack([g.probs for g in ok]),
                               clf.predict([read_image(p).scan for p in files]), atol=1e-6)
    assert set(timings) >= {"decode", "preprocess", "inference"}
    assert not list(tmp_path.glob("*.db")), "no database anywhere"


def test_store_predictions_routes_and_replaces(tmp_path):
    db = open_db(tmp_path / "t.db")
    model = register_model(db, build_tiny_model(tmp_path / "m.onnx"), activate=True)
    ingest(db, [write_images(tmp_path / "img", n=3)[0].parent])
    items = [tuple(r) for r in db.execute("SELECT id, sha256 FROM images ORDER BY id")]
    probs = np.array([[0.9, 0.05, 0.05], [0.45, 0.4, 0.15], [0.2, 0.3, 0.5]], np.float32)
    store_predictions(db, model["id"], list(CLASSES), items, probs)
    rows = db.execute("SELECT pred, queue, reason FROM predictions ORDER BY image_id").fetchall()
    ts = get_thresholds(db)
    assert [(r[1], r[2]) for r in rows] == [route(p, CLASSES, ts) for p in probs]
    store_predictions(db, model["id"], list(CLASSES), items[:1], probs[2:3])  # replaced, not added
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 3
    assert db.execute("SELECT pred FROM predictions WHERE image_id = ?", [items[0][0]]).fetchone()[0] == "powder"


def test_predict_pending_stores_what_predict_files_answers(tmp_path):
    folder = write_images(tmp_path / "img", n=9)[0].parent
    db = open_db(tmp_path / "t.db")
    model = register_model(db, build_tiny_model(tmp_path / "m.onnx"), activate=True)
    ingest(db, [folder])  # stored, not predicted
    clf = Classifier(model["path"])
    rep = predict_pending(db, clf, model["id"])
    assert rep.predicted == 9 and not rep.failed
    paths = [r[0] for r in db.execute("SELECT path FROM images ORDER BY id")]
    want = np.stack([a.probs for a in predict_files(paths, clf)])
    stored = np.array([json.loads(r[0]) for r in db.execute(
        "SELECT p.probs FROM predictions p JOIN images i ON i.id = p.image_id ORDER BY i.id")])
    np.testing.assert_allclose(stored, want, atol=1e-5)
