"""The particle tables: migration set ``semtriage.particles`` (applied by ``open_db`` after the
core set). Released steps are never edited; a change is a new step.

* ``particle_detectors``: detector versions (``classical`` with its parameters, or an ONNX
  ``model`` file with its hash and card), one active;
* ``particle_images``: per image, the detection state (``detected`` / ``verified``), which
  detector, counts, and a pixel size set by a user (wins over the file's);
* ``particles``: every particle ever made, with its mask (bbox + packed bits) and measurements
  in pixels; ``removed_event`` is set when an edit removed it (the row stays: undo brings it
  back);
* ``particle_events``: the append-only edit history (who, when, detector version, the particle
  ids it created and removed, what it undoes);
* ``particle_selections`` / ``particle_selection_images`` (m002): named sets of images for
  distributions and exports, who made each and how.
"""

from __future__ import annotations

from sqlite_utils import Database

from core.store import migration_set

migrations = migration_set("semtriage.particles")

SOURCES = ("model", "classical", "human", "import")
VERIFIED_SOURCES = ("human", "import")
ACTIONS = ("detect", "add", "delete", "merge", "split", "relabel", "verify", "unverify",
           "import", "undo", "pixel_size")


@migrations()
def m001_particles(db: Database) -> None:
    db.execute("""
        CREATE TABLE particle_detectors (
            id INTEGER PRIMARY KEY,
            version TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('model', 'classical')),
            path TEXT,
            sha256 TEXT,
            params TEXT NOT NULL DEFAULT '{}',
            card TEXT,
            metrics TEXT,
            added_at TEXT NOT NULL,
            active INTEGER NOT NULL DEFAULT 0
        )""")
    db.execute("""
        CREATE TABLE particle_images (
            image_id INTEGER PRIMARY KEY REFERENCES images(id),
            state TEXT NOT NULL CHECK (state IN ('detected', 'verified')),
            detector_version TEXT,
            verified_by TEXT,
            source TEXT,
            pixel_size_m REAL,
            pixel_size_source TEXT,
            n_particles INTEGER NOT NULL DEFAULT 0,
            n_edge INTEGER NOT NULL DEFAULT 0,
            n_databar INTEGER NOT NULL DEFAULT 0,
            min_score REAL,
            updated_at TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE particle_events (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            action TEXT NOT NULL,
            reviewer TEXT NOT NULL,
            detector_version TEXT,
            created TEXT NOT NULL DEFAULT '[]',
            removed TEXT NOT NULL DEFAULT '[]',
            payload TEXT,
            undoes INTEGER REFERENCES particle_events(id),
            created_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX idx_pevents_image ON particle_events(image_id, id)")
    db.execute("""
        CREATE TABLE particles (
            id INTEGER PRIMARY KEY,
            image_id INTEGER NOT NULL REFERENCES images(id),
            source TEXT NOT NULL CHECK (source IN ('model', 'classical', 'human', 'import')),
            detector_version TEXT,
            event_id INTEGER NOT NULL REFERENCES particle_events(id),
            removed_event INTEGER REFERENCES particle_events(id),
            x0 INTEGER NOT NULL, y0 INTEGER NOT NULL, x1 INTEGER NOT NULL, y1 INTEGER NOT NULL,
            mask BLOB NOT NULL,
            centroid_x_px REAL NOT NULL,
            centroid_y_px REAL NOT NULL,
            area_px INTEGER NOT NULL,
            ecd_px REAL NOT NULL,
            feret_max_px REAL NOT NULL,
            feret_min_px REAL NOT NULL,
            aspect_ratio REAL NOT NULL,
            circularity REAL NOT NULL,
            solidity REAL NOT NULL,
            mean_intensity REAL,
            score REAL NOT NULL,
            excluded TEXT NOT NULL DEFAULT '' CHECK (excluded IN ('', 'edge', 'databar')),
            label TEXT
        )""")
    db.execute("CREATE INDEX idx_particles_image ON particles(image_id) WHERE removed_event IS NULL")


@migrations()
def m002_selections(db: Database) -> None:
    db.execute("""
        CREATE TABLE particle_selections (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE COLLATE NOCASE,
            created_by TEXT NOT NULL,
            how TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE particle_selection_images (
            selection_id INTEGER NOT NULL REFERENCES particle_selections(id) ON DELETE CASCADE,
            image_id INTEGER NOT NULL REFERENCES images(id),
            PRIMARY KEY (selection_id, image_id)
        ) WITHOUT ROWID""")
