"""`semtriage model add | list | activate | compare | promote | discard`: model versions."""


from __future__ import annotations

from pathlib import Path

import click

from core import models, training, workflows
from core.cli.common import db_option, emit, friendly, json_option, open_db
from core.config import Settings


@click.group()
def model() -> None:
    """Register, list, activate, compare, promote and discard ONNX models."""


@model.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@click.option("--activate", is_flag=True, help="Make it the active model.")
@click.option("--classes", default=None, help="Comma-separated class names, if the model lacks them.")
@json_option
@friendly
def model_add(db_path: Path, path: Path, activate: bool, classes: str | None, as_json: bool) -> None:
    """Validate and register an ONNX classifier (see README: model metadata keys)."""
    db = open_db(db_path)
    meta = {"class_names": [c.strip() for c in classes.split(",") if c.strip()]} if classes else None
    m = models.register_model(db, path, activate=activate, metadata=meta)
    emit(as_json, m, f"Registered {m['version']} ({len(m['class_names'])} classes)"
          + (" — active" if m["active"] else ""))


@model.command("list")
@db_option
@json_option
@friendly
def model_list(db_path: Path, as_json: bool) -> None:
    """List registered model versions."""
    ms = models.list_models(open_db(db_path))
    emit(as_json, ms, lambda: "\n".join(
        f"{'*' if m['active'] else ' '} {m['id']:>3}  {m['version']:<28} {len(m['class_names'])} classes  {m['path']}"
        for m in ms) or "No models registered")


@model.command("activate")
@click.argument("ref")
@db_option
@click.option("--no-predict", is_flag=True, help="Do not predict images the model has not seen yet.")
@json_option
@friendly
def model_activate(db_path: Path, ref: str, no_predict: bool, as_json: bool) -> None:
    """Make model REF (version or id) the active one, predict what it has not seen, re-route."""
    db = open_db(db_path)
    m = models.find_model(db, ref)
    res = workflows.promote(db, m["id"], Settings.from_env(), predict=not no_predict)
    counts = res["routed"]
    emit(as_json, {"active": m["version"], "queues": counts}, f"Active model: {m['version']}; queues {counts}")


@model.command("compare")
@click.argument("candidate")
@db_option
@click.option("--against", "against", default=None, help="Model to compare with (default: the active one).")
@json_option
@friendly
def model_compare(db_path: Path, candidate: str, against: str | None, as_json: bool) -> None:
    """Compare retrained model CANDIDATE with the active model on the same held-out human
    labels (groups the candidate never trained on): accuracy, recall per class, confusion,
    ECE, auto-accept coverage and precision at the current thresholds."""
    db = open_db(db_path)
    cand = models.find_model(db, candidate)
    other = models.find_model(db, against)["id"] if against else None
    res = training.compare(db, cand["id"], other, settings=Settings.from_env())
    emit(as_json, res, lambda: training.comparison_text(res))


@model.command("promote")
@click.argument("ref")
@db_option
@json_option
@friendly
def model_promote(db_path: Path, ref: str, as_json: bool) -> None:
    """Make model REF the active one, predict the images it has not seen, rebuild the queues."""
    db = open_db(db_path)
    m = models.find_model(db, ref)
    last = [-1.0]

    def progress(f: float, msg: str) -> None:
        if not as_json and (f - last[0] >= 0.1 or f >= 1.0):
            last[0] = f
            click.echo(f"[{100 * f:5.1f}%] {msg}", err=True)

    res = workflows.promote(db, m["id"], Settings.from_env(), progress)
    for f in res["failed"]:
        if not as_json:
            click.echo(f"  failed {f['path']}: {f['reason']}", err=True)
    emit(as_json, res, f"Active model: {res['active']}; {res['predicted']:,} images predicted; "
          f"queues {res['queues']}")


@model.command("discard")
@click.argument("ref")
@db_option
@json_option
@friendly
def model_discard(db_path: Path, ref: str, as_json: bool) -> None:
    """Remove model REF (not the active one): its row and predictions, and its file when
    retraining wrote it."""
    db = open_db(db_path)
    res = models.discard(db, models.find_model(db, ref)["id"])
    emit(as_json, res, f"Discarded {res['discarded']} ({res['predictions_removed']:,} predictions"
          + (f"; removed {', '.join(res['files_removed'])}" if res["files_removed"] else "") + ")")
