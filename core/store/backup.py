"""Consistent online copies of the database and its integrity check."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlite_utils import Database


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
