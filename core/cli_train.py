"""`semtriage synth | train | card`: synthetic data, model training, model cards.

Registered by ``core/cli.py``. torch is imported only when ``train`` runs (through core.train).
Progress goes to stderr, results to stdout (``--json`` for machine-readable output).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from core.errors import SemTriageError


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
        if message.startswith("epoch") or fraction >= self.next or fraction >= 1.0:
            click.echo(f"[{100 * fraction:5.1f}%] {message}", err=True)
            if not message.startswith("epoch"):
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
@click.option("--layout", type=click.Choice(["flat", "folders"]), default="flat",
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
    from core.synth import read_ground_truth, write_dataset

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
@click.option("--from-db", is_flag=True, help="Train on the reviewers' labels in the database.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output model, e.g. data/models/mine.onnx (card written beside it).")
@click.option("--epochs", type=click.IntRange(min=1), default=22, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--version", "version", default=None, help="Model version name (metadata).")
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Start from this model's weights (one made by semtriage).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output (the card).")
def train(n_per_class: int | None, folder: Path | None, from_db: bool, out: Path, epochs: int,
          seed: int, version: str | None, init_from: Path | None, as_json: bool) -> None:
    """Train a classifier, calibrate it, export ONNX + model card.

    Exactly one of --synthetic N, --folder DIR, --from-db.
    """
    chosen = [n_per_class is not None, folder is not None, from_db]
    if sum(chosen) != 1:
        raise click.UsageError("Give exactly one of --synthetic N, --folder DIR, --from-db")
    if from_db:
        raise click.UsageError("not yet")
    from core import train as tr

    printer = _EpochPrinter(True)
    try:
        if n_per_class is not None:
            if init_from is not None:
                raise click.UsageError("--init-from is for --folder / --from-db training")
            tr.train_synthetic(out, n_per_class, epochs, seed, printer, version=version)
        else:
            assert folder is not None
            tr.train_folder(folder, out, epochs=epochs, seed=seed, version=version,
                            progress=printer, init_from=init_from)
    except (SemTriageError, ValueError, OSError) as e:
        raise _fail(e) from None
    card = tr.read_card(out)
    if as_json:
        click.echo(json.dumps(card, indent=2))
    else:
        click.echo(f"Wrote {out} and {tr.card_path(out)}")
        click.echo(card_summary(card))


@click.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The whole card as JSON.")
def card(model: Path, as_json: bool) -> None:
    """Print the model card of MODEL.onnx (MODEL.card.json beside it)."""
    p = model.with_name(model.stem + ".card.json")
    if not p.is_file():
        raise click.ClickException(f"No model card {str(p)!r} beside {str(model)!r}")
    data = json.loads(p.read_text(encoding="utf-8"))
    click.echo(json.dumps(data, indent=2) if as_json else card_summary(data))
