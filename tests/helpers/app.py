"""Databases for app tests: one with real images, a tiny model and labels; private copies."""


from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from core import review
from core.intake import ingest
from core.models import Classifier, register_model
from core.review import force_threshold
from core.store import backup, open_db
from tests.helpers.images import write_images
from tests.helpers.models import CLASSES, build_tiny_model
from ui.failures import FAILURE_ICON


def build_app_db(root: Path, *, n_png: int = 16, n_tiff: int = 4, reference: int = 4) -> Path:
    """A database with real image files (8-bit PNG, 16-bit TIFF), a tiny registered model, every
    image predicted and routed, and ``reference`` imported labels. Returns the DB path."""
    images = root / "images"
    write_images(images / "png", n=n_png, size=64)
    rng = np.random.default_rng(3)
    (images / "tif").mkdir(parents=True, exist_ok=True)
    for i in range(n_tiff):
        level = (i + 0.5) / n_tiff
        a = np.clip(rng.normal(level, 0.05, (64, 80)), 0, 1)
        tifffile.imwrite(images / "tif" / f"deep_{i:02d}.tif", (a * 65535).astype(np.uint16))
    db_path = root / "app.db"
    db = open_db(db_path)
    model = register_model(db, build_tiny_model(root / "models" / "tiny.onnx", CLASSES), activate=True)
    # a lab that let this model auto-accept (an administrator's override, recorded): the pages'
    # auto-label views have something to show; a provisional model is tested apart
    force_threshold(db, 0.7, model_id=model["id"], note="tests: auto labels allowed")
    rep = ingest(db, [images], classifier=Classifier(model["path"]), model_id=model["id"])
    assert not rep.failed, rep.failed
    ids = [r[0] for r in db.execute("SELECT id FROM images ORDER BY id LIMIT ?", [reference])]
    review.import_labels(db, [(i, CLASSES[i % 3]) for i in ids], reviewer="reference", replace=True)
    db.conn.close()
    return db_path


def app_db_copy(template: Path, tmp_path: Path, monkeypatch) -> Path:
    """A private copy of the database ``template`` for one app test, named by SEMTRIAGE_DB
    (``tmp_path`` is the server folder the app may ingest from)."""
    src = open_db(template)
    path = backup(src, tmp_path / "data" / "app.db")
    src.conn.close()
    monkeypatch.setenv("SEMTRIAGE_DB", str(path))
    monkeypatch.setenv("SEMTRIAGE_ROOTS", str(tmp_path))
    return path


def failures(at: Any) -> list[Any]:
    """What went wrong in an AppTest run: Streamlit's exception boxes and the failures
    ui/failures.py said in words instead (an error with its icon); each has ``.value``."""
    return [*at.exception, *(e for e in at.error if e.icon == FAILURE_ICON)]
