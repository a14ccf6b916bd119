"""The ``settings`` table: small key/value choices stored in the database (e.g. a queue's
default review order), shared by every user of that database; and one person's own choices
kept there under their name (the app's colour theme)."""

from __future__ import annotations

from sqlite_utils import Database

from core.errors import InvalidValue
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


THEMES = ("light", "dark", "system")
"""The app's colour themes a person may choose: light, dark, or as the browser / system says."""
_THEME_KEY = "ui.theme.by."


def user_theme(db: Database, user: str) -> str | None:
    """The theme ``user`` chose last (one of THEMES), or None when they never chose one (or
    what is stored is no longer a theme)."""
    if not user:
        return None
    value = get_setting(db, _THEME_KEY + user)
    return value if value in THEMES else None


def set_user_theme(db: Database, user: str, theme: str) -> None:
    """Remember ``user``'s theme (one of THEMES) for their next sessions."""
    if theme not in THEMES:
        raise InvalidValue(f"Unknown theme {theme!r}; expected one of {', '.join(THEMES)}")
    if not user:
        raise InvalidValue("A theme is remembered for a named user; got no name")
    set_setting(db, _THEME_KEY + user, theme)
