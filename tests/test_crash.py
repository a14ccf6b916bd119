"""Crashes and concurrency on a real SQLite file: kill -9 at random points of `semtriage
predict` and `semtriage export --format imagefolder`, a CLI ingest while four reviewers label,
and an online backup while writers write.

Kill points are found by polling progress from outside (rows in the database, files in the
export's partial folder), as tests/test_ingest.py does; the random targets come from a seeded
RNG and are printed. Each kill is checked at once: the database passes integrity_check, has no
duplicate predictions and still holds every label made before; an export target holds either
the previous export or the new one, whole.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from core.datasets import MARKER
from core.review import decide, import_labels, next_images, undo_last
from core.store import backup, integrity_ok, now_iso, open_db, set_setting, write_tx
from tests.helpers import write_images

PROJECT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "core.cli"]
ENV = {**os.environ, "SEMTRIAGE_BATCH_SIZE": "8"}
KILLS = {"predict": 0, "export": 0}  # kills that landed mid-way, for the closing summary


def cli(db: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args, "--db", str(db)], env=ENV, cwd=PROJECT, capture_output=True,
                          text=True, timeout=timeout, check=False)


def kill_when(args: list[str], progress, target: int, timeout: float = 60) -> tuple[int, bool]:
    """Start ``semtriage ARGS``, poll ``progress()`` until it reaches ``target``, kill -9.
    Returns (progress at the kill, whether the process was still running when killed)."""
    p = subprocess.Popen([*CLI, *args], env=ENV, cwd=PROJECT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while p.poll() is None and time.monotonic() < deadline:
            if progress() >= target:
                break
            time.sleep(0.005)
    finally:
        alive = p.poll() is None
        p.send_signal(signal.SIGKILL)
        p.wait()
    return progress(), alive


def human_labels(db) -> dict[str, list]:
    return {
        "events": db.execute(
            "SELECT id, image_id, label, action, reviewer, undoes, created_at FROM label_events "
            "WHERE source = 'human' ORDER BY id").fetchall(),
        "current": db.execute(
            "SELECT image_id, label, source, event_id FROM current_labels WHERE source != 'auto' "
            "ORDER BY image_id").fetchall(),
    }


# ---------------------------------------------------------------- predict


def test_kill_predict_of_a_second_model_repeatedly(tmp_path, tiny_model):
    folder = tmp_path / "imgs"
    write_images(folder, 300, size=64, seed=5)
    db_path = tmp_path / "k.db"
    assert cli(db_path, "init", "--model", str(tiny_model("m1"))).returncode == 0
    assert cli(db_path, "thresholds", "--accept", "0.7", "--force").returncode == 0  # auto labels on
    res = cli(db_path, "ingest", str(folder))
    assert res.returncode == 0, res.stderr
    db = open_db(db_path)
    # labels made before the kills: decisions by two reviewers, one undone
    for name in ("ann", "bob"):
        for it in next_images(db, "all", name, n=10):
            decide(db, it["image_id"], "accept" if it["image_id"] % 3 else "unusable", reviewer=name)
    assert undo_last(db, "bob") is not None
    before = human_labels(db)
    auto_before = db.execute("SELECT image_id, label, event_id FROM current_labels "
                             "WHERE source = 'auto' ORDER BY image_id").fetchall()
    assert len(before["events"]) == 21 and auto_before
    res = cli(db_path, "model", "add", str(tiny_model("m2", classes=("a", "b", "c", "d"))))
    assert res.returncode == 0, res.stderr
    m2 = db.execute("SELECT id FROM models WHERE version = 'm2'").fetchone()[0]

    def predicted() -> int:
        return db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ?", [m2]).fetchone()[0]

    rng = random.Random(20261121)
    targets = [rng.randint(lo, hi) for lo, hi in ((16, 80), (100, 170), (190, 260))]
    print(f"\npredict kill targets (predictions of the 2nd model): {targets}")
    for target in targets:
        got, alive = kill_when(["predict", "--model", "m2", "--db", str(db_path)], predicted, target)
        assert alive and 0 < got < 300, (target, got)  # landed mid-way, not after the end
        KILLS["predict"] += 1
        check = open_db(db_path, migrate=False)
        assert integrity_ok(check)
        dups = check.execute("SELECT image_id, model_id, COUNT(*) FROM predictions "
                             "GROUP BY 1, 2 HAVING COUNT(*) > 1").fetchall()
        assert dups == []
        assert human_labels(check) == before
        check.conn.close()
        print(f"  killed at {got} of 300 predictions")
    res = cli(db_path, "predict", "--model", "m2")
    assert res.returncode == 0, res.stderr
    assert predicted() == 300
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT image_id) FROM predictions "
                      "WHERE model_id = ?", [m2]).fetchone() == (300, 300)
    assert human_labels(db) == before
    # the second model is not active: the active model's auto labels are untouched
    assert db.execute("SELECT image_id, label, event_id FROM current_labels WHERE source = 'auto' "
                      "ORDER BY image_id").fetchall() == auto_before
    assert integrity_ok(db)


# ---------------------------------------------------------------- export


def _seed_labelled(db, folder: Path, n: int, start: int = 0) -> None:
    """n real small PNGs with rows consistent with an ingest, labelled by folder-style import."""
    paths = write_images(folder, n, size=40, seed=start + 11)
    stamp = now_iso()
    with write_tx(db):
        for p in paths:
            st = p.stat()
            sha = hashlib.sha256(p.read_bytes()).hexdigest()
            image_id = db.execute(
                "INSERT INTO images(sha256, path, name, size_bytes, width, height, bit_depth, "
                "raw_dtype, added_at) VALUES (?, ?, ?, ?, 40, 40, 8, 'uint8', ?)",
                [sha, str(p), p.name, st.st_size, stamp]).lastrowid
            db.execute("INSERT INTO files(path, image_id, size_bytes, mtime, seen_at) "
                       "VALUES (?, ?, ?, ?, ?)", [str(p), image_id, st.st_size, st.st_mtime, stamp])
    ids = [r[0] for r in db.execute("SELECT id FROM images WHERE id > ? ORDER BY id", [start])]
    import_labels(db, [(i, ("fibres", "particles", "powder")[i % 3]) for i in ids])


def export_state(out: Path) -> int | None:
    """The image count of the complete export at ``out`` (None when there is none); fails the
    test when ``out`` holds anything but one whole export."""
    if not out.exists():
        return None
    marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    with open(out / "manifest.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    images = [p for p in out.rglob("*") if p.is_file() and p.name not in (MARKER, "manifest.csv")]
    assert marker["count"] == len(rows) == len(images), (marker["count"], len(rows), len(images))
    for r in rows:
        assert hashlib.sha256((out / r["path"]).read_bytes()).hexdigest() == r["sha256"], r
    return len(rows)


def test_kill_imagefolder_export_repeatedly(tmp_path):
    db_path = tmp_path / "e.db"
    db = open_db(db_path)
    _seed_labelled(db, tmp_path / "src" / "a", 1200)
    out = tmp_path / "ds"
    res = cli(db_path, "export", str(out), "--format", "imagefolder")
    assert res.returncode == 0, res.stderr
    assert export_state(out) == 1200  # the previous export
    _seed_labelled(db, tmp_path / "src" / "b", 600, start=1200)  # more labels: the new one has 1800
    before = human_labels(db)
    labels_before = db.execute("SELECT * FROM current_labels ORDER BY image_id").fetchall()

    def stale() -> list[Path]:
        return [p for p in tmp_path.iterdir() if p.name.startswith(("ds.partial-", "ds.old-"))]

    rng = random.Random(7)
    targets = sorted(rng.randint(100, 1700) for _ in range(3))
    print(f"\nexport kill targets (files copied): {targets}")
    for target in targets:
        seen = {p.name for p in stale()}  # leftovers of earlier kills: not this run's progress

        def mine(seen: set[str] = seen) -> int:
            return sum(sum(len(n) for _, _, n in os.walk(p)) for p in tmp_path.glob("ds.partial-*")
                       if p.name not in seen)

        got, alive = kill_when(["export", str(out), "--format", "imagefolder", "--db", str(db_path)],
                               mine, target)
        state = export_state(out)
        assert alive and state == 1200, (target, got, state)  # killed mid-way: the old one, whole
        KILLS["export"] += 1
        assert integrity_ok(db)
        print(f"  killed at {got} of 1800 files copied; {len(stale())} leftover partial folder(s)")
    assert len(stale()) == 3  # each kill -9 left its partial folder (young ones are spared) …
    for p in stale():  # … which are older than a minute by the next run
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    res = cli(db_path, "export", str(out), "--format", "imagefolder")
    assert res.returncode == 0, res.stderr
    assert export_state(out) == 1800  # the new one, whole
    assert stale() == []  # the next export removed the leftovers
    assert human_labels(db) == before
    assert db.execute("SELECT * FROM current_labels ORDER BY image_id").fetchall() == labels_before


def test_export_spares_a_partial_that_a_live_export_holds(tmp_path):
    """The leftover clean-up never removes the folder of an export still running."""
    from core.datasets.exports import _remove_stale
    from core.files import lock as _lock
    from core.files import unlock as _unlock

    out = tmp_path / "ds"
    live = tmp_path / "ds.partial-abcd1234"
    dead = tmp_path / "ds.partial-efgh5678"
    fresh = tmp_path / "ds.partial-ijkl9012"
    unrelated = tmp_path / "ds.partial-notours"  # not a name an export makes
    for p in (live, dead, fresh, unrelated):
        (p / "fibres").mkdir(parents=True)
    for p in (live, dead, unrelated):
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    fd = _lock(live)
    try:
        removed = _remove_stale(out)
    finally:
        _unlock(fd)
    assert removed == [dead]
    assert live.exists() and fresh.exists() and unrelated.exists() and not dead.exists()


# ---------------------------------------------------------------- concurrency


def test_cli_ingest_while_four_reviewers_label(tmp_path, tiny_model):
    """WAL + busy timeout: a CLI ingest writes batch after batch while four reviewers, each on
    their own connection, take images and decide. No reviewer ever sees an error."""
    db_path = tmp_path / "c.db"
    assert cli(db_path, "init", "--model", str(tiny_model("m1"))).returncode == 0
    write_images(tmp_path / "first", 120, size=48, seed=1)
    write_images(tmp_path / "second", 300, size=48, seed=2)
    assert cli(db_path, "ingest", str(tmp_path / "first")).returncode == 0
    proc: subprocess.Popen | None = None  # the second ingest starts once every reviewer is at work
    # each reviewer holds its first claim before anyone decides: a thread that lost the race for
    # the write lock on 2 busy cores would otherwise find the first 120 images all taken
    ready = threading.Event()
    all_claimed = threading.Barrier(4, action=ready.set)
    errors: list[BaseException] = []
    decided: dict[str, list[tuple[int, str]]] = {}
    undone: dict[str, int] = {}

    def review(name: str, seed: int) -> None:
        rng = random.Random(seed)
        db = open_db(db_path)
        mine = decided.setdefault(name, [])
        undone[name] = 0
        claimed = False
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                items = next_images(db, "all", name, n=2, claim_seconds=60)
                if not items:
                    if proc is not None and proc.poll() is not None:
                        return
                    time.sleep(0.05)
                    continue
                if not claimed:
                    all_claimed.wait(timeout=60)
                    claimed = True
                for it in items:
                    action = rng.choice(["accept", "accept", "relabel", "several"])
                    label = rng.choice(["fibres", "particles", "powder"]) if action == "relabel" else None
                    decide(db, it["image_id"], action, reviewer=name, label=label)
                    mine.append((it["image_id"], action))
                    if rng.random() < 0.05:  # the undone image goes back to the queue
                        assert undo_last(db, name)["image_id"] == it["image_id"]
                        undone[name] += 1
                        mine.pop()
        except BaseException as e:  # noqa: BLE001 - every error is a failure of this test
            errors.append(e)
        finally:
            db.conn.close()

    threads = [threading.Thread(target=review, args=(f"rev{i}", i)) for i in range(4)]
    for t in threads:
        t.start()
    assert ready.wait(60), "every reviewer claims images"
    proc = subprocess.Popen([*CLI, "ingest", str(tmp_path / "second"), "--db", str(db_path)],
                            env=ENV, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _, err = proc.communicate(timeout=120)
    for t in threads:
        t.join(timeout=90)
    assert not errors, errors
    assert proc.returncode == 0, err
    assert "locked" not in err
    db = open_db(db_path)
    assert integrity_ok(db)
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 420
    all_ids = [i for v in decided.values() for i, _ in v]
    assert len(all_ids) == len(set(all_ids)) == 420  # every image decided once (undone ones again)
    assert all(decided.values()) and sum(undone.values()) > 0
    for name, mine in decided.items():  # every decision stored, in the history and as label
        n_events = db.execute("SELECT COUNT(*) FROM label_events WHERE reviewer = ? AND action != 'undo'",
                              [name]).fetchone()[0]
        assert n_events == len(mine) + undone[name], name
        current = db.execute("SELECT COUNT(*) FROM current_labels WHERE reviewer = ? AND source = 'human'",
                             [name]).fetchone()[0]
        assert current == len(mine), name
    # nothing left behind: every image has a prediction, labelled ones are out of the queues
    assert db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 420
    assert db.execute("SELECT COUNT(*) FROM predictions p JOIN current_labels c USING (image_id) "
                      "WHERE c.source = 'human' AND p.done = 0").fetchone()[0] == 0


def test_backup_while_writers_write_then_restore(tmp_path):
    """core.store.backup (and `semtriage backup`) while two threads write: every copy passes
    integrity_check; restoring one (documented procedure: stop, remove -wal/-shm, copy over)
    gives back exactly the data of the copy."""
    path = tmp_path / "live.db"
    db = open_db(path)
    set_setting(db, "facility", "SEM lab 2")
    with write_tx(db):
        for i in range(400):
            db.execute("INSERT INTO images(sha256, path, name, size_bytes, width, height, bit_depth, "
                       "raw_dtype, added_at) VALUES (?, ?, ?, 1, 8, 8, 8, 'uint8', ?)",
                       [f"{i:064x}", f"/a/{i}.tif", f"{i}.tif", now_iso()])
    stop = threading.Event()
    errors: list[BaseException] = []
    writes = {"w0": 0, "w1": 0}

    def writer(name: str, offset: int) -> None:
        w = open_db(path)
        try:
            i = offset
            while not stop.is_set() and i < 400:
                decide(w, i + 1, "relabel", reviewer=name, label="particles")
                set_setting(w, f"last_{name}", str(i))
                writes[name] += 1
                i += 2
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            w.conn.close()

    threads = [threading.Thread(target=writer, args=(f"w{k}", k)) for k in range(2)]
    for t in threads:
        t.start()
    copies = []
    for k in range(3):
        time.sleep(0.15)
        copies.append(backup(db, tmp_path / "bk" / f"copy{k}.db"))
    res = cli(path, "backup", str(tmp_path / "bk" / "cli.db"))
    assert res.returncode == 0 and "integrity ok" in res.stdout, res.stdout + res.stderr
    copies.append(tmp_path / "bk" / "cli.db")
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sum(writes.values()) > 0
    counts = []
    for c in copies:
        con = sqlite3.connect(str(c))
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", c
        n_events, n_current = con.execute(
            "SELECT (SELECT COUNT(*) FROM label_events), (SELECT COUNT(*) FROM current_labels)").fetchone()
        assert n_events == n_current  # one decision per image: each copy is one consistent state
        counts.append(n_events)
        con.close()
    assert counts == sorted(counts)  # later copies hold at least as much
    # the app then dies (kill -9) right after a write: its -wal file stays behind
    db.conn.close()
    crash = ("import sys, os; from core.store import open_db, set_setting; "
             "db = open_db(sys.argv[1]); set_setting(db, 'after_backup', 'yes'); os._exit(0)")
    assert subprocess.run([sys.executable, "-c", crash, str(path)], cwd=PROJECT, check=False).returncode == 0
    wal = Path(str(path) + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    # restore the second copy as docs/DEPLOY.md says: (app stopped) remove -wal/-shm, copy, start
    chosen = copies[1]
    expected = sqlite3.connect(str(chosen)).execute(
        "SELECT image_id, label, reviewer FROM current_labels ORDER BY image_id").fetchall()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    shutil.copyfile(chosen, path)
    restored = open_db(path)
    assert integrity_ok(restored)
    assert restored.execute("SELECT image_id, label, reviewer FROM current_labels "
                            "ORDER BY image_id").fetchall() == expected
    assert restored.execute("SELECT value FROM settings WHERE key = 'facility'").fetchone()[0] == "SEM lab 2"
    assert restored.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 400
    assert restored.execute("SELECT 1 FROM settings WHERE key = 'after_backup'").fetchone() is None


@pytest.fixture(scope="module", autouse=True)
def _summary():
    yield
    print(f"\nkills survived: predict {KILLS['predict']}, export {KILLS['export']}")


# ---------------------------------------------------------------- training


def test_kill_training_from_db_repeatedly_then_rerun(tmp_path):
    """kill -9 during `semtriage train --from-db` (reading images, training, exporting,
    registering): the database stays sound with its labels and no half-registered candidate;
    no model file is left under the final name; a re-run registers exactly one candidate."""
    from core.models import list_models
    from tests.helpers.labelled import build_labelled_db

    db_path = build_labelled_db(tmp_path)
    out_dir = tmp_path / "models" / "retrained"
    db = open_db(db_path)
    before = human_labels(db)
    models_before = [m["id"] for m in list_models(db)]
    db.conn.close()
    # the killed runs train far longer than any kill delay (60 epochs took < 9 s on a fast
    # machine, so a late kill found the run finished); the re-run to the end trains 60
    args = ["train", "--from-db", "--db", str(db_path), "--family", "cnn", "--epochs", "2000",
            "--holdout", "0.3", "--version", "killed"]
    rng = random.Random(20261121)
    landed = 0
    for attempt in range(3):
        delay = rng.uniform(3.0, 9.0)  # python + torch start in ~3 s; training runs for longer
        print(f"kill {attempt}: after {delay:.1f} s")
        p = subprocess.Popen([*CLI, *args], env=ENV, cwd=PROJECT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        landed += p.poll() is None
        p.send_signal(signal.SIGKILL)
        p.wait()
        db = open_db(db_path)
        assert integrity_ok(db)
        assert [m["id"] for m in list_models(db)] == models_before, "a killed run registered a model"
        assert db.execute("SELECT COUNT(*) FROM model_images").fetchone()[0] == 0
        assert human_labels(db) == before
        db.conn.close()
        assert not (out_dir / "killed.onnx").exists(), "model file left under its final name"
    assert landed >= 1, "no kill landed while training ran"
    rerun = [a if a != "2000" else "60" for a in args[4:]]
    r = cli(db_path, "train", "--from-db", *rerun, timeout=300)  # the same run, to the end
    assert r.returncode == 0, r.stderr
    db = open_db(db_path)
    assert integrity_ok(db)
    ms = list_models(db)
    assert [m["version"] for m in ms if m["id"] not in models_before] == ["killed"]
    assert (out_dir / "killed.onnx").is_file()
    assert human_labels(db) == before
