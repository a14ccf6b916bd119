"""The SQLite connection: WAL, foreign keys, a busy timeout, migrations applied on open; and
the one write transaction every writer goes through."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

from core.errors import StoreError
from core.store import schema as _schema  # noqa: F401 - registers the core set first
from core.store.migrations import migrate as apply_migrations

BUSY_TIMEOUT_S = 30.0


def now_iso() -> str:
    """UTC timestamp with milliseconds, sortable as text."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def open_db(path: str | Path, *, migrate: bool = True) -> Database:
    """Open (creating if needed) the SQLite file at ``path``, with WAL, foreign keys and a
    busy timeout, and apply pending migrations.

    One connection per thread of work: never share a returned object across concurrent
    threads (it is safe to hand it from one thread to the next, as Streamlit reruns do).
    """
    p = Path(path)
    if str(path) != ":memory:":
        if p.is_dir():
            raise StoreError(f"Database path {str(p)!r} is a folder; give a file such as {str(p / 'semtriage.db')!r}")
        if p.is_file() and p.stat().st_size == 0 and not Path(f"{p}-wal").is_file():
            # SQLite would silently make it a new, empty database: every label gone unnoticed
            raise StoreError(
                f"Database {str(p)!r} is an empty file (0 bytes), not a SEM Triage database. "
                "Hint: restore it from a backup (docs/DEPLOY.md), or delete it to start a new one."
            )
        p.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(str(p), timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    except sqlite3.DatabaseError as e:
        raise StoreError(f"Cannot open database {str(p)!r}: {e}") from None
    db = Database(conn)
    if str(path) != ":memory:":
        _check_once(db, p)
    if migrate:
        with _retry_locked("applying migrations"):
            apply_migrations(db)
    return db


_checked: set[str] = set()


def _check_once(db: Database, p: Path) -> None:
    """``PRAGMA quick_check`` the first time this process opens ``p``: a file corrupted in the
    middle is refused at start-up instead of taking more labels."""
    key = str(p.resolve())
    if key in _checked:
        return
    problems = quick_check(db)
    if problems:
        db.conn.close()
        raise StoreError(
            f"Database {str(p)!r} is damaged (SQLite quick_check: {'; '.join(problems[:3])}). "
            "Nothing was written. Hint: stop the app and restore the last good backup "
            "(docs/DEPLOY.md, 'Backups and restore')."
        )
    _checked.add(key)


def quick_check(db: Database, *, full: bool = False) -> list[str]:
    """What SQLite's ``quick_check`` (``integrity_check`` with ``full``) finds wrong; [] when
    the file is sound. A file too damaged to check is one problem, not an exception."""
    try:
        rows = [r[0] for r in db.execute(f"PRAGMA {'integrity_check' if full else 'quick_check'}")]
    except sqlite3.DatabaseError as e:
        return [str(e)]
    return [] if rows == ["ok"] else [str(r) for r in rows]


@contextlib.contextmanager
def _retry_locked(what: str, attempts: int = 5) -> Iterator[None]:
    """Turn a ``database is locked`` that outlived the busy timeout into a clear error."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise StoreError(
                f"The database stayed locked for {BUSY_TIMEOUT_S:.0f} s while {what}: another "
                "process holds a long write. Try again; if it persists, check for a stuck process."
            ) from None
        raise


@contextlib.contextmanager
def write_tx(db: Database, what: str = "writing") -> Iterator[Database]:
    """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken up front, so two
    writers queue on the busy timeout instead of dead-locking on an upgrade).

    Nested use joins the outer transaction.
    """
    conn = db.conn
    if conn.in_transaction:
        yield db
        return
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as e:
            if ("locked" in str(e) or "busy" in str(e)) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            with _retry_locked(what):
                raise
    try:
        yield db
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        with _retry_locked(what):
            conn.execute("COMMIT")
