"""Test data for retraining: a database whose labelled images the active model cannot sort.

Three classes told apart by texture alone — stripes at any angle (fibres), bright discs
(particles), grain noise (powder) — all at the same mean brightness. The ``tiny_model`` of
conftest sorts by mean brightness, so it puts nearly everything in the middle class: a model
that has never seen this distribution. Each class comes from several specimens, one folder
each (the folder is the group); a few unlabelled images fill the queues.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from core import review
from core.intake import ingest
from core.models import Classifier, register_model
from core.store import open_db
from tests.helpers import build_tiny_model

CLASSES = ("fibres", "particles", "powder")
SIZE = 48
INPUT = (32, 32)  # the candidates' input size in tests: fast


def texture(cls: str, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if cls == "fibres":
        ang, per, ph = rng.uniform(0, np.pi), rng.uniform(7, 12), rng.uniform(0, 2 * np.pi)
        a = 0.5 + 0.3 * np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / per + ph)
    elif cls == "particles":
        a = np.full((size, size), 0.4)
        for _ in range(int(rng.integers(6, 14))):
            cy, cx = rng.uniform(0, size, 2)
            a[(yy - cy) ** 2 + (xx - cx) ** 2 < rng.uniform(2, 5) ** 2] = 0.9
        a += 0.5 - a.mean()
    else:
        a = 0.5 + rng.normal(0, 0.18, (size, size))
    return np.clip(a + rng.normal(0, 0.03, (size, size)), 0, 1)


def save(a: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((a * 255).astype(np.uint8)).save(path)
    return path


def build_labelled_db(root: Path, *, specimens: int = 3, per_specimen: int = 4,
                      unlabelled: int = 9, near_copy: bool = True) -> Path:
    """The database described in the module doc, with the tiny model active and every image
    predicted; labels are human decisions by 'alice'. With ``near_copy`` the first fibres image
    of specimen 0 has a brightened copy in specimen 1's folder (one near-duplicate group)."""
    images = root / "images"
    for k, cls in enumerate(CLASSES):
        for s in range(specimens):
            rng = np.random.default_rng(100 * k + s)
            for i in range(per_specimen):
                save(texture(cls, rng), images / f"{cls}_spec{s}" / f"{cls}_{s}_{i:02d}.png")
    if near_copy:
        first = np.asarray(Image.open(images / "fibres_spec0" / "fibres_0_00.png"), np.float64) / 255
        save(np.clip(first * 0.9 + 0.08, 0, 1), images / "fibres_spec1" / "fibres_copy.png")
    rng = np.random.default_rng(999)
    for i in range(unlabelled):
        save(texture(CLASSES[i % 3], rng), images / "inbox" / f"new_{i:02d}.png")
    db_path = root / "rt.db"
    db = open_db(db_path)
    model = register_model(db, build_tiny_model(root / "models" / "tiny.onnx", CLASSES), activate=True)
    rep = ingest(db, [images], classifier=Classifier(model["path"]), model_id=model["id"])
    assert not rep.failed, rep.failed
    for image_id, name in db.execute("SELECT id, name FROM images WHERE name NOT LIKE 'new_%'"):
        review.decide(db, image_id, "relabel", reviewer="alice", label=name.split("_")[0])
    db.conn.close()
    return db_path
