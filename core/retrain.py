"""Retrain from the reviewers' labels, compare with the active model on images neither trained
on, promote or discard.

    res = retrain(db, RetrainOptions(family="best", holdout=0.2), out_dir="data/models/retrained")
    res.headline                      # held-out accuracy on groups the candidate never saw
    compare(db, res.model["id"])      # active vs candidate on the same held-out labels
    promote(db, res.model["id"])      # activate, predict unlabelled images, re-route, auto labels
    discard(db, other_id)             # file + row + its predictions (never the active model)

Which labels
    The current label of every image whose source is ``human`` (a reviewer's decision) or
    ``import`` (a sorted archive brought in with ``--labels-from-folders``: people made those
    too) — the same ground truth as the threshold recommendation (core/calibration.py).
    ``several`` / ``unusable`` are not classes and are left out. Auto-accepted labels never
    train a model: they are the model's own guesses.

Leak-free split
    SEM archives are full of near-copies (tiles, shifted crops, consecutive frames, one specimen
    imaged many times). Images are grouped (core/groups.py: same folder, same value of an
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
    ``cnn`` (core.train's SemNet, optionally started from the active model's weights, optionally
    plus N synthetic images per class in training only — which also keeps the active model's
    classes that have no labels yet, where the generator knows them), ``texture`` (core.texture: fixed
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

import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.access import User, require_admin
from core.config import Settings
from core.errors import Cancelled, ImageReadError, NotFound, StoreError, TrainingError
from core.labels import SPECIAL_LABELS
from core.store import now_iso, write_tx

ProgressFn = Callable[[float, str], None]
LABEL_SOURCES = ("human", "import")
FAMILIES = ("cnn", "texture", "best")
MIN_LABELS = 10
# Peak learning rate when the CNN starts from the active model's weights (core.train's 3e-3 is
# for training from scratch). On the demo (270 labels, 3 epochs, default model as start) the
# held-out accuracy was 82 % at 3e-3, 90 % at 1e-3 and 96 % (= the start model) at 3e-4.
FINE_TUNE_LR = 3e-4
ECE_BINS = 15
CHOICE_NOTE = ("family chosen by held-out accuracy among {families}: the kept model's number is "
               "slightly optimistic (the better of {n} on the same images)")
CALIBRATION_NOTE = ("temperature fitted on all held-out human labels (groups never trained on); "
                    "ECE after temperature is 2-fold cross-fitted over held-out groups (T fitted "
                    "on one half, measured on the other)")


@dataclass
class RetrainOptions:
    """What to train. ``epochs``: CNN epochs; ``texture_epochs``: epochs of the texture head.
    ``input_size``: None = the active model's when starting from it, else core.train's 128²."""

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
    sources: tuple[str, ...] = LABEL_SOURCES
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
        bad = [s for s in self.sources if s not in LABEL_SOURCES]
        if bad or not self.sources:
            raise TrainingError(f"Label sources {list(self.sources)!r}: expected some of "
                                f"{', '.join(LABEL_SOURCES)}")
        return self


@dataclass
class Split:
    """Labelled images (aligned lists), their groups and the train / held-out indices."""

    image_ids: list[int]
    paths: list[str]
    labels: list[str]
    groups: list[str]
    train_idx: list[int]
    holdout_idx: list[int]
    class_names: list[str]
    report: dict[str, Any] = field(default_factory=dict)


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


# ---------------------------------------------------------------- labels and split


def gather_labels(db: Database, sources: Sequence[str] = LABEL_SOURCES) -> list[tuple[int, str, str]]:
    """(image id, path, label) of every image whose current label comes from ``sources``,
    special labels (several, unusable) left out; by image id."""
    marks = ", ".join("?" for _ in sources)
    specials = ", ".join("?" for _ in SPECIAL_LABELS)
    return [(int(r[0]), str(r[1]), str(r[2])) for r in db.execute(
        "SELECT c.image_id, i.path, c.label FROM current_labels c JOIN images i ON i.id = c.image_id "
        f"WHERE c.source IN ({marks}) AND c.label NOT IN ({specials}) ORDER BY c.image_id",
        [*sources, *SPECIAL_LABELS])]


def label_summary(db: Database, sources: Sequence[str] = LABEL_SOURCES) -> dict[str, int]:
    """Trainable labels per class."""
    return dict(sorted(Counter(lab for _, _, lab in gather_labels(db, sources)).items()))


def plan_split(db: Database, opts: RetrainOptions, progress: ProgressFn | None = None) -> Split:
    """Labels, groups and a stratified whole-group hold-out, with clear errors when the labels
    cannot support one (too few, one class, a class seen in a single group)."""
    from core.groups import group_holdout, group_report, image_groups, image_hashes

    prog = progress or (lambda f, m: None)
    rows = gather_labels(db, opts.sources)
    counts = Counter(lab for _, _, lab in rows)
    if len(rows) < MIN_LABELS:
        raise TrainingError(f"Only {len(rows)} labelled images ({dict(counts)}); retraining needs "
                            f"at least {MIN_LABELS}, from at least 2 classes. Review more images.")
    if len(counts) < 2:
        raise TrainingError(f"All {len(rows)} labelled images are {next(iter(counts))!r}; "
                            "retraining needs at least 2 classes.")
    ids = [r[0] for r in rows]
    image_hashes(db, ids, progress=lambda f, m: prog(f, "hashing images: " + m))
    gmap = image_groups(db, ids, pattern=opts.group_pattern or None, use_folder=opts.use_folder,
                        max_distance=opts.max_distance)
    groups = [str(gmap[i]) for i in ids]
    labels = [r[2] for r in rows]
    per_class: dict[str, set[str]] = {}
    for lab, g in zip(labels, groups, strict=True):
        per_class.setdefault(lab, set()).add(g)
    single = {c: counts[c] for c, gs in sorted(per_class.items()) if len(gs) < 2}
    if len(set(groups)) == 1:
        raise TrainingError(
            f"All {len(rows)} labelled images form one group ({groups[0]!r}): nothing can be held "
            "out as unseen. "
            + ("If that folder mixes specimens, turn grouping by folder off and give a file-name "
               "pattern for the specimen." if opts.use_folder and groups[0].startswith("folder:")
               else "Label images from other specimens or folders."))
    if single:
        raise TrainingError(
            "Class(es) " + ", ".join(f"{c!r} ({n} image{'s' if n != 1 else ''})"
                                     for c, n in single.items())
            + " come from a single group (one folder / specimen / near-duplicate set): a model "
            "cannot be trained and tested on unseen groups of them. Label images of that class "
            "from another specimen or folder"
            + (", or turn grouping by folder off if a folder mixes specimens (then give a "
               "filename pattern for the specimen)" if opts.use_folder else
               ", or change the filename pattern") + ".")
    tr, ho = group_holdout(labels, groups, opts.holdout, opts.seed)
    tr, ho = sorted(int(i) for i in tr), sorted(int(i) for i in ho)
    if not ho:
        raise TrainingError("The held-out split came out empty; raise the held-out share.")
    shared = {groups[i] for i in tr} & {groups[i] for i in ho}
    if shared:  # group_holdout's contract; checked because a leak would be silent
        raise TrainingError(f"Groups {sorted(shared)[:5]!r} landed on both sides of the split")
    missing = sorted(set(labels) - {labels[i] for i in tr})
    if missing:
        raise TrainingError(f"No training images left for {missing!r} after holding out whole "
                            "groups; lower the held-out share or label more groups.")
    report = dict(group_report(groups, tr, ho))
    report.setdefault("label_sources", list(opts.sources))
    return Split(ids, [r[1] for r in rows], labels, groups, tr, ho, sorted(counts), report)


# ---------------------------------------------------------------- training


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Retraining cancelled; nothing was registered")


def _sub(prog: ProgressFn, lo: float, hi: float, cancel: threading.Event | None,
         prefix: str = "") -> ProgressFn:
    """A progress callback for one stage (``lo``–``hi``) that also checks ``cancel``."""

    def f(frac: float, msg: str) -> None:
        _check_cancel(cancel)
        prog(lo + (hi - lo) * max(0.0, min(1.0, frac)), prefix + msg)

    return f


def _load(paths: Sequence[str], input_size: tuple[int, int], prog: ProgressFn
          ) -> tuple[np.ndarray, list[int], list[str]]:
    from core.train import load_inputs

    return load_inputs([(p, "") for p in paths], input_size=input_size, progress=prog)


def _synthetic(classes: Sequence[str], n: int, seed: int, input_size: tuple[int, int],
               prog: ProgressFn) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``n`` synthetic images for each class the generator knows, prepared (training only)."""
    from core.synth import CLASSES, SYNTH_VERSION
    from core.train import _synthetic_items, load_inputs

    known = [c for c in classes if c in CLASSES]
    info: dict[str, Any] = {"per_class": n, "classes": known, "generator": SYNTH_VERSION,
                            "not_generated": [c for c in classes if c not in CLASSES]}
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
    from core.train import expected_calibration_error, fit_temperature, softmax

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
                  init_from: str | None, td: dict[str, Any], prog: ProgressFn,
                  cancel: threading.Event | None) -> Any:
    if family == "texture":
        from core.texture import train_texture

        return train_texture(xtr, ytr, xho, yho, class_names=class_names,
                             epochs=opts.texture_epochs, seed=opts.seed, progress=prog,
                             cancel=cancel, training_data=dict(td, family="texture"))
    from core.train import train_arrays

    extra: dict[str, Any] = {"lr": FINE_TUNE_LR} if init_from else {}
    return train_arrays(xtr, ytr, xho, yho, class_names=class_names, epochs=opts.epochs,
                        seed=opts.seed, progress=prog, init_from=init_from, cancel=cancel,
                        training_data=dict(td, family="cnn", **extra), **extra)


def _family_metrics(res: Any, xho: np.ndarray, yho: np.ndarray, ho_groups: list[str],
                    class_names: list[str], seed: int, seconds: float) -> dict[str, Any]:
    """Held-out figures of one trained family; sets its temperature (fitted on all held-out)."""
    from core.stats import wilson
    from core.train import (
        classification_report,
        expected_calibration_error,
        fit_temperature,
        softmax,
    )

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
            settings: Settings | None = None, progress: ProgressFn | None = None,
            cancel: threading.Event | None = None, by: User | None = None) -> RetrainResult:
    """Train a candidate on the labels, hold out whole groups, calibrate on them, compare with
    the active model, write ``out_dir/<version>.onnx`` (+ card) and register it inactive, with
    its train / held-out images in ``model_images``. See the module docstring."""
    from core import train as tr
    from core.model import Classifier
    from core.registry import active_model, register_model

    require_admin(by, "train a model")
    opts.validate()
    prog = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    settings = settings or Settings()
    active = active_model(db)
    init_from = None
    input_size = tuple(opts.input_size) if opts.input_size else tr.INPUT_SIZE
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
        from core.synth import CLASSES as SYNTH_CLASSES

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
        onnx_tmp = tr.export_onnx(res, tmp / f"{version}.onnx", version=version)
        _check_cancel(cancel)
        cand = Classifier(onnx_tmp)
        cand_probs = cand.run(xho.astype(np.float32))  # the exported file's own answers
        prog(0.9, "comparing with the active model")
        ho_ids = [split.image_ids[i] for i in ho_idx]
        truth = [split.labels[i] for i in ho_idx]
        comparison = _compare_sets(db, truth, ho_ids, ho_groups, cand_probs, cand.class_names,
                                   version, active, settings, _sub(prog, 0.9, 0.97, cancel),
                                   exclude_trained=True)
        card = tr.read_card(onnx_tmp)
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
        (tmp / f"{version}.card.json").write_text(json.dumps(card, indent=2, default=str) + "\n",
                                                  encoding="utf-8")
        _check_cancel(cancel)
        final = out_dir / f"{version}.onnx"
        if final.exists() or tr.card_path(final).exists():
            raise TrainingError(f"{str(final)!r} already exists; choose another version name")
        os.replace(tmp / f"{version}.card.json", tr.card_path(final))
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
            tr.card_path(final).unlink(missing_ok=True)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from core.registry import get_model

    prog(1.0, f"registered {version}: held-out accuracy {m['accuracy']:.1%} on unseen groups")
    return RetrainResult(get_model(db, row["id"]), card, comparison)


def _store_predictions(db: Database, clf: Any, model_id: int, image_ids: Sequence[int],
                       probs: np.ndarray) -> None:
    """The candidate's predictions on its held-out images (so they need no second run, and
    core.calibration can recommend thresholds for it before it is promoted)."""
    from core.ingest import _INSERT_PRED, _mark_done, _prediction_rows

    shas = dict(db.execute(f"SELECT id, sha256 FROM images WHERE id IN "
                           f"({', '.join('?' for _ in image_ids)})", list(image_ids)).fetchall())
    items = [(i, shas[i]) for i in image_ids]
    db.conn.executemany(_INSERT_PRED, _prediction_rows(db, clf, model_id, items, probs))
    _mark_done(db, list(image_ids))


# ---------------------------------------------------------------- comparison


def evaluate(truth: Sequence[str], probs: np.ndarray, class_names: Sequence[str],
             ts: Any) -> dict[str, Any]:
    """One model on labelled images: accuracy (+ Wilson 95 %), per-class recall, confusion
    matrix (rows = truth, columns = prediction, by name), ECE (15 bins), and what auto-accept
    under the thresholds ``ts`` does: coverage and precision (+ Wilson 95 %)."""
    from core.routing import route
    from core.stats import wilson
    from core.train import expected_calibration_error

    names = list(class_names)
    p = np.asarray(probs, np.float64).reshape(len(truth), len(names))
    pred = [names[j] for j in p.argmax(1)] if len(p) else []
    ok = np.array([a == b for a, b in zip(pred, truth, strict=True)], bool)
    k, n = int(ok.sum()), len(truth)
    idx = np.array([names.index(t) if t in names else -1 for t in truth], np.int64)
    classes = sorted(set(truth))
    cols = classes + sorted(set(pred) - set(classes))
    cm = np.zeros((len(classes), len(cols)), np.int64)
    for t, q in zip(truth, pred, strict=True):
        cm[classes.index(t), cols.index(q)] += 1
    recall = {c: {"recall": round(float(cm[i, cols.index(c)] / cm[i].sum()), 4) if cm[i].sum()
                  else None, "support": int(cm[i].sum())} for i, c in enumerate(classes)}
    auto = np.array([route(row, names, ts)[0] == "auto" for row in p], bool)
    ka, na = int((ok & auto).sum()), int(auto.sum())
    lo, hi = wilson(k, n)
    alo, ahi = wilson(ka, na)
    return {
        "images": n, "correct": k, "accuracy": round(k / n, 4) if n else None,
        "interval": [round(lo, 4), round(hi, 4)],
        "ece": round(expected_calibration_error(p, idx, ECE_BINS), 4) if n else None,
        "per_class": recall,
        "confusion_matrix": {"rows": classes, "columns": cols, "matrix": cm.tolist()},
        "auto_accept": {"accepted": na, "correct": ka, "coverage": round(na / n, 4) if n else None,
                        "precision": round(ka / na, 4) if na else None,
                        "precision_interval": [round(alo, 4), round(ahi, 4)]},
    }


def _model_probs(db: Database, model: dict[str, Any], image_ids: Sequence[int],
                 settings: Settings, prog: ProgressFn) -> tuple[np.ndarray, list[int]]:
    """``model``'s probabilities on ``image_ids``: stored predictions where present, else a run
    of the model on the files. Returns (probs, positions that could be predicted)."""
    from core.imageio import read_image
    from core.registry import model_classifier

    k = len(model["class_names"])
    out = np.zeros((len(image_ids), k), np.float64)
    stored: dict[int, list[float]] = {}
    for chunk in range(0, len(image_ids), 500):
        part = list(image_ids[chunk: chunk + 500])
        stored.update({int(i): json.loads(pj) for i, pj in db.execute(
            f"SELECT image_id, probs FROM predictions WHERE model_id = ? AND image_id IN "
            f"({', '.join('?' for _ in part)})", [model["id"], *part])})
    todo = [j for j, i in enumerate(image_ids) if i not in stored]
    ok = [j for j, i in enumerate(image_ids) if i in stored]
    for j in ok:
        out[j] = stored[image_ids[j]]
    if todo:
        clf = model_classifier(model)
        paths = dict(db.execute(f"SELECT id, path FROM images WHERE id IN "
                                f"({', '.join('?' for _ in todo)})",
                                [image_ids[j] for j in todo]).fetchall())
        for n_done, j in enumerate(todo):
            try:
                scan = read_image(paths[image_ids[j]], max_pixels=settings.max_pixels).scan
            except (ImageReadError, OSError, KeyError):
                continue
            out[j] = clf.predict([scan])[0]
            ok.append(j)
            if n_done % 16 == 0:
                prog(n_done / len(todo), f"running {model['version']} on {len(todo)} images")
    return out, sorted(ok)


def _trained_on(db: Database, model_id: int) -> set[int]:
    return {int(r[0]) for r in db.execute(
        "SELECT image_id FROM model_images WHERE model_id = ? AND role = 'train'", [model_id])}


def _compare_sets(db: Database, truth: list[str], image_ids: list[int], groups: list[str] | None,
                  cand_probs: np.ndarray, cand_names: list[str], cand_version: str,
                  active: dict[str, Any] | None, settings: Settings, prog: ProgressFn,
                  *, exclude_trained: bool, candidate_id: int | None = None) -> dict[str, Any]:
    from core.routing import GLOBAL, get_thresholds

    keep = list(range(len(image_ids)))
    excluded = 0
    if active is not None and exclude_trained:
        seen = _trained_on(db, active["id"])
        keep = [j for j in keep if image_ids[j] not in seen]
        excluded = len(image_ids) - len(keep)
    if active is not None:
        ap, ok = _model_probs(db, active, [image_ids[j] for j in keep], settings, prog)
        okset = set(ok)
        keep2 = [keep[j] for j in range(len(keep)) if j in okset]
        act_probs = ap[[j for j in range(len(keep)) if j in okset]]
        keep = keep2
    ts = get_thresholds(db)
    t_keep = [truth[j] for j in keep]
    out: dict[str, Any] = {
        "images": len(keep),
        "groups": len({groups[j] for j in keep}) if groups else None,
        "excluded_trained_on_by_active": excluded,
        "thresholds": asdict(ts[GLOBAL]),
        "per_class_thresholds": sorted(c for c in ts if c != GLOBAL),
        "candidate": {"id": candidate_id, "version": cand_version,
                      **evaluate(t_keep, cand_probs[keep], cand_names, ts)},
        "active": None,
    }
    if active is not None:
        out["active"] = {"id": active["id"], "version": active["version"],
                         **evaluate(t_keep, act_probs, active["class_names"], ts)}
    return out


def compare(db: Database, candidate_id: int, active_id: int | None = None, *,
            settings: Settings | None = None, progress: ProgressFn | None = None
            ) -> dict[str, Any]:
    """Active model vs candidate on the candidate's held-out human labels (their current
    labels; images the active model trained on are left out): accuracy (+ Wilson 95 %),
    per-class recall, confusion matrix, ECE (15 bins), auto-accept coverage / precision at the
    current thresholds. Stored predictions are used where present; missing ones are computed
    (nothing is written)."""
    from core.registry import active_model, get_model

    settings = settings or Settings()
    prog = progress or (lambda f, m: None)
    cand = get_model(db, candidate_id)
    other = get_model(db, active_id) if active_id is not None else active_model(db)
    if other is not None and other["id"] == cand["id"]:
        other = None
    marks = ", ".join("?" for _ in LABEL_SOURCES)
    specials = ", ".join("?" for _ in SPECIAL_LABELS)
    rows = db.execute(
        "SELECT mi.image_id, c.label FROM model_images mi JOIN current_labels c "
        "ON c.image_id = mi.image_id WHERE mi.model_id = ? AND mi.role = 'holdout' "
        f"AND c.source IN ({marks}) AND c.label NOT IN ({specials}) ORDER BY mi.image_id",
        [candidate_id, *LABEL_SOURCES, *SPECIAL_LABELS]).fetchall()
    if not rows:
        n = db.execute("SELECT COUNT(*) FROM model_images WHERE model_id = ?",
                       [candidate_id]).fetchone()[0]
        raise StoreError(
            f"Model {cand['version']!r} has no held-out labelled images on record"
            + ("" if n else " (it was not trained here: compare works on models made by "
               "`semtriage train --from-db` or the Models page's Retrain)"))
    ids = [int(r[0]) for r in rows]
    truth = [str(r[1]) for r in rows]
    cp, ok = _model_probs(db, cand, ids, settings, prog)
    ids, truth, cp = [ids[j] for j in ok], [truth[j] for j in ok], cp[ok]
    card = cand["card"] or {}
    groups = None
    res = _compare_sets(db, truth, ids, groups, cp, cand["class_names"], cand["version"], other,
                        settings, prog, exclude_trained=True, candidate_id=cand["id"])
    res["groups"] = ((card.get("retrain") or {}).get("headline") or {}).get("groups")
    return res


def comparison_text(c: dict[str, Any]) -> str:
    """The comparison as a few aligned lines (CLI)."""
    rows = [("candidate", c["candidate"])] + ([("active", c["active"])] if c["active"] else [])

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.1%}"

    lines = [f"Same {c['images']} held-out human labels"
             + (f" ({c['excluded_trained_on_by_active']} left out: the active model trained on "
                "them)" if c.get("excluded_trained_on_by_active") else "") + ":",
             (f"  {'':<10} {'version':<34} {'accuracy':>9} {'95 %':>13} {'ECE':>6} "
             f"{'auto cov.':>9} {'auto prec.':>10}")]
    for role, m in rows:
        a = m["auto_accept"]
        lines.append(f"  {role:<10} {m['version'][:34]:<34} {pct(m['accuracy']):>9} "
                     f"{pct(m['interval'][0]):>6}–{pct(m['interval'][1]):<6} "
                     f"{'—' if m['ece'] is None else format(m['ece'], '.3f'):>6} {pct(a['coverage']):>9} "
                     f"{pct(a['precision']):>10}")
    classes = list(c["candidate"]["per_class"])
    lines.append("  recall per class: " + ", ".join(
        f"{cl} {pct(c['candidate']['per_class'][cl]['recall'])}"
        + (f" (active {pct(c['active']['per_class'][cl]['recall'])})" if c["active"] else "")
        for cl in classes))
    return "\n".join(lines)


# ---------------------------------------------------------------- promote / discard


def promote(db: Database, model_id: int, settings: Settings | None = None,
            progress: ProgressFn | None = None, *, by: User | None = None) -> dict[str, Any]:
    """Make ``model_id`` the active model, predict every image it has not predicted yet,
    re-route all its predictions under the stored thresholds and bring auto labels in line.
    Returns the new queue sizes and what was predicted."""
    from core.ingest import predict_pending
    from core.registry import get_model, model_classifier, set_active_model
    from core.routing import reroute

    require_admin(by, "promote a model")
    prog = progress or (lambda f, m: None)
    m = get_model(db, model_id)
    clf = model_classifier(m)  # a model that no longer loads is refused before the switch
    set_active_model(db, model_id)
    prog(0.02, f"{m['version']} is now active; predicting")
    rep = predict_pending(db, clf, model_id, settings=settings or Settings(),
                          progress=lambda d, t, msg: prog(0.02 + 0.93 * d / max(t, 1),
                                                          f"predicting {d:,}/{t:,}: {msg}"))
    prog(0.96, "re-routing the queues")
    queues = reroute(db, model_id)
    prog(1.0, f"{m['version']} active; queues rebuilt")
    return {"active": m["version"], "model_id": model_id, "predicted": rep.predicted,
            "failed": [{"path": p, "reason": r} for p, r in rep.failed],
            "queues": {q: int(queues.get(q, 0)) for q in ("uncertain", "mixed", "auto")}}


def discard(db: Database, model_id: int, *, by: User | None = None) -> dict[str, Any]:
    """Remove a candidate: its row, its predictions, its ``model_images`` and — when retraining
    wrote it — its file and card. Refuses the active model and a model that label decisions
    refer to (the label history keeps which model made a prediction)."""
    from core.registry import card_path, get_model

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
    from core.registry import list_models

    have = {int(r[0]) for r in db.execute("SELECT DISTINCT model_id FROM model_images")}
    return [m for m in reversed(list_models(db)) if m["id"] in have and not m["active"]]


def get_candidate(db: Database, model_id: int) -> dict[str, Any]:
    from core.registry import get_model

    m = get_model(db, model_id)
    if not db.execute("SELECT 1 FROM model_images WHERE model_id = ? LIMIT 1", [model_id]).fetchone():
        raise NotFound(f"Model {m['version']!r} was not made by retraining here")
    return m
