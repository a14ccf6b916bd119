"""The SQLite store: the connection and its write transaction, migrations (one numbered set
per package that owns tables), the core schema, the settings table, backups."""

from core.store.backup import backup, integrity_ok
from core.store.db import (
    AUTOCHECKPOINT_PAGES,
    BULK_HOLD_S,
    BULK_YIELD_S,
    BUSY_TIMEOUT_S,
    Pacer,
    db_file,
    now_iso,
    open_db,
    quick_check,
    temp_ids,
    write_tx,
)
from core.store.migrations import migrate, migration_set, migration_sets
from core.store.schema import (
    HUMAN_SOURCES,
    core_migrations,
    m001_initial,
    m002_scale_indexes,
    m003_image_hashes,
    m004_model_images,
    m005_label_issues,
    m006_counts,
    m007_label_classes_context,
)
from core.store.settings import THEMES, get_setting, set_setting, set_user_theme, user_theme

__all__ = [
    "AUTOCHECKPOINT_PAGES",
    "BULK_HOLD_S",
    "BULK_YIELD_S",
    "BUSY_TIMEOUT_S",
    "HUMAN_SOURCES",
    "THEMES",
    "Pacer",
    "backup",
    "core_migrations",
    "db_file",
    "get_setting",
    "integrity_ok",
    "m001_initial",
    "m002_scale_indexes",
    "m003_image_hashes",
    "m004_model_images",
    "m005_label_issues",
    "m006_counts",
    "m007_label_classes_context",
    "migrate",
    "migration_set",
    "migration_sets",
    "now_iso",
    "open_db",
    "quick_check",
    "set_setting",
    "set_user_theme",
    "temp_ids",
    "user_theme",
    "write_tx",
]
