"""The similarity tables: migration set ``semtriage.similarity`` (applied by
:func:`core.store.open_db` after the core set).

Tables
------
similarity_spaces  the projections embeddings are made with: texture features minus their mean,
                   onto the top principal components, fitted on a sample of this archive
                   (``active`` = 1: the one in use; a refit adds a row and re-embeds)
embeddings         one L2-normalised float16 vector per image in a space (``vec`` NULL: the
                   image has no readable thumbnail, not tried again in that space)
similarity_map     the 2-D map of a sample of the archive (t-SNE) with each point's local
                   outlier factor and whether it counts as an outlier
"""

from __future__ import annotations

from sqlite_utils import Database

from core.store import migration_set

migrations = migration_set("semtriage.similarity")


@migrations()
def m001_similarity(db: Database) -> None:
    for sql in (
        ("CREATE TABLE similarity_spaces (id TEXT PRIMARY KEY, features TEXT NOT NULL, "
         "extractor_sha256 TEXT NOT NULL, dims INTEGER NOT NULL, fitted_on INTEGER NOT NULL, "
         "projection TEXT NOT NULL, active INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)"),
        ("CREATE TABLE embeddings (image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, "
         "space TEXT NOT NULL, vec BLOB)"),
        "CREATE INDEX idx_embeddings_space ON embeddings(space, image_id)",
        ("CREATE TABLE similarity_map (image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE, "
         "space TEXT NOT NULL, x REAL NOT NULL, y REAL NOT NULL, lof REAL NOT NULL, "
         "outlier INTEGER NOT NULL, built_at TEXT NOT NULL)"),
    ):
        db.execute(sql)
