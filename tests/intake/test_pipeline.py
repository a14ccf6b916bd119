"""Ingest + predict: real files into a real SQLite file; idempotent, resumable, bad input isolated."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import Settings
from core.errors import PathNotAllowed
from core.intake import check_allowed, ingest, predict_pending
from core.models import Classifier, register_model
from core.review import queue_counts
from core.store import integrity_ok, open_db
from tests.helpers import write_images

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def setup(tmp_path, tiny_model):
    db = open_db(tmp_path / "t.db")
    model = register_model(db, tiny_model("m1"), activate=True)
    return db, model, Classifier(model["path"])


def snapshot(db):
    return {
        "images": db.execute("SELECT COUNT(*), COUNT(DISTINCT sha256) FROM images").fetchone(),
        "files": db.execute("SELECT COUNT(*) FROM files").fetchone()[0],
        "preds": db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0],
        "events": db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0],
        "queues": db.execute("SELECT queue, COUNT(*) FROM predictions GROUP BY queue ORDER BY queue").fetchall(),
    }


def test_ingest_predicts_and_routes(setup, image_folder):
    db, model, clf = setup
    rep = ingest(db, [image_folder], classifier=clf, model_id=model["id"])
    assert (rep.added, rep.predicted, rep.failed) == (12, 12, [])
    counts = queue_counts(db)
    assert all(counts[q] > 0 for q in ("uncertain", "mixed", "auto")), counts
    assert rep.routed == counts, "the report says where every new image went"
    # a provisional model labels nothing: its confident images wait unverified
    assert f"{counts['auto']} confident but unverified" in rep.summary()
    assert "auto-labelled" not in rep.summary()
    assert f"{counts['mixed']} to the mixed queue" in rep.summary()
    again = ingest(db, [image_folder], classifier=clf, model_id=model["id"])
    assert again.routed == {} and "Routed" not in again.summary(), "nothing new, nothing routed"
    row = db.execute("SELECT probs, reason, p1, margin FROM predictions LIMIT 1").fetchone()
    assert len(__import__("json").loads(row[0])) == 3 and row[1]
    thumbs = db.execute("SELECT COUNT(*) FROM images WHERE length(thumb) > 100").fetchone()[0]
    assert thumbs == 12
    for k in ("decode", "preprocess", "inference", "database", "total"):
        assert rep.timings[k] >= 0


def test_rerun_is_idempotent_and_duplicates_stored_once(setup, image_folder):
    db, model, clf = setup
    ingest(db, [image_folder], classifier=clf, model_id=model["id"])
    before = snapshot(db)
    shutil.copy(image_folder / "img_000.png", image_folder / "copy of img 0 – é.png")
    rep = ingest(db, [image_folder], classifier=clf, model_id=model["id"])
    assert (rep.unchanged, rep.duplicates, rep.added) == (12, 1, 0)
    after = snapshot(db)
    assert after["images"] == before["images"] and after["preds"] == before["preds"]
    assert after["files"] == before["files"] + 1


def test_bad_files_reported_and_batch_goes_on(setup, tmp_path, image_folder):
    db, model, clf = setup
    bad = image_folder / "bad"
    bad.mkdir()
    (bad / "empty.tif").write_bytes(b"")
    (bad / "text.png").write_text("not a png")
    good = (image_folder / "img_001.png").read_bytes()
    (bad / "truncated.png").write_bytes(good[: len(good) // 2])
    Image.fromarray(np.zeros((300, 300), np.uint8)).save(bad / "huge.png")
    (bad / "notes.txt").write_text("ignored: not an image type")
    settings = Settings(max_pixels=200 * 200)
    rep = ingest(db, [image_folder, tmp_path / "nope"], classifier=clf, model_id=model["id"], settings=settings)
    reasons = {Path(p).name: r for p, r in rep.failed}
    assert set(reasons) == {"empty.tif", "text.png", "truncated.png", "huge.png", "nope"}
    assert "empty" in reasons["empty.tif"] and "pixels" in reasons["huge.png"]
    assert reasons["nope"] == "no such file or folder"
    assert rep.added == 12 and rep.ignored == 1
    stored = dict(db.execute("SELECT path, reason FROM ingest_errors").fetchall())
    assert {Path(p).name for p in stored} == {"empty.tif", "text.png", "truncated.png", "huge.png"}
    # fixing a file clears its error on the next run
    (bad / "empty.tif").unlink()
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(bad / "empty.tif")
    ingest(db, [image_folder], classifier=clf, model_id=model["id"], settings=settings)
    assert "empty.tif" not in {Path(p).name for p, in db.execute("SELECT path FROM ingest_errors")}


def test_explicit_non_image_file_is_a_failure(setup, tmp_path):
    db, model, clf = setup
    f = tmp_path / "report.pdf"
    f.write_bytes(b"%PDF-1.4")
    rep = ingest(db, [f], classifier=clf, model_id=model["id"])
    assert rep.failed and "not an image type" in rep.failed[0][1]


def test_labels_from_folders(setup, tmp_path):
    db, model, clf = setup
    write_images(tmp_path / "arch" / "Particles", 3, seed=1)
    write_images(tmp_path / "arch" / "my odd class", 2, seed=2)
    rep = ingest(db, [tmp_path / "arch"], classifier=clf, model_id=model["id"], labels_from_folders=True)
    assert rep.labelled == 5
    labels = sorted(r[0] for r in db.execute("SELECT label FROM current_labels WHERE source = 'import'"))
    assert labels == ["my odd class"] * 2 + ["particles"] * 3  # matched case-insensitively to a class
    assert db.execute("SELECT DISTINCT reviewer FROM current_labels WHERE source='import'").fetchall() == [("import",)]
    # labelled images are out of the review queues
    assert sum(queue_counts(db).values()) == 0


def test_real_sem_files(setup, sem_fixtures, tmp_path):
    db, model, clf = setup
    rep = ingest(db, [sem_fixtures], classifier=clf, model_id=model["id"])
    assert rep.failed == [] and rep.added == 8
    px = dict(db.execute("SELECT name, pixel_size_m FROM images").fetchall())
    assert px["FEI-Helios-Ebeam-8bits.tif"] == pytest.approx(3.3724e-6, rel=1e-3)
    assert px["test_tiff_Zeiss_SEM_512pix.tif"] == pytest.approx(11.65e-9, rel=1e-3)
    assert px["FEI-Helios-navcam.tif"] is None
    bars = dict(db.execute("SELECT name, databar_px FROM images").fetchall())
    assert bars["FEI-Helios-Ebeam-16bits.tif"] == 29


def test_predict_pending_with_second_model_and_vanished_file(setup, image_folder, tiny_model):
    db, model, clf = setup
    ingest(db, [image_folder], classifier=clf, model_id=model["id"])
    m2 = register_model(db, tiny_model("m2", classes=("a", "b", "c", "d")))
    (image_folder / "img_005.png").unlink()
    rep = predict_pending(db, Classifier(m2["path"]), m2["id"])
    assert rep.predicted == 11 and len(rep.failed) == 1 and "img_005" in rep.failed[0][0]
    again = predict_pending(db, Classifier(m2["path"]), m2["id"])
    assert again.predicted == 0 and len(again.failed) == 1  # retried, still missing
    assert db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ?", [model["id"]]).fetchone()[0] == 12


def test_roots_restrict_server_folders(tmp_path):
    (tmp_path / "root" / "sub").mkdir(parents=True)
    assert check_allowed(tmp_path / "root" / "sub", [tmp_path / "root"]) == (tmp_path / "root" / "sub").resolve()
    with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
        check_allowed(tmp_path / "root" / ".." / "elsewhere", [tmp_path / "root"])
    os.symlink("/etc", tmp_path / "root" / "link")
    with pytest.raises(PathNotAllowed):
        check_allowed(tmp_path / "root" / "link", [tmp_path / "root"])


def test_kill_during_ingest_then_resume(tmp_path, tiny_model):
    """kill -9 the CLI half-way, run it again: the result equals an uninterrupted ingest."""
    folder = tmp_path / "many"
    write_images(folder, 400, size=96, seed=3, fmt="tif")
    model = tiny_model("m")
    env = {**os.environ, "SEMTRIAGE_BATCH_SIZE": "8"}
    cli = [sys.executable, "-m", "core.cli"]

    def run(db, *args, **kw):
        return subprocess.run([*cli, *args, "--db", str(db)], env=env, cwd=PROJECT, capture_output=True,
                              text=True, check=False, **kw)

    ref_db, db = tmp_path / "ref.db", tmp_path / "k.db"
    for d in (ref_db, db):
        assert run(d, "init", "--model", str(model)).returncode == 0
    assert run(ref_db, "ingest", str(folder)).returncode == 0
    interrupted = []
    for target in (40, 200):
        p = subprocess.Popen([*cli, "ingest", str(folder), "--db", str(db)], env=env, cwd=PROJECT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        watch = open_db(db, migrate=False)
        deadline = time.monotonic() + 120
        while p.poll() is None and time.monotonic() < deadline:
            if watch.execute("SELECT COUNT(*) FROM images").fetchone()[0] >= target:
                break
            time.sleep(0.02)
        p.send_signal(signal.SIGKILL)
        p.wait()
        interrupted.append(watch.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        watch.conn.close()
    assert any(0 < n < 400 for n in interrupted), interrupted  # the kills landed mid-way
    partial = open_db(db)
    assert integrity_ok(partial)
    res = run(db, "ingest", str(folder))
    assert res.returncode == 0, res.stderr
    a, b = open_db(ref_db), open_db(db)
    assert snapshot(a) == snapshot(b)
    q = "SELECT i.sha256, p.pred, round(p.p1, 5), p.queue FROM images i JOIN predictions p ON p.image_id = i.id ORDER BY 1"
    assert a.execute(q).fetchall() == b.execute(q).fetchall()


def test_group_keys_for_leak_free_splits(setup, tmp_path):
    db, model, clf = setup
    write_images(tmp_path / "arc" / "specA" / "fibres", 2, seed=1)
    write_images(tmp_path / "arc" / "specB" / "fibres", 2, seed=2)
    write_images(tmp_path / "arc" / "fibres", 1, seed=3)
    ingest(db, [tmp_path / "arc"], classifier=clf, model_id=model["id"], labels_from_folders=True)
    groups = sorted(r[0] or "-" for r in db.execute("SELECT group_key FROM images"))
    # the class folder is not the group; same-named class folders in two specimens stay apart
    assert groups == ["-", "arc/specA", "arc/specA", "arc/specB", "arc/specB"]
    db2 = open_db(tmp_path / "u.db")
    write_images(tmp_path / "runs" / "a" / "run1", 1, seed=4)
    write_images(tmp_path / "runs" / "b" / "run1", 1, seed=5)
    ingest(db2, [tmp_path / "runs"])
    assert sorted(r[0] for r in db2.execute("SELECT group_key FROM images")) == ["runs/a/run1", "runs/b/run1"]
