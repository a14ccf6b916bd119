"""The SQLite connection: WAL, foreign keys, a busy timeout, migrations applied on open; and
the one write transaction every writer goes through."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import weakref
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database

try:
    import fcntl
except ImportError:  # Windows: no writer gate; SQLite's own queueing only
    fcntl = None  # type: ignore[assignment]

from core.errors import StoreError
from core.store import schema as _schema  # noqa: F401 - registers the core set first
from core.store.migrations import migrate as apply_migrations

BUSY_TIMEOUT_S = 30.0
# WAL pages after which a commit checkpoints by itself. Above one bulk batch (~30 ms of
# writing: 1,000–2,000 pages on a million-image database): a bulk writer checkpoints after
# each of its batches, outside the write lock, so a person whose commit follows a batch does
# not pay for copying that batch into the database (SQLite's default, 1,000 pages, made a
# person's commit — or the batch's own, inside the lock — do it). Not far above: when only
# people write, one commit in a few hundred copies the WAL, and its cost grows with this
# (6,000 label writes on 1 M images: p999 19 ms at 1,000 pages, 48 ms at 4,000, 146 ms at 20,000)
AUTOCHECKPOINT_PAGES = 4_000


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
        conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
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


# Two kinds of writers share the one SQLite write lock. A person's write (a label, an undo, a
# claim: the default) is short and someone waits for it; a bulk writer (re-routing, merging
# an archive run, ingest and predict batches, imports: ``bulk=True``) writes many short
# batches in a row. SQLite serves whoever asks first after a commit, and its busy handler
# sleeps up to 100 ms between tries, so a bulk writer that begins its next batch at once
# starves the reviewers (p99 0.7–10 s measured). Hence a gate, a lock file beside the
# database (``<db>-writers``, flock): a person's write holds it shared from before it asks for
# the lock until it commits, and asks every few milliseconds; a bulk writer takes it exclusive
# for an instant before each batch — so it waits while people are writing or queued (at most
# BULK_YIELD_S, so it is never starved either), then begins. A person waits for at most the
# bulk batch in progress, which a :class:`Pacer` keeps to about BULK_HOLD_S.
BULK_YIELD_S = 1.0
BULK_HOLD_S = 0.03
_GATES: weakref.WeakKeyDictionary[Database, int | None] = weakref.WeakKeyDictionary()


def temp_ids(db: Database, table: str, ids: Iterable[int]) -> str:
    """Load ``ids`` into the connection's temporary table ``table`` (made when needed) and
    return ``(SELECT id FROM table)`` to filter a query by them — any number of ids, where
    ``IN (?, …)`` stops at SQLite's parameter limit. Leaves no transaction open: Python's
    sqlite3 begins one before any INSERT / DELETE, even on a temporary table, and a
    transaction left open would swallow the next ``write_tx`` (nested: never committed)."""
    if not table.isidentifier():
        raise ValueError(f"temporary table name {table!r}")
    conn = db.conn
    outer = conn.in_transaction
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY)")
    conn.execute(f"DELETE FROM {table}")
    conn.executemany(f"INSERT OR IGNORE INTO {table} VALUES (?)", ((int(i),) for i in ids))
    if not outer and conn.in_transaction:
        conn.commit()
    return f"(SELECT id FROM {table})"


class Pacer:
    """The batch size of a bulk writer, fitted after every transaction so that each holds the
    write lock for about ``hold_s``: the same number of rows costs a few ms on a small
    database and ten times more on a million-row one with many indexes, so no fixed size
    is right everywhere. Give it to :func:`write_tx` (``pacer=``), which times each
    transaction from ``BEGIN`` to the end of ``COMMIT``; read :attr:`size` (or walk
    :meth:`ranges`) for the next batch."""

    def __init__(self, size: int, *, least: int = 256, most: int = 100_000, hold_s: float = BULK_HOLD_S):
        self.least, self.most, self.hold_s = least, most, hold_s
        self.size = max(least, min(most, int(size)))
        self.held: list[float] = []  # seconds each transaction held the lock

    def took(self, seconds: float) -> None:
        """One transaction of :attr:`size` held the lock ``seconds``: resize (at most ×2 or ÷2
        a step, so one slow commit does not swing it)."""
        self.held.append(seconds)
        ratio = self.hold_s / max(seconds, 1e-4)
        self.size = max(self.least, min(self.most, int(self.size * min(2.0, max(0.5, ratio)))))

    def ranges(self, lo: int | None, top: int | None) -> Iterator[tuple[int, int]]:
        """Id ranges ``(lo, hi]`` up to ``top``, each as wide as :attr:`size` is when it is
        asked for (none when ``top`` is None: an empty table's ``MAX(id)``)."""
        if lo is None or top is None:
            return
        while lo < top:
            hi = min(top, lo + self.size)
            yield lo, hi
            lo = hi


def db_file(db: Database) -> str:
    """The file of the main database ('' for an in-memory one)."""
    row = db.execute("PRAGMA database_list").fetchone()
    return row[2] if row and row[2] else ""


def _gate(db: Database) -> int | None:
    """The file descriptor of the database's writer gate (None: in memory, no flock)."""
    if db in _GATES:
        return _GATES[db]
    fd = None
    path = db_file(db)
    if path and fcntl is not None:
        try:
            fd = os.open(f"{path}-writers", os.O_RDWR | os.O_CREAT, 0o666)
            weakref.finalize(db, os.close, fd)
        except OSError:  # a read-only folder: no gate, writes still work
            fd = None
    _GATES[db] = fd
    return fd


def _yield_to_people(fd: int) -> None:
    assert fcntl is not None
    deadline = time.monotonic() + BULK_YIELD_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.002)
            continue
        fcntl.flock(fd, fcntl.LOCK_UN)
        return


def _begin_polling(conn: sqlite3.Connection, what: str) -> None:
    """``BEGIN IMMEDIATE``, asking again every 0.5–4 ms (not SQLite's busy handler, which
    sleeps up to 100 ms and so misses the gaps a bulk writer leaves)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.0005
    conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if ("locked" in str(e) or "busy" in str(e)) and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.004)
                    continue
                with _retry_locked(what):
                    raise
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")


def _begin_waiting(conn: sqlite3.Connection, what: str) -> None:
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as e:
            if ("locked" in str(e) or "busy" in str(e)) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            with _retry_locked(what):
                raise


@contextlib.contextmanager
def write_tx(
    db: Database, what: str = "writing", *, bulk: bool = False, pacer: Pacer | None = None
) -> Iterator[Database]:
    """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken up front, so two
    writers queue instead of dead-locking on an upgrade).

    ``bulk``: one batch of a long run of writes (re-routing, merging, ingesting); it lets the
    people's writes that are waiting go first (see ``_gate`` above). Keep each bulk
    transaction short (well under 0.2 s): a person may wait for the one in progress.
    ``pacer`` (implies ``bulk``): told how long this transaction held the lock, to size the
    next batch. Nested use joins the outer transaction.
    """
    conn = db.conn
    if conn.in_transaction:
        yield db
        return
    bulk = bulk or pacer is not None
    fd = _gate(db)
    shared = False
    if fd is not None and bulk:
        _yield_to_people(fd)
    elif fd is not None:
        assert fcntl is not None
        fcntl.flock(fd, fcntl.LOCK_SH)  # blocks only for a bulk writer's instant check
        shared = True
    try:
        if bulk:
            _begin_waiting(conn, what)
        else:
            _begin_polling(conn, what)
        began = time.perf_counter()
        try:
            yield db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            with _retry_locked(what):
                conn.execute("COMMIT")
            if pacer is not None:
                pacer.took(time.perf_counter() - began)
            if bulk:
                # copy this batch's pages into the database now, outside the write lock (see
                # AUTOCHECKPOINT_PAGES): nobody's commit then pays for it (tens to hundreds of ms)
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        if shared:
            assert fcntl is not None and fd is not None
            fcntl.flock(fd, fcntl.LOCK_UN)
