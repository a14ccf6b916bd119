"""The SQLite store: WAL, foreign keys, migrations recorded, backup consistent."""

import sqlite3

import pytest

from core.errors import StoreError
from core.store import (
    backup,
    core_migrations,
    get_setting,
    integrity_ok,
    open_db,
    set_setting,
    write_tx,
)

# every migration this release ships, in the order they apply (the names sort that way too)
ALL = ["m001_initial", "m002_scale_indexes", "m003_image_hashes", "m004_model_images",
       "m005_label_issues", "m006_counts", "m007_label_classes_context"]


def test_open_creates_schema_with_wal_and_foreign_keys(tmp_path):
    db = open_db(tmp_path / "sub" / "t.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    for t in ("images", "files", "predictions", "label_events", "current_labels", "claims", "models"):
        assert db[t].exists(), t
    assert [m.name for m in core_migrations.applied(db)] == ALL


def test_migrations_apply_once(tmp_path):
    open_db(tmp_path / "t.db")
    db = open_db(tmp_path / "t.db")
    assert len(core_migrations.applied(db)) == len(ALL)
    assert core_migrations.pending(db) == []


def test_upgrade_from_the_first_schema_keeps_data_and_adds_indexes(tmp_path):
    """A database made by the first release (m001 only) is migrated on open, data intact."""
    from sqlite_utils import Database

    old = Database(sqlite3.connect(str(tmp_path / "v1.db")))
    core_migrations.apply(old, stop_before="m002_scale_indexes")
    old.execute("INSERT INTO settings(key, value) VALUES ('k', 'v1 data')")
    old.conn.commit()
    old.conn.close()
    db = open_db(tmp_path / "v1.db")
    assert [m.name for m in core_migrations.applied(db)] == ALL
    assert get_setting(db, "k") == "v1 data"
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"idx_pred_conf", "idx_pred_entropy", "idx_pred_class", "idx_current_updated",
            "idx_events_created"} <= names
    assert integrity_ok(db)


def test_folder_as_db_path_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        open_db(tmp_path)


def test_write_tx_rolls_back_on_error(tmp_path):
    db = open_db(tmp_path / "t.db")
    set_setting(db, "a", "1")
    with pytest.raises(RuntimeError), write_tx(db):
        db.execute("UPDATE settings SET value = '2' WHERE key = 'a'")
        raise RuntimeError("boom")
    assert get_setting(db, "a") == "1"


def test_second_writer_waits_instead_of_failing(tmp_path):
    path = tmp_path / "t.db"
    a, b = open_db(path), open_db(path)
    with write_tx(a):
        set_setting(a, "x", "from a")
        # b cannot write now; a short busy timeout shows the lock is real
        other = sqlite3.connect(str(path), timeout=0.05)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.close()
    set_setting(b, "x", "from b")
    assert get_setting(a, "x") == "from b"


def test_backup_is_consistent_copy(tmp_path):
    db = open_db(tmp_path / "t.db")
    set_setting(db, "k", "v")
    out = backup(db, tmp_path / "bk" / "copy.db")
    copy = open_db(out, migrate=False)
    assert integrity_ok(copy)
    assert get_setting(copy, "k") == "v"
    assert not (tmp_path / "bk" / "copy.db.partial").exists()
