"""The embedded demo: synthetic micrographs + the default model, ready to triage.

Deterministic: the same images (seed 0) every time, generated on first run rather than
committed. A tenth of the images get their known class as an imported reference label, so the
reference set, the confusion matrix and the auto-accept error estimate have something to show.
"""


from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from core.access import User, require_admin
from core.config import DEFAULT_DB, DEFAULT_MODEL, DEMO_DIR, Settings
from core.errors import InvalidValue, ModelError
from core.intake import ingest
from core.models import active_model, file_changed, model_classifier, register_model
from core.progress import Progress
from core.review import import_labels
from core.store import open_db
from core.synth import write_dataset
from core.workflows.lifecycle import promote

DEMO_SEED = 0
REFERENCE_EVERY = 10


def demo_belongs_in(db_path: str | Path) -> bool:
    """Whether the app may offer to build the demo into ``db_path``: only the checkout's own
    database (``DEFAULT_DB``), never one a lab named with SEMTRIAGE_DB (scripts/app.sh applies
    the same rule)."""
    return Path(db_path).resolve() == DEFAULT_DB.resolve()


def use_default_model(db: Database, *, model_path: Path = DEFAULT_MODEL, by: User | None = None
                      ) -> dict[str, Any]:
    """Register the shipped default model (with the card beside it: trained by our own code on
    synthetic micrographs) and make it active. Returns the model row; the caller predicts the
    images already stored (core.workflows.promote, in the background in the app). A version
    registered before from the same file is reused. Administrators only."""
    require_admin(by, "choose the active model")
    if not model_path.is_file():
        raise ModelError(f"The default model {str(model_path)!r} is missing; rebuild it (see README)")
    return register_model(db, model_path, activate=True, by=by)


def build_demo(
    db_path: str | Path,
    *,
    n_images: int = 300,
    demo_dir: Path = DEMO_DIR,
    model_path: Path = DEFAULT_MODEL,
    force: bool = False,
    progress: Progress | None = None,
    by: User | None = None,
) -> dict[str, Any]:
    """Generate (if missing) the demo images, ingest and predict them into ``db_path``.
    Administrators only (``by``; ``None`` = local use): it may register the default model.

    A database holding any image that is not one of the demo's (a lab's database) is refused,
    ``force`` or not: demo images are never poured into real work."""
    require_admin(by, "load the demo")

    if not model_path.is_file():
        raise ModelError(f"The default model {str(model_path)!r} is missing; rebuild it (see README)")
    db_path = Path(db_path)
    db = open_db(db_path)
    n_stored = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    root = str(Path(demo_dir).resolve()) + "/"
    foreign = db.execute(
        "SELECT COUNT(*) FROM images i WHERE NOT EXISTS (SELECT 1 FROM files f WHERE f.image_id = i.id "
        "AND substr(f.path, 1, ?) = ?)", [len(root), root]).fetchone()[0]
    if foreign:
        raise InvalidValue(
            f"{db_path} holds {foreign:,} images that are not the demo's: the demo is built only into a "
            "database of its own (run `semtriage demo --db data/demo.db`, or leave SEMTRIAGE_DB unset)")
    if n_stored and not force:
        active = active_model(db)
        if (active is not None and file_changed(active)
                and Path(active["path"]).resolve() == model_path.resolve()):
            # the shipped default was rebuilt or updated: a new version beside the old one (on
            # the demo's own database only: a lab's database switches models when told to)
            new = register_model(db, model_path)
            res = promote(db, new["id"], Settings.from_env(),
                          progress=progress)
            return {"db": str(db_path), "images": n_stored, "status": "default model updated",
                    "model": res["active"], "predicted": res["predicted"]}
        return {"db": str(db_path), "images": n_stored, "status": "already built"}
    truth_file = demo_dir / "ground_truth.jsonl"
    if force or not truth_file.is_file() or sum(1 for _ in truth_file.open()) != n_images:
        write_dataset(demo_dir, n_images, seed=DEMO_SEED, mixed_fraction=0.1, fmt="tif", layout="blind")
    model = active_model(db) or register_model(db, model_path, activate=True)
    clf = model_classifier(model)
    rep = ingest(db, [demo_dir], classifier=clf, model_id=model["id"], settings=Settings.from_env(),
                 progress=progress)
    # reference labels from the known truth of every tenth single-class image
    truths = [json.loads(line) for line in truth_file.read_text(encoding="utf-8").splitlines() if line]
    ids = dict(db.execute("SELECT path, image_id FROM files").fetchall())
    refs = []
    for t in truths[::REFERENCE_EVERY]:
        if t.get("mixed"):
            continue
        image_id = ids.get(str((demo_dir / t["file"]).resolve()))
        if image_id is not None:
            refs.append((image_id, t["class"]))
    import_labels(db, refs, reviewer="demo-truth", replace=True)  # the truth, over auto labels
    return {"db": str(db_path), "images": rep.added + rep.duplicates + rep.unchanged,
            "status": "built", "failed": rep.failed, "reference_labels": len(refs)}
