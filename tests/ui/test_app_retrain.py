"""The Models page's Retrain tab and threshold recommendation through AppTest: training runs in
the background (a rerun neither starts a second run nor loses it), can be cancelled, ends in a
side-by-side comparison, and Promote switches the model — in the background too, and never
while a retraining runs (nor a retraining while it runs); Apply writes the recommended
threshold. Admin-only controls are absent for others."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from core import jobs, review
from core.intake import ingest
from core.models import Classifier, active_model, list_models, register_model
from core.review import get_thresholds
from core.store import open_db
from tests.helpers import app_db_copy, build_tiny_model, failures, write_images
from tests.helpers.labelled import build_labelled_db

APP = str(Path(__file__).resolve().parents[2] / "app.py")
torch.set_num_threads(1)




@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build_labelled_db(tmp_path_factory.mktemp("rt_app"))


@pytest.fixture
def app_db(template, tmp_path, monkeypatch) -> Path:
    path = app_db_copy(template, tmp_path, monkeypatch)
    yield path
    job = jobs.get_job("retrain:" + str(path.resolve()))
    if job is not None:  # never leave a thread behind for the next test
        job.cancel()
        job.wait(60)


def start(reviewer: str = "alice") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.text_input(key="reviewer").input(reviewer).run()
    at.switch_page("pages/setup/models.py").run()
    assert not failures(at), [e.value for e in failures(at)]
    return at


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "info", "success", "warning", "error", "caption")
                     for e in getattr(at, kind))


def progress_texts(at: AppTest) -> list[str]:
    return [e.proto.text for e in at.get("progress")]


def test_retrain_in_background_then_compare_and_promote(app_db):
    at = start()
    assert "labelled images to learn from" in texts(at)
    at.selectbox(key="rt_family").set_value("texture")
    at.button(key="rt_start").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    job = jobs.get_job("retrain:" + str(app_db.resolve()))
    assert job is not None
    assert job.wait(120), "training finished"
    assert job.status == "done", job.error
    at.run()
    assert not failures(at), [e.value for e in failures(at)]
    assert "held-out accuracy on unseen groups" in texts(at)
    cid = job.result["model_id"]
    assert at.selectbox(key="rt_candidate").value == cid
    assert any(m.label == "Accuracy" for m in at.metric), "side-by-side metrics"
    assert "Same " in texts(at) and "held-out human labels" in texts(at)
    old = active_model(open_db(app_db))["id"]
    assert old != cid
    key = "retrain:" + str(app_db.resolve())

    # hold the database's write lock so that the jobs are seen running (they wait on it)
    lock = open_db(app_db)
    lock.conn.execute("BEGIN IMMEDIATE")
    try:
        at.button(key="rt_start").click().run()  # a second retraining, blocked on the lock
        training = jobs.get_job(key)
        assert training is not None and training.kind == "retrain" and training.running
        at.button(key=f"rt_promote_{cid}").click().run()
        assert not failures(at), [e.value for e in failures(at)]
        assert jobs.get_job(key) is training, "no promotion while a retraining runs"
        assert "A retraining is running" in texts(at)
        training.cancel()
    finally:
        lock.conn.execute("ROLLBACK")
    assert training.wait(120) and not training.running
    at.run()  # the retraining's outcome (cancelled, or done when the cancel came too late)
    at.selectbox(key="rt_candidate").set_value(cid).run()
    assert active_model(open_db(app_db))["id"] == old

    lock.conn.execute("BEGIN IMMEDIATE")
    try:
        at.button(key=f"rt_promote_{cid}").click().run()
        assert not failures(at), [e.value for e in failures(at)]
        job = jobs.get_job(key)
        assert job is not None and job.kind == "promote" and job.running
        assert any(t.startswith("Promoting") for t in progress_texts(at)), progress_texts(at)
        assert not [b for b in at.button if b.key == "rt_start"], "no retraining while promoting"
        other = start("carol")  # another browser finds the same promotion, starts nothing
        assert jobs.get_job(key) is job and any(t.startswith("Promoting") for t in progress_texts(other))
        assert "wait until it has finished" in texts(other)
        # switching the active model by hand waits for the promotion too
        switches = [b for b in other.button if b.key and b.key.startswith("mdl_activate_")]
        assert switches and all(b.disabled for b in switches), [b.key for b in other.button]
    finally:
        lock.conn.execute("ROLLBACK")
        lock.conn.close()
    assert job.wait(120) and job.status == "done", (job.status, job.error)
    at.run()
    assert not failures(at), [e.value for e in failures(at)]
    db = open_db(app_db)
    assert active_model(db)["id"] == cid
    assert db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ?", [cid]).fetchone()[0] == \
        db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    assert "is now active" in texts(at) and "queues rebuilt" in texts(at)
    assert jobs.get_job(key) is None, "the finished promotion is shown once, then dropped"


def test_rerun_keeps_the_running_job_and_cancel_registers_nothing(app_db):
    at = start()
    at.number_input(key="rt_epochs").set_value(200)
    at.button(key="rt_start").click().run()
    key = "retrain:" + str(app_db.resolve())
    job = jobs.get_job(key)
    assert job is not None and job.running
    at.run()  # a rerun (or a reload) while training: the same job, no second start button
    assert jobs.get_job(key) is job
    assert not [b for b in at.button if b.key == "rt_start"]
    at.button(key="rt_cancel").click().run()
    assert job.wait(60) and job.status == "cancelled", (job.status, job.error)
    at.run()
    assert "cancelled" in texts(at)
    assert [m["version"] for m in list_models(open_db(app_db))] == ["tiny"]
    assert not list((app_db.parent / "models" / "retrained").glob("*.onnx"))


def test_non_admin_sees_no_training_or_promotion_controls(app_db, monkeypatch):
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", "bob")
    at = start("alice")
    keys = {b.key for b in at.button}
    assert "rt_start" not in keys and not any(k and k.startswith("rt_promote") for k in keys)
    assert "rec_apply" not in keys


def test_recommended_threshold_is_applied(tmp_path, monkeypatch):
    """A model that is right on every labelled image: with a 20 % target the recommendation is a
    threshold, and Apply stores it and re-routes."""
    images = tmp_path / "imgs"
    write_images(images, n=40, size=32)
    path = tmp_path / "data" / "rec.db"
    db = open_db(path)
    m = register_model(db, build_tiny_model(tmp_path / "m" / "tiny.onnx"), activate=True)
    ingest(db, [images], classifier=Classifier(m["path"]), model_id=m["id"])
    for (i,) in db.execute("SELECT id FROM images").fetchall():
        review.decide(db, i, "accept", reviewer="alice")
    db.conn.close()
    monkeypatch.setenv("SEMTRIAGE_DB", str(path))
    monkeypatch.setenv("SEMTRIAGE_ROOTS", str(tmp_path))
    at = start()
    assert "no threshold can guarantee" in texts(at).lower() or "No threshold" in texts(at)
    at.number_input(key="rec_target").set_value(20.0).run()
    assert "Accept when p1 ≥" in texts(at)
    at.button(key="rec_apply").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    t = get_thresholds(open_db(path))["*"].accept
    assert t < 0.7 and "Applied the recommended thresholds" in texts(at)
    assert at.slider(key="thr_accept").value == pytest.approx(t)


def test_make_active_predicts_in_the_background_and_survives_leaving_the_page(app_db, tmp_path):
    db = open_db(app_db)
    old = active_model(db)
    other = register_model(db, build_tiny_model(tmp_path / "other.onnx", old["class_names"], temperature=1.5))
    n_images = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    assert db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ?", [other["id"]]).fetchone()[0] == 0
    broken = Path(db.execute("SELECT path FROM images ORDER BY id LIMIT 1").fetchone()[0])
    broken.write_bytes(b"II*\x00 truncated since it was ingested")  # one image went bad on disk
    at = start()
    at.button(key=f"mdl_activate_{other['id']}").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    job = jobs.get_job("retrain:" + str(app_db.resolve()))
    assert job is not None and job.kind == "promote"
    at.switch_page("pages/label/review.py").run()  # the user walks away: the switch goes on without the page
    assert job.wait(120) and job.status == "done", (job.status, job.error)
    at.switch_page("pages/setup/models.py").run()
    assert not failures(at), [e.value for e in failures(at)]
    db = open_db(app_db)
    assert active_model(db)["id"] == other["id"]
    assert db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ?",
                      [other["id"]]).fetchone()[0] == n_images - 1
    assert "is now active" in texts(at) and f"{n_images - 1:,} images predicted" in texts(at)
    plain = texts(at).replace("\\", "")  # the message is Markdown-escaped
    assert f"1 could not be read ({broken.name}: truncated" in plain, plain  # which file, and why


def test_a_version_whose_file_was_overwritten_is_flagged_and_cannot_be_made_active(app_db, tmp_path):
    db = open_db(app_db)
    classes = active_model(db)["class_names"]
    path = build_tiny_model(tmp_path / "lab.onnx", classes, temperature=1.5)
    other = register_model(db, path)
    build_tiny_model(path, classes, temperature=2.5)  # the file is overwritten after registration
    at = start()
    assert "has changed since this version was registered" in texts(at)
    assert at.button(key=f"mdl_activate_{other['id']}").disabled
    assert not failures(at), [e.value for e in failures(at)]
