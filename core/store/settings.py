"""The ``settings`` table: small key/value choices stored in the database (e.g. a queue's
default review order), shared by every user of that database."""

from __future__ import annotations

from sqlite_utils import Database

from core.store.db import write_tx


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
