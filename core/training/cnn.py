"""Train a compact SEM classifier (torch, CPU) and calibrate it; export: core/training/onnx_export.py.

Every training image goes through exactly what the engine does at inference: the file is read by
``core.images.read_image`` (data bar cut off), then ``core.images.prepare`` makes the input.
The prepared tensors are cached in memory once per dataset; augmentation (90° rotations, flips,
random crops and zoom, gamma/contrast, noise) runs on those tensors, so an epoch costs only the
network.

    result = train(train_items, val_items, class_names=[...], epochs=12, seed=0)
    export_onnx(result, "data/models/mine.onnx", version="mine-v1")   # + mine.card.json

Reproduce the default model (about 10 minutes on 2 otherwise idle CPU cores)::

    .venv/bin/python -m core.training --default

torch is imported in core.training only (the rest of the engine runs on onnxruntime).
"""


from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Threads waiting for work sleep instead of spinning: on a shared CPU, spinning OpenMP threads
# make training several times slower (measured 42 vs 218 images/s with a neighbour busy).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import Cancelled, ModelError
from core.models import fit_temperature, softmax
from core.progress import Progress
from core.review import Thresholds, decide_queue
from core.training.data import INPUT_SIZE, MEAN, STD, THREADS, Item, load_inputs, stratified_split
from core.training.metrics import held_out_metrics, split_counts

WIDTHS = (24, 32, 64, 128)
POOL = "avgmax"


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


# ----------------------------------------------------------------------------- augmentation


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


# ----------------------------------------------------------------------------- training


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
          progress: Progress | None = None, init_from: str | Path | None = None,
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

    def sub(lo: float, hi: float) -> Progress:
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
                 progress: Progress | None = None, init_from: str | Path | None = None,
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
                "routed_mixed_or_uncertain": round(float(np.mean(  # the default thresholds
                    [decide_queue("a", p[0], "b", p[1], Thresholds())[0] != "auto"
                     for p in p_sorted])), 4),
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


# ----------------------------------------------------------------------------- starting from an exported model


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
        raise ModelError(f"Model {str(path)!r} was not made by core.training as SemNet "
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
