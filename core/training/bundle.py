"""A training bundle: retraining split in two, for a machine with a GPU or more memory.

:func:`export_bundle` (on the database host) reads the labelled images once, prepared as at
inference, with their labels, groups and the leak-free whole-group split of
:func:`plan_split`, into one ``.npz`` file (written under a temporary name and renamed).
:func:`train_bundle` (anywhere: it opens no database) trains the candidate on it — the same
families, held-out metrics and temperature as `semtriage train --from-db` — and writes the
ONNX model and its card; `semtriage model add` registers it as usual. What the bundle cannot
give: the side-by-side comparison with the active model (`semtriage model compare` after
registering) and the candidate's ``model_images`` rows.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.errors import TrainingError
from core.models import require_card, write_card
from core.progress import Progress
from core.store import now_iso
from core.training.data import INPUT_SIZE
from core.training.from_labels import (
    CALIBRATION_NOTE,
    FAMILIES,
    RetrainOptions,
    _family_metrics,
    _load,
    _train_family,
)
from core.training.holdout import plan_split

BUNDLE_FORMAT = 1


def export_bundle(db: Database, opts: RetrainOptions, path: str | Path, *,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Write the labelled images of ``db`` (``opts``: sources, grouping, hold-out share) as
    one bundle file at ``path``. Returns its summary."""
    opts.validate()
    prog = progress or (lambda f, m: None)
    split = plan_split(db, opts, lambda f, m: prog(0.1 * f, m))
    size = tuple(opts.input_size) if opts.input_size else INPUT_SIZE
    size = (int(size[0]), int(size[1]))
    order = list(split.train_idx) + list(split.holdout_idx)
    x, kept, skipped = _load([split.paths[i] for i in order], size,
                             lambda f, m: prog(0.1 + 0.85 * f, "reading labelled images: " + m))
    rows = [order[k] for k in kept]
    n_tr = sum(1 for k in kept if k < len(split.train_idx))
    names = list(split.class_names)
    meta = {
        "format": BUNDLE_FORMAT, "created_at": now_iso(), "class_names": names,
        "input_size": list(size), "options": {k: v for k, v in asdict(opts).items()},
        "split": split.report, "skipped_unreadable": skipped,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}.npz")
    try:
        np.savez_compressed(
            tmp, x=x.astype(np.float32),
            y=np.array([names.index(split.labels[i]) for i in rows], np.int64),
            train=np.arange(len(rows)) < n_tr,
            groups=np.array([split.groups[i] for i in rows]),
            image_ids=np.array([split.image_ids[i] for i in rows], np.int64),
            paths=np.array([split.paths[i] for i in rows]),
            meta=np.array(json.dumps(meta, default=str)))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    prog(1.0, f"bundle of {len(rows)} images written")
    return {"path": str(path), "images": len(rows), "train": n_tr, "held_out": len(rows) - n_tr,
            "classes": names, "skipped_unreadable": len(skipped),
            "bytes": path.stat().st_size}


def train_bundle(path: str | Path, out_dir: str | Path, *, family: str = "cnn",
                 epochs: int | None = None, texture_epochs: int | None = None,
                 version: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Train a candidate on the bundle at ``path`` and write ``out_dir/<version>.onnx`` and its
    card. Opens no database. Returns the card."""
    from core.training.onnx_export import export_onnx  # torch: imported when training

    prog = progress or (lambda f, m: None)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            x, y, train = z["x"], z["y"], z["train"]
            groups = [str(g) for g in z["groups"]]
    except (OSError, KeyError, ValueError) as e:
        raise TrainingError(f"{str(path)!r} is not a readable training bundle: {e}") from None
    if meta.get("format") != BUNDLE_FORMAT:
        raise TrainingError(f"{str(path)!r}: bundle format {meta.get('format')!r}, expected "
                            f"{BUNDLE_FORMAT}")
    if family not in FAMILIES:
        raise TrainingError(f"Model family {family!r} is unknown; expected one of {', '.join(FAMILIES)}")
    names = list(meta["class_names"])
    stored = dict(meta["options"])
    stored["sources"] = tuple(stored.get("sources") or ())
    stored["input_size"] = tuple(stored["input_size"]) if stored.get("input_size") else None
    opts = RetrainOptions(**{**stored, "family": family, "init_from_active": False,
                             "synthetic_per_class": 0,
                             **({"epochs": epochs} if epochs else {}),
                             **({"texture_epochs": texture_epochs} if texture_epochs else {})})
    opts.validate()
    xtr, ytr, xho, yho = x[train], y[train], x[~train], y[~train]
    ho_groups = [g for g, t in zip(groups, train, strict=True) if not t]
    td = {"source": "bundle", "bundle": Path(path).name,
          "counts": {"train": len(ytr), "held_out": len(yho)}}
    families = ["cnn", "texture"] if family == "best" else [family]
    trained, metrics = {}, {}
    t0 = time.perf_counter()
    for i, fam in enumerate(families):
        lo, hi = i / len(families) * 0.9, (i + 1) / len(families) * 0.9

        def step(f: float, msg: str, lo: float = lo, hi: float = hi, fam: str = fam) -> None:
            prog(lo + (hi - lo) * f, f"{fam}: {msg}")

        res = _train_family(fam, xtr, ytr, xho, yho, names, opts, None, td, step, None)
        trained[fam] = res
        metrics[fam] = _family_metrics(res, xho, yho, ho_groups, names, opts.seed,
                                       time.perf_counter() - t0)
    chosen = min(families, key=lambda f: (-metrics[f]["accuracy"], metrics[f]["ece"]))
    m = metrics[chosen]
    version = version or f"bundle-{chosen}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[\w.+-]{1,80}", version):
        raise TrainingError(f"Version name {version!r}: use 1–80 letters, digits, . + - _")
    final = Path(out_dir) / f"{version}.onnx"
    if final.exists():
        raise TrainingError(f"{str(final)!r} already exists; choose another version name")
    prog(0.92, "exporting to ONNX")
    final.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = export_onnx(trained[chosen], final, version=version)
    card = require_card(onnx_path)
    card.update({
        "accuracy": m["accuracy"], "per_class": m["per_class"],
        "confusion_matrix": m["confusion_matrix"],
        "ece_15_bins": {"before_temperature": m["ece_before_temperature"], "after_temperature": m["ece"]},
        "temperature_fitted_on": CALIBRATION_NOTE,
        "evaluated_on": (f"{len(yho)} held-out labels from {len(set(ho_groups))} groups the "
                         "model never trained on (from a training bundle)"),
        "bundle": {"file": Path(path).name, "created_at": meta.get("created_at"),
                   "family": chosen, "families": {f: {k: v for k, v in mm.items()
                                                      if k != "confusion_matrix"}
                                                  for f, mm in metrics.items()},
                   "split": meta.get("split"), "trained_at": now_iso()},
    })
    write_card(onnx_path, card)
    prog(1.0, f"wrote {final.name}: held-out accuracy {m['accuracy']:.1%} on unseen groups")
    return card
