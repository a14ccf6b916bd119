"""Training recipes: the shipped default model from synthetic images, a folder-per-class
tree, a list of labelled records — each trained, calibrated and exported with its card.

    .venv/bin/python -m core.training --default     # rebuild data/models/default.onnx
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import DEFAULT_MODEL
from core.models import Classifier, extractor_path, read_card, write_card
from core.progress import Progress
from core.synth import CLASSES, SYNTH_VERSION, mix_pairs, read_ground_truth, write_dataset
from core.training.cnn import TrainResult, train
from core.training.data import THREADS, Item, _synthetic_items, folder_items, load_inputs
from core.training.onnx_export import export_features, export_onnx, fit_model_familiarity

# The default model: `python -m core.training --default` (the same as `semtriage train
# --synthetic 500 --epochs 22 --seed 0 --out data/models/default.onnx --version
# default-synth-v1`).


# The default model: `python -m core.training --default` (the same as `semtriage train
# --synthetic 500 --epochs 22 --seed 0 --out data/models/default.onnx --version
# default-synth-v1`).
DEFAULT_N_PER_CLASS = 500
DEFAULT_EPOCHS = 22
DEFAULT_SEED = 0
DEFAULT_VERSION = "default-synth-v1"
DEFAULT_MIXED_FRACTION = 0.3


def train_synthetic(out_path: str | Path, n_per_class: int = DEFAULT_N_PER_CLASS,
                    epochs: int = DEFAULT_EPOCHS, seed: int = DEFAULT_SEED,
                    progress: Progress | None = None, *, classes: Sequence[str] | None = None,
                    version: str | None = None, size: int = 256,
                    val_per_class: int | None = None,
                    mixed_fraction: float = DEFAULT_MIXED_FRACTION) -> TrainResult:
    """Generate ``n_per_class`` synthetic images per class (plus a held-out set with other
    seeds), write them as TIFFs to a temporary folder, read them back through the ingest
    reader, train, calibrate, export to ``out_path`` (+ card). Returns the result.

    ``mixed_fraction``: extra two-class images (as a share of the single-class ones), trained
    with soft labels (half / half) so that mixed images come out split between their classes.
    """
    classes = list(classes or CLASSES)
    prog = progress or (lambda f, m: None)
    n_val = val_per_class if val_per_class is not None else max(10, n_per_class // 5)
    n_single = n_per_class * len(classes)
    n_mixed = round(n_single * mixed_fraction) if mix_pairs(classes) else 0
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semtriage-synth-") as tmp:
        tr = _synthetic_items(Path(tmp) / "train", n_single, seed, classes, size,
                              lambda f, m: prog(0.22 * f, "generating training images: " + m))
        mixed: list[tuple[str, list[str]]] = []
        if n_mixed:
            gt = write_dataset(Path(tmp) / "mixed", n_mixed, seed=seed + 4_242_421,
                               classes=classes, size=size, mixed_fraction=1.0,
                               workers=THREADS,
                               progress=lambda f, m: prog(0.22 + 0.04 * f,
                                                          "generating mixed images: " + m))
            mixed = [(str(Path(tmp) / "mixed" / r["file"]), r["classes"])
                     for r in read_ground_truth(gt)]
        va = _synthetic_items(Path(tmp) / "val", n_val * len(classes), seed + 7_919_999, classes,
                              size, lambda f, m: prog(0.26 + 0.04 * f,
                                                      "generating held-out images: " + m))
        val_mixed: list[tuple[str, list[str]]] = []
        n_val_mixed = round(n_val * len(classes) * mixed_fraction) if n_mixed else 0
        if n_val_mixed:
            gt = write_dataset(Path(tmp) / "val_mixed", n_val_mixed, seed=seed + 5_151_515,
                               classes=classes, size=size, mixed_fraction=1.0,
                               workers=THREADS)
            val_mixed = [(str(Path(tmp) / "val_mixed" / r["file"]), r["classes"])
                         for r in read_ground_truth(gt)]
        gen_s = time.perf_counter() - t0
        td = {"source": "synthetic", "generator": SYNTH_VERSION, "classes": classes,
              "n_per_class": n_per_class, "val_per_class": n_val, "image_size": size,
              "seed": seed, "mixed_images_soft_labels": len(mixed),
              "held_out_mixed_images": len(val_mixed),
              "format": "tif, read back with core.images"}
        res = train(tr, va, class_names=classes, epochs=epochs, seed=seed,
                    progress=lambda f, m: prog(0.3 + 0.68 * f, m), training_data=td,
                    mixed_items=mixed, val_mixed_items=val_mixed)
    res.seconds = round(time.perf_counter() - t0, 1)
    res.training_data["generation_s"] = round(gen_s, 1)
    export_onnx(res, out_path, version=version or f"synth-{n_per_class}x{len(classes)}-s{seed}")
    synthetic_familiarity(out_path, classes=classes, seed=seed, size=size,
                          progress=lambda f, m: prog(0.98 + 0.02 * f, m))
    prog(1.0, f"wrote {out_path}")
    return res


FAMILIARITY_PER_CLASS = 150


def synthetic_familiarity(model_path: str | Path = DEFAULT_MODEL, *,
                          n_per_class: int = FAMILIARITY_PER_CLASS, seed: int = DEFAULT_SEED,
                          classes: Sequence[str] | None = None, size: int = 256,
                          progress: Progress | None = None) -> dict[str, Any]:
    """Fit the familiarity statistics of a model trained on synthetic images and store them in
    its card: ``n_per_class`` training-like images per class (the training recipe's seed) for
    the statistics, a third as many with the held-out seed for the limits (texture distance
    and the model's energy score). Writes the shipped extractor first when it is missing."""
    classes = list(classes or CLASSES)
    prog = progress or (lambda f, m: None)
    if not extractor_path().is_file():
        export_features()
    n = n_per_class * len(classes)
    with tempfile.TemporaryDirectory(prefix="semtriage-familiar-") as tmp:
        tr = _synthetic_items(Path(tmp) / "tr", n, seed, classes, size,
                              lambda f, m: prog(0.5 * f, "familiarity images: " + m))
        ho = _synthetic_items(Path(tmp) / "ho", max(20, n // 3), seed + 7_919_999, classes, size,
                              lambda f, m: prog(0.5 + 0.3 * f, "familiarity held-out images: " + m))
        xtr, xho = load_inputs(tr)[0], load_inputs(ho)[0]
    clf = Classifier(model_path)
    block = fit_model_familiarity(
        xtr, x_holdout=xho, holdout_logits=clf.run_batches(xho),
        fitted_on=f"{len(xtr)} synthetic training-like images ({SYNTH_VERSION}, seed {seed}); "
                  f"limits on {len(xho)} held-out synthetic images")
    card = read_card(model_path) or {}
    card["familiarity"] = block
    write_card(model_path, card)
    prog(1.0, f"familiarity statistics in the card of {model_path}")
    return block


def train_folder(folder: str | Path, out_path: str | Path, *, epochs: int = DEFAULT_EPOCHS,
                 seed: int = 0, val_fraction: float = 0.15, version: str | None = None,
                 progress: Progress | None = None, init_from: str | Path | None = None
                 ) -> TrainResult:
    """Train on a folder-per-class tree (class = sub-folder name), stratified held-out split."""
    items = folder_items(folder)
    if not items:
        raise ValueError(f"No images in class sub-folders of {str(folder)!r}")
    class_names = sorted({c for _, c in items})
    td = {"source": "folder", "folder": str(folder),
          "counts": dict(sorted(Counter(c for _, c in items).items()))}
    res = train(items, None, class_names=class_names, epochs=epochs, seed=seed, progress=progress,
                init_from=init_from, val_fraction=val_fraction, training_data=td)
    export_onnx(res, out_path, version=version or f"folder-{Path(folder).name}-s{seed}")
    return res


def train_from_records(records: Sequence[dict[str, Any]], out_path: str | Path, *,
                       epochs: int = DEFAULT_EPOCHS, seed: int = 0, val_fraction: float = 0.15,
                       class_names: Sequence[str] | None = None, version: str | None = None,
                       progress: Progress | None = None, init_from: str | Path | None = None
                       ) -> TrainResult:
    """Train on human labels: ``records`` = [{"path": ..., "label": ...}, ...] (e.g. from the
    database). Classes default to the labels present; stratified, seeded held-out split."""
    items: list[Item] = []
    for r in records:
        if "path" not in r or "label" not in r:
            raise ValueError(f"Each record needs 'path' and 'label', got {r!r}")
        items.append((str(r["path"]), str(r["label"])))
    if not items:
        raise ValueError("No labelled records to train on")
    names = list(class_names) if class_names else sorted({c for _, c in items})
    td = {"source": "labels", "counts": dict(sorted(Counter(c for _, c in items).items()))}
    res = train(items, None, class_names=names, epochs=epochs, seed=seed, progress=progress,
                init_from=init_from, val_fraction=val_fraction, training_data=td)
    export_onnx(res, out_path, version=version or f"labels-{len(items)}-s{seed}")
    return res


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - a thin entry point
    import argparse

    ap = argparse.ArgumentParser(prog="python -m core.training", description=__doc__.split("\n")[0])
    ap.add_argument("--default", action="store_true", help="rebuild data/models/default.onnx")
    ap.add_argument("--familiarity", action="store_true",
                    help="only rebuild the texture-feature extractor and the familiarity "
                         "statistics in the card of --out (default: the shipped model)")
    ap.add_argument("--out", default=str(DEFAULT_MODEL))
    ap.add_argument("--n-per-class", type=int, default=DEFAULT_N_PER_CLASS)
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    a = ap.parse_args(argv)
    if a.familiarity:
        export_features()
        block = synthetic_familiarity(Path(a.out))
        print(json.dumps({k: block[k] for k in ("n", "limit", "energy_limit", "fitted_on")}))
        return
    version = DEFAULT_VERSION if a.default else None
    out = DEFAULT_MODEL if a.default else Path(a.out)
    n, ep, seed = ((DEFAULT_N_PER_CLASS, DEFAULT_EPOCHS, DEFAULT_SEED) if a.default
                   else (a.n_per_class, a.epochs, a.seed))
    last = [-1.0]

    def progress(f: float, m: str) -> None:
        if m.startswith("epoch") or f - last[0] >= 0.05 or f >= 1.0:
            last[0] = f
            print(f"[{100 * f:5.1f}%] {m}", flush=True)

    res = train_synthetic(out, n, ep, seed, progress, version=version)
    print(json.dumps({k: res.metrics.get(k) for k in ("accuracy", "ece_before", "ece_after")}
                     | {"temperature": round(res.temperature, 4), "seconds": res.seconds,
                        "model": str(out)}))
