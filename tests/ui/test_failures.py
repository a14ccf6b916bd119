"""An error no page catches (issue 18, 10): the database file damaged while the app runs. Each
page says what failed and why in one message — no traceback, no server path for a non-admin —
and the traceback goes to the server's log. AppTest here; tests/ui/test_browser_failures.py
shows the same in a real browser, with Streamlit's own error display configured."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import explain, hide_paths
from core.store import open_db
from tests.helpers import app_db_copy, build_app_db, failures

APP = str(Path(__file__).resolve().parents[2] / "app.py")


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    return build_app_db(tmp_path_factory.mktemp("template"))


def damage(path: Path, tables: tuple[str, ...] = ("images", "current_labels")) -> None:
    """Overwrite every page of ``tables`` (and their indexes) with garbage, the way a failing
    disk or a stray write would, after this process has opened (and checked) the file once:
    the schema still reads, the pages' own queries fail."""
    db = open_db(path)  # the app's process has opened it before the damage: checked once
    names = [r[0] for r in db.execute(
        f"SELECT name FROM sqlite_master WHERE tbl_name IN ({','.join('?' * len(tables))})", tables)]
    pages = [r[0] for r in db.execute(
        f"SELECT pageno FROM dbstat WHERE name IN ({','.join('?' * len(names))})", names)]
    size = db.execute("PRAGMA page_size").fetchone()[0]
    busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert not busy, "a reader held the log: the damage would not be seen"
    db.conn.close()
    assert pages
    with path.open("r+b") as f:
        for p in pages:
            f.seek((p - 1) * size)
            f.write(b"\xa5" * size)


@pytest.fixture
def damaged_db(template_db, tmp_path, monkeypatch) -> Path:
    path = app_db_copy(template_db, tmp_path, monkeypatch)
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", "boss")  # alice is not an administrator
    damage(path)
    return path


@pytest.mark.parametrize("page, title", [("pages/data/overview.py", "Overview"),
                                         ("pages/data/export.py", "Export")])
def test_a_damaged_database_is_said_in_words_on_the_page(damaged_db, tmp_path, page, title, caplog):
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["reviewer"] = "alice"
    with caplog.at_level(logging.ERROR, logger="semtriage.app"):
        at.run()
        at.switch_page(page).run()
    assert not at.exception, [e.value for e in at.exception]  # no Streamlit exception box
    shown = [e.value for e in failures(at)]
    assert len(shown) == 1, shown
    msg = shown[0].replace("\\", "")  # Markdown escapes (user text stays inert)
    assert msg.startswith(f"The {title} page failed: the database could not be read or written"), msg
    assert "malformed" in msg and "semtriage backup" in msg.replace("\\", ""), msg
    everything = "\n".join(str(e.value) for kind in ("error", "markdown", "caption", "warning", "info")
                           for e in getattr(at, kind))
    everything += "\n".join(str(e.value) for e in at.sidebar.caption)
    assert "Traceback" not in everything and str(tmp_path) not in everything, everything
    assert "site-packages" not in everything and ".py" not in everything.replace("\\", ""), everything
    assert any(r.exc_info and f"The {title} page failed" in r.getMessage() for r in caplog.records), \
        "the traceback goes to the server's log"


def test_an_administrator_sees_the_path(template_db, tmp_path, monkeypatch):
    path = app_db_copy(template_db, tmp_path, monkeypatch)
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", "boss")
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["reviewer"] = "boss"
    at.run()
    path.with_name(path.name + "-wal").unlink(missing_ok=True)
    path.write_bytes(b"")  # a 0-byte database: refused by name (core), path shown to an admin
    fresh = AppTest.from_file(APP, default_timeout=30)
    fresh.query_params["reviewer"] = "boss"
    fresh.run()
    assert not fresh.exception
    assert any(str(path) in e.value.replace("\\", "") for e in failures(fresh)), [e.value for e in fresh.error]


def test_explain_says_what_failed_and_why_without_server_paths():
    e = sqlite3.DatabaseError("database disk image is malformed")
    assert explain(e, "The Overview page").startswith(
        "The Overview page failed: the database could not be read or written (database disk image is malformed)")
    gone = FileNotFoundError(2, "No such file or directory", "/srv/sem/data/uploads/a.tif")
    assert explain(gone, "Ingest", paths=False) == (
        "Ingest failed: a file could not be read or written: No such file or directory (…/a.tif). "
        "The details are in the server's log.")
    assert "/srv/sem" in explain(gone, "Ingest")
    assert explain(KeyError("x"), "Saving") == "Saving failed: an unexpected KeyError: 'x'. The details are in the server's log."
    assert hide_paths("at /srv/a/b.db and C:\\lab\\x.tif, see https://h.org/x/y") == \
        "at …/b.db and …/x.tif, see https://h.org/x/y"
