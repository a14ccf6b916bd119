"""One file as ingest reads it — hash, decode, metadata, thumbnail and model input
(:func:`load_file`) — and the ``images`` row it makes (:func:`image_record`). `semtriage
ingest` and an archive worker (which has no database) both read files through here, so an
image ingested either way is stored the same."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.files import sha256_file
from core.images import WORK_SIDE, SemImage, decode_bytes, read_image, thumbnail_jpeg
from core.intake.threads import ByteBudget, _timer
from core.models import Classifier

# the columns of ``images`` an image's file gives (the store adds id and added_at)
IMAGE_COLUMNS = (
    "sha256", "path", "name", "size_bytes", "width", "height", "bit_depth", "raw_dtype", "pages",
    "instrument", "pixel_size_m", "pixel_size_source", "databar_px", "databar_source", "metadata",
    "warnings", "thumb", "group_key",
)


@dataclass
class LoadedFile:
    """What :func:`load_file` keeps of one file: its size and modification time when read, the
    SHA-256, the description without pixels, the thumbnail (JPEG) and the model input."""

    path: Path
    size: int
    mtime: float
    sha: str
    img: SemImage | None
    thumb: bytes | None
    x: np.ndarray | None
    t: dict[str, float]


def load_file(path: Path, classifier: Classifier | None, *, max_pixels: int, thumb_px: int,
              budget: ByteBudget) -> LoadedFile:
    """Hash, decode, thumbnail and model input of one file. The decoded frame exists only
    inside the budget's hold: what is kept is the thumbnail, the model input and the
    description (``SemImage.without_pixels``), a few hundred KB whatever the image size.
    Raises what reading raised (``ImageReadError``, ``OSError``): the caller reports it."""
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    st = path.stat()
    sha = sha256_file(path)
    t0 = _timer(t, "hash", t0)
    with budget.hold(decode_bytes(path, WORK_SIDE)):
        img = read_image(path, max_pixels=max_pixels, max_side=WORK_SIDE)
        t0 = _timer(t, "decode", t0)
        scan = img.scan
        thumb = thumbnail_jpeg(scan, thumb_px)
        x = classifier.prepare(scan) if classifier is not None else None
        del scan
        img = img.without_pixels()
    _timer(t, "preprocess", t0)
    return LoadedFile(path, st.st_size, st.st_mtime, sha, img, thumb, x, t)


def image_record(f: LoadedFile, group_key: str | None) -> dict[str, Any]:
    """The ``images`` row of a loaded file (:data:`IMAGE_COLUMNS`), as ingest stores it:
    metadata and warnings as their JSON text, the thumbnail as JPEG bytes."""
    img = f.img
    if img is None:
        raise ValueError(f"{str(f.path)!r} was not decoded; it has no image row")
    return {
        "sha256": f.sha, "path": str(f.path), "name": f.path.name, "size_bytes": f.size,
        "width": img.width, "height": img.height, "bit_depth": img.bit_depth,
        "raw_dtype": img.raw_dtype, "pages": img.pages, "instrument": img.instrument,
        "pixel_size_m": img.pixel_size_m, "pixel_size_source": img.pixel_size_source,
        "databar_px": img.databar_px, "databar_source": img.databar_source,
        "metadata": json.dumps(img.metadata, default=str), "warnings": json.dumps(img.warnings),
        "thumb": f.thumb, "group_key": group_key,
    }
