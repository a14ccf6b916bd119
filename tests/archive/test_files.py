"""predict-archive over files the database has not stored (`run --folder / --files`), local
engine, the shipped default model: the workers ingest (hash, metadata, thumbnail) and predict,
the merge stores exactly what `semtriage ingest` of the same files stores — images, files,
predictions, failures by path and reason — once, whatever is merged again or stopped part-way,
and files already stored are not stored twice."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from core.archive import WorkDir, merge, plan, run, status, status_text
from core.cli import cli
from core.config import DEFAULT_MODEL
from core.errors import Cancelled, StoreError
from core.intake import IMAGE_COLUMNS, ingest, predict_pending, read_path_list
from core.models import Classifier, register_model
from core.store import open_db
from tests.archive.conftest import write_archive_folder


def new_db(path: Path) -> dict[str, Any]:
    """A lab database with the shipped default model active and no images."""
    db = open_db(path)
    model = register_model(db, DEFAULT_MODEL, activate=True)
    db.close()
    return model


def snapshot(db_path: Path) -> dict[str, Any]:
    """What ingest stores, in comparable form: images by SHA-256 (every column a file gives),
    files by path (→ the image's SHA-256, size, mtime), predictions by image SHA-256, failures."""
    db = open_db(db_path)
    cols = ", ".join(IMAGE_COLUMNS)
    images = {r[0]: r for r in db.execute(f"SELECT {cols} FROM images").fetchall()}
    files = {r[0]: tuple(r[1:]) for r in db.execute(
        "SELECT f.path, i.sha256, f.size_bytes, f.mtime FROM files f JOIN images i ON i.id = f.image_id")}
    preds = {r[0]: (np.array(json.loads(r[1])), *r[2:]) for r in db.execute(
        "SELECT i.sha256, p.probs, p.pred, p.queue, p.reason, p.ood, p.unfamiliar FROM predictions p "
        "JOIN images i ON i.id = p.image_id")}
    n = db.execute("SELECT COUNT(*), COUNT(DISTINCT image_id || '/' || model_id) FROM predictions").fetchone()
    assert n[0] == n[1], "an image has two predictions of one model"
    errors = dict(db.execute("SELECT path, reason FROM ingest_errors").fetchall())
    db.close()
    return {"images": images, "files": files, "predictions": preds, "errors": errors}


def assert_same(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["images"] == want["images"]
    assert got["files"] == want["files"]
    assert got["errors"] == want["errors"]
    assert sorted(got["predictions"]) == sorted(want["predictions"])
    for sha, (p, pred, queue, reason, ood, why) in want["predictions"].items():
        g = got["predictions"][sha]
        np.testing.assert_allclose(g[0], p, atol=1e-5, err_msg=sha)
        assert (g[1], g[2], g[3], g[5]) == (pred, queue, reason, why), sha
        assert (g[4] is None) == (ood is None) and (ood is None or abs(g[4] - ood) < 2e-4), sha


def ingest_reference(db_path: Path, paths: list, *, then_predict: bool = False) -> dict[str, Any]:
    """`semtriage ingest PATHS` with the active default model on ``db_path``: its snapshot."""
    db = open_db(db_path)
    model = register_model(db, DEFAULT_MODEL, activate=True)
    clf = Classifier(DEFAULT_MODEL)
    ingest(db, paths, classifier=clf, model_id=model["id"])
    if then_predict:  # what the CLI does next: the stored images the model has not predicted
        predict_pending(db, clf, model["id"])
    db.close()
    return snapshot(db_path)


def planned(db_path: Path, work: Path, paths: list, **kw) -> Any:
    db = open_db(db_path)
    model = register_model(db, DEFAULT_MODEL, activate=True)
    m, fresh = plan(db, work, model, paths=paths, **kw)
    db.close()
    assert fresh
    return m


def test_folder_plan_run_merge_stores_what_ingest_stores(tmp_path):
    folder = tmp_path / "archive"
    files = write_archive_folder(folder)
    n = 11 + ("fei" in files)  # image files: 4 + 3 PNGs, 2 TIFFs, the broken one, the copy
    want = ingest_reference(tmp_path / "ref.db", [folder])
    assert len(want["images"]) == n - 2, "the broken file and the copy make no image"
    db_path = tmp_path / "lab.db"
    new_db(db_path)
    work = tmp_path / "work"
    m = planned(db_path, work, [folder], shard_size=3)
    assert (m.source, m.images, len(m.shards), m.extra["new"], m.extra["ignored"]) == (
        "files", n, -(-n // 3), n, 1)
    away = tmp_path / "elsewhere.db"
    db_path.rename(away)
    rep = run(work)
    assert not db_path.exists(), "a worker opened the database"
    away.rename(db_path)
    assert (rep.images, rep.failed) == (n, 1)
    broken = str(files["broken"].resolve())
    db = open_db(db_path)
    got = merge(db, work, rows=2)
    assert got.failed == [(broken, want["errors"][broken])]
    assert "truncated TIFF" in want["errors"][broken]
    assert (got.added, got.duplicates, got.predicted) == (n - 2, 1, n - 2)
    db.close()
    assert_same(snapshot(db_path), want)
    st = status(work, open_db(db_path))
    assert st["failed"] == [{"path": broken, "reason": want["errors"][broken]}]
    assert (st["unreadable"], st["images_merged"], st["files"]["new"]) == (1, n, n)
    assert f"failed {broken}: truncated TIFF" in status_text(st)
    # the metadata the workers read (the ImageJ pixel size; the FEI data bar) is stored
    db = open_db(db_path)
    px = db.execute("SELECT pixel_size_m, instrument FROM images WHERE name = 'imagej_deflate.tif'").fetchone()
    assert tuple(px) == (5e-08, "ImageJ")
    if "fei" in files:
        bar = db.execute("SELECT databar_px, instrument FROM images WHERE name = ?", [files["fei"].name]).fetchone()
        assert bar[0] > 0 and bar[1] == "FEI"
    # merged again: nothing more
    again = merge(db, work)
    assert (again.shards, again.added, again.duplicates, again.predicted, again.failed) == (0, 0, 0, 0, [])
    db.close()
    assert_same(snapshot(db_path), want)
    # planned again: only the unreadable file is tried again, as ingest would
    m2 = planned(db_path, tmp_path / "again", [folder])
    assert (m2.images, m2.extra["unchanged"], m2.extra["stored_to_predict"]) == (1, n - 1, 0)


def test_merge_stopped_at_any_point_resumes_to_what_ingest_stores(tmp_path):
    """Stopped after each of its write transactions in turn (what a kill leaves: SQLite rolls
    back the one in flight), then run again: the same images, files and one prediction each."""
    folder = tmp_path / "archive"
    write_archive_folder(folder)
    want = ingest_reference(tmp_path / "ref.db", [folder])
    pristine = tmp_path / "pristine.db"
    new_db(pristine)
    work = tmp_path / "work"
    planned(pristine, work, [folder], shard_size=4)
    run(work)
    calls: list[str] = []
    full = tmp_path / "full.db"
    shutil.copyfile(pristine, full)
    merge(open_db(full), work, rows=2, progress=lambda f, msg: calls.append(msg))
    assert len(calls) >= 5
    for stop in range(1, len(calls)):
        trial = tmp_path / f"stop{stop}.db"
        shutil.copyfile(pristine, trial)
        seen: list[str] = []

        def stop_there(fraction: float, message: str, stop: int = stop, seen: list = seen) -> None:
            seen.append(message)
            if len(seen) == stop:
                raise Cancelled("killed")

        db = open_db(trial)
        with pytest.raises(Cancelled):
            merge(db, work, rows=2, progress=stop_there)
        partial = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        assert 0 < partial <= len(want["images"])
        assert merge(db, work, rows=2).shards >= 1
        db.close()
        assert_same(snapshot(trial), want)


def test_files_already_stored_are_not_stored_twice(tmp_path):
    """Part of the folder was ingested before (not predicted); one of those files was touched
    since (same bytes, new mtime: read again, recognised by its SHA-256); another file is a
    copy of a stored image. Nothing is stored twice, and every image gets one prediction —
    as `semtriage ingest FOLDER` (which then predicts what is stored) would leave it."""
    folder = tmp_path / "archive"
    files = write_archive_folder(folder)
    first = files["a0"].parent

    def ingested_first(db_path: Path) -> None:
        db = open_db(db_path)
        register_model(db, DEFAULT_MODEL, activate=True)
        ingest(db, [first])  # stored, not predicted
        db.close()

    ingested_first(tmp_path / "ref.db")
    ingested_first(tmp_path / "lab.db")
    t = files["a1"].stat().st_mtime + 100
    os.utime(files["a1"], (t, t))
    want = ingest_reference(tmp_path / "ref.db", [folder], then_predict=True)
    before = snapshot(tmp_path / "lab.db")["images"]
    work = tmp_path / "work"
    m = planned(tmp_path / "lab.db", work, [folder], shard_size=4)
    assert (m.extra["unchanged"], m.extra["stored_to_predict"]) == (3, 3)
    wl = pa.concat_tables([WorkDir(work).read_work(s) for s in range(len(m.shards))]).to_pylist()
    stored_rows = {Path(r["path"]).name for r in wl if r["image_id"]}
    assert stored_rows == {"img_000.png", "img_002.png", "img_003.png"}
    run(work)
    db = open_db(tmp_path / "lab.db")
    rep = merge(db, work)
    # a1 (touched) and the copy of a0 were read and found stored already
    assert rep.duplicates == 2 and rep.added == len(want["images"]) - len(before)
    copy_of = db.execute("SELECT f.image_id = (SELECT image_id FROM files WHERE path = ?) FROM files f "
                         "WHERE f.path = ?", [str(files["a0"].resolve()), str(files["copy"].resolve())]
                         ).fetchone()[0]
    assert copy_of == 1
    db.close()
    got = snapshot(tmp_path / "lab.db")
    assert_same(got, want)
    assert all(before[sha] == got["images"][sha] for sha in before), "a stored image was changed"
    assert len(got["predictions"]) == len(got["images"])


def test_a_file_list_skips_comments_and_reports_missing_files(tmp_path):
    folder = tmp_path / "archive"
    files = write_archive_folder(folder)
    listing = folder / "todo.txt"
    missing = folder / "run1" / "specimenC" / "gone.tif"
    listing.write_text(
        "# run 1, what the facility still has to sort\n\n"
        "run1/specimenA/img_000.png\n"  # relative: from the list's folder
        f"   {files['imagej']}   \n"  # absolute, spaces around it
        f"{missing}\n"
        "run1/specimenB/notes.txt\n"
        "run1/specimenB\n",  # a folder: read recursively, as ingest does
        encoding="utf-8")
    paths = read_path_list(listing)
    assert len(paths) == 5 and paths[0] == folder / "run1" / "specimenA" / "img_000.png"
    want = ingest_reference(tmp_path / "ref.db", paths)
    db_path = tmp_path / "lab.db"
    new_db(db_path)
    work = tmp_path / "work"
    m = planned(db_path, work, paths, shard_size=3)
    not_taken = dict(WorkDir(work).not_taken())
    notes = str(folder / "run1" / "specimenB" / "notes.txt")
    assert set(not_taken) == {str(missing), notes}
    assert not_taken[str(missing)] == "no such file or folder"
    assert not_taken[notes].startswith("not an image type (.txt)")
    assert m.extra["not_taken"] == 2
    run(work)
    db = open_db(db_path)
    rep = merge(db, work)
    broken = str(files["broken"].resolve())
    assert dict(rep.failed) == {**not_taken, broken: want["errors"][broken]}
    assert merge(db, work).failed == [], "reported once"
    st = status(work, db)
    assert {f["path"] for f in st["failed"]} == {str(missing), notes, broken}
    assert f"failed {missing}: no such file or folder" in status_text(st)
    db.close()
    assert_same(snapshot(db_path), want)  # group keys too: the listed folder is a root


def test_cli_run_folder_and_files_then_merge_and_status(tmp_path):
    folder = tmp_path / "archive"
    files = write_archive_folder(folder)
    listing = tmp_path / "more.txt"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copyfile(files["lzw"], other / "moved.tif")  # a copy elsewhere: no new image
    listing.write_text(f"{other / 'moved.tif'}\n{tmp_path / 'nope.png'}\n", encoding="utf-8")
    db_path = tmp_path / "lab.db"
    new_db(db_path)
    work = tmp_path / "work"
    runner = CliRunner()
    args = ["predict-archive", "run", "--db", str(db_path), "--work-dir", str(work),
            "--folder", str(folder / "run1"), "--files", str(listing), "--shard-size", "4"]
    r = runner.invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert (out["images"], out["failed"]) == (12, 1), out
    r = runner.invoke(cli, args)  # the same paths again: resumed, nothing left to do
    assert r.exit_code == 0, r.output
    assert "Resuming" in r.output and "0 images in 0 shards" in r.output
    r = runner.invoke(cli, ["predict-archive", "run", "--db", str(db_path), "--work-dir", str(work),
                            "--folder", str(other)])
    assert r.exit_code != 0 and "holds a run over other files" in r.output
    r = runner.invoke(cli, ["predict-archive", "merge", str(work), "--db", str(db_path)])
    assert r.exit_code == 0, r.output
    assert "9 new images stored (2 files were copies of stored images)" in r.output
    assert f"failed {tmp_path / 'nope.png'}: no such file or folder" in r.output
    assert f"failed {files['broken'].resolve()}: truncated TIFF" in r.output
    r = runner.invoke(cli, ["predict-archive", "status", str(work), "--db", str(db_path)])
    assert r.exit_code == 0, r.output
    assert "merged:    3/3 shards, 12 images" in r.output and "1 not taken" in r.output, r.output


def test_a_format_1_work_folder_still_runs_status_and_merges(archive_db, tmp_path):
    """A work folder planned before file plans existed (format 1: no group_key in the work
    list, no image columns in the results) is read with those columns empty."""
    db_path, model, _ = archive_db(n=5)
    work = tmp_path / "work"
    db = open_db(db_path)
    m, _ = plan(db, work, model, shard_size=3)
    wd = WorkDir(work)
    for s in range(len(m.shards)):
        pq.write_table(wd.read_work(s).drop(["group_key"]), wd.work(s))
    run(work, engine="local")
    for s in range(len(m.shards)):
        pq.write_table(wd.read_result(s, len(m.class_names)).drop(["image", "thumb", "mtime"]), wd.result(s))
    d = json.loads(wd.manifest_path.read_text())
    wd.manifest_path.write_text(json.dumps({**d, "format": 1}))
    assert status(work)["unreadable"] == 0
    assert merge(db, work).predicted == 5
    with pytest.raises(StoreError, match="holds a run over the stored images"):
        plan(db, work, model, paths=[tmp_path])
