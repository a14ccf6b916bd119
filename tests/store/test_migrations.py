"""Migrations any package can add: its own named set of numbered steps, applied by open_db
after the core set, recorded, never applied twice."""

from __future__ import annotations

from sqlite_utils import Database

import core.store.migrations as registry
from core.store import core_migrations, migrate, migration_set, migration_sets, open_db


def test_a_package_adds_its_own_migration_set(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_SETS", dict(registry._SETS))  # this test's set goes with it
    assert migration_sets()[0] is core_migrations and core_migrations.name == "semtriage"
    extra = migration_set("semtriage.test-extra")
    assert migration_set("semtriage.test-extra") is extra, "one set per name"
    calls = []

    @extra()
    def m001_particles(db: Database) -> None:
        calls.append("m001")
        db.execute("CREATE TABLE test_particles (image_id INTEGER REFERENCES images(id), d REAL)")

    db = open_db(tmp_path / "a.db")
    assert "test_particles" in db.table_names() and calls == ["m001"]
    applied = db.execute("SELECT migration_set, name FROM _sqlite_migrations ORDER BY id").fetchall()
    assert applied[:6] == [("semtriage", f"m00{i}_{n}") for i, n in enumerate(
        ["initial", "scale_indexes", "image_hashes", "model_images", "label_issues", "counts"], 1)]
    assert applied[-1] == ("semtriage.test-extra", "m001_particles")

    @extra()
    def m002_score(db: Database) -> None:  # a later step of the same package
        calls.append("m002")
        db.execute("ALTER TABLE test_particles ADD COLUMN score REAL")

    migrate(db)  # a database opened before the step was registered
    open_db(tmp_path / "a.db")  # and again: nothing applied twice
    assert calls == ["m001", "m002"]
    assert "score" in db["test_particles"].columns_dict
