"""The writer gate of core.store.write_tx: a person's write that is waiting goes before the
next batch of a bulk writer (re-routing, merges, ingest), and a bulk writer is never starved
by it. Real SQLite files, real threads, a real flock."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time

import pytest

from core.store import db as store_db
from core.store import open_db, write_tx


def _table(path):
    db = open_db(path)
    with write_tx(db):
        db.execute("CREATE TABLE log (who TEXT)")
    return db


def _held_shared(path) -> bool:
    """Whether someone holds the gate shared (a person's write asking or writing)."""
    fd = os.open(f"{path}-writers", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_a_waiting_person_goes_before_the_next_bulk_batch(tmp_path):
    path = tmp_path / "t.db"
    bulk = _table(path)
    person = open_db(path)
    with write_tx(bulk, bulk=True):
        bulk.execute("INSERT INTO log VALUES ('bulk 1')")
        t = threading.Thread(target=lambda: _person_writes(person))
        t.start()
        deadline = time.monotonic() + 10
        while not _held_shared(path):  # the person is now waiting for the lock
            assert time.monotonic() < deadline, "the person's write never asked"
            time.sleep(0.005)
    # batch 1 committed; the bulk writer asks again at once, as a re-route does
    with write_tx(bulk, bulk=True):
        bulk.execute("INSERT INTO log VALUES ('bulk 2')")
    t.join()
    order = [r[0] for r in bulk.execute("SELECT who FROM log ORDER BY rowid")]
    assert order == ["bulk 1", "person", "bulk 2"]


def _person_writes(db) -> None:
    with write_tx(db):
        db.execute("INSERT INTO log VALUES ('person')")


def test_a_bulk_writer_is_not_starved_by_people(tmp_path, monkeypatch):
    monkeypatch.setattr(store_db, "BULK_YIELD_S", 0.3)
    path = tmp_path / "t.db"
    db = _table(path)
    fd = os.open(f"{path}-writers", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_SH)  # people writing without end
    try:
        with write_tx(db, bulk=True):
            db.execute("INSERT INTO log VALUES ('bulk')")
    finally:
        os.close(fd)
    assert db.execute("SELECT who FROM log").fetchall() == [("bulk",)]



def test_a_pacer_fits_the_batch_to_the_time_it_holds_the_lock():
    pacer = store_db.Pacer(1000, least=16, hold_s=0.03)
    pacer.took(0.06)  # twice too long: half the rows next time
    assert pacer.size == 500
    pacer.took(3.0)  # one very slow commit: halved, not cut a hundredfold
    assert pacer.size == 250
    pacer.took(0.0001)  # very fast: doubled, not grown a hundredfold
    assert pacer.size == 500
    for _ in range(40):
        pacer.took(0.0)
    assert pacer.size == pacer.most
    for _ in range(40):
        pacer.took(10.0)
    assert pacer.size == pacer.least


def test_pacer_ranges_cover_every_id_once_while_the_size_changes():
    pacer = store_db.Pacer(10, least=1, hold_s=0.03)
    seen = []
    for i, (lo, hi) in enumerate(pacer.ranges(0, 1000)):
        seen.extend(range(lo + 1, hi + 1))
        pacer.took(0.06 if i % 3 else 0.01)
    assert seen == list(range(1, 1001))
    assert list(pacer.ranges(None, None)) == []  # MIN/MAX of an empty table


def test_write_tx_tells_the_pacer_how_long_each_commit_held_the_lock(tmp_path):
    db = _table(tmp_path / "t.db")
    pacer = store_db.Pacer(100)
    batches = 0
    for lo, hi in pacer.ranges(0, 300):
        with write_tx(db, pacer=pacer):
            db.conn.executemany("INSERT INTO log VALUES (?)", [(str(i),) for i in range(lo, hi)])
        batches += 1
    with pytest.raises(sqlite3.OperationalError, match="no such table"), write_tx(db, pacer=pacer):
        db.execute("INSERT INTO nowhere VALUES (1)")
    assert len(pacer.held) == batches  # one per commit; a rolled-back one does not count
    assert all(h > 0 for h in pacer.held)
    assert db.execute("SELECT COUNT(*) FROM log").fetchone()[0] == 300


def test_a_bulk_batch_is_copied_into_the_database_by_its_own_writer(tmp_path):
    path = tmp_path / "t.db"
    bulk = _table(path)
    person = open_db(path)
    before = path.stat().st_size
    with write_tx(bulk, bulk=True):  # ~2,000 WAL pages: over SQLite's default auto-checkpoint
        bulk.conn.executemany("INSERT INTO log VALUES (?)", [(f"{i}" + "x" * 3000,) for i in range(2500)])
    # checkpointed at once (the rows are in the database file, not only in the WAL), so the
    # next person's commit has nothing to copy; and a person's commit would not do it anyway
    assert path.stat().st_size - before > 2500 * 3000
    assert person.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == store_db.AUTOCHECKPOINT_PAGES
    assert store_db.AUTOCHECKPOINT_PAGES > 2000
