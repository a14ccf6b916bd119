"""predict-archive on a real local Ray cluster (one per test session, 2 CPUs, a pool of one
actor): the same predictions as the local engine and as `semtriage predict`, a folder not
ingested read and stored as by the local engine and `semtriage ingest`, unreadable files
answered per image, and a driver that joined the cluster by its address killed mid-run and
started again. Skipped, with the reason, where the ray extra is not installed."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.archive import RayOptions, WorkDir, merge, plan, run, status
from core.config import Settings
from core.errors import DependencyMissing
from core.intake import ingest
from core.store import integrity_ok, open_db
from tests.archive.conftest import write_archive_folder
from tests.archive.test_archive import big_tiffs, killed_then_finished, reference, same, stored
from tests.archive.test_files import assert_same, ingest_reference, new_db, planned, snapshot

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


def test_ray_engine_ingests_a_folder_as_the_local_engine_does(ray_cluster, tmp_path):
    folder = tmp_path / "archive"
    files = write_archive_folder(folder)
    n = 11 + ("fei" in files)
    want = ingest_reference(tmp_path / "ref.db", [folder])
    db_path = tmp_path / "lab.db"
    model = new_db(db_path)
    for name in ("ray", "local"):
        planned(db_path, tmp_path / name, [folder], shard_size=4)
    rep = run(tmp_path / "ray", engine="ray", ray_options=RayOptions())
    assert (rep.engine, rep.images, rep.failed, rep.providers) == ("ray", n, 1, ["CPUExecutionProvider"])
    assert run(tmp_path / "local").images == n
    k = len(model["class_names"])
    shards = len(WorkDir(tmp_path / "ray").manifest().shards)
    read = 0
    for s in range(shards):
        a = WorkDir(tmp_path / "ray").read_result(s, k).drop(["provider"]).to_pylist()
        b = WorkDir(tmp_path / "local").read_result(s, k).drop(["provider"]).to_pylist()
        assert [r["path"] for r in a] == [r["path"] for r in b]
        for ra, rb in zip(a, b):
            exact = ("image_id", "sha256", "error", "unfamiliar", "image", "thumb", "mtime")
            assert {c: ra[c] for c in exact} == {c: rb[c] for c in exact}, ra["path"]
            assert (ra["probs"] is None) == (rb["probs"] is None)
            if ra["probs"] is not None:
                np.testing.assert_allclose(ra["probs"], rb["probs"], atol=1e-5)
                assert abs(ra["ood"] - rb["ood"]) < 1e-4
            read += ra["image"] is not None
    assert read == n - 1, "every readable file answered with its image row"
    db = open_db(db_path)
    got = merge(db, tmp_path / "ray", rows=3)
    assert (got.added, got.duplicates, len(got.failed)) == (n - 2, 1, 1)
    db.close()
    assert_same(snapshot(db_path), want)


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


def _actor_pids() -> list[int]:
    """Processes of this session's cluster running an ArchivePredictor actor: Ray names its
    worker processes after the actor (``ray::MapWorker(MapBatches(ArchivePredictor))``), and
    ours inherit the fixture's temporary HOME."""
    home = f"HOME={os.environ['HOME']}".encode()
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                cmd = (p / "cmdline").read_bytes()
                env = (p / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"ArchivePredictor" in cmd and home in env:
                pids.append(int(p.name))
    return pids


def test_ray_worker_killed_mid_run(ray_cluster, archive_db, tmp_path):
    """The actor process is killed as soon as one shard is written: Ray restarts it and
    retries, or the run fails and is run again — either way every image ends with exactly one
    prediction, the same as `semtriage predict`."""
    db_path, model, files = archive_db(n=4)
    big_tiffs(files[0].parent, 4)
    db = open_db(db_path)
    ingest(db, [files[0].parent])
    want = reference(db_path, model, tmp_path)
    work = tmp_path / "work"
    plan(db, work, model, shard_size=2)
    killed: list[int] = []
    at_kill: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            done = len(list((work / "results").glob("shard-*.parquet")))
            if done:
                at_kill.append(done)
                for pid in _actor_pids():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.02)

    th = threading.Thread(target=killer, daemon=True)
    th.start()
    settings = Settings(batch_size=2)
    try:
        first = run(work, engine="ray", settings=settings, threads=1)
        again = None
    except Exception as e:  # noqa: BLE001 — the run may give up on the killed actor
        first = e
        again = run(work, engine="ray", settings=settings, threads=1)
    th.join()
    assert killed, "no actor process was found to kill"
    assert at_kill[-1] < 4, f"the kill landed after all {at_kill[-1]} shards"
    print(f"killed {killed} after {at_kill[-1]} of 4 shards; "
          f"{'Ray retried' if again is None else 'run again after: ' + repr(first)[:200]}")
    assert len(WorkDir(work).done(WorkDir(work).manifest())) == 4, (first, again)
    assert merge(db, work).predicted == 8
    db.close()
    same(stored(db_path, model["id"]), want)
