"""Retrain from the reviewers' labels: a candidate model, tested on groups of images it never saw,
compared with the active model (core/training/comparison.py), registered inactive.

    res = retrain(db, RetrainOptions(family="best", holdout=0.2), out_dir="data/models/retrained")
    res.headline                      # held-out accuracy on groups the candidate never saw
    compare(db, res.model["id"])      # active vs candidate on the same held-out labels
    core.workflows.promote(db, res.model["id"])   # activate, predict, re-route (or:)
    core.models.discard(db, res.model["id"])      # file + row + its predictions

Which labels
    The current label of every image whose source is ``human`` (a reviewer's decision) or
    ``import`` (a sorted archive brought in with ``--labels-from-folders``: people made those
    too) — the same ground truth as the threshold recommendation (core/calibration.py).
    ``several`` / ``unusable`` are not classes and are left out. Auto-accepted labels never
    train a model: they are the model's own guesses.

Leak-free split
    SEM archives are full of near-copies (tiles, shifted crops, consecutive frames, one specimen
    imaged many times). Images are grouped (core/datasets/groups.py: same folder, same value of an
    optional filename pattern, perceptual-hash near-duplicates — joined transitively) and whole
    groups are held out, stratified by class. The candidate never trains on a held-out group;
    ``model_images`` records which images it trained on and which it held out, and the headline
    number is its accuracy on those unseen groups.

Calibration
    The temperature is fitted on the held-out human labels (unseen groups): fitting it on
    training specimens would make the model most confident exactly where it should be least.
    The ECE reported is 2-fold cross-fitted over held-out groups (T fitted on one half, measured
    on the other), so it is not measured on the images T was fitted on.

Families
    ``cnn`` (core.training's SemNet, optionally started from the active model's weights, optionally
    plus N synthetic images per class in training only — which also keeps the active model's
    classes that have no labels yet, where the generator knows them), ``texture`` (core/training/texture.py: fixed
    texture filter banks + a linear head, for few labels) or ``best`` (both; the one with the
    higher held-out accuracy is kept, ties broken by the cross-fitted ECE; both are reported).
    Choosing between two on the held-out groups makes the kept one's number slightly
    optimistic; the card says so.

Cancel (a ``threading.Event``) stops within one training batch, or at the next progress report
(per 50 images) while reading;
the ONNX file and card are written under a temporary name and renamed only once everything
else succeeded, and registration plus ``model_images`` is one transaction: a cancelled or
failed run leaves nothing registered and no files.
"""


from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.access import User, require_admin
from core.config import Settings
from core.errors import Cancelled, TrainingError
from core.intake import store_predictions
from core.models import (
    FAMILIARITY_MIN_IMAGES,
    Classifier,
    active_model,
    card_path,
    expected_calibration_error,
    fit_temperature,
    get_model,
    register_model,
    require_card,
    softmax,
    wilson,
    write_card,
)
from core.progress import Progress
from core.store import HUMAN_SOURCES, now_iso, write_tx
from core.synth import CLASSES as SYNTH_CLASSES
from core.synth import SYNTH_VERSION
from core.training.comparison import ECE_BINS, _compare_sets, comparison_text
from core.training.data import INPUT_SIZE, _synthetic_items, load_inputs
from core.training.holdout import plan_split
from core.training.metrics import classification_report

FAMILIES = ("cnn", "texture", "best")


# Peak learning rate when the CNN starts from the active model's weights (core.training's 3e-3 is
# for training from scratch). On the demo (270 labels, 3 epochs, default model as start) the
# held-out accuracy was 82 % at 3e-3, 90 % at 1e-3 and 96 % (= the start model) at 3e-4.
FINE_TUNE_LR = 3e-4


CHOICE_NOTE = ("family chosen by held-out accuracy among {families}: the kept model's number is "
               "slightly optimistic (the better of {n} on the same images)")
CALIBRATION_NOTE = ("temperature fitted on all held-out human labels (groups never trained on); "
                    "ECE after temperature is 2-fold cross-fitted over held-out groups (T fitted "
                    "on one half, measured on the other)")


@dataclass
class RetrainOptions:
    """What to train. ``epochs``: CNN epochs; ``texture_epochs``: epochs of the texture head.
    ``input_size``: None = the active model's when starting from it, else core.training's 128²."""

    family: str = "cnn"
    holdout: float = 0.2
    group_pattern: str | None = None
    use_folder: bool = True
    max_distance: int = 6
    synthetic_per_class: int = 0
    init_from_active: bool = False
    epochs: int = 22
    texture_epochs: int = 200
    seed: int = 0
    version: str | None = None
    sources: tuple[str, ...] = HUMAN_SOURCES
    input_size: tuple[int, int] | None = None

    def validate(self) -> RetrainOptions:
        if self.family not in FAMILIES:
            raise TrainingError(f"Model family {self.family!r} is unknown; expected one of "
                                f"{', '.join(FAMILIES)}")
        if not 0.05 <= self.holdout <= 0.5:
            raise TrainingError(f"Held-out share {self.holdout!r} must be between 0.05 and 0.5")
        if self.epochs < 1 or self.texture_epochs < 1:
            raise TrainingError(f"epochs must be ≥ 1, got {self.epochs!r} / {self.texture_epochs!r}")
        if self.synthetic_per_class < 0:
            raise TrainingError(f"synthetic_per_class must be ≥ 0, got {self.synthetic_per_class!r}")
        if self.group_pattern:
            try:
                re.compile(self.group_pattern)
            except re.error as e:
                raise TrainingError(f"Filename pattern {self.group_pattern!r} is not a valid "
                                    f"regular expression: {e}") from None
        bad = [s for s in self.sources if s not in HUMAN_SOURCES]
        if bad or not self.sources:
            raise TrainingError(f"Label sources {list(self.sources)!r}: expected some of "
                                f"{', '.join(HUMAN_SOURCES)}")
        return self


@dataclass
class RetrainResult:
    model: dict[str, Any]  # the registry row of the candidate (inactive)
    card: dict[str, Any]
    comparison: dict[str, Any]

    @property
    def headline(self) -> float:
        """Held-out accuracy on unseen groups."""
        return float(self.card["retrain"]["headline"]["accuracy"])

    def to_json(self) -> dict[str, Any]:
        return {"model": {k: self.model[k] for k in ("id", "version", "path", "active")},
                "headline": self.card["retrain"]["headline"], "retrain": self.card["retrain"],
                "comparison": self.comparison}

    def summary(self) -> str:
        r = self.card["retrain"]
        h = r["headline"]
        lines = [(f"Candidate {self.model['version']} (id {self.model['id']}, not active): "
                 f"{r['family']}; held-out accuracy on unseen groups {h['accuracy']:.1%} "
                 f"(95 % {h['interval'][0]:.1%}–{h['interval'][1]:.1%}, {h['images']} images "
                 f"in {h['groups']} groups)")]
        gone = (r.get("classes") or {}).get("of_the_active_model_not_learnt")
        if gone:
            lines.append(f"  note: no labels for {', '.join(gone)} (classes of the active model): "
                         "this candidate does not know them")
        for fam, m in r["families"].items():
            lines.append(f"  {fam:<8} accuracy {m['accuracy']:.1%}  ECE {m['ece']:.3f}  "
                         f"T = {m['temperature']:.2f}  {m['seconds']} s")
        lines.append(comparison_text(self.comparison))
        return "\n".join(lines)


# ---------------------------------------------------------------- training


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Retraining cancelled; nothing was registered")


def _sub(prog: Progress, lo: float, hi: float, cancel: threading.Event | None,
         prefix: str = "") -> Progress:
    """A progress callback for one stage (``lo``–``hi``) that also checks ``cancel``."""

    def f(frac: float, msg: str) -> None:
        _check_cancel(cancel)
        prog(lo + (hi - lo) * max(0.0, min(1.0, frac)), prefix + msg)

    return f


def _load(paths: Sequence[str], input_size: tuple[int, int], prog: Progress
          ) -> tuple[np.ndarray, list[int], list[str]]:
    return load_inputs([(p, "") for p in paths], input_size=input_size, progress=prog)


def _synthetic(classes: Sequence[str], n: int, seed: int, input_size: tuple[int, int],
               prog: Progress) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``n`` synthetic images for each class the generator knows, prepared (training only)."""
    known = [c for c in classes if c in SYNTH_CLASSES]
    info: dict[str, Any] = {"per_class": n, "classes": known, "generator": SYNTH_VERSION,
                            "not_generated": [c for c in classes if c not in SYNTH_CLASSES]}
    if not known or n <= 0:
        return np.zeros((0, 1, *input_size), np.float32), np.zeros(0, np.int64), info
    with tempfile.TemporaryDirectory(prefix="semtriage-retrain-synth-") as tmp:
        items = _synthetic_items(Path(tmp), n * len(known), seed + 1_000_003, known,
                                 max(2 * max(input_size), 64),
                                 lambda f, m: prog(0.7 * f, "synthetic images: " + m))
        x, kept, _ = load_inputs(items, input_size=input_size,
                                 progress=lambda f, m: prog(0.7 + 0.3 * f, m))
    y = np.array([list(classes).index(items[i][1]) for i in kept], np.int64)
    info["images"] = len(y)
    return x, y, info


def _cross_fit_ece(logits: np.ndarray, y: np.ndarray, groups: Sequence[str],
                   seed: int) -> tuple[float, str]:
    """ECE of temperature-scaled probabilities where each half of the held-out groups is scaled
    with the T fitted on the other half. Falls back to folds over images with one group."""
    ug = sorted(set(groups))
    rng = np.random.default_rng(seed)
    if len(ug) >= 2:
        order = rng.permutation(len(ug))
        fold_of = {ug[j]: k % 2 for k, j in enumerate(order)}
        fold = np.array([fold_of[g] for g in groups])
        how = "2 folds over held-out groups"
    else:
        fold = rng.permutation(len(y)) % 2
        how = "2 folds over held-out images (a single held-out group)"
    probs = np.zeros_like(logits, dtype=np.float64)
    for k in (0, 1):
        fit, ev = fold != k, fold == k
        if not ev.any():
            continue
        t = fit_temperature(logits[fit], y[fit]) if fit.any() else 1.0
        probs[ev] = softmax(logits[ev], t)
    return round(expected_calibration_error(probs, y, ECE_BINS), 4), how


def _train_family(family: str, xtr: np.ndarray, ytr: np.ndarray, xho: np.ndarray,
                  yho: np.ndarray, class_names: list[str], opts: RetrainOptions,
                  init_from: str | None, td: dict[str, Any], prog: Progress,
                  cancel: threading.Event | None) -> Any:
    if family == "texture":
        from core.training.texture import train_texture  # torch: imported when training

        return train_texture(xtr, ytr, xho, yho, class_names=class_names,
                             epochs=opts.texture_epochs, seed=opts.seed, progress=prog,
                             cancel=cancel, training_data=dict(td, family="texture"))
    from core.training.cnn import train_arrays  # torch: imported when training

    extra: dict[str, Any] = {"lr": FINE_TUNE_LR} if init_from else {}
    return train_arrays(xtr, ytr, xho, yho, class_names=class_names, epochs=opts.epochs,
                        seed=opts.seed, progress=prog, init_from=init_from, cancel=cancel,
                        training_data=dict(td, family="cnn", **extra), **extra)


def _family_metrics(res: Any, xho: np.ndarray, yho: np.ndarray, ho_groups: list[str],
                    class_names: list[str], seed: int, seconds: float) -> dict[str, Any]:
    """Held-out figures of one trained family; sets its temperature (fitted on all held-out)."""
    logits = res.val_logits
    if logits is None or len(logits) != len(yho):
        logits = res.predict_logits(xho)
    logits = np.asarray(logits, np.float64)
    res.temperature = fit_temperature(logits, yho)
    rep = classification_report(softmax(logits, res.temperature), yho, class_names)
    ece, how = _cross_fit_ece(logits, yho, ho_groups, seed)
    k = int((logits.argmax(1) == yho).sum())
    lo, hi = wilson(k, len(yho))
    return {"accuracy": float(rep["accuracy"]), "correct": k, "images": len(yho),
            "interval": [round(lo, 4), round(hi, 4)], "ece": ece, "ece_cross_fit": how,
            "ece_before_temperature": round(expected_calibration_error(softmax(logits), yho,
                                                                       ECE_BINS), 4),
            "temperature": round(float(res.temperature), 4), "per_class": rep["per_class"],
            "confusion_matrix": rep["confusion_matrix"], "seconds": round(seconds, 1),
            "architecture": res.model.describe()}


def retrain(db: Database, opts: RetrainOptions, out_dir: str | Path, *,
            settings: Settings | None = None, progress: Progress | None = None,
            cancel: threading.Event | None = None, by: User | None = None) -> RetrainResult:
    """Train a candidate on the labels, hold out whole groups, calibrate on them, compare with
    the active model, write ``out_dir/<version>.onnx`` (+ card) and register it inactive, with
    its train / held-out images in ``model_images``. See the module docstring."""
    from core.training.onnx_export import (  # torch: imported when training
        export_onnx,
        fit_model_familiarity,
    )

    require_admin(by, "train a model")
    opts.validate()
    prog = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    settings = settings or Settings()
    active = active_model(db)
    init_from = None
    input_size = tuple(opts.input_size) if opts.input_size else INPUT_SIZE
    if opts.init_from_active:
        if opts.family == "texture":
            raise TrainingError("Starting from the active model's weights applies to the cnn "
                                "family; choose cnn or best, or leave it off")
        if active is None:
            raise TrainingError("No active model to start from; leave 'start from the active "
                                "model' off")
        init_from = active["path"]
        size = active["info"].get("input_size")
        input_size = tuple(size) if size and not opts.input_size else input_size  # type: ignore[assignment]
    input_size = (int(input_size[0]), int(input_size[1]))

    split = plan_split(db, opts, _sub(prog, 0.0, 0.08, cancel))
    names = list(split.class_names)
    if opts.synthetic_per_class and active is not None:
        # keep the active model's taxonomy where synthetic images can stand in for labels
        names = sorted(set(names) | (set(active["class_names"]) & set(SYNTH_CLASSES)))
    synthetic_only = sorted(set(names) - set(split.class_names))
    not_learnt = sorted(set(active["class_names"]) - set(names)) if active else []
    y_all = np.array([names.index(lab) for lab in split.labels], np.int64)
    # read in split order (training images, then held-out ones): both sets are views of one array
    order = list(split.train_idx) + list(split.holdout_idx)
    x_all, kept, skipped = _load([split.paths[i] for i in order], input_size,
                                 _sub(prog, 0.08, 0.2, cancel, "reading labelled images: "))
    n_tr = sum(1 for k in kept if k < len(split.train_idx))  # kept rows keep their order
    tr_idx = [order[k] for k in kept[:n_tr]]
    ho_idx = [order[k] for k in kept[n_tr:]]
    if not ho_idx or len({split.labels[i] for i in tr_idx}) < 2:
        raise TrainingError(f"Too few readable labelled images left ({len(kept)} of "
                            f"{len(split.paths)}): " + "; ".join(skipped[:3]))
    xtr, xho = x_all[:n_tr], x_all[n_tr:]
    ytr, yho = y_all[tr_idx], y_all[ho_idx]
    ho_groups = [split.groups[i] for i in ho_idx]
    synth_info: dict[str, Any] = {}
    if opts.synthetic_per_class:
        xs, ys, synth_info = _synthetic(names, opts.synthetic_per_class, opts.seed, input_size,
                                        _sub(prog, 0.2, 0.3, cancel))
        if len(ys):
            xtr, ytr = np.concatenate([xtr, xs]), np.concatenate([ytr, ys])
    td = {"source": "labels", "label_sources": list(opts.sources),
          "counts": {"train": dict(Counter(split.labels[i] for i in tr_idx)),
                     "held_out": dict(Counter(split.labels[i] for i in ho_idx))},
          "synthetic": synth_info or None, "init_from": active["version"] if init_from and active
          else None, "skipped_unreadable": len(skipped)}

    families = ["cnn", "texture"] if opts.family == "best" else [opts.family]
    spans = {"cnn": (0.3, 0.85 if len(families) == 1 else 0.7),
             "texture": (0.7 if len(families) == 2 else 0.3, 0.85)}
    trained: dict[str, Any] = {}
    metrics: dict[str, dict[str, Any]] = {}
    for fam in families:
        lo, hi = spans[fam]
        t_f = time.perf_counter()
        res = _train_family(fam, xtr, ytr, xho, yho, names, opts, init_from, td,
                            _sub(prog, lo, hi, cancel, f"{fam}: "), cancel)
        _check_cancel(cancel)
        trained[fam] = res
        metrics[fam] = _family_metrics(res, xho, yho, ho_groups, names, opts.seed,
                                       time.perf_counter() - t_f)
    chosen = min(families, key=lambda f: (-metrics[f]["accuracy"], metrics[f]["ece"]))
    res = trained[chosen]
    m = metrics[chosen]

    # export under a temporary folder; rename into place only when all went well
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    version = opts.version or f"retrained-{chosen}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[\w.+-]{1,80}", version):
        raise TrainingError(f"Version name {version!r}: use 1–80 letters, digits, . + - _")
    tmp = out_dir / f".partial-{uuid.uuid4().hex[:12]}"
    try:
        prog(0.86, "exporting to ONNX")
        onnx_tmp = export_onnx(res, tmp / f"{version}.onnx", version=version)
        _check_cancel(cancel)
        cand = Classifier(onnx_tmp)
        cand_probs = cand.run(xho.astype(np.float32))  # the exported file's own answers
        prog(0.9, "comparing with the active model")
        ho_ids = [split.image_ids[i] for i in ho_idx]
        truth = [split.labels[i] for i in ho_idx]
        comparison = _compare_sets(db, truth, ho_ids, ho_groups, cand_probs, cand.class_names,
                                   version, active, settings, _sub(prog, 0.9, 0.97, cancel),
                                   exclude_trained=True)
        card = require_card(onnx_tmp)
        headline = {"accuracy": m["accuracy"], "interval": m["interval"], "images": len(ho_idx),
                    "groups": len(set(ho_groups)), "what": "held-out accuracy on unseen groups"}
        card.update({
            "accuracy": m["accuracy"], "per_class": m["per_class"],
            "confusion_matrix": m["confusion_matrix"],
            "ece_15_bins": {"before_temperature": m["ece_before_temperature"],
                            "after_temperature": m["ece"]},
            "temperature_fitted_on": CALIBRATION_NOTE,
            "evaluated_on": (f"{len(ho_idx)} held-out human labels from {len(set(ho_groups))} "
                             "groups the model never trained on"),
        })
        card["retrain"] = {
            "headline": headline, "family": chosen, "requested_family": opts.family,
            "families": {f: {k: v for k, v in mm.items() if k not in ("confusion_matrix",)}
                         for f, mm in metrics.items()},
            "chosen_by": (CHOICE_NOTE.format(families=", ".join(families), n=len(families))
                          if len(families) > 1 else "requested"),
            "calibration": CALIBRATION_NOTE, "split": split.report,
            "images": {"train": len(tr_idx), "held_out": len(ho_idx),
                       "skipped_unreadable": len(skipped)},
            "options": {k: v for k, v in asdict(opts).items() if k != "sources"},
            "synthetic": synth_info or None,
            "init_from": td["init_from"], "comparison": comparison,
            "classes": {"labelled": split.class_names, "synthetic_only": synthetic_only,
                        "of_the_active_model_not_learnt": not_learnt},
            "trained_at": now_iso(), "seconds": round(time.perf_counter() - t0, 1),
        }
        card["familiarity"] = _familiarity(db, fit_model_familiarity, x_all[:n_tr], xho,
                                           cand.run_batches(xho.astype(np.float32)),
                                           [split.image_ids[i] for i in tr_idx])
        write_card(onnx_tmp, card)
        _check_cancel(cancel)
        final = out_dir / f"{version}.onnx"
        if final.exists() or card_path(final).exists():
            raise TrainingError(f"{str(final)!r} already exists; choose another version name")
        os.replace(card_path(onnx_tmp), card_path(final))
        os.replace(onnx_tmp, final)
        try:
            with write_tx(db, "registering the retrained model"):
                row = register_model(db, final, activate=False)
                if Path(row["path"]) != final.resolve():
                    raise TrainingError(f"The trained model is identical to the registered "
                                        f"model {row['version']!r}; nothing new to register")
                db.execute("UPDATE models SET active = 0 WHERE id = ?", [row["id"]])
                db.conn.executemany(
                    "INSERT INTO model_images(model_id, image_id, role) VALUES (?, ?, ?)",
                    [(row["id"], split.image_ids[i], "train") for i in tr_idx]
                    + [(row["id"], split.image_ids[i], "holdout") for i in ho_idx])
                _store_predictions(db, cand, row["id"], ho_ids, cand_probs)
        except BaseException:
            final.unlink(missing_ok=True)
            card_path(final).unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prog(1.0, f"registered {version}: held-out accuracy {m['accuracy']:.1%} on unseen groups")
    return RetrainResult(get_model(db, row["id"]), card, comparison)


def _familiarity(db: Database, fit: Any, x_train: np.ndarray, x_holdout: np.ndarray,
                 holdout_logits: np.ndarray, train_ids: Sequence[int]) -> dict[str, Any] | None:
    """The candidate's familiarity statistics (core.models.familiarity) from its labelled
    training images (synthetic extras left out), limits on the held-out groups, with the pixel
    sizes and instruments of the training images; None with too few images."""
    if len(x_train) < FAMILIARITY_MIN_IMAGES or x_train.shape[1:] != (1, *INPUT_SIZE):
        return None
    meta = {int(i): (px, inst) for i, px, inst in db.execute(
        f"SELECT id, pixel_size_m, instrument FROM images WHERE id IN "
        f"({', '.join('?' for _ in train_ids)})", list(train_ids)).fetchall()}
    block: dict[str, Any] = fit(
        x_train, x_holdout=x_holdout if len(x_holdout) >= 10 else None,
        holdout_logits=holdout_logits if len(x_holdout) >= 10 else None,
        pixel_sizes=[meta.get(int(i), (None, None))[0] for i in train_ids],
        instruments=[meta.get(int(i), (None, None))[1] for i in train_ids],
        fitted_on=f"{len(x_train)} labelled training images; limits on {len(x_holdout)} "
                  "held-out images of unseen groups")
    return block


def _store_predictions(db: Database, clf: Any, model_id: int, image_ids: Sequence[int],
                       probs: np.ndarray) -> None:
    """The candidate's predictions on its held-out images (so they need no second run, and
    core.review.heldout_predictions can recommend thresholds for it before it is promoted)."""
    shas = dict(db.execute(f"SELECT id, sha256 FROM images WHERE id IN "
                           f"({', '.join('?' for _ in image_ids)})", list(image_ids)).fetchall())
    items = [(i, shas[i]) for i in image_ids]
    store_predictions(db, model_id, clf.class_names, items, probs)
