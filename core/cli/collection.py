"""`semtriage init | ingest | predict | export | stats | backup | demo`: the collection —
images in and predicted, datasets and reports out, counts, backups, the demo."""


from __future__ import annotations

import sys
from pathlib import Path

import click

from core import datasets, intake, models, review, store, workflows
from core.cli.common import Bar, db_option, embed_new_images, emit, friendly, json_option, open_db
from core.config import DEFAULT_MODEL, Settings


@click.command()
@db_option
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help=f"Register and activate this model (default: {DEFAULT_MODEL.name} if present).")
@json_option
@friendly
def init(db_path: Path, model_path: Path | None, as_json: bool) -> None:
    """Create the database (or migrate an existing one) and register the default model."""
    db = open_db(db_path)
    path = model_path or (DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None)
    if path is not None and (model_path is not None or models.active_model(db) is None):
        models.register_model(db, path, activate=True)
    active = models.active_model(db)
    emit(as_json, {"db": str(db_path), "active_model": active and active["version"]},
          f"Database ready: {db_path}\nActive model: {active['version'] if active else 'none'}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
@click.option("--labels-from-folders", is_flag=True,
              help="Take each image's parent folder name as a human label (reviewer 'import').")
@click.option("--no-predict", is_flag=True, help="Only store images; predict later with `semtriage predict`.")
@click.option("--workers", default=2, show_default=True, help="Decoding threads.")
@json_option
@friendly
def ingest(db_path: Path, paths: tuple[Path, ...], labels_from_folders: bool, no_predict: bool,
           workers: int, as_json: bool) -> None:
    """Ingest image files and folders (recursively) and predict them with the active model
    (on a database with no model yet, the shipped default model, registered as by `init`).

    Resumable: run it again after an interruption and it finishes the rest. Exit code 1 only
    when nothing could be ingested.
    """
    db = open_db(db_path)
    settings = Settings.from_env()
    model = None if no_predict else models.active_model(db)
    registered = None
    if model is None and not no_predict and not models.list_models(db) and DEFAULT_MODEL.is_file():
        # a fresh database: predict with the shipped default model, as `semtriage init` sets up
        model = registered = workflows.use_default_model(db)
        if not as_json:
            click.echo(f"No model registered yet: using the shipped default model {model['version']} "
                       "(as `semtriage init` does; `semtriage model add` for your own).", err=True)
    clf = models.load_active(db) if model is not None else None
    bar = Bar("Ingesting", not as_json)
    rep = intake.ingest(db, paths, classifier=clf, model_id=model["id"] if model else None,
                    labels_from_folders=labels_from_folders, settings=settings,
                    progress=bar, workers=workers)
    bar.close()
    if clf is not None and model is not None:
        extra = intake.predict_pending(db, clf, model["id"], settings=settings, workers=workers)
        rep.predicted += extra.predicted
        rep.failed += extra.failed
    # new images get their neighbours at once (if a view exists)
    embedded = embed_new_images(db) if not no_predict and rep.added else None
    for path, reason in rep.failed:
        if not as_json:
            click.echo(f"  skipped {path}: {reason}", err=True)
    emit(as_json, {**rep.to_json(), "embedded": embedded,
                   "registered_default_model": registered and registered["version"]},
         rep.summary() + (f" Similarity view: {embedded} new images embedded." if embedded else ""))
    if rep.failed and rep.added + rep.duplicates + rep.unchanged == 0:
        sys.exit(1)


@click.command()
@db_option
@click.option("--model", "model_ref", default=None, help="Model version or id (default: the active one).")
@click.option("--redo", is_flag=True, help="Predict every image again, not only those without a prediction.")
@json_option
@friendly
def predict(db_path: Path, model_ref: str | None, redo: bool, as_json: bool) -> None:
    """Predict every stored image that the model has not predicted yet, and route it."""
    db = open_db(db_path)
    model = models.find_model(db, model_ref) if model_ref else models.active_model(db)
    if model is None:
        raise click.ClickException("No active model: run `semtriage model add MODEL.onnx` first")
    clf = models.model_classifier(model)
    bar = Bar("Predicting", not as_json)
    rep = intake.predict_pending(db, clf, model["id"], redo=redo, settings=Settings.from_env(), progress=bar)
    bar.close()
    for path, reason in rep.failed:
        if not as_json:
            click.echo(f"  failed {path}: {reason}", err=True)
    emit(as_json, {**rep.to_json(), "model": model["version"], "provider": clf.provider},
          f"{rep.summary()} with {model['version']} on {clf.provider}")


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@db_option
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "imagefolder", "hf"]), default="csv",
              show_default=True)
@click.option("--include-auto", is_flag=True, help="Also export auto-accepted labels.")
@click.option("--include-special", is_flag=True, help="Also export 'several' and 'unusable' labels.")
@click.option("--split", default=None, help="Train/val/test fractions, e.g. 0.8,0.1,0.1 (stratified).")
@click.option("--seed", default=0, show_default=True)
@click.option("--zip", "zip_output", is_flag=True, help="Also write OUT.zip.")
@click.option("--predictions", is_flag=True,
              help="Write the predictions report (every image, full probabilities) instead of labels.")
@click.option("--particles", "with_particles", is_flag=True,
              help="Also write the exported images' particles: particles.csv, particles-images.csv "
                   "and particles-coco.json beside the manifest.")
@json_option
@friendly
def export(db_path: Path, out: Path, fmt: str, include_auto: bool, include_special: bool,
           split: str | None, seed: int, zip_output: bool, predictions: bool, with_particles: bool,
           as_json: bool) -> None:
    """Export accepted labels as a dataset into the folder OUT (CSV/JSONL manifest, ImageFolder,
    Hugging Face imagefolder), with --particles their particles too, or with --predictions the
    predictions report: into the file OUT when it ends in .csv or .jsonl (its format), else as
    OUT/predictions.csv (or .jsonl)."""
    db = open_db(db_path)
    if predictions and with_particles:
        raise click.UsageError("--particles goes with a dataset export, not with --predictions")
    if predictions:
        if out.suffix.lower() in (".csv", ".jsonl"):
            kind, target = out.suffix.lower()[1:], out
            if fmt not in ("csv", kind):
                raise click.UsageError(f"{out} ends in .{kind} but --format is {fmt}")
            out.parent.mkdir(parents=True, exist_ok=True)
        else:
            kind = "jsonl" if fmt == "jsonl" else "csv"
            out.mkdir(parents=True, exist_ok=True)
            target = out / f"predictions.{kind}"
        report = datasets.predictions_report(db, target, fmt=kind)
        emit(as_json, {"path": str(report)}, f"Predictions report: {report}")
        return
    if out.exists() and not out.is_dir():
        raise click.UsageError(f"{out} is a file; a dataset export goes into a folder")
    fractions = None
    if split:
        try:
            fractions = tuple(float(x) for x in split.split(","))
            assert len(fractions) == 3 and abs(sum(fractions) - 1) < 1e-6
        except (ValueError, AssertionError):
            raise click.BadParameter(f"{split!r}: expected three fractions summing to 1, e.g. 0.8,0.1,0.1",
                                     param_hint="--split") from None
    rep = workflows.export_dataset(db, out, particles=with_particles, fmt=fmt, include_auto=include_auto,
                                   include_special=include_special, split=fractions, seed=seed,
                                   zip_output=zip_output)
    for path, reason in rep.skipped:
        if not as_json:
            click.echo(f"  skipped {path}: {reason}", err=True)
    part = rep.extras.get("particles")
    emit(as_json, {"out": str(rep.out), "count": rep.count, "per_class": rep.per_class,
                    "per_split": rep.per_split, "zip": rep.zip_path and str(rep.zip_path),
                    "skipped": rep.skipped, **({"particles": part} if part else {})},
          lambda: f"Exported {rep.count} labelled images to {rep.out}"
          + "".join(f"\n  {c}: {n}" for c, n in sorted(rep.per_class.items()))
          + (f"\nParticles: {part['particles']} in {part['images']} image(s): "
             + ", ".join(part["files"]) if part else "")
          + (f"\nZip: {rep.zip_path}" if rep.zip_path else ""))


@click.command()
@db_option
@json_option
@friendly
def stats(db_path: Path, as_json: bool) -> None:
    """Counts: images, predictions, queue sizes, labels by source and class — and whether the
    active model may auto-accept (provisional / certified / forced) and what it holds back."""
    db = open_db(db_path)
    data = review.overview(db)
    cert = None
    if models.active_model(db) is not None:
        cert = review.certification(db)
        data["certification"] = cert.to_json()
        data["held_back"] = review.guard_counts(db)

    def text() -> str:
        lines = [cert.summary(), ""] if cert is not None else []
        for k, v in data.items():
            if k == "certification":
                continue
            if isinstance(v, dict):
                lines.append(f"{k}:")
                lines += [f"  {kk}: {vv}" for kk, vv in v.items()]
            else:
                lines.append(f"{k}: {v}")
        return "\n".join(lines)

    emit(as_json, data, text)


@click.command()
@db_option
@click.option("--images", default=300, show_default=True, help="How many synthetic demo images.")
@click.option("--force", is_flag=True, help="Rebuild the demo database even if it exists.")
@json_option
@friendly
def demo(db_path: Path, images: int, force: bool, as_json: bool) -> None:
    """Build the demo: synthetic micrographs in data/demo, ingested and predicted with the
    default model, with a few reference labels — deterministic; skipped when already built."""
    bar = Bar("Building demo", not as_json)
    info = workflows.build_demo(db_path, n_images=images, force=force, progress=bar)
    bar.close()
    extra = f": {info['model']} active, {info['predicted']} images predicted" if "model" in info else ""
    emit(as_json, info, f"Demo ready: {info['images']} images in {info['db']} ({info['status']}{extra})")


@click.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@json_option
@friendly
def backup(db_path: Path, dest: Path, as_json: bool) -> None:
    """Consistent online copy of the database (safe while the app runs). Restore: stop the
    app, copy DEST over the database file, start again."""
    out = store.backup(open_db(db_path), dest)
    ok = store.integrity_ok(store.open_db(out, migrate=False))
    emit(as_json, {"backup": str(out), "integrity": ok}, f"Backup written to {out} (integrity {'ok' if ok else 'FAILED'})")
    if not ok:
        sys.exit(1)
