"""The fibre tables, in their own migration set ``semtriage.fibres`` (applied by
core.store.open_db after the core set).

fibre_measurements   one row per (image, method): the numbers of core.fibres.FibreResult, or
                     the reason the image could not be measured (status 'error')
"""

from __future__ import annotations

from sqlite_utils import Database

from core.store import migration_set

fibre_migrations = migration_set("semtriage.fibres")


@fibre_migrations()
def m001_fibre_measurements(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE fibre_measurements (
            image_id INTEGER NOT NULL REFERENCES images(id),
            method TEXT NOT NULL CHECK (method IN ('gradient', 'learned')),
            status TEXT NOT NULL CHECK (status IN ('ok', 'no fibres', 'no signal', 'error')),
            error TEXT,
            dominant_deg REAL,
            order_parameter REAL,
            coherency REAL,
            aligned_fraction REAL,
            wire_fraction REAL,
            tolerance_deg REAL NOT NULL,
            sigma_px REAL,
            pixel_size_m REAL,
            diameter_n INTEGER NOT NULL DEFAULT 0,
            diameter_mean_px REAL,
            diameter_sd_px REAL,
            diameter_d10_px REAL,
            diameter_d50_px REAL,
            diameter_d90_px REAL,
            histogram TEXT NOT NULL DEFAULT '[]',
            warnings TEXT NOT NULL DEFAULT '[]',
            params TEXT NOT NULL DEFAULT '{}',
            model_version TEXT,
            width INTEGER,
            height INTEGER,
            seconds REAL,
            measured_at TEXT NOT NULL,
            PRIMARY KEY (image_id, method)
        );
        CREATE INDEX idx_fibre_method ON fibre_measurements(method, status);
        """
    )
