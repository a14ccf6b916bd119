"""Issue 18, finding 12: a damaged database is said, never silently used. A 0-byte file is not
made a new empty database; a file corrupted in the middle is refused when a process first opens
it (``PRAGMA quick_check``); ``semtriage backup`` reports a bad source or copy with exit 1
instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import StoreError
from core.store import backup, open_db
from core.store import db as store_db

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=ROOT, check=False,
                          capture_output=True, text=True, timeout=120)


def _corrupt(path: Path) -> None:
    """Overwrite pages in the middle of the file (not the header): what a bad disk does."""
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 6 * page
    for i in range(2 * page, len(data) - page, 3 * page):
        data[i + 100 : i + 1500] = b"\xa5" * 1400
    path.write_bytes(bytes(data))


def _filled(tmp_path: Path) -> Path:
    p = tmp_path / "lab.db"
    db = open_db(p)
    with db.conn:
        db.execute("CREATE TABLE filler(id INTEGER PRIMARY KEY, t TEXT)")
        db.conn.executemany("INSERT INTO filler(t) VALUES (?)", [("x" * 200,) for _ in range(2000)])
        db.execute("CREATE INDEX idx_filler ON filler(t)")
    db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.conn.close()
    return p


def test_an_empty_database_file_is_refused_not_replaced(tmp_path):
    p = tmp_path / "semtriage.db"
    p.write_bytes(b"")
    with pytest.raises(StoreError, match="empty file"):
        open_db(p)
    assert p.stat().st_size == 0, "nothing was created in its place"
    r = _cli("stats", "--db", str(p))
    assert r.returncode == 1 and "empty file" in r.stderr and "Traceback" not in r.stderr


def test_a_database_damaged_in_the_middle_is_refused_at_start_up(tmp_path):
    p = _filled(tmp_path)
    _corrupt(p)
    store_db._checked.discard(str(p.resolve()))
    with pytest.raises(StoreError, match="damaged"):
        open_db(p)
    r = _cli("stats", "--db", str(p))
    assert r.returncode == 1 and "damaged" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_backup_of_a_damaged_database_says_so_and_exits_1(tmp_path):
    p = _filled(tmp_path)
    _corrupt(p)
    r = _cli("backup", "--db", str(p), str(tmp_path / "copy.db"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and ("damaged" in r.stderr or "FAILED" in r.stdout + r.stderr)


def test_backup_of_a_sound_database_passes(tmp_path):
    p = _filled(tmp_path)
    out = backup(open_db(p), tmp_path / "copy.db")
    assert store_db.quick_check(open_db(out, migrate=False), full=True) == []
    r = _cli("backup", "--db", str(p), str(tmp_path / "copy2.db"))
    assert r.returncode == 0 and "integrity ok" in r.stdout, r.stdout + r.stderr
