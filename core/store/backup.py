"""Consistent online copies of the database and its integrity check."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database

from core.errors import StoreError
from core.store.db import quick_check


def integrity_ok(db: Database) -> bool:
    """Whether SQLite's full integrity check passes (False, not an exception, on a file too
    damaged to check)."""
    return not quick_check(db, full=True)


def backup(db: Database, dest: str | Path) -> Path:
    """A consistent online copy through SQLite's backup API (safe while others write). A
    source SQLite cannot read whole raises :class:`StoreError` naming the file; the
    partial copy is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    tmp.unlink(missing_ok=True)
    target = sqlite3.connect(str(tmp))
    try:
        db.conn.backup(target)
    except sqlite3.DatabaseError as e:
        target.close()
        tmp.unlink(missing_ok=True)
        raise StoreError(f"Cannot back up the database: SQLite could not read it ({e}). "
                         "Hint: restore the last good backup (docs/DEPLOY.md).") from None
    finally:
        target.close()
    tmp.replace(dest)
    return dest
