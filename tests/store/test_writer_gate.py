"""The writer gate of core.store.write_tx: a person's write that is waiting goes before the
next batch of a bulk writer (re-routing, merges, ingest), and a bulk writer is never starved
by it. Real SQLite files, real threads, a real flock."""

from __future__ import annotations

import fcntl
import os
import threading
import time

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

