"""Reading labels for an export in one snapshot, page by page, and writing manifests."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from sqlite_utils import Database

CHUNK_ROWS = 1000


@contextlib.contextmanager
def _snapshot(db: Database) -> Iterator[None]:
    """A read transaction: every query inside sees the same state of the database."""
    conn = db.conn
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


# Keyset paging over current_labels must walk it by image id (its rowid) and stop at the page
# size; left to itself SQLite selects every matching label through the source index and sorts
# them, for each page: quadratic (93 s for 100k labels, bench/scale.py). NOT INDEXED still
# allows the rowid range.
_BY_ID = "NOT INDEXED "


def _paged(
    db: Database, sql: str, params: list[Any], key: str = "c.image_id"
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` (which must contain ``{after}``) in chunks, keyset-paged on ``key``
    (the first column), so a million rows never sit in memory at once."""
    last = -1
    while True:
        rows = db.execute(
            sql.format(after=f"{key} > ?") + f" ORDER BY {key} LIMIT {CHUNK_ROWS}", [*params, last]
        ).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


class _Manifest:
    """A streaming csv or jsonl writer for manifest rows."""

    def __init__(self, path: Path, fmt: str, columns: Sequence[str]):
        self.path = path
        self.fmt = fmt
        self.columns = list(columns)
        self.fh: TextIO = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        if fmt == "csv":
            self.writer = csv.writer(self.fh)
            self.writer.writerow(self.columns)

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "csv":  # a list (the classes of a 'several' image) as "a;b"
            self.writer.writerow([
                "" if (v := row.get(c)) is None else ";".join(v) if isinstance(v, list) else v
                for c in self.columns
            ])
        else:
            self.fh.write(
                json.dumps({c: row.get(c) for c in self.columns}, ensure_ascii=False) + "\n"
            )

    def close(self) -> None:
        self.fh.close()
