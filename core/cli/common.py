"""What every `semtriage` command shares: the ``--db`` and ``--json`` options, opening the
database, turning core's named errors into one-line messages (``friendly``), printing results
(``emit``) and progress on stderr (``Bar``)."""


from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from sqlite_utils import Database

from core import similarity
from core.config import Settings
from core.errors import SemTriageError
from core.store import open_db as _open_db


def emit(ctx_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    if ctx_json:
        click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    else:
        click.echo(text() if callable(text) else text)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn core's named errors into a one-line message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SemTriageError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        "db_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: Settings.from_env().db,
        show_default="data/semtriage.db",
        help="SQLite database file (env SEMTRIAGE_DB).",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(fn)


def open_db(db_path: Path) -> Database:
    """The database of a command (created and migrated when needed)."""
    return _open_db(db_path)


class Bar:
    """Progress for core's ``progress(fraction, message)`` callbacks: a bar on a terminal, a
    line every 10 % otherwise (logs, CI); nothing when not ``enabled`` (``--json``)."""

    STEPS = 1000

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.last = 0
        self.next_pct = 10

    def __call__(self, fraction: float, message: str) -> None:
        if not self.enabled:
            return
        done = int(max(0.0, min(1.0, fraction)) * self.STEPS)
        if not self.tty:
            pct = 100 * done // self.STEPS
            if pct >= self.next_pct or done == self.STEPS:
                click.echo(f"{self.label}: {message} ({pct}%)", err=True)
                self.next_pct = (pct // 10 + 1) * 10
            return
        if self.bar is None:
            self.bar = click.progressbar(length=self.STEPS, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.last)
        self.last = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


def embed_new_images(db: Database) -> int | None:
    """Give newly stored images their place in the similarity view (when one is built), as
    after every command that stores images; how many were embedded (None: no view). A failure
    is said on stderr and stops nothing: the images are stored."""
    try:
        emb = similarity.embed_new(db)
    except SemTriageError as e:
        click.echo(f"  similarity view not updated: {e}", err=True)
        return None
    return emb.embedded if emb is not None else None
