"""predict-archive on a real local Ray cluster (one per test session, 2 CPUs, a pool of one
actor): the same predictions as the local engine and as `semtriage predict`, unreadable files
answered per image, and a driver that joined the cluster by its address killed mid-run and
started again. Skipped, with the reason, where the ray extra is not installed."""

from __future__ import annotations

import os
import sys

import pytest

from core.archive import RayOptions, WorkDir, merge, plan, run, status
from core.errors import DependencyMissing
from core.intake import ingest
from core.store import integrity_ok, open_db
from tests.archive.test_archive import big_tiffs, killed_then_finished, reference, same, stored

pytestmark = pytest.mark.slow


def test_ray_engine_predicts_what_the_local_engine_predicts(ray_cluster, archive_db, tmp_path):
    db_path, model, files = archive_db(n=9)
    files[4].write_bytes(b"\x89PNG\r\n\x1a\n")  # broken after ingest: answered, the rest go on
    want = reference(db_path, model, tmp_path)
    db = open_db(db_path)
    plan(db, tmp_path / "ray", model, shard_size=4)
    plan(db, tmp_path / "local", model, shard_size=4)
    rep = run(tmp_path / "ray", engine="ray", ray_options=RayOptions())
    assert (rep.engine, rep.shards, rep.images, rep.failed) == ("ray", 3, 9, 1)
    assert rep.providers == ["CPUExecutionProvider"]
    assert run(tmp_path / "local").images == 9
    st = status(tmp_path / "ray")
    assert (st["shards_predicted"], st["unreadable"]) == (3, 1)
    # the two engines' result files agree row by row
    k = len(model["class_names"])
    for s in range(3):
        a = WorkDir(tmp_path / "ray").read_result(s, k).drop(["provider"]).to_pylist()
        b = WorkDir(tmp_path / "local").read_result(s, k).drop(["provider"]).to_pylist()
        assert [r["path"] for r in a] == [r["path"] for r in b]
        for ra, rb in zip(a, b):
            assert (ra["sha256"], ra["error"]) == (rb["sha256"], rb["error"])
            if ra["probs"] is not None:
                assert max(abs(x - y) for x, y in zip(ra["probs"], rb["probs"])) < 1e-5
    got = merge(db, tmp_path / "ray")
    assert got.predicted == 8 and [p for p, _ in got.failed] == [str(files[4])]
    db.close()
    same(stored(db_path, model["id"]), want)


def test_ray_driver_killed_mid_run_then_run_again(ray_cluster, archive_db, tmp_path):
    """The driver joins the session's cluster by address (as on a real cluster), is killed as
    soon as one shard is written, and runs again: the finished shards are skipped, every image
    ends with exactly one prediction, the same as `semtriage predict`."""
    db_path, model, files = archive_db(n=4)
    big_tiffs(files[0].parent, 4)
    db = open_db(db_path)
    ingest(db, [files[0].parent])
    db.close()
    want = reference(db_path, model, tmp_path)
    work = tmp_path / "work"
    env = {**os.environ, "SEMTRIAGE_BATCH_SIZE": "2"}  # HOME (the token), PYTHONPATH: the fixture's
    cmd = [sys.executable, "-m", "core.cli", "predict-archive", "run", "--db", str(db_path),
           "--work-dir", str(work), "--shard-size", "2", "--threads", "1", "--engine", "ray",
           "--address", ray_cluster]
    killed_then_finished(cmd, env, work, shards=4)
    db = open_db(db_path)
    assert merge(db, work).predicted == 8
    assert integrity_ok(db)
    db.close()
    same(stored(db_path, model["id"]), want)


def test_ray_engine_without_ray_says_how_to_install_it(archive_db, tmp_path, monkeypatch):
    db_path, model, _ = archive_db(n=2)
    plan(open_db(db_path), tmp_path / "w", model)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    with pytest.raises(DependencyMissing, match=r"pip install 'semtriage\[ray\]'"):
        run(tmp_path / "w", engine="ray")
