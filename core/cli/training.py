"""`semtriage synth | train | card`: synthetic data, model training, model cards.

torch is imported only when ``train`` runs (core.training loads it on first use of a torch
name). Progress goes to stderr, results to stdout (``--json`` for machine-readable output).
"""


from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from core import models, store, training
from core.config import Settings
from core.errors import SemTriageError
from core.synth import read_ground_truth, write_dataset


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e))


class _EpochPrinter:
    """Progress callback: one line per epoch / per 10 % of other work, on stderr."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.next = 0.0

    def __call__(self, fraction: float, message: str) -> None:
        if not self.enabled:
            return
        epoch = message.startswith("epoch") or ": epoch " in message
        if epoch or fraction >= self.next or fraction >= 1.0:
            click.echo(f"[{100 * fraction:5.1f}%] {message}", err=True)
            if not epoch:
                self.next = fraction + 0.1


def card_summary(card: dict[str, Any]) -> str:
    """A few human lines from a model card."""
    ece = card.get("ece_15_bins", {})
    train_counts = json.dumps(card.get("data_counts", {}).get("train", {}))
    lines = [
        (f"model      {card.get('version')}  ({card.get('architecture')}, "
         f"{card.get('parameters', 0):,} parameters, input {card.get('input_size')})"),
        (f"trained    {card.get('epochs')} epochs, seed {card.get('seed')}, "
         f"{card.get('training_time_s')} s; data: {train_counts}"),
        f"held-out   accuracy {card.get('accuracy')} on {card.get('evaluated_on')}",
        (f"calibration T = {card.get('temperature')}; ECE (15 bins) "
         f"{ece.get('before_temperature')} → {ece.get('after_temperature')}"),
    ]
    per = card.get("per_class") or {}
    if per:
        lines.append("class          precision  recall  support")
        for c, m in per.items():
            lines.append(f"  {c:<12} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['support']:>8}")
    return "\n".join(lines)


@click.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "n", type=click.IntRange(min=0), default=700, show_default=True,
              help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--mixed-fraction", type=click.FloatRange(0.0, 1.0), default=0.1,
              show_default=True, help="Share of deliberately mixed (two-class) images.")
@click.option("--format", "fmt", type=click.Choice(["tif", "png"]), default="tif",
              show_default=True)
@click.option("--layout", type=click.Choice(["flat", "folders", "blind"]), default="flat",
              show_default=True, help="folders: one sub-folder per class (mixed in _mixed/).")
@click.option("--size", type=click.IntRange(min=32), default=256, show_default=True,
              help="Image width and height in pixels.")
@click.option("--classes", default=None, help="Comma-separated subset of the classes.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes generating images (same files whatever the number).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
def synth(out: Path, n: int, seed: int, mixed_fraction: float, fmt: str, layout: str, size: int,
          classes: str | None, workers: int, as_json: bool) -> None:
    """Write N synthetic SEM images with ground truth (ground_truth.jsonl) to OUT."""
    cls = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    printer = _EpochPrinter(not as_json)
    try:
        gt = write_dataset(out, n, seed=seed, classes=cls, size=size,
                           mixed_fraction=mixed_fraction, fmt=fmt, layout=layout,
                           progress=printer, workers=workers)
    except (ValueError, OSError) as e:
        raise _fail(e) from None
    recs = read_ground_truth(gt)
    counts: dict[str, int] = {}
    for r in recs:
        key = "+".join(r["classes"])
        counts[key] = counts.get(key, 0) + 1
    info = {"out": str(out), "images": len(recs), "ground_truth": str(gt),
            "mixed": sum(1 for r in recs if r["mixed"]),
            "with_databar": sum(1 for r in recs if r["databar_px"]), "counts": counts}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"Wrote {info['images']} images to {out} ({info['mixed']} mixed, "
                   f"{info['with_databar']} with a data bar); truth in {gt}")


@click.command()
@click.option("--synthetic", "n_per_class", type=click.IntRange(min=2), default=None,
              help="Train on N synthetic images per class (generated on the fly).")
@click.option("--folder", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Train on a folder-per-class tree.")
@click.option("--from-db", is_flag=True,
              help="Train a candidate on the reviewers' labels in the database (whole groups "
              "held out), compare it with the active model and register it, not active.")
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --from-db: the database (default: SEMTRIAGE_DB or data/semtriage.db).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output model, e.g. data/models/mine.onnx (card written beside it); with "
              "--from-db default <db folder>/models/retrained/VERSION.onnx.")
@click.option("--epochs", type=click.IntRange(min=1), default=22, show_default=True,
              help="CNN epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--version", "version", default=None, help="Model version name (metadata).")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Start from this model's weights (one made by semtriage).")
@click.option("--family", type=click.Choice(["cnn", "texture", "best"]), default="cnn",
              show_default=True, help="--from-db: CNN, texture features + linear head, or "
              "both keeping the better on the held-out groups.")
@click.option("--holdout", type=click.FloatRange(0.05, 0.5), default=0.2, show_default=True,
              help="--from-db: share of labelled images held out (whole groups).")
@click.option("--group-pattern", default=None,
              help=r"--from-db: regex on file names whose match (first group) names the "
              r"specimen / session, e.g. '^(S\d+)_'; images sharing it are held out together.")
@click.option("--no-folder-groups", is_flag=True,
              help="--from-db: do not group images by folder (when one folder mixes specimens); "
              "file-name pattern and near-copies still group.")
@click.option("--synthetic-per-class", type=click.IntRange(min=0), default=0, show_default=True,
              help="--from-db: add N synthetic images per class to training (never held out).")
@click.option("--init-from-active", is_flag=True,
              help="--from-db: start the CNN from the active model's weights.")
@click.option("--export-bundle", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="--from-db: write the labelled images (prepared), groups and split to one "
              "FILE.npz instead of training; train it on another machine with --from-bundle.")
@click.option("--from-bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Train on a bundle from --export-bundle (opens no database); "
              "register the model with `semtriage model add`.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output (the card).")
def train(n_per_class: int | None, folder: Path | None, from_db: bool, db_path: Path | None,
          out: Path | None, epochs: int, seed: int, version: str | None, init_from: Path | None,
          family: str, holdout: float, group_pattern: str | None, no_folder_groups: bool,
          synthetic_per_class: int, init_from_active: bool, export_bundle: Path | None,
          from_bundle: Path | None, as_json: bool) -> None:
    """Train a classifier, calibrate it, export ONNX + model card.

    Exactly one of --synthetic N, --folder DIR, --from-db. With --from-db the model is a
    candidate: see `semtriage model compare / promote / discard`.
    """
    chosen = [n_per_class is not None, folder is not None, from_db, from_bundle is not None]
    if sum(chosen) != 1:
        raise click.UsageError("Give exactly one of --synthetic N, --folder DIR, --from-db, "
                               "--from-bundle FILE")
    if export_bundle is not None and not from_db:
        raise click.UsageError("--export-bundle writes the labels of a database: use it with --from-db")
    if from_db and export_bundle is not None:
        _export_bundle(db_path, export_bundle, holdout, group_pattern, not no_folder_groups, seed,
                       as_json)
        return
    if from_bundle is not None:
        if out is None or out.suffix.lower() != ".onnx":
            raise click.UsageError("Give --out PATH.onnx for the model trained on the bundle")
        try:
            card = training.train_bundle(from_bundle, out.parent, family=family, epochs=epochs,
                                         version=version or out.stem,
                                         progress=_EpochPrinter(not as_json))
        except SemTriageError as e:
            raise _fail(e) from None
        final = out.parent / f"{version or out.stem}.onnx"
        if as_json:
            click.echo(json.dumps(card, indent=2))
        else:
            click.echo(f"Wrote {final} and {models.card_path(final)}")
            click.echo(card_summary(card))
            click.echo(f"Register it: semtriage model add {final}")
        return
    if from_db:
        _train_from_db(db_path, out, epochs, seed, version, init_from, family, holdout,
                       group_pattern, not no_folder_groups, synthetic_per_class,
                       init_from_active, as_json)
        return
    if out is None:
        raise click.UsageError("Give --out PATH.onnx for the model")
    from_db_only = {"--family": family != "cnn", "--holdout": holdout != 0.2,
                    "--group-pattern": group_pattern, "--no-folder-groups": no_folder_groups,
                    "--synthetic-per-class": synthetic_per_class,
                    "--init-from-active": init_from_active, "--db": db_path}
    used = [k for k, v in from_db_only.items() if v]
    if used:
        raise click.UsageError(f"{', '.join(used)} only apply with --from-db")
    printer = _EpochPrinter(True)
    try:
        if n_per_class is not None:
            if init_from is not None:
                raise click.UsageError("--init-from is for --folder / --from-db training")
            training.train_synthetic(out, n_per_class, epochs, seed, printer, version=version)
        else:
            assert folder is not None
            training.train_folder(folder, out, epochs=epochs, seed=seed, version=version,
                            progress=printer, init_from=init_from)
    except (SemTriageError, ValueError, OSError) as e:
        raise _fail(e) from None
    card = models.require_card(out)
    if as_json:
        click.echo(json.dumps(card, indent=2))
    else:
        click.echo(f"Wrote {out} and {models.card_path(out)}")
        click.echo(card_summary(card))


def _train_from_db(db_path: Path | None, out: Path | None, epochs: int, seed: int,
                   version: str | None, init_from: Path | None, family: str, holdout: float,
                   group_pattern: str | None, use_folder: bool, synthetic_per_class: int,
                   init_from_active: bool, as_json: bool) -> None:
    if init_from is not None:
        raise click.UsageError("With --from-db use --init-from-active (the active model's "
                               "weights); --init-from is for --folder training")
    settings = Settings.from_env()
    path = db_path or Path(settings.db)
    if not path.is_file():
        raise click.ClickException(f"No database {str(path)!r}; run `semtriage init` and "
                                   "`semtriage ingest` first, or give --db")
    if out is not None:
        if out.suffix.lower() != ".onnx":
            raise click.UsageError(f"--out {str(out)!r}: expected a file name ending in .onnx")
        version = version or out.stem
        if out.stem != version:
            raise click.UsageError(f"--out {str(out)!r} and --version {version!r} differ; with "
                                   "--from-db the file is named after the version")
    out_dir = out.parent if out is not None else path.resolve().parent / "models" / "retrained"
    opts = training.RetrainOptions(family=family, holdout=holdout, group_pattern=group_pattern,
                          use_folder=use_folder, synthetic_per_class=synthetic_per_class,
                          init_from_active=init_from_active, epochs=epochs, seed=seed,
                          version=version)
    try:
        res = training.retrain(store.open_db(path), opts, out_dir, settings=settings,
                      progress=_EpochPrinter(not as_json))
    except SemTriageError as e:
        raise _fail(e) from None
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=2, default=str))
    else:
        click.echo(res.summary())
        click.echo(f"Not active yet: `semtriage model promote {res.model['version']}` or "
                   f"`semtriage model discard {res.model['version']}`")


def _export_bundle(db_path: Path | None, dest: Path, holdout: float, group_pattern: str | None,
                   use_folder: bool, seed: int, as_json: bool) -> None:
    path = db_path or Path(Settings.from_env().db)
    if not path.is_file():
        raise click.ClickException(f"No database {str(path)!r}; give --db")
    opts = training.RetrainOptions(holdout=holdout, group_pattern=group_pattern,
                                   use_folder=use_folder, seed=seed)
    try:
        info = training.export_bundle(store.open_db(path), opts, dest,
                                      progress=_EpochPrinter(not as_json))
    except SemTriageError as e:
        raise _fail(e) from None
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(f"Wrote {info['path']}: {info['images']} labelled images ({info['train']} "
                   f"train, {info['held_out']} held out in whole groups), {info['bytes'] / 1e6:.1f} MB"
                   f"\nTrain it anywhere: semtriage train --from-bundle {dest} --out MODEL.onnx")


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The whole card as JSON.")
def card(model: Path, as_json: bool) -> None:
    """Print the model card of MODEL.onnx (MODEL.card.json beside it)."""
    try:
        data = models.require_card(model)
    except SemTriageError as e:
        raise _fail(e) from None
    click.echo(json.dumps(data, indent=2) if as_json else card_summary(data))
