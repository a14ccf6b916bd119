"""The SQLite store: connection set-up, schema migrations and the write transaction.

Every table is created by a migration applied at start-up (sqlite-utils ``Migrations``).
All SQL elsewhere in core is parameterised; no page or CLI command writes SQL.

Tables
------
images          one row per distinct image (by SHA-256); thumbnail, SEM metadata, pixel size
files           every path ever seen, pointing at its image (duplicates share an image)
ingest_errors   the latest failure per path, with the reason in words
models          registered ONNX models (version, class names, card); one is active
predictions     per (image, model): full probability vector, top-2, margin, entropy,
                queue and reason; ``done`` = 1 once a human/import label exists
label_events    append-only history of every decision (accept, relabel, several, ...)
current_labels  the label derived from the history, maintained in the same transaction
claims          who is reviewing which image until when
skips           images a reviewer skipped (they come back when the queue is empty)
thresholds      routing thresholds, global (class '*') and per class
settings        key/value
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlite_utils import Database, Migrations

from core.errors import StoreError

SCHEMA_VERSION = 2
BUSY_TIMEOUT_S = 30.0

migrations = Migrations("semtriage")


@migrations()
def m001_initial(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE images (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            name TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            bit_depth INTEGER NOT NULL,
            raw_dtype TEXT NOT NULL,
            pages INTEGER NOT NULL DEFAULT 1,
            instrument TEXT,
            pixel_size_m REAL,
            pixel_size_source TEXT,
            databar_px INTEGER NOT NULL DEFAULT 0,
            databar_source TEXT NOT NULL DEFAULT 'none',
            metadata TEXT NOT NULL DEFAULT '{}',
            warnings TEXT NOT NULL DEFAULT '[]',
            thumb BLOB,
            group_key TEXT,
            added_at TEXT NOT NULL
        );
        CREATE INDEX idx_images_path ON images(path);
        CREATE TABLE files (
            path TEXT PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            size_bytes INTEGER NOT NULL,
            mtime REAL NOT NULL,
            seen_at TEXT NOT NULL
        );
        CREATE INDEX idx_files_image ON files(image_id);
        CREATE TABLE ingest_errors (
            path TEXT PRIMARY KEY,
            reason TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            version TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            class_names TEXT NOT NULL,
            info TEXT NOT NULL DEFAULT '{}',
            card TEXT,
            added_at TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE predictions (
            image_id INTEGER NOT NULL REFERENCES images(id),
            model_id INTEGER NOT NULL REFERENCES models(id),
            pred TEXT NOT NULL,
            p1 REAL NOT NULL,
            second TEXT,
            p2 REAL NOT NULL,
            margin REAL NOT NULL,
            entropy REAL NOT NULL,
            probs TEXT NOT NULL,
            queue TEXT NOT NULL CHECK (queue IN ('auto', 'uncertain', 'mixed')),
            reason TEXT NOT NULL,
            done INTEGER NOT NULL DEFAULT 0,
            rnd INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (image_id, model_id)
        );
        CREATE INDEX idx_pred_queue ON predictions(model_id, queue, done, margin);
        CREATE INDEX idx_pred_all ON predictions(model_id, done, margin);
        CREATE INDEX idx_pred_rnd ON predictions(model_id, queue, done, rnd);
        CREATE TABLE label_events (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            label TEXT,
            action TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('human', 'auto', 'import')),
            reviewer TEXT NOT NULL,
            model_id INTEGER REFERENCES models(id),
            model_version TEXT,
            prob REAL,
            undoes INTEGER REFERENCES label_events(id),
            note TEXT,
            created_at TEXT NOT NULL
        );
        CREATE INDEX idx_events_image ON label_events(image_id, id);
        CREATE INDEX idx_events_reviewer ON label_events(reviewer, id);
        CREATE INDEX idx_events_undoes ON label_events(undoes);
        CREATE TABLE current_labels (
            image_id INTEGER PRIMARY KEY REFERENCES images(id),
            label TEXT NOT NULL,
            action TEXT NOT NULL,
            source TEXT NOT NULL,
            reviewer TEXT NOT NULL,
            event_id INTEGER NOT NULL REFERENCES label_events(id),
            model_version TEXT,
            prob REAL,
            updated_at TEXT NOT NULL
        );
        CREATE INDEX idx_current_label ON current_labels(label, source);
        CREATE INDEX idx_current_source ON current_labels(source, updated_at);
        CREATE TABLE claims (
            image_id INTEGER PRIMARY KEY REFERENCES images(id),
            reviewer TEXT NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE TABLE skips (
            image_id INTEGER NOT NULL REFERENCES images(id),
            reviewer TEXT NOT NULL,
            at TEXT NOT NULL,
            PRIMARY KEY (image_id, reviewer)
        );
        CREATE TABLE thresholds (
            class TEXT PRIMARY KEY,
            accept REAL NOT NULL,
            mixed_margin REAL NOT NULL,
            mixed_mass REAL NOT NULL,
            cooccur REAL NOT NULL
        );
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """
    )


@migrations()
def m002_scale_indexes(db: Database) -> None:
    """Indexes found missing by ``bench/scale.py`` at a million images (EXPLAIN QUERY PLAN
    showed full scans plus sorts of the whole queue / table):

    * review orders ``confidence`` and ``entropy`` per queue (``margin`` and ``random`` had
      theirs); the confidence one also covers the confidence histogram;
    * per-class work: counts per predicted class, the grid's lowest-confidence-first page of one
      class, and the routing preview / auto-error estimate (covering: pred, p1, p2, second);
    * the reference set, newest label first;
    * human decisions in a time window (labels per hour), which must not scan years of events.

    On an existing database this builds the indexes once (tens of seconds at a million images).
    """
    # one statement at a time: executescript() would commit the migration's transaction
    for sql in (
        "CREATE INDEX idx_pred_conf ON predictions(model_id, queue, done, p1)",
        "CREATE INDEX idx_pred_entropy ON predictions(model_id, queue, done, entropy)",
        "CREATE INDEX idx_pred_class ON predictions(model_id, pred, done, p1, queue, p2, second)",
        "CREATE INDEX idx_current_updated ON current_labels(updated_at)",
        "CREATE INDEX idx_events_created ON label_events(source, created_at, action, reviewer)",
    ):
        db.execute(sql)


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
    if migrate:
        with _retry_locked("applying migrations"):
            migrations.apply(db)
    return db


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


def get_setting(db: Database, key: str, default: str | None = None) -> str | None:
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return row[0] if row else default


def set_setting(db: Database, key: str, value: str) -> None:
    with write_tx(db, f"saving setting {key!r}"):
        db.execute(
            "INSERT INTO settings(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )


def integrity_ok(db: Database) -> bool:
    return db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def backup(db: Database, dest: str | Path) -> Path:
    """A consistent online copy through SQLite's backup API (safe while others write)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    tmp.unlink(missing_ok=True)
    target = sqlite3.connect(str(tmp))
    try:
        db.conn.backup(target)
    finally:
        target.close()
    tmp.replace(dest)
    return dest
