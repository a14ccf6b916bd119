"""`semtriage` — the command line over core. Each command opens the database, calls one or two
core functions and prints the result (``--json`` for machine-readable output). Core's named
errors become clean messages with a non-zero exit code."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from core.config import DEFAULT_MODEL, Settings
from core.errors import SemTriageError


def _emit(ctx_json: bool, data: Any, text: str | Callable[[], str]) -> None:
    if ctx_json:
        click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    else:
        click.echo(text() if callable(text) else text)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn core's named errors into a one-line message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SemTriageError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


def db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        "db_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: Settings.from_env().db,
        show_default="data/semtriage.db",
        help="SQLite database file (env SEMTRIAGE_DB).",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")(fn)


def _open(db_path: Path):
    from core.store import open_db

    return open_db(db_path)


class _Bar:
    """Progress for core's ``progress(done, total, message)`` callbacks: a bar on a terminal,
    a line every 10 % otherwise (logs, CI); nothing with --json."""

    def __init__(self, label: str, enabled: bool):
        self.label = label
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.bar: Any = None
        self.last = 0
        self.next_pct = 10

    def __call__(self, done: int, total: int, message: str) -> None:
        if not self.enabled or total <= 0:
            return
        if not self.tty:
            pct = 100 * done // total
            if pct >= self.next_pct or done == total:
                click.echo(f"{self.label}: {done}/{total} ({pct}%)", err=True)
                self.next_pct = (pct // 10 + 1) * 10
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.last)
        self.last = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="semtriage")
def cli() -> None:
    """SEM Triage: sort and label SEM images with a classifier and review queues.

    Typical use: `semtriage init`, `semtriage model add MODEL.onnx`, `semtriage ingest FOLDER`,
    then review in the app (`streamlit run app.py`) or with `semtriage queue` / `semtriage label`,
    and `semtriage export OUT`.
    """


@cli.command()
@db_option
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help=f"Register and activate this model (default: {DEFAULT_MODEL.name} if present).")
@json_option
@friendly
def init(db_path: Path, model_path: Path | None, as_json: bool) -> None:
    """Create the database (or migrate an existing one) and register the default model."""
    from core.registry import active_model, register_model

    db = _open(db_path)
    path = model_path or (DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None)
    if path is not None and (model_path is not None or active_model(db) is None):
        register_model(db, path, activate=True)
    active = active_model(db)
    _emit(as_json, {"db": str(db_path), "active_model": active and active["version"]},
          f"Database ready: {db_path}\nActive model: {active['version'] if active else 'none'}")


@cli.command()
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
    """Ingest image files and folders (recursively) and predict them with the active model.

    Resumable: run it again after an interruption and it finishes the rest. Exit code 1 only
    when nothing could be ingested.
    """
    from core.ingest import ingest as do_ingest
    from core.ingest import predict_pending
    from core.registry import active_model, load_active

    db = _open(db_path)
    settings = Settings.from_env()
    model = None if no_predict else active_model(db)
    clf = load_active(db) if model is not None else None
    bar = _Bar("Ingesting", not as_json)
    rep = do_ingest(db, paths, classifier=clf, model_id=model["id"] if model else None,
                    labels_from_folders=labels_from_folders, settings=settings,
                    progress=bar, workers=workers)
    bar.close()
    if clf is not None and model is not None:
        extra = predict_pending(db, clf, model["id"], settings=settings, workers=workers)
        rep.predicted += extra.predicted
        rep.failed += extra.failed
    for path, reason in rep.failed:
        if not as_json:
            click.echo(f"  skipped {path}: {reason}", err=True)
    _emit(as_json, rep.to_json(), rep.summary())
    if rep.failed and rep.added + rep.duplicates + rep.unchanged == 0:
        sys.exit(1)


@cli.command()
@db_option
@click.option("--model", "model_ref", default=None, help="Model version or id (default: the active one).")
@click.option("--redo", is_flag=True, help="Predict every image again, not only those without a prediction.")
@json_option
@friendly
def predict(db_path: Path, model_ref: str | None, redo: bool, as_json: bool) -> None:
    """Predict every stored image that the model has not predicted yet, and route it."""
    from core.ingest import predict_pending
    from core.registry import active_model, find_model, model_classifier

    db = _open(db_path)
    model = find_model(db, model_ref) if model_ref else active_model(db)
    if model is None:
        raise click.ClickException("No active model: run `semtriage model add MODEL.onnx` first")
    clf = model_classifier(model)
    bar = _Bar("Predicting", not as_json)
    rep = predict_pending(db, clf, model["id"], redo=redo, settings=Settings.from_env(), progress=bar)
    bar.close()
    for path, reason in rep.failed:
        if not as_json:
            click.echo(f"  failed {path}: {reason}", err=True)
    _emit(as_json, {**rep.to_json(), "model": model["version"], "provider": clf.provider},
          f"{rep.summary()} with {model['version']} on {clf.provider}")


@cli.command()
@click.argument("name", type=click.Choice(["uncertain", "mixed", "auto", "all"]), default="uncertain")
@db_option
@click.option("-n", "limit", default=20, show_default=True, help="How many images.")
@click.option("--order", type=click.Choice(["margin", "confidence", "entropy", "file", "random"]),
              default=None, help="margin: smallest top-1 − top-2 first; confidence: least confidence "
              "first; entropy: most spread first. Default: the queue's stored order (margin).")
@click.option("--save-order", is_flag=True, help="Store --order as this queue's default (app too).")
@click.option("--reviewer", default=None, help="Claim the images for this reviewer (as the app does).")
@json_option
@friendly
def queue(db_path: Path, name: str, limit: int, order: str | None, save_order: bool,
          reviewer: str | None, as_json: bool) -> None:
    """List the next images of a review queue (with queue sizes)."""
    from core.labels import ORDER_NAMES, next_images, queue_counts, queue_order, set_queue_order

    db = _open(db_path)
    if save_order:
        if order is None:
            raise click.UsageError("--save-order needs --order")
        set_queue_order(db, name, order)
    order = order or queue_order(db, name)
    counts = queue_counts(db)
    # without a reviewer, peek with a throw-away name and a zero-length claim
    items = next_images(db, name, reviewer or "peek", n=limit, order=order,
                        claim_seconds=300 if reviewer else 0)
    rows = [{k: it[k] for k in ("image_id", "path", "pred", "p1", "margin", "queue", "reason")}
            for it in items]

    def text() -> str:
        head = "  ".join(f"{q}: {n}" for q, n in counts.items())
        lines = [f"Queues — {head}  (order: {ORDER_NAMES[order]})"]
        lines += [f"{r['image_id']:>7}  {r['pred'] or '-':<12} p={r['p1'] or 0:.2f}  {r['reason'] or ''}  "
                  f"{r['path']}" for r in rows]
        return "\n".join(lines)

    _emit(as_json, {"counts": counts, "order": order, "items": rows}, text)


@cli.command()
@click.argument("image_id", type=int)
@click.argument("action", type=click.Choice(["accept", "relabel", "several", "unusable", "skip", "undo"]))
@click.argument("label", required=False)
@db_option
@click.option("--reviewer", required=True, help="Who decides (recorded with the label).")
@json_option
@friendly
def label(db_path: Path, image_id: int, action: str, label: str | None, reviewer: str, as_json: bool) -> None:
    """Decide one image: accept the prediction, relabel CLASS, several, unusable, skip — or
    undo the reviewer's last decision (IMAGE_ID is then ignored; pass 0)."""
    from core.labels import current_label, decide, undo_last

    db = _open(db_path)
    if action == "undo":
        ev = undo_last(db, reviewer)
        if ev is None:
            raise click.ClickException(f"Nothing to undo for reviewer {reviewer!r}")
        cur = current_label(db, ev["image_id"])
        _emit(as_json, {"undone": ev, "current": cur},
              f"Undid {ev['action']} {ev['label'] or ''} on image {ev['image_id']}; now: "
              f"{cur['label'] if cur else 'unlabelled'}")
        return
    ev = decide(db, image_id, action, reviewer=reviewer, label=label)
    _emit(as_json, ev, f"Image {image_id}: {action} {ev['label'] or ''} by {reviewer}")


@cli.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
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
@json_option
@friendly
def export(db_path: Path, out: Path, fmt: str, include_auto: bool, include_special: bool,
           split: str | None, seed: int, zip_output: bool, predictions: bool, as_json: bool) -> None:
    """Export accepted labels as a dataset (CSV/JSONL manifest, ImageFolder, Hugging Face
    imagefolder), or with --predictions the predictions report."""
    from core import export as ex

    db = _open(db_path)
    if predictions:
        out.mkdir(parents=True, exist_ok=True)
        kind = "jsonl" if fmt == "jsonl" else "csv"
        report = ex.predictions_report(db, out / f"predictions.{kind}", fmt=kind)
        _emit(as_json, {"path": str(report)}, f"Predictions report: {report}")
        return
    fractions = None
    if split:
        try:
            fractions = tuple(float(x) for x in split.split(","))
            assert len(fractions) == 3 and abs(sum(fractions) - 1) < 1e-6
        except (ValueError, AssertionError):
            raise click.BadParameter(f"{split!r}: expected three fractions summing to 1, e.g. 0.8,0.1,0.1",
                                     param_hint="--split") from None
    rep = ex.export_labels(db, out, fmt=fmt, include_auto=include_auto, include_special=include_special,
                           split=fractions, seed=seed, zip_output=zip_output)  # type: ignore[arg-type]
    for path, reason in rep.skipped:
        if not as_json:
            click.echo(f"  skipped {path}: {reason}", err=True)
    _emit(as_json, {"out": str(rep.out), "count": rep.count, "per_class": rep.per_class,
                    "per_split": rep.per_split, "zip": rep.zip_path and str(rep.zip_path),
                    "skipped": rep.skipped},
          lambda: f"Exported {rep.count} labelled images to {rep.out}"
          + "".join(f"\n  {c}: {n}" for c, n in sorted(rep.per_class.items()))
          + (f"\nZip: {rep.zip_path}" if rep.zip_path else ""))


@cli.command()
@db_option
@json_option
@friendly
def stats(db_path: Path, as_json: bool) -> None:
    """Counts: images, predictions, queue sizes, labels by source and class."""
    from core.stats import overview

    db = _open(db_path)
    data = overview(db)

    def text() -> str:
        lines = []
        for k, v in data.items():
            if isinstance(v, dict):
                lines.append(f"{k}:")
                lines += [f"  {kk}: {vv}" for kk, vv in v.items()]
            else:
                lines.append(f"{k}: {v}")
        return "\n".join(lines)

    _emit(as_json, data, text)


@cli.group()
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
    from core.registry import register_model

    db = _open(db_path)
    meta = {"class_names": [c.strip() for c in classes.split(",") if c.strip()]} if classes else None
    m = register_model(db, path, activate=activate, metadata=meta)
    _emit(as_json, m, f"Registered {m['version']} ({len(m['class_names'])} classes)"
          + (" — active" if m["active"] else ""))


@model.command("list")
@db_option
@json_option
@friendly
def model_list(db_path: Path, as_json: bool) -> None:
    """List registered model versions."""
    from core.registry import list_models

    ms = list_models(_open(db_path))
    _emit(as_json, ms, lambda: "\n".join(
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
    from core.ingest import predict_pending
    from core.registry import find_model, model_classifier, set_active_model
    from core.routing import reroute

    db = _open(db_path)
    m = find_model(db, ref)
    clf = model_classifier(m)  # a model whose file no longer fits is refused before the switch
    set_active_model(db, m["id"])
    if not no_predict:
        predict_pending(db, clf, m["id"], settings=Settings.from_env())
    counts = reroute(db, m["id"])
    _emit(as_json, {"active": m["version"], "queues": counts}, f"Active model: {m['version']}; queues {counts}")


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
    from core.registry import find_model
    from core.retrain import compare, comparison_text

    db = _open(db_path)
    cand = find_model(db, candidate)
    other = find_model(db, against)["id"] if against else None
    res = compare(db, cand["id"], other, settings=Settings.from_env())
    _emit(as_json, res, lambda: comparison_text(res))


@model.command("promote")
@click.argument("ref")
@db_option
@json_option
@friendly
def model_promote(db_path: Path, ref: str, as_json: bool) -> None:
    """Make model REF the active one, predict the images it has not seen, rebuild the queues."""
    from core.registry import find_model
    from core.retrain import promote

    db = _open(db_path)
    m = find_model(db, ref)
    last = [-1.0]

    def progress(f: float, msg: str) -> None:
        if not as_json and (f - last[0] >= 0.1 or f >= 1.0):
            last[0] = f
            click.echo(f"[{100 * f:5.1f}%] {msg}", err=True)

    res = promote(db, m["id"], Settings.from_env(), progress)
    for f in res["failed"]:
        if not as_json:
            click.echo(f"  failed {f['path']}: {f['reason']}", err=True)
    _emit(as_json, res, f"Active model: {res['active']}; {res['predicted']:,} images predicted; "
          f"queues {res['queues']}")


@model.command("discard")
@click.argument("ref")
@db_option
@json_option
@friendly
def model_discard(db_path: Path, ref: str, as_json: bool) -> None:
    """Remove model REF (not the active one): its row and predictions, and its file when
    retraining wrote it."""
    from core.registry import find_model
    from core.retrain import discard

    db = _open(db_path)
    res = discard(db, find_model(db, ref)["id"])
    _emit(as_json, res, f"Discarded {res['discarded']} ({res['predictions_removed']:,} predictions"
          + (f"; removed {', '.join(res['files_removed'])}" if res["files_removed"] else "") + ")")


@cli.command()
@db_option
@click.option("--accept", type=float, default=None, help="Auto-accept when top-1 p ≥ this.")
@click.option("--mixed-margin", type=float, default=None, help="Mixed when top1−top2 < this …")
@click.option("--mixed-mass", type=float, default=None, help="… and top1+top2 ≥ this.")
@click.option("--cooccur", type=float, default=None, help="Mixed when the second class has p ≥ this.")
@click.option("--class", "cls", default="*", show_default=True, help="Per-class override (top-1 class).")
@json_option
@friendly
def thresholds(db_path: Path, accept: float | None, mixed_margin: float | None, mixed_mass: float | None,
               cooccur: float | None, cls: str, as_json: bool) -> None:
    """Show routing thresholds, or change them (then every prediction is re-routed)."""
    from dataclasses import asdict, replace

    from core.registry import active_model
    from core.routing import for_class, get_thresholds, reroute, set_thresholds

    db = _open(db_path)
    ts = get_thresholds(db)
    changes = {k: v for k, v in {"accept": accept, "mixed_margin": mixed_margin,
                                       "mixed_mass": mixed_mass, "cooccur": cooccur}.items() if v is not None}
    counts = None
    if changes:
        set_thresholds(db, replace(for_class(ts, cls), **changes), cls)
        ts = get_thresholds(db)
        if (m := active_model(db)) is not None:
            counts = reroute(db, m["id"])
    data = {c: asdict(t) for c, t in ts.items()}
    _emit(as_json, {"thresholds": data, "queues": counts}, lambda: "\n".join(
        f"{c:<12} accept {t['accept']:.2f}  mixed margin {t['mixed_margin']:.2f}  "
        f"mixed mass {t['mixed_mass']:.2f}  co-occurrence {t['cooccur']:.2f}" for c, t in data.items())
        + (f"\nQueues now: {counts}" if counts else ""))


@cli.command()
@db_option
@click.option("--images", default=300, show_default=True, help="How many synthetic demo images.")
@click.option("--force", is_flag=True, help="Rebuild the demo database even if it exists.")
@json_option
@friendly
def demo(db_path: Path, images: int, force: bool, as_json: bool) -> None:
    """Build the demo: synthetic micrographs in data/demo, ingested and predicted with the
    default model, with a few reference labels — deterministic; skipped when already built."""
    from core.demo import build_demo

    bar = _Bar("Building demo", not as_json)
    info = build_demo(db_path, n_images=images, force=force, progress=bar)
    bar.close()
    extra = f": {info['model']} active, {info['predicted']} images predicted" if "model" in info else ""
    _emit(as_json, info, f"Demo ready: {info['images']} images in {info['db']} ({info['status']}{extra})")


@cli.command()
@click.argument("dest", type=click.Path(dir_okay=False, path_type=Path))
@db_option
@json_option
@friendly
def backup(db_path: Path, dest: Path, as_json: bool) -> None:
    """Consistent online copy of the database (safe while the app runs). Restore: stop the
    app, copy DEST over the database file, start again."""
    from core.store import backup as do_backup
    from core.store import integrity_ok, open_db

    out = do_backup(_open(db_path), dest)
    ok = integrity_ok(open_db(out, migrate=False))
    _emit(as_json, {"backup": str(out), "integrity": ok}, f"Backup written to {out} (integrity {'ok' if ok else 'FAILED'})")
    if not ok:
        sys.exit(1)


@cli.group()
def issues() -> None:
    """Likely mislabelled reference images (confident learning on out-of-fold predictions)."""


@issues.command("find")
@db_option
@click.option("--folds", default=5, show_default=True, help="Group-aware cross-validation folds.")
@click.option("--pattern", default=None, help="File-name regex whose first group names the specimen.")
@json_option
@friendly
def issues_find(db_path: Path, folds: int, pattern: str | None, as_json: bool) -> None:
    """Find likely mislabelled images among the human / imported labels and store them as a
    review queue (replacing the previous run's open issues)."""
    from core.label_issues import find_issues

    bar = _Bar("finding label issues", not as_json)
    try:
        rep = find_issues(_open(db_path), folds=folds, pattern=pattern,
                          progress=lambda f, m: bar(int(f * 1000), 1000, m))
    finally:
        bar.close()
    _emit(as_json, rep.to_json(), rep.summary)


@issues.command("list")
@db_option
@click.option("-n", "limit", default=20, show_default=True, help="How many issues.")
@click.option("--offset", default=0, show_default=True, help="Skip this many first.")
@json_option
@friendly
def issues_list(db_path: Path, limit: int, offset: int, as_json: bool) -> None:
    """List open label issues, most likely wrong first (score = out-of-fold probability of the
    given label). Resolve them in the app's Reference set page, or relabel with `semtriage label`."""
    from core.label_issues import issue_counts, issue_queue, last_run

    db = _open(db_path)
    rows = issue_queue(db, limit, offset)
    counts, run = issue_counts(db), last_run(db)

    def text() -> str:
        if run is None:
            return "No label-issue run yet: `semtriage issues find`."
        head = (f"Label issues — open {counts['open']}, kept {counts['kept']}, relabelled "
                f"{counts['relabelled']} (run {run['run_at']})")
        lines = [head]
        lines += [f"{r['image_id']:>7}  {r['given']:<12} → {r['suggested']:<12} score {r['score']:.3f}  "
                  f"{r['path']}" for r in rows]
        return "\n".join(lines)

    _emit(as_json, {"counts": counts, "last_run": run, "items": rows}, text)


def _register_training_commands() -> None:
    try:
        from core.cli_train import card, synth, train
    except ImportError:  # training commands need torch; the rest of the CLI works without
        return
    for c in (synth, train, card):
        cli.add_command(c)


_register_training_commands()


def main() -> None:
    cli(prog_name="semtriage")


if __name__ == "__main__":
    main()
