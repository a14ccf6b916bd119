"""Train a compact SEM classifier (torch, CPU), calibrate it, export it to ONNX with a model card.

Every training image goes through exactly what the engine does at inference: the file is read by
``core.imageio.read_image`` (data bar cut off), then ``core.preprocess.prepare`` makes the input.
The prepared tensors are cached in memory once per dataset; augmentation (90° rotations, flips,
random crops and zoom, gamma/contrast, noise) runs on those tensors, so an epoch costs only the
network.

    result = train(train_items, val_items, class_names=[...], epochs=12, seed=0)
    export_onnx(result, "data/models/mine.onnx", version="mine-v1")   # + mine.card.json

Reproduce the default model (about 10 minutes on 2 otherwise idle CPU cores)::

    .venv/bin/python -m core.train --default

torch is imported here and only here (the rest of the engine runs on onnxruntime).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

# Threads waiting for work sleep instead of spinning: on a shared CPU, spinning OpenMP threads
# make training several times slower (measured 42 vs 218 images/s with a neighbour busy).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
import torch.nn.functional as F
from torch import nn

from core.config import DEFAULT_MODEL, IMAGE_SUFFIXES
from core.errors import Cancelled, ImageReadError, ModelError
from core.preprocess import prepare

ProgressFn = Callable[[float, str], None]
# (an image file path or a 2-D float [0, 1] scan with the data bar already cut off, class name)
Item = tuple["str | Path | np.ndarray", str]

INPUT_SIZE = (128, 128)
MEAN = [0.5]
STD = [0.25]
WIDTHS = (24, 32, 64, 128)
POOL = "avgmax"
THREADS = 2

# The default model: `python -m core.train --default` (the same as `semtriage train
# --synthetic 500 --epochs 22 --seed 0 --out data/models/default.onnx --version
# default-synth-v1`).
DEFAULT_N_PER_CLASS = 500
DEFAULT_EPOCHS = 22
DEFAULT_SEED = 0
DEFAULT_VERSION = "default-synth-v1"
DEFAULT_MIXED_FRACTION = 0.3


# ----------------------------------------------------------------------------- model


class SemNet(nn.Module):
    """Small VGG-style CNN: a strided stem, three stages of two 3×3 convs (BN, ReLU), global
    average *and* max pooling, dropout, a linear head. ~0.3 M parameters, ~46 M MACs at 128².

    The max-pooled half says whether something is present *anywhere* (a few particles on a
    fibre mat), the average half how much of the image looks like what: together they let the
    model split its probability on images that show two classes.
    """

    def __init__(self, n_classes: int, in_channels: int = 1, widths: Sequence[int] = WIDTHS,
                 dropout: float = 0.05, pool: str = POOL):
        super().__init__()
        layers: list[nn.Module] = []

        def conv(i: int, o: int, s: int) -> None:
            layers.extend([nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o),
                           nn.ReLU(inplace=True)])

        conv(in_channels, widths[0], 2)
        prev = widths[0]
        for w in widths[1:]:
            conv(prev, w, 2)
            conv(w, w, 1)
            prev = w
        if pool not in ("avg", "avgmax"):
            raise ValueError(f"pool must be 'avg' or 'avgmax', got {pool!r}")
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(prev * (2 if pool == "avgmax" else 1), n_classes)
        self.widths = list(widths)
        self.pool_mode = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        z = F.adaptive_avg_pool2d(f, 1).flatten(1)
        if self.pool_mode == "avgmax":
            z = torch.cat([z, F.adaptive_max_pool2d(f, 1).flatten(1)], dim=1)
        return self.head(self.dropout(z))

    def architecture(self) -> dict[str, Any]:
        """What export_onnx stores as the ``architecture`` metadata (init_from checks it)."""
        return {"name": "SemNet", "widths": self.widths, "pool": self.pool_mode}

    def describe(self) -> str:
        """One line for the model card."""
        return "SemNet " + "-".join(map(str, self.widths)) + f" {self.pool_mode} pooling"


def n_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------------- data


def load_inputs(items: Sequence[Item], *, input_size: tuple[int, int] = INPUT_SIZE,
                channels: int = 1, mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                progress: ProgressFn | None = None) -> tuple[np.ndarray, list[int], list[str]]:
    """Read and prepare every item once: (N, C, H, W) float32, indices of the items kept,
    and a message per item that could not be read (skipped)."""
    from core.imageio import read_image

    out = np.empty((len(items), channels, *input_size), np.float32)
    kept: list[int] = []
    skipped: list[str] = []
    for i, (src, _label) in enumerate(items):
        if isinstance(src, np.ndarray):
            scan = src
        else:
            try:
                scan = read_image(src).scan
            except ImageReadError as e:
                skipped.append(str(e))
                continue
        if scan.ndim != 2 or min(scan.shape) < 8:
            skipped.append(f"{src if not isinstance(src, np.ndarray) else 'array'}: "
                           f"scan of shape {scan.shape} is too small")
            continue
        out[len(kept)] = prepare(scan, input_size, channels, mean, std)
        kept.append(i)
        if progress is not None and (i % 50 == 49 or i == len(items) - 1):
            progress((i + 1) / len(items), f"read {i + 1}/{len(items)} images")
    return out[: len(kept)], kept, skipped


def stratified_split(labels: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int],
                                                                                     list[int]]:
    """(train indices, val indices): ``val_fraction`` of every class (at least one when the class
    has ≥ 2 items; a class with a single item stays in training), seeded."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(c, []).append(i)
    tr: list[int] = []
    va: list[int] = []
    for c in sorted(by_class):
        idx = np.array(by_class[c])
        rng.shuffle(idx)
        k = round(len(idx) * val_fraction)
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        va.extend(idx[:k].tolist())
        tr.extend(idx[k:].tolist())
    return sorted(tr), sorted(va)


def augment(x: torch.Tensor, gen: torch.Generator, mean: float = MEAN[0],
            std: float = STD[0], min_area: float = 0.8, photometric: float = 0.35
            ) -> torch.Tensor:
    """SEM-suited augmentation of a normalised batch (N, C, H, W), on tensors.

    One affine resampling per batch does 90° rotations, flips, zoom into a random crop
    (``min_area``–100 % of the area) with a slight aspect change; then gamma, contrast,
    brightness and noise in the [0, 1] domain (ranges scaled by ``photometric``), and back to
    the model's normalisation.
    """
    n = x.shape[0]

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape or (n,), generator=gen)

    k = torch.randint(0, 4, (n,), generator=gen).float() * (math.pi / 2)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    scale = torch.sqrt(u(min_area, 1.0))  # side of the crop, as a fraction
    aspect = torch.exp(u(-0.15, 0.15))
    sx, sy = scale * aspect.sqrt(), scale / aspect.sqrt()
    sx, sy = sx.clamp(max=1.0), sy.clamp(max=1.0)
    tx = (1 - sx) * u(-1, 1)
    ty = (1 - sy) * u(-1, 1)
    cos, sin = torch.cos(k), torch.sin(k)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * sx * flip
    theta[:, 0, 1] = -sin * sy
    theta[:, 1, 0] = sin * sx * flip
    theta[:, 1, 1] = cos * sy
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if photometric <= 0:
        return x
    a = photometric
    v = (x * std + mean).clamp(0.0, 1.0)
    gamma = torch.exp(u(-0.4 * a, 0.4 * a)).view(n, 1, 1, 1)
    v = v.clamp_min(1e-4) ** gamma
    contrast = u(1 - 0.3 * a, 1 + 0.3 * a).view(n, 1, 1, 1)
    bright = u(-0.1 * a, 0.1 * a).view(n, 1, 1, 1)
    v = (v - 0.5) * contrast + 0.5 + bright
    sigma = (u(0.0, 0.05 * a) * (torch.rand(n, generator=gen) < 0.5)).view(n, 1, 1, 1)
    v = v + sigma * torch.randn(v.shape, generator=gen)
    return ((v.clamp(0.0, 1.0) - mean) / std).float()


def _cutmix(x: torch.Tensor, t: torch.Tensor, share: float,
            gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste one random rectangle of the next image in the batch into ``share`` of the images;
    targets mixed in proportion to the pasted area (30–60 %)."""
    n, _, h, w = x.shape
    pick = torch.rand(n, generator=gen) < share
    if not bool(pick.any()):
        return x, t
    area = 0.3 + 0.3 * float(torch.rand(1, generator=gen))
    aspect = math.exp(0.5 * (2 * float(torch.rand(1, generator=gen)) - 1))
    rh = min(h, max(1, round(h * math.sqrt(area / aspect))))
    rw = min(w, max(1, round(area * h * w / rh)))
    y0 = int(torch.randint(0, h - rh + 1, (1,), generator=gen))
    x0 = int(torch.randint(0, w - rw + 1, (1,), generator=gen))
    lam = rh * rw / (h * w)
    partner = torch.roll(torch.arange(n), 1)
    x = x.clone()
    x[pick, :, y0 : y0 + rh, x0 : x0 + rw] = x[partner][pick, :, y0 : y0 + rh, x0 : x0 + rw]
    t = t.clone()
    t[pick] = (1 - lam) * t[pick] + lam * t[partner][pick]
    return x, t


# ----------------------------------------------------------------------------- calibration


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: Σ_bins (n_bin / N) · |accuracy(bin) − mean confidence(bin)|, over equal-width bins of
    the top-1 confidence, (0, 1/n], (1/n, 2/n], ..., ((n−1)/n, 1]."""
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probs must be (N, K) and labels (N,), got {p.shape} and {y.shape}")
    if len(y) == 0:
        return 0.0
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """The temperature T minimising the NLL of softmax(logits / T) (LBFGS on log T).

    ``labels``: class indices (N,), or soft targets (N, K) rows summing to 1.
    """
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    lab = np.asarray(labels)
    y = torch.as_tensor(lab, dtype=torch.float64 if lab.ndim == 2 else torch.long)
    if len(y) == 0:
        return 1.0
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.exp().item())
    if not math.isfinite(t) or t <= 0:
        return 1.0
    return float(np.clip(t, 0.05, 20.0))


def classification_report(probs: np.ndarray, labels: np.ndarray,
                          class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision / recall / support, confusion matrix (rows = truth)."""
    k = len(class_names)
    pred = np.asarray(probs).argmax(axis=1)
    y = np.asarray(labels)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, pred), 1)
    per: dict[str, dict[str, float | int]] = {}
    for i, c in enumerate(class_names):
        tp = int(cm[i, i])
        col, row = int(cm[:, i].sum()), int(cm[i].sum())
        per[c] = {"precision": round(tp / col, 4) if col else 0.0,
                  "recall": round(tp / row, 4) if row else 0.0, "support": row}
    return {
        "accuracy": round(float((pred == y).mean()) if len(y) else 0.0, 4),
        "per_class": per,
        "confusion_matrix": {"classes": list(class_names), "rows": "truth",
                             "columns": "prediction", "matrix": cm.tolist()},
    }


# ----------------------------------------------------------------------------- training


def split_counts(ytr: np.ndarray, yva: np.ndarray, class_names: Sequence[str]
                 ) -> dict[str, dict[str, int]]:
    """Images per class in the training and the held-out split (the card's data counts)."""
    return {"train": {c: int((ytr == i).sum()) for i, c in enumerate(class_names)},
            "val": {c: int((yva == i).sum()) for i, c in enumerate(class_names)}}


def held_out_metrics(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                     temperature: float) -> dict[str, Any]:
    """The card's numbers for held-out ``logits``: the classification report at
    ``temperature``, and expected calibration error and log loss before and after it."""
    p1 = softmax(logits)
    pt = softmax(logits, temperature)
    metrics = classification_report(pt, labels, class_names)
    metrics["ece_before"] = round(expected_calibration_error(p1, labels), 4)
    metrics["ece_after"] = round(expected_calibration_error(pt, labels), 4)
    rows = np.arange(len(labels))
    metrics["nll_before"] = round(float(-np.log(p1[rows, labels] + 1e-12).mean()), 4)
    metrics["nll_after"] = round(float(-np.log(pt[rows, labels] + 1e-12).mean()), 4)
    return metrics


@dataclass
class TrainResult:
    model: nn.Module  # SemNet, or any module with architecture() and describe()
    class_names: list[str]
    temperature: float
    metrics: dict[str, Any]
    counts: dict[str, dict[str, int]]
    history: list[dict[str, float]]
    seconds: float
    epochs: int
    seed: int
    input_size: tuple[int, int] = INPUT_SIZE
    channels: int = 1
    mean: list[float] = field(default_factory=lambda: list(MEAN))
    std: list[float] = field(default_factory=lambda: list(STD))
    training_data: dict[str, Any] = field(default_factory=dict)
    val_logits: np.ndarray | None = None
    val_labels: np.ndarray | None = None

    @property
    def parameters(self) -> int:
        return n_parameters(self.model)

    def predict_logits(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        return _logits(self.model, x, batch_size)


def _logits(model: nn.Module, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _recalibrate_bn(model: nn.Module, x: np.ndarray, gen: torch.Generator,
                    max_images: int = 2000, batch_size: int = 128) -> None:
    """Exact BatchNorm statistics over (up to ``max_images``) un-augmented training inputs:
    what the model sees at inference, and robust to short runs (few momentum updates)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns or len(x) < 2:
        return
    idx = torch.randperm(len(x), generator=gen)[:max_images].numpy()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for i in range(0, len(idx), batch_size):
            sel = np.sort(idx[i : i + batch_size])
            if len(sel) >= 2:
                model(torch.from_numpy(np.ascontiguousarray(x[sel])))
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()


def _labels_to_idx(items: Sequence[Item], class_names: Sequence[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(class_names)}
    bad = sorted({lab for _, lab in items if lab not in index})
    if bad:
        raise ValueError(f"Labels {bad!r} are not in class_names {list(class_names)!r}")
    return np.array([index[lab] for _, lab in items], np.int64)


def train(train_items: Sequence[Item], val_items: Sequence[Item] | None, *,
          class_names: Sequence[str], epochs: int, seed: int,
          progress: ProgressFn | None = None, init_from: str | Path | None = None,
          input_size: tuple[int, int] = INPUT_SIZE, batch_size: int = 64, lr: float = 3e-3,
          widths: Sequence[int] = WIDTHS, val_fraction: float = 0.15,
          training_data: dict[str, Any] | None = None,
          mixed_items: Sequence[tuple[str | Path | np.ndarray, Sequence[str]]] | None = None,
          val_mixed_items: Sequence[tuple[str | Path | np.ndarray, Sequence[str]]] | None = None,
          **options: Any) -> TrainResult:
    """Train on ``train_items``, calibrate and evaluate on ``val_items``.

    Items are (image path or 2-D [0, 1] scan, class name). Without ``val_items`` a stratified,
    seeded ``val_fraction`` of the training items is held out. ``init_from``: an ONNX model made
    by :func:`export_onnx` to start from (its weights; output rows matched by class name).
    ``mixed_items``: (image, (class a, class b)) — images showing two classes, trained with
    soft labels (half on each) so that the model splits its probability on such images;
    ``val_mixed_items``: held-out ones, used with ``val_items`` to fit the temperature.
    ``options`` go to :func:`train_arrays` (``min_area``, ``photometric``, ``dropout``,
    ``weight_decay``, ``cutmix``, ``pool``).
    """
    t0 = time.perf_counter()
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    class_names = list(class_names)
    if len(class_names) < 2:
        raise ValueError(f"Need at least 2 classes to train, got {class_names!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be ≥ 1, got {epochs!r}")
    if not train_items:
        raise ValueError("No training images")
    prog = progress or (lambda f, m: None)
    if not val_items:
        tr_idx, va_idx = stratified_split([lab for _, lab in train_items], val_fraction, seed)
        val_items = [train_items[i] for i in va_idx]
        train_items = [train_items[i] for i in tr_idx]

    def sub(lo: float, hi: float) -> ProgressFn:
        return lambda f, m: prog(lo + (hi - lo) * f, m)

    xtr, kept_tr, skipped_tr = load_inputs(train_items, input_size=input_size,
                                           progress=sub(0.0, 0.12))
    train_items = [train_items[i] for i in kept_tr]
    xva, kept_va, skipped_va = load_inputs(val_items, input_size=input_size,
                                           progress=sub(0.12, 0.15))
    val_items = [val_items[i] for i in kept_va]
    ytr = _labels_to_idx(train_items, class_names)
    yva = _labels_to_idx(val_items, class_names)
    mx, my, skipped_mx = _load_mixed(mixed_items, class_names, input_size)
    vmx, vmy, skipped_vmx = _load_mixed(val_mixed_items, class_names, input_size)
    td = dict(training_data or {})
    n_skipped = len(skipped_tr) + len(skipped_va) + len(skipped_mx) + len(skipped_vmx)
    if n_skipped:
        td["skipped_unreadable"] = n_skipped
    res = train_arrays(xtr, ytr, xva, yva, class_names=class_names, epochs=epochs, seed=seed,
                       progress=sub(0.15, 1.0), init_from=init_from, batch_size=batch_size,
                       lr=lr, widths=widths, training_data=td, mixed_x=mx, mixed_y=my,
                       val_mixed_x=vmx, val_mixed_y=vmy, **options)
    res.seconds = round(time.perf_counter() - t0, 1)
    return res


def _load_mixed(items: Sequence[tuple[str | Path | np.ndarray, Sequence[str]]] | None,
                class_names: list[str], input_size: tuple[int, int]
                ) -> tuple[np.ndarray | None, np.ndarray | None, list[str]]:
    """Prepared inputs and (M, 2) class indices of two-class items."""
    if not items:
        return None, None, []
    x, kept, skipped = load_inputs([(src, str(ab[0])) for src, ab in items],
                                   input_size=input_size)
    pairs = [[str(c) for c in items[i][1]] for i in kept]
    bad = sorted({c for ab in pairs for c in ab if c not in class_names})
    if bad or any(len(ab) != 2 for ab in pairs):
        raise ValueError(f"Mixed images need two classes from {class_names!r}; got {bad!r}")
    y = np.array([[class_names.index(a), class_names.index(b)] for a, b in pairs],
                 np.int64).reshape(-1, 2)
    return x, y, skipped


def train_arrays(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray, *,
                 class_names: Sequence[str], epochs: int, seed: int,
                 progress: ProgressFn | None = None, init_from: str | Path | None = None,
                 batch_size: int = 64, lr: float = 3e-3, widths: Sequence[int] = WIDTHS,
                 training_data: dict[str, Any] | None = None,
                 mixed_x: np.ndarray | None = None, mixed_y: np.ndarray | None = None,
                 min_area: float = 0.8, cutmix: float = 0.0,
                 val_mixed_x: np.ndarray | None = None, val_mixed_y: np.ndarray | None = None,
                 pool: str = POOL, photometric: float = 0.35, dropout: float = 0.05,
                 weight_decay: float = 1e-4, calibrate_on_mixed: bool = False,
                 cancel: threading.Event | None = None) -> TrainResult:
    """:func:`train` on inputs already prepared (N, 1, H, W) with integer labels.

    ``cancel``: checked before every batch; when set, :class:`core.errors.Cancelled` is raised
    (within one batch, not one epoch).

    ``mixed_x`` / ``mixed_y`` (M, 2): images showing two classes, trained towards half of the
    probability on each (soft labels), so that such images come out split at inference.
    ``cutmix``: share of each batch that gets a rectangle (30–60 % of the area) of another
    image pasted in, with the targets mixed by area.
    ``val_mixed_x`` / ``val_mixed_y``: held-out two-class images, reported in the metrics; with
    ``calibrate_on_mixed`` the temperature is fitted on them and the single-class ones together
    (soft targets for the mixed ones) instead of on the single-class ones alone.
    """
    t0 = time.perf_counter()
    torch.set_num_threads(THREADS)
    torch.manual_seed(seed)
    class_names = list(class_names)
    prog = progress or (lambda f, m: None)
    xtr = np.asarray(xtr, np.float32)
    xva = np.asarray(xva, np.float32)
    ytr = np.asarray(ytr, np.int64)
    yva = np.asarray(yva, np.int64)
    input_size = (int(xtr.shape[2]), int(xtr.shape[3]))
    if len(np.unique(ytr)) < 2:
        raise ValueError("The training images cover fewer than 2 classes")

    model = SemNet(len(class_names), 1, widths, pool=pool, dropout=dropout)
    if init_from is not None:
        _init_from_onnx(model, init_from, class_names)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    # balance classes: every class weighs the same in the loss
    k = len(class_names)
    freq = np.bincount(ytr, minlength=k).astype(np.float64)
    w = np.where(freq > 0, freq.sum() / np.maximum(freq, 1) / (freq > 0).sum(), 0.0)
    target = np.eye(k, dtype=np.float32)[ytr]
    n_mixed = 0
    if mixed_x is not None and mixed_y is not None and len(mixed_x):
        my = np.asarray(mixed_y, np.int64)
        soft = np.zeros((len(my), k), np.float32)
        soft[np.arange(len(my)), my[:, 0]] += 0.5
        soft[np.arange(len(my)), my[:, 1]] += 0.5
        xtr = np.concatenate([xtr, np.asarray(mixed_x, np.float32)])
        target = np.concatenate([target, soft])
        n_mixed = len(my)
    sample_w = torch.from_numpy((target @ w).astype(np.float32))
    xt = torch.from_numpy(xtr)
    yt = torch.from_numpy(target)
    steps_per_epoch = max(1, math.ceil(len(xt) / batch_size))
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total,
                                                pct_start=0.15)
    history: list[dict[str, float]] = []
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        tot_loss, n_seen, n_right = 0.0, 0, 0
        for s in range(steps_per_epoch):
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"Training cancelled in epoch {ep + 1}/{epochs}")
            idx = perm[s * batch_size : (s + 1) * batch_size]
            if len(idx) < 2:
                continue
            xb = augment(xt[idx], gen, min_area=min_area, photometric=photometric)
            tb = yt[idx]
            if cutmix > 0:
                xb, tb = _cutmix(xb, tb, cutmix, gen)
            out = model(xb)
            sw = sample_w[idx]
            loss_v = (-(tb * F.log_softmax(out, 1)).sum(1) * sw).sum() / sw.sum()
            opt.zero_grad(set_to_none=True)
            loss_v.backward()
            opt.step()
            sched.step()
            tot_loss += float(loss_v.detach()) * len(idx)
            n_seen += len(idx)
            n_right += int((tb.gather(1, out.argmax(1, keepdim=True)) > 0).sum())
        rec = {"epoch": ep + 1, "loss": round(tot_loss / max(n_seen, 1), 4),
               "train_acc": round(n_right / max(n_seen, 1), 4)}
        if len(xva):
            lv = _logits(model, xva)
            rec["val_acc"] = round(float((lv.argmax(1) == yva).mean()), 4)
        history.append(rec)
        prog(0.95 * (ep + 1) / epochs,
             f"epoch {ep + 1}/{epochs}: loss {rec['loss']:.3f}, train acc {rec['train_acc']:.3f}"
             + (f", val acc {rec['val_acc']:.3f}" if "val_acc" in rec else ""))
    _recalibrate_bn(model, xtr, gen)
    k = len(class_names)
    vmx = None if val_mixed_x is None or not len(val_mixed_x) else np.asarray(val_mixed_x,
                                                                             np.float32)
    if len(xva):
        val_logits = _logits(model, xva)
        if vmx is not None and val_mixed_y is not None:
            vmy = np.asarray(val_mixed_y, np.int64)
            soft_v = np.zeros((len(vmy), k))
            soft_v[np.arange(len(vmy)), vmy[:, 0]] += 0.5
            soft_v[np.arange(len(vmy)), vmy[:, 1]] += 0.5
            lm = _logits(model, vmx)
        if vmx is not None and val_mixed_y is not None and calibrate_on_mixed:
            temperature = fit_temperature(np.concatenate([val_logits, lm]),
                                          np.concatenate([np.eye(k)[yva], soft_v]))
        else:
            temperature = fit_temperature(val_logits, yva)
        metrics = held_out_metrics(val_logits, yva, class_names, temperature)
        if vmx is not None and val_mixed_y is not None:
            pm = softmax(lm, temperature)
            top2 = np.argsort(-pm, axis=1)[:, :2]
            p_sorted = -np.sort(-pm, axis=1)
            metrics["mixed_held_out"] = {
                "images": len(vmy),
                "top2_are_both_classes": round(float(np.mean(
                    [set(t) == set(y)
                     for t, y in zip(top2.tolist(), vmy.tolist(), strict=True)])), 4),
                "median_p1": round(float(np.median(p_sorted[:, 0])), 3),
                "median_p2": round(float(np.median(p_sorted[:, 1])), 3),
                "routed_mixed_or_uncertain": round(float(np.mean(
                    [(p[1] >= 0.3) or (p[0] - p[1] < 0.15 and p[0] + p[1] >= 0.6)
                     or p[0] < 0.7 for p in p_sorted])), 4),
                "temperature_fitted_on": ("held-out single-class + mixed images"
                                          if calibrate_on_mixed
                                          else "held-out single-class images"),
            }
    else:
        val_logits, temperature, metrics = np.zeros((0, k), np.float32), 1.0, {}
    metrics["evaluated_on"] = f"{len(yva)} held-out single-class images"
    counts = split_counts(ytr, yva, class_names)
    td = dict(training_data or {})
    td.setdefault("images", {"train": len(ytr), "val": len(yva)})
    if n_mixed:
        counts["train_mixed_soft_labels"] = {"images": n_mixed}
        td["mixed_images_soft_labels"] = n_mixed
    prog(1.0, f"done: val acc {metrics.get('accuracy', float('nan'))}, T = {temperature:.3f}")
    return TrainResult(model=model, class_names=class_names, temperature=temperature,
                       metrics=metrics, counts=counts, history=history,
                       seconds=round(time.perf_counter() - t0, 1), epochs=epochs, seed=seed,
                       input_size=tuple(input_size), training_data=td,  # type: ignore[arg-type]
                       val_logits=val_logits, val_labels=yva)


# ----------------------------------------------------------------------------- ONNX


def _state_from_onnx(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(path))
    tensors = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:  # the exporter aliases equal tensors through Identity nodes
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]
    meta = {p.key: p.value for p in proto.metadata_props}
    return tensors, meta


def _init_from_onnx(model: SemNet, path: str | Path, class_names: Sequence[str]) -> None:
    """Copy the weights of a model written by :func:`export_onnx`; head rows by class name."""
    try:
        tensors, meta = _state_from_onnx(path)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"Cannot read {str(path)!r} to start from: {e}") from None
    arch = json.loads(meta.get("architecture", "{}") or "{}")
    if (arch.get("name") != "SemNet" or arch.get("widths") != model.widths
            or arch.get("pool", "avg") != model.pool_mode):
        raise ModelError(f"Model {str(path)!r} was not made by core.train as SemNet "
                         f"{model.widths} {model.pool_mode} (its architecture: "
                         f"{arch or 'unknown'}); cannot start from it")
    old_names = json.loads(meta.get("class_names", "[]"))
    state = model.state_dict()
    for k, v in state.items():
        if k.startswith("head.") or k.endswith("num_batches_tracked"):
            continue
        if k not in tensors or tuple(tensors[k].shape) != tuple(v.shape):
            raise ModelError(f"Model {str(path)!r} lacks weight {k!r} of shape {tuple(v.shape)}")
        state[k] = torch.from_numpy(np.array(tensors[k]))
    hw, hb = tensors.get("head.weight"), tensors.get("head.bias")
    if hw is not None and hb is not None:
        for i, c in enumerate(class_names):
            if c in old_names:
                j = old_names.index(c)
                state["head.weight"][i] = torch.from_numpy(np.array(hw[j]))
                state["head.bias"][i] = float(hb[j])
    model.load_state_dict(state)


def card_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


def build_card(result: TrainResult, version: str) -> dict[str, Any]:
    m = result.metrics
    return {
        "version": version,
        "architecture": cast(Any, result.model).describe(),
        "parameters": result.parameters,
        "input_size": list(result.input_size),
        "channels": result.channels,
        "mean": result.mean,
        "std": result.std,
        "class_names": result.class_names,
        "data_counts": result.counts,
        "training_data": result.training_data,
        "epochs": result.epochs,
        "seed": result.seed,
        "training_time_s": result.seconds,
        "temperature": round(result.temperature, 4),
        "accuracy": m.get("accuracy"),
        "per_class": m.get("per_class"),
        "confusion_matrix": m.get("confusion_matrix"),
        "ece_15_bins": {"before_temperature": m.get("ece_before"),
                        "after_temperature": m.get("ece_after")},
        "nll": {"before_temperature": m.get("nll_before"), "after_temperature": m.get("nll_after")},
        "evaluated_on": m.get("evaluated_on"),
        "mixed_held_out": m.get("mixed_held_out"),
        "temperature_fitted_on": (m.get("mixed_held_out") or {}).get(
            "temperature_fitted_on", "held-out single-class images"),
        "history": result.history,
        "torch": torch.__version__,
    }


def export_onnx(result: TrainResult, out_path: str | Path, *, version: str,
                opset: int = 17) -> Path:
    """Write ``out_path`` (one self-contained .onnx, dynamic batch, metadata per
    docs/ARCHITECTURE.md) and ``<name>.card.json`` beside it. Checks that ONNX Runtime and torch
    agree within 1e-4 on a batch; raises :class:`ModelError` if not."""
    import warnings

    import onnx
    import onnxruntime as ort

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = result.model.eval()
    h, w = result.input_size
    rng = np.random.default_rng(result.seed)
    example = torch.from_numpy(rng.normal(0, 1, (4, result.channels, h, w)).astype(np.float32))
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # the TorchScript exporter writes one file with embedded weights (the dynamo exporter
        # would write a separate .onnx.data); no constant folding keeps the state_dict names,
        # so init_from can read the weights back (ONNX Runtime fuses BN itself at load)
        torch.onnx.export(model, (example,), str(tmp), input_names=["input"],
                          output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=opset, do_constant_folding=False, dynamo=False)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    meta = {
        "class_names": json.dumps(result.class_names),
        "input_size": json.dumps([h, w]),
        "channels": str(result.channels),
        "mean": json.dumps(result.mean),
        "std": json.dumps(result.std),
        "output": "logits",
        "temperature": repr(float(result.temperature)),
        "version": version,
        "training_data": json.dumps(result.training_data, sort_keys=True),
        "architecture": json.dumps(cast(Any, result.model).architecture()),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "semtriage core.train"
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(out), save_as_external_data=False)
    for extra in (out.with_name(out.name + ".data"), out.with_suffix(".data")):
        if extra.exists():
            raise ModelError(f"Export left an external data file {str(extra)!r}; expected one file")
    # verify: ONNX Runtime vs torch on a batch
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": example.numpy()})[0]
    with torch.inference_mode():
        ref = model(example).numpy()
    diff = float(np.abs(got - ref).max())
    if not diff <= 1e-4:
        raise ModelError(f"ONNX Runtime and torch disagree on {str(out)!r}: max |Δlogit| = "
                         f"{diff:.2e} > 1e-4")
    card = build_card(result, version)
    card["onnx_check_max_abs_diff"] = diff
    card["model_file"] = out.name
    card_path(out).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return out


def read_card(model_path: str | Path) -> dict[str, Any]:
    """The model card beside ``model_path`` (``<name>.card.json``)."""
    p = card_path(model_path)
    if not p.is_file():
        raise ModelError(f"No model card {str(p)!r} beside {str(model_path)!r}")
    return json.loads(p.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- data sources


def _synthetic_items(folder: Path, n: int, seed: int, classes: Sequence[str], size: int,
                     progress: ProgressFn | None) -> list[Item]:
    from core.synth import write_dataset

    gt = write_dataset(folder, n, seed=seed, classes=classes, size=size, fmt="tif",
                       layout="flat", progress=progress, workers=THREADS)
    items: list[Item] = []
    for line in gt.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        items.append((str(folder / rec["file"]), rec["class"]))
    return items


def train_synthetic(out_path: str | Path, n_per_class: int = DEFAULT_N_PER_CLASS,
                    epochs: int = DEFAULT_EPOCHS, seed: int = DEFAULT_SEED,
                    progress: ProgressFn | None = None, *, classes: Sequence[str] | None = None,
                    version: str | None = None, size: int = 256,
                    val_per_class: int | None = None,
                    mixed_fraction: float = DEFAULT_MIXED_FRACTION) -> TrainResult:
    """Generate ``n_per_class`` synthetic images per class (plus a held-out set with other
    seeds), write them as TIFFs to a temporary folder, read them back through the ingest
    reader, train, calibrate, export to ``out_path`` (+ card). Returns the result.

    ``mixed_fraction``: extra two-class images (as a share of the single-class ones), trained
    with soft labels (half / half) so that mixed images come out split between their classes.
    """
    from core.synth import CLASSES, SYNTH_VERSION, mix_pairs

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
            from core.synth import read_ground_truth, write_dataset

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
            from core.synth import read_ground_truth, write_dataset

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
              "format": "tif, read back with core.imageio"}
        res = train(tr, va, class_names=classes, epochs=epochs, seed=seed,
                    progress=lambda f, m: prog(0.3 + 0.68 * f, m), training_data=td,
                    mixed_items=mixed, val_mixed_items=val_mixed)
    res.seconds = round(time.perf_counter() - t0, 1)
    res.training_data["generation_s"] = round(gen_s, 1)
    export_onnx(res, out_path, version=version or f"synth-{n_per_class}x{len(classes)}-s{seed}")
    prog(1.0, f"wrote {out_path}")
    return res


def folder_items(folder: str | Path) -> list[Item]:
    """(path, class) for every image in a folder-per-class tree (``folder/<class>/**/*.tif``).
    Folders whose names start with ``_`` or ``.`` are skipped (e.g. ``_mixed``)."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a folder")
    items: list[Item] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] not in "_."):
        for f in sorted(sub.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                items.append((str(f), sub.name))
    return items


def train_folder(folder: str | Path, out_path: str | Path, *, epochs: int = DEFAULT_EPOCHS,
                 seed: int = 0, val_fraction: float = 0.15, version: str | None = None,
                 progress: ProgressFn | None = None, init_from: str | Path | None = None
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
                       progress: ProgressFn | None = None, init_from: str | Path | None = None
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

    ap = argparse.ArgumentParser(prog="python -m core.train", description=__doc__.split("\n")[0])
    ap.add_argument("--default", action="store_true", help="rebuild data/models/default.onnx")
    ap.add_argument("--out", default=str(DEFAULT_MODEL))
    ap.add_argument("--n-per-class", type=int, default=DEFAULT_N_PER_CLASS)
    ap.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    a = ap.parse_args(argv)
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


if __name__ == "__main__":  # pragma: no cover
    main()
