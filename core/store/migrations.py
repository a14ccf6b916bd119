"""Schema changes through numbered migrations, applied when a database is opened.

Every package that owns tables keeps its own *migration set* (sqlite-utils ``Migrations``; the
applied steps are recorded per set in ``_sqlite_migrations``), so packages add tables without
touching each other's steps:

    # core/particles/schema.py
    from core.store import migration_set

    migrations = migration_set("semtriage.particles")

    @migrations()
    def m001_particles(db: Database) -> None:
        db.execute("CREATE TABLE particles (...)")

and import that module from the package's ``__init__``. :func:`core.store.open_db` applies
every set registered so far, in registration order (the core set ``semtriage``,
core/store/schema.py, is always first), each step in its own transaction; a function that
may meet a database opened before its package was imported calls :func:`migrate` (cheap when
nothing is pending). Steps are never edited once released: a change is a new step.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

_SETS: dict[str, Migrations] = {}


def migration_set(name: str) -> Migrations:
    """The migration set called ``name`` (created and registered on first use). Register steps
    on it with ``@migrations()`` on functions named ``m001_…``, ``m002_…`` in order."""
    if name not in _SETS:
        _SETS[name] = Migrations(name)
    return _SETS[name]


def migration_sets() -> list[Migrations]:
    """Every registered set, in the order they are applied."""
    return list(_SETS.values())


def migrate(db: Database) -> None:
    """Apply the pending steps of every registered set to ``db``."""
    for m in _SETS.values():
        m.apply(db)
