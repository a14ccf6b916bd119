"""Model versions known to a database: register (validated first), list, find, the active
model, switch it, and discard a candidate. A registered version is tied to its file's content
(SHA-256): :func:`model_classifier` refuses a file that changed since."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from core.access import User, require_admin
from core.errors import ModelError, NotFound, StoreError
from core.files import sha256_file
from core.models.cards import card_path, read_card
from core.models.classifier import Classifier
from core.store import now_iso, write_tx


def _row(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    r["class_names"] = json.loads(r["class_names"])
    r["info"] = json.loads(r["info"] or "{}")
    r["card"] = json.loads(r["card"]) if r.get("card") else None
    r["active"] = bool(r["active"])
    return r


def register_model(
    db: Database,
    path: str | Path,
    *,
    activate: bool = False,
    metadata: dict[str, Any] | None = None,
    copy_to: str | Path | None = None,
    by: User | None = None,
) -> dict[str, Any]:
    """Validate the ONNX model at ``path`` and record it. Nothing is written when it does not
    fit. The same file (by hash) registers once. ``metadata`` adds/overrides keys (e.g. class
    names typed in the app); ``copy_to`` keeps a copy of the file (uploads). Administrators only
    (``by``; ``None`` = local use).
    """
    require_admin(by, "add a model")
    path = Path(path).resolve()
    clf = Classifier(path, metadata=metadata)  # raises ModelError on any misfit
    sha = sha256_file(path)
    existing = db.execute("SELECT id FROM models WHERE sha256 = ?", [sha]).fetchone()
    if existing:
        if activate:
            set_active_model(db, existing[0])
        return get_model(db, existing[0])
    if copy_to is not None:
        dest = Path(copy_to) / f"{path.stem}-{sha[:8]}.onnx"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            shutil.copyfile(path, dest)
        if metadata:
            dest.with_suffix(".json").write_text(json.dumps(metadata), encoding="utf-8")
        path = dest
    version = clf.version or (re.sub(r"[^\w .+\-/():@]", "_", path.stem)[:128].lstrip(" .+-/():@")
                              or "model")  # a file name shown as a version: no markup
    if db.execute("SELECT 1 FROM models WHERE version = ?", [version]).fetchone():
        version = f"{version}-{sha[:8]}"
    card = read_card(path)
    with write_tx(db, "registering a model"):
        cur = db.execute(
            "INSERT INTO models(version, path, sha256, class_names, info, card, added_at, active) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
            [
                version, str(path), sha, json.dumps(clf.class_names),
                json.dumps(clf.info.to_json()), json.dumps(card) if card else None,
                now_iso(),
            ],
        )
        assert cur.lastrowid is not None
        model_id = cur.lastrowid
        if activate or active_model(db) is None:
            set_active_model(db, model_id)
    return get_model(db, model_id)


def get_model(db: Database, model_id: int) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM models WHERE id = ?", [model_id]))
    if not rows:
        raise NotFound(f"No model with id {model_id!r}")
    return _row(rows[0])


def find_model(db: Database, ref: str | int) -> dict[str, Any]:
    """A model by id or version name."""
    rows = list(db.query("SELECT * FROM models WHERE version = ? OR id = ?", [str(ref), str(ref)]))
    if not rows:
        raise NotFound(f"No model {ref!r}; see `semtriage model list`")
    return _row(rows[0])


def list_models(db: Database) -> list[dict[str, Any]]:
    return [_row(r) for r in db.query("SELECT * FROM models ORDER BY id")]


def active_model(db: Database) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM models WHERE active = 1"))
    return _row(rows[0]) if rows else None


def set_active_model(db: Database, model_id: int, *, by: User | None = None) -> None:
    """Make ``model_id`` the active model. Administrators only (``by``; ``None`` = local use)."""
    require_admin(by, "switch the active model")
    with write_tx(db, "switching the active model"):
        if not db.execute("SELECT 1 FROM models WHERE id = ?", [model_id]).fetchone():
            raise NotFound(f"No model with id {model_id!r}")
        db.execute("UPDATE models SET active = (id = ?)", [model_id])


def file_changed(m: dict[str, Any]) -> bool:
    """Whether the file of a registered model is no longer the one that was registered (it was
    overwritten, e.g. by a rebuilt or updated default model)."""
    path = Path(m["path"])
    return path.is_file() and sha256_file(path) != m["sha256"]


def model_classifier(m: dict[str, Any], providers: Sequence[str] | None = None) -> Classifier:
    """The classifier of a registered model — refused when its file has changed since: stored
    predictions and label history name the version that made them, so other weights must not
    predict under that name."""
    path = Path(m["path"])
    if not path.is_file():
        raise ModelError(f"The file of model {m['version']!r} is missing: {str(path)!r}")
    if file_changed(m):
        raise ModelError(
            f"{str(path)!r} changed after it was registered as model {m['version']!r}: its "
            "stored predictions came from the file as it was then. Register the new file as a "
            f"new model (`semtriage model add {path}`, or Models → Add a model); it becomes a "
            "new version beside this one")
    return Classifier(path, providers=providers)


def load_active(db: Database) -> Classifier:
    m = active_model(db)
    if m is None:
        raise ModelError("No active model: register one with `semtriage model add PATH`")
    return model_classifier(m)


def discard(db: Database, model_id: int, *, by: User | None = None) -> dict[str, Any]:
    """Remove a candidate: its row, its predictions, its ``model_images`` and — when retraining
    wrote it — its file and card. Refuses the active model and a model that label decisions
    refer to (the label history keeps which model made a prediction)."""
    require_admin(by, "discard a model")
    m = get_model(db, model_id)
    if m["active"]:
        raise StoreError(f"Model {m['version']!r} is the active model; activate another before "
                         "discarding it")
    with write_tx(db, "discarding a model"):
        used = db.execute("SELECT COUNT(*) FROM label_events WHERE model_id = ?",
                          [model_id]).fetchone()[0]
        if used:
            raise StoreError(f"Model {m['version']!r} was active for {used:,} label decisions; "
                             "it is kept so that the label history stays complete")
        n_pred = db.execute("DELETE FROM predictions WHERE model_id = ?", [model_id]).rowcount
        db.execute("DELETE FROM model_images WHERE model_id = ?", [model_id])
        db.execute("DELETE FROM models WHERE id = ?", [model_id])
        shared = db.execute("SELECT COUNT(*) FROM models WHERE path = ?", [m["path"]]).fetchone()[0]
    removed: list[str] = []
    if (m["card"] or {}).get("retrain") and not shared:
        for p in (Path(m["path"]), card_path(m["path"])):
            if p.is_file():
                p.unlink()
                removed.append(str(p))
    return {"discarded": m["version"], "predictions_removed": int(n_pred), "files_removed": removed}


def find_candidates(db: Database) -> list[dict[str, Any]]:
    """Registered models made by retraining that are not active, newest first."""
    have = {int(r[0]) for r in db.execute("SELECT DISTINCT model_id FROM model_images")}
    return [m for m in reversed(list_models(db)) if m["id"] in have and not m["active"]]
