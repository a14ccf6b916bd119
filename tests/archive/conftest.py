"""Archive fixtures: a real database of real image files, ingested but not predicted, with a
tiny real ONNX model; and one real local Ray cluster for the whole test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from core.intake import ingest
from core.models import register_model
from core.store import open_db
from tests.helpers import build_tiny_model, write_images

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def archive_db(tmp_path):
    """Factory: ``archive_db(n=12)`` → (database path, model row, image files)."""

    def make(n: int = 12, name: str = "t") -> tuple[Path, dict, list[Path]]:
        files = write_images(tmp_path / f"{name}-img", n=n)
        db_path = tmp_path / f"{name}.db"
        db = open_db(db_path)
        model = register_model(db, build_tiny_model(tmp_path / f"{name}-model.onnx"), activate=True)
        ingest(db, [files[0].parent])  # stored, not predicted: no classifier
        db.close()
        return db_path, model, files

    return make


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """One local Ray for the session: 2 CPUs (the archive engine then makes a pool of one
    actor, leaving a CPU for the Parquet reads), HOME in a temporary folder (Ray writes an auth
    token there), this checkout's code on the workers' path. Yields the cluster's address."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'semtriage[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'ray[data]'")
    home = tmp_path_factory.mktemp("ray-home")
    saved = {k: os.environ.get(k) for k in ("HOME", "PYTHONPATH")}
    os.environ["HOME"] = str(home)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [saved["PYTHONPATH"]])])
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    ctx = ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp, log_to_driver=False,
                   object_store_memory=200 * 1024 * 1024)
    try:
        yield ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp, ignore_errors=True)
