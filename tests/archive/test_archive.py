"""predict-archive with the local engine: the work list, one result file per shard, the merge
(SHA-256 checked, exactly one prediction per image and model, the same as `semtriage
predict`), unreadable and changed files reported by path, and resuming after an interruption
or a kill at any step."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from core.archive import ArchivePredictor, WorkDir, merge, plan, run, status
from core.cli import cli
from core.errors import Cancelled, InvalidValue, ModelError, ProviderError, StoreError
from core.intake import ingest, predict_pending
from core.models import Classifier, find_model, register_model
from core.store import integrity_ok, open_db
from tests.helpers import build_tiny_model, write_images

PROJECT = Path(__file__).resolve().parents[2]


def stored(db_path: Path, model_id: int) -> dict[str, tuple]:
    """path → (probabilities, queue, reason, unfamiliar) of every prediction of the model."""
    db = open_db(db_path)
    rows = db.execute(
        "SELECT i.path, p.probs, p.queue, p.reason, p.unfamiliar FROM predictions p JOIN images i ON i.id = p.image_id "
        "WHERE p.model_id = ?", [model_id]).fetchall()
    n = db.execute("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM predictions WHERE model_id = ?",
                   [model_id]).fetchone()
    assert n[0] == n[1], "an image has two predictions of one model"
    db.close()
    return {r[0]: (np.array(json.loads(r[1])), r[2], r[3], r[4]) for r in rows}


def auto_labels(db_path: Path) -> list[tuple]:
    db = open_db(db_path)
    rows = db.execute("SELECT image_id, label FROM current_labels WHERE source = 'auto' "
                      "ORDER BY image_id").fetchall()
    db.close()
    return [tuple(r) for r in rows]


def reference(db_path: Path, model: dict, tmp_path: Path) -> dict[str, tuple]:
    """What `semtriage predict` stores on a copy of the same database."""
    copy = tmp_path / "reference.db"
    shutil.copyfile(db_path, copy)
    db = open_db(copy)
    predict_pending(db, Classifier(model["path"]), model["id"])
    db.close()
    return stored(copy, model["id"])


def same(got: dict[str, tuple], want: dict[str, tuple]) -> None:
    assert sorted(got) == sorted(want)
    for path, (p, *rest) in want.items():
        np.testing.assert_allclose(got[path][0], p, atol=1e-5, err_msg=path)
        assert list(got[path][1:]) == rest, path


def test_run_and_merge_store_what_predict_stores(archive_db, tmp_path):
    db_path, model, _ = archive_db(n=11)
    want = reference(db_path, model, tmp_path)
    work = tmp_path / "work"
    db = open_db(db_path)
    m, fresh = plan(db, work, model, shard_size=4)
    assert fresh and m.shards == [4, 4, 3] and m.images == 11
    db.close()
    rep = run(work)
    assert (rep.shards, rep.images, rep.failed, rep.providers) == (3, 11, 0, ["CPUExecutionProvider"])
    st = status(work)
    assert (st["shards_predicted"], st["images_predicted"], st["unreadable"]) == (3, 11, 0)
    db = open_db(db_path)
    got = merge(db, work, rows=3)
    assert (got.shards, got.predicted, got.failed) == (3, 11, [])
    assert got.longest_tx_s < 1.0
    assert status(work, db)["images_merged"] == 11
    db.close()
    same(stored(db_path, model["id"]), want)
    # auto labels as after `semtriage predict` (none while the model is provisional)
    assert auto_labels(db_path) == auto_labels(tmp_path / "reference.db")
    # nothing left to do: a second plan of the same model on another folder is empty
    db = open_db(db_path)
    m2, _ = plan(db, tmp_path / "again", model)
    assert m2.images == 0 and run(tmp_path / "again").images == 0
    assert merge(db, work).predicted == 0, "a merged shard is not merged twice"


def test_unreadable_changed_and_vanished_files_are_reported_and_the_rest_go_on(archive_db, tmp_path):
    db_path, model, files = archive_db(n=8)
    files[1].write_bytes(files[1].read_bytes()[:40])  # truncated after ingest
    files[2].unlink()  # gone
    write_images(tmp_path / "other", n=1, seed=5)[0].replace(files[3])  # another image, same path
    work = tmp_path / "work"
    db = open_db(db_path)
    plan(db, work, model, shard_size=3)
    rep = run(work)
    assert rep.images == 8 and rep.failed == 2, "the changed file is readable: merge judges it"
    got = merge(db, work)
    reasons = dict(got.failed)
    assert set(reasons) == {str(files[i]) for i in (1, 2, 3)}
    assert "PNG" in reasons[str(files[1])]
    assert reasons[str(files[2])] == "no such file"
    assert "changed since it was ingested" in reasons[str(files[3])]
    assert got.predicted == 5
    errors = dict(db.execute("SELECT path, reason FROM ingest_errors").fetchall())
    assert errors == reasons
    predicted = {r[0] for r in db.execute(
        "SELECT i.path FROM predictions p JOIN images i ON i.id = p.image_id")}
    assert predicted == {str(f) for i, f in enumerate(files) if i not in (1, 2, 3)}


def test_merge_interrupted_between_batches_resumes_without_duplicates(archive_db, tmp_path):
    db_path, model, _ = archive_db(n=10)
    want = reference(db_path, model, tmp_path)
    work = tmp_path / "work"
    db = open_db(db_path)
    plan(db, work, model, shard_size=4)
    run(work)
    calls = []

    def stop_after_three(fraction: float, message: str) -> None:
        calls.append(message)
        if len(calls) == 3:  # mid-way through the second shard: its first batch is stored
            raise Cancelled("stopped")

    with pytest.raises(Cancelled):
        merge(db, work, rows=2, progress=stop_after_three)
    assert db.execute("SELECT COUNT(*) FROM archive_shards").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 6
    again = merge(db, work, rows=2)
    assert (again.already, again.shards) == (1, 2)
    assert db.execute("SELECT COUNT(*) FROM archive_shards").fetchone()[0] == 3
    db.close()
    same(stored(db_path, model["id"]), want)


def test_run_resumes_only_the_shards_without_a_result(archive_db, tmp_path):
    db_path, model, _ = archive_db(n=9)
    work = tmp_path / "work"
    db = open_db(db_path)
    plan(db, work, model, shard_size=3)
    db.close()
    assert run(work).shards == 3
    wd = WorkDir(work)
    kept = wd.result(0).stat().st_mtime_ns
    wd.result(1).unlink()
    leftover = wd.result(1).with_name("shard-00001.parquet.tmp-123-abc")
    leftover.write_bytes(b"half a parquet file")  # what a killed writer leaves
    rep = run(work)
    assert (rep.shards, rep.skipped, rep.images) == (1, 2, 3)
    assert wd.result(0).stat().st_mtime_ns == kept and not leftover.exists()


def test_workers_never_open_the_database(archive_db, tmp_path):
    db_path, model, _ = archive_db(n=5)
    work = tmp_path / "work"
    db = open_db(db_path)
    plan(db, work, model, shard_size=2)
    db.close()
    away = tmp_path / "elsewhere.db"
    db_path.rename(away)
    for suffix in ("-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    assert run(work).images == 5
    assert not db_path.exists(), "the run created or opened a database"
    assert merge(open_db(away), work).predicted == 5


def test_plan_resumes_the_same_model_and_refuses_another(archive_db, tmp_path):
    db_path, model, _ = archive_db(n=4)
    work = tmp_path / "work"
    db = open_db(db_path)
    m, fresh = plan(db, work, model, shard_size=2)
    m2, fresh2 = plan(db, work, model, shard_size=1)
    assert fresh and not fresh2 and m2.work_id == m.work_id and m2.shards == [2, 2]
    other = register_model(db, build_tiny_model(tmp_path / "other.onnx", temperature=2.0))
    with pytest.raises(StoreError, match="another --work-dir"):
        plan(db, work, other)
    with pytest.raises(InvalidValue, match="no archive work folder"):
        run(tmp_path / "nothing")
    # a database without the folder's model refuses the merge and stays untouched
    run(work)
    empty = open_db(tmp_path / "empty.db")
    with pytest.raises(ModelError, match="no model with the SHA-256"):
        merge(empty, work)
    assert empty.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0


def test_a_changed_model_file_is_refused_by_the_workers(archive_db, tmp_path):
    db_path, model, _ = archive_db(n=3)
    work = tmp_path / "work"
    db = open_db(db_path)
    m, _ = plan(db, work, model)
    build_tiny_model(WorkDir(work).model_path(m), temperature=3.0)  # overwritten copy
    with pytest.raises(ModelError, match="not the model this run was planned with"):
        run(work)
    assert not WorkDir(work).done(m)


def test_cli_run_status_merge(archive_db, tmp_path):
    db_path, model, _ = archive_db(n=6)
    work = tmp_path / "work"
    runner = CliRunner()
    r = runner.invoke(cli, ["predict-archive", "run", "--db", str(db_path), "--work-dir", str(work),
                            "--shard-size", "4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert (out["images"], out["shards"], out["engine"]) == (6, 2, "local")
    r = runner.invoke(cli, ["predict-archive", "status", str(work), "--db", str(db_path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["shards_merged"] == 0
    r = runner.invoke(cli, ["predict-archive", "merge", str(work), "--db", str(db_path)])
    assert r.exit_code == 0, r.output
    assert "6 predictions merged from 2 shards" in r.output
    r = runner.invoke(cli, ["predict-archive", "status", str(work), "--db", str(db_path)])
    assert "merged:    2/2 shards, 6 images" in r.output, r.output
    r = runner.invoke(cli, ["predict-archive", "run", "--db", str(db_path), "--work-dir", str(work),
                            "--engine", "spark"])
    assert r.exit_code != 0 and "spark" in r.output
    db = open_db(db_path)
    assert find_model(db, model["version"])["id"] == model["id"]


def big_tiffs(folder: Path, n: int, side: int = 2500) -> None:
    """16-bit TIFFs large enough that predicting a few takes a second or more."""
    import tifffile

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    base = (np.add.outer(np.arange(side), np.arange(side)) * 7).astype(np.uint16)
    for i in range(n):
        tifffile.imwrite(folder / f"zz_big_{i}.tif", base + rng.integers(0, 50, (side, side), dtype=np.uint16))


def killed_then_finished(cmd: list[str], env: dict[str, str], work: Path, shards: int) -> int:
    """Start ``cmd``, SIGKILL it as soon as its first result file exists, run it again to the
    end; returns how many shards were finished when the kill landed."""
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    results = work / "results"
    while time.monotonic() < deadline and proc.poll() is None:
        if results.is_dir() and any(results.glob("shard-*.parquet")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read()!r}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(results.glob("shard-*.parquet")))
    assert 0 < finished < shards, f"the kill landed after {finished} of {shards} shards"
    done = subprocess.run(cmd, check=False, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return finished


@pytest.mark.slow
def test_driver_killed_mid_run_then_run_again_gives_one_exact_prediction_each(archive_db, tmp_path):
    db_path, model, files = archive_db(n=6)
    big_tiffs(files[0].parent, 4)
    db = open_db(db_path)
    ingest(db, [files[0].parent])
    db.close()
    want = reference(db_path, model, tmp_path)
    work = tmp_path / "work"
    env = {**os.environ, "SEMTRIAGE_BATCH_SIZE": "2"}
    cmd = [sys.executable, "-m", "core.cli", "predict-archive", "run", "--db", str(db_path),
           "--work-dir", str(work), "--shard-size", "2", "--threads", "1"]
    killed_then_finished(cmd, env, work, shards=5)
    db = open_db(db_path)
    rep = merge(db, work)
    assert rep.predicted == 10 and not rep.failed
    assert integrity_ok(db)
    db.close()
    same(stored(db_path, model["id"]), want)


def test_a_gpu_worker_without_cuda_refuses_instead_of_predicting_on_the_cpu(archive_db, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA is available here: the GPU worker would run")
    db_path, model, _ = archive_db(n=2)
    m, _ = plan(open_db(db_path), tmp_path / "w", model)
    with pytest.raises(ProviderError, match="CUDAExecutionProvider"):
        ArchivePredictor(str(WorkDir(tmp_path / "w").model_path(m)), m.model_sha256, gpu=True)
