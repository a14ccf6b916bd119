"""Archive fixtures: a real database of real image files, ingested but not predicted, with a
tiny real ONNX model; a folder of image files not ingested (PNG, compressed TIFFs with and
without instrument metadata, a corrupt TIFF, a copy, a non-image file); and one real local
Ray cluster for the whole test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from core.intake import ingest
from core.models import register_model
from core.store import open_db
from tests.helpers import FIXTURES, build_tiny_model, write_images

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


def write_archive_folder(folder: Path) -> dict[str, Path]:
    """A facility's folder not yet ingested: ``run1/specimenA`` (PNGs), ``run1/specimenB``
    (PNGs, a Deflate ImageJ TIFF with a pixel size, an LZW TIFF, a truncated TIFF, a copy of a
    specimenA image under another name, a text file), a real FEI TIFF (data bar, pixel size)
    when the shared fixtures are present. Returns the notable files by role."""
    a = write_images(folder / "run1" / "specimenA", n=4)
    b = write_images(folder / "run1" / "specimenB", n=3, seed=3)
    ramp = (np.add.outer(np.arange(300), np.arange(400)) * 50).astype(np.uint16)
    imagej = folder / "run1" / "specimenB" / "imagej_deflate.tif"
    tifffile.imwrite(imagej, ramp, imagej=True, resolution=(1 / 0.05, 1 / 0.05),
                     metadata={"unit": "um"}, compression="zlib")
    lzw = folder / "run1" / "specimenB" / "plain_lzw.tif"
    tifffile.imwrite(lzw, (ramp[::-1] >> 8).astype(np.uint8), compression="lzw")
    broken = folder / "run1" / "specimenB" / "broken.tif"
    data = imagej.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    copy = folder / "run1" / "specimenB" / "zz_copy_of_a0.png"
    shutil.copyfile(a[0], copy)
    (folder / "run1" / "specimenB" / "notes.txt").write_text("stage drifted", encoding="utf-8")
    out = {"a0": a[0], "a1": a[1], "b0": b[0], "imagej": imagej, "lzw": lzw, "broken": broken,
           "copy": copy}
    fei = FIXTURES / "FEI-Helios-Ebeam-8bits.tif"
    if fei.is_file():
        out["fei"] = folder / "fei" / fei.name
        out["fei"].parent.mkdir()
        shutil.copyfile(fei, out["fei"])
        out["fei"].chmod(0o644)
    return out


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
