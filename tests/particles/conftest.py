"""Fixtures of the particle tests: synthetic micrographs with their masks on disk, and a real
database with them ingested."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.intake import ingest
from core.store import open_db
from core.synth import write_particle_dataset


@pytest.fixture(scope="session")
def particle_folder(tmp_path_factory) -> Path:
    """Four synthetic particle micrographs (TIFF, ImageJ pixel size) with <stem>_masks.png."""
    out = tmp_path_factory.mktemp("pds")
    write_particle_dataset(out, 4, seed=11, size=(256, 320))
    return out


@pytest.fixture
def images_only(particle_folder, tmp_path) -> Path:
    """The same images without their masks (a folder to ingest and detect)."""
    out = tmp_path / "imgs"
    out.mkdir()
    for f in sorted(particle_folder.glob("*.tif")):
        (out / f.name).write_bytes(f.read_bytes())
    return out


@pytest.fixture
def db(tmp_path):
    return open_db(tmp_path / "p.db")


@pytest.fixture
def ingested(db, images_only):
    rep = ingest(db, [images_only])
    assert rep.added == 4, rep.summary()
    return db
