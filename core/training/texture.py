"""A small-data model family: fixed texture statistics and a small trainable head, in torch.

With a few hundred labels from a handful of specimens, a CNN trained from scratch has too
little to learn filters from; texture statistics with a simple classifier on top often do
better. :class:`TextureNet` computes 136 fixed features at 128² (registered buffers, nothing
learnt)
and feeds them, standardised with statistics of the training set, to a linear head (or one
small hidden layer). It is an ordinary ``nn.Module`` taking the same input as
:class:`core.training.SemNet` — (N, 1, H, W), normalised with ``core.training.MEAN`` / ``STD`` — so
``core.training.export_onnx`` writes it as one self-contained image → logits ONNX model that
``core.models.Classifier`` runs like any other.

Features (per image, on the image standardised to mean 0 / std 1, so that brightness and
contrast of the instrument settings do not matter; mean, std, skew, kurtosis and clipped dark /
bright fractions of the raw input are features of their own), at 4 scales (2×2 average-pooling
steps, 128 → 64 → 32 → 16 px; scales below 16 px are dropped for small inputs), each pooled over
the image to global means / spreads / 8×8-block peaks:

* energy left at the scale (log variance: the power spectrum's fall-off);
* gradient (Sobel): log mean magnitude, its spread, a peak (``something somewhere``),
  orientation coherence and horizontal-vs-vertical balance (scan direction, tilt);
* Laplacian: log mean magnitude, skewness (bright blobs vs dark pits), kurtosis;
* Gabor bank, 4 orientations × 2 wavelengths (3 and 4.5 px at each scale), complex energy:
  per wavelength log energy, spread over orientations (anisotropy), strongest orientation,
  spatial spread and peak;
* LBP-like local patterns with a smooth sign (softsign): share of brighter neighbours (mean,
  spread and a 5-bin soft histogram: spots, edges, flats, pits), sign transitions around the
  ring (uniform vs noisy patterns), local contrast;
* co-occurrence-style statistics at offsets 1 and 2 px in 4 directions: correlation (mean and
  spread over directions), mean absolute difference, homogeneity.

The finest scale (``light_first``, the default) has only the gradient, Laplacian and
co-occurrence groups: the Gabor and LBP maps at full resolution doubled the cost (torch features
200 → 490 images/s, ONNX Runtime 270 → 500 images/s at batch 32, on a shared 2-core machine)
for 0.5 points of accuracy on held-out synthetic images (within noise).

Everything exports to plain ONNX ops (Conv, AveragePool, ReduceMean / ReduceMax, Slice, ...).

    res = train_texture(xtr, ytr, xva, yva, class_names=names)
    core.training.export_onnx(res, "data/models/texture.onnx", version="texture-v1")
"""


from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import Cancelled
from core.models import fit_temperature
from core.progress import Progress
from core.training.cnn import TrainResult
from core.training.data import INPUT_SIZE, MEAN, STD
from core.training.metrics import held_out_metrics, split_counts

FEATURE_VERSION = "texture-v1"
SCALES = (1, 2, 4, 8)
MIN_SIDE = 16  # a scale is used while the pooled image keeps at least this many pixels a side
GABOR_WAVELENGTHS = (3.0, 4.5)
GABOR_ORIENTATIONS = 4
GABOR_SIZE = 9


# the 8-ring of neighbours in order (NW, N, NE, E, SE, S, SW, W): 3..6 are the E, SE, S, SW
# offsets of the 1 px co-occurrence pairs
RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
LBP_BINS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # soft histogram of the share of brighter neighbours


# Feature extraction runs CHUNK images at a time (the maps of a chunk stay in cache: 2× faster
# than 128 at a time). Everything here runs on one thread: features are hundreds of small
# element-wise steps and the head is tiny; on a shared 2-core machine two OpenMP threads made
# both ~8× slower than one (each step waiting for a descheduled thread).
CHUNK = 16
TEXTURE_THREADS = 1


CLIP = 8.0  # standardised features are clipped to ±CLIP: an odd image cannot blow up the head
EPS = 1e-6


def _gabor_bank() -> torch.Tensor:
    """(2 · orientations · wavelengths, 1, k, k): even (zero-mean) and odd kernels, unit L2."""
    r = GABOR_SIZE // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    out = []
    for lam in GABOR_WAVELENGTHS:
        sigma = 0.45 * lam
        for o in range(GABOR_ORIENTATIONS):
            th = math.pi * o / GABOR_ORIENTATIONS
            u = xx * math.cos(th) + yy * math.sin(th)
            env = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
            for part in (np.cos, np.sin):
                k = env * part(2 * math.pi * u / lam)
                k -= env * (k.sum() / env.sum())  # no response to flat areas
                out.append(k / np.sqrt((k**2).sum()))
    return torch.tensor(np.stack(out)[:, None], dtype=torch.float32)


def _sh(z: torch.Tensor, dy: int, dx: int, r: int = 1) -> torch.Tensor:
    """The (h − 2r, w − 2r) window of ``z`` shifted by (dy, dx), |dy|, |dx| ≤ r."""
    def sl(d: int) -> slice:
        return slice(r + d, d - r if d - r != 0 else None)
    return z[..., sl(dy), sl(dx)]


def _total(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of a list of tensors (``sum()`` without its int start value)."""
    out = ts[0]
    for t in ts[1:]:
        out = out + t
    return out


def _m(t: torch.Tensor) -> torch.Tensor:
    """Mean over the last two (spatial) dims."""
    return t.mean(dim=(-2, -1))


def _sd(t: torch.Tensor) -> torch.Tensor:
    """Standard deviation over the last two dims."""
    tc = t - t.mean(dim=(-2, -1), keepdim=True)
    return torch.sqrt((tc * tc).mean(dim=(-2, -1)) + EPS)


def _log(t: torch.Tensor) -> torch.Tensor:
    return torch.log(t + EPS)


class TextureNet(nn.Module):
    """Fixed multi-scale texture features → fixed standardisation → trainable head → logits.

    Only ``head`` has parameters; the filter banks and the feature mean / std are buffers
    (``fit_standardisation`` sets the latter from training features).
    """

    gabor: torch.Tensor
    in_mean: torch.Tensor
    in_std: torch.Tensor
    feat_mean: torch.Tensor
    feat_std: torch.Tensor

    def __init__(self, n_classes: int, input_size: tuple[int, int] = INPUT_SIZE, *,
                 hidden: int = 0, scales: Sequence[int] | None = None,
                 light_first: bool = True):
        super().__init__()
        h, w = int(input_size[0]), int(input_size[1])
        if scales is None:
            scales = [s for s in SCALES if min(h, w) // s >= MIN_SIDE]
        self.scales = [int(s) for s in scales]
        if not self.scales or min(h, w) // max(self.scales) < GABOR_SIZE + 2:
            raise ValueError(f"input {h}×{w} is too small for TextureNet scales {self.scales} "
                             f"(needs at least {MIN_SIDE} px a side)")
        self.input_size = (h, w)
        self.hidden = int(hidden)
        self.light_first = bool(light_first)
        self.n_classes = int(n_classes)
        # 8×8-block peaks: pooled map sizes are fixed by the input size, known here
        self._peak_k = {s: min(8, h // s - 2, w // s - 2) for s in self.scales}
        self._gabor_peak_k = {s: min(8, h // s - GABOR_SIZE + 1, w // s - GABOR_SIZE + 1)
                              for s in self.scales}
        self.register_buffer("gabor", _gabor_bank())
        self.register_buffer("in_mean", torch.tensor(float(MEAN[0])))
        self.register_buffer("in_std", torch.tensor(float(STD[0])))
        with torch.no_grad():
            self.n_features = int(self.features(torch.zeros(1, 1, h, w)).shape[1])
        self.register_buffer("feat_mean", torch.zeros(self.n_features))
        self.register_buffer("feat_std", torch.ones(self.n_features))
        if self.hidden > 0:
            self.head: nn.Module = nn.Sequential(nn.Linear(self.n_features, self.hidden),
                                                 nn.ReLU(), nn.Linear(self.hidden, n_classes))
        else:
            self.head = nn.Linear(self.n_features, n_classes)

    # ------------------------------------------------------------------ features

    def _peak(self, t: torch.Tensor, k: int) -> torch.Tensor:
        """Largest k×k block mean of a (N, C, h, w) map, relative to its mean (log)."""
        return _log(F.avg_pool2d(t, k).amax(dim=(-2, -1))) - _log(_m(t))

    def _scale(self, z: torch.Tensor, s: int, first: bool) -> list[torch.Tensor]:
        """Features of one scale. Small stencils are written as shifted slices (an order of
        magnitude faster than 1-channel convolutions on CPU); the Gabor bank is a convolution."""
        f: list[torch.Tensor] = []
        mu = z.mean(dim=(-2, -1), keepdim=True)
        zc = z - mu
        var = (zc * zc).mean(dim=(-2, -1), keepdim=True) + EPS  # (N, 1, 1, 1)
        sd = torch.sqrt(var)
        if not first:
            f.append(_log(var.flatten(1)))
        c = _sh(z, 0, 0)
        # gradient (Sobel, separable) and Laplacian
        hx = z[..., :, 2:] - z[..., :, :-2]
        hy = z[..., 2:, :] - z[..., :-2, :]
        gx = (hx[..., :-2, :] + 2.0 * hx[..., 1:-1, :] + hx[..., 2:, :]) * 0.125
        gy = (hy[..., :, :-2] + 2.0 * hy[..., :, 1:-1] + hy[..., :, 2:]) * 0.125
        lap = _sh(z, -1, 0) + _sh(z, 1, 0) + _sh(z, 0, -1) + _sh(z, 0, 1) - 4.0 * c
        gxx, gyy, lap2 = gx * gx, gy * gy, lap * lap
        mag = torch.sqrt(gxx + gyy + EPS)
        jxx, jyy, jxy, l2 = _m(gxx), _m(gyy), _m(gx * gy), _m(lap2) + EPS
        energy = jxx + jyy + EPS
        mag_m = _m(mag)
        f += [_log(mag_m), _sd(mag) / (mag_m + EPS),
              torch.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy + EPS * EPS) / energy,
              (jxx - jyy) / energy, self._peak(mag, self._peak_k[s]),
              _log(_m(lap.abs())), _m(lap * lap2) / l2**1.5, _log(_m(lap2 * lap2) / (l2 * l2))]
        if self.light_first and first:  # finest scale: no Gabor / LBP (2× faster, see doc)
            diffs = [_sh(z, dy, dx) - c for dy, dx in RING[3:7]]
            diffs = [diffs[0]] * 3 + diffs
        else:
            # Gabor: energy per (wavelength, orientation) of the complex response
            r = F.conv2d(z, self.gabor)
            n, _, gh, gw = r.shape
            r2 = (r * r).view(n, len(GABOR_WAVELENGTHS), GABOR_ORIENTATIONS, 2, gh, gw).sum(dim=3)
            e = _m(r2)  # (N, wavelengths, orientations)
            e_mean = e.mean(dim=2) + EPS
            a_mean = r2.mean(dim=2)  # (N, wavelengths, gh, gw)
            f += [_log(e_mean),
                  torch.sqrt(((e - e_mean.unsqueeze(2)) ** 2).mean(dim=2) + EPS) / e_mean,
                  e.amax(dim=2) / e_mean,
                  _sd(a_mean) / e_mean,
                  self._peak(a_mean, self._gabor_peak_k[s])]
            # LBP-like: smooth signs (softsign) of neighbour − centre around the 8-ring
            tau = 0.1 * sd + 1e-3
            diffs = [_sh(z, dy, dx) - c for dy, dx in RING]
            sgn = [d / (tau + d.abs()) for d in diffs]
            share = _total(sgn) * 0.125  # −1: local maximum (spot) … +1: pit
            u = share * 4.0
            hist = torch.cat([_m(torch.exp(-(u - 4.0 * b) * (u - 4.0 * b))) for b in LBP_BINS], 1)
            ring = _total([a * b for a, b in zip(sgn, sgn[1:] + sgn[:1], strict=True)])
            sq = _total([a * a for a in sgn])
            trans = (sq - ring) * 0.0625  # mean over the ring of (s_k − s_k+1)² / 4
            contrast = _total([d.abs() for d in diffs]) * 0.125
            f += [_m(share), _sd(share), hist / (hist.sum(dim=1, keepdim=True) + EPS),
                  _m(trans), _sd(trans), _log(_m(contrast)), _sd(contrast) / (_m(contrast) + EPS)]
        # co-occurrence-style: the E, SE, S, SW ring differences are the 1 px pairs
        pairs2 = [z[..., :, 2:] - z[..., :, :-2], z[..., 2:, 2:] - z[..., :-2, :-2],
                  z[..., 2:, :] - z[..., :-2, :], z[..., 2:, :-2] - z[..., :-2, 2:]]
        for pairs in (diffs[3:7], pairs2):
            d2 = [d * d for d in pairs]
            corr = 1.0 - torch.cat([_m(q) for q in d2], 1) / (2.0 * var.flatten(1))
            c_mean = corr.mean(dim=1, keepdim=True)
            f += [c_mean, torch.sqrt(((corr - c_mean) ** 2).mean(dim=1, keepdim=True) + EPS),
                  _total([_m(d.abs()) for d in pairs]) * 0.25 / sd.flatten(1),
                  _total([_m(1.0 / (1.0 + q / var)) for q in d2]) * 0.25]
        return f

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) raw fixed features of a normalised (N, C, H, W) batch (first channel used)."""
        x = x[:, :1]
        mu = x.mean(dim=(-2, -1), keepdim=True)
        xc = x - mu
        var = (xc * xc).mean(dim=(-2, -1), keepdim=True)
        sd = torch.sqrt(var + EPS)
        z = xc / sd
        z2 = z * z
        v01 = x * self.in_std + self.in_mean  # back to the [0, 1] window
        f: list[torch.Tensor] = [
            mu.flatten(1), _log(sd.flatten(1)), _m(z2 * z),
            _log(_m(z2 * z2)), _m(torch.sigmoid((0.02 - v01) / 0.01)),
            _m(torch.sigmoid((v01 - 0.98) / 0.01)),
        ]
        for s in self.scales:
            zs = z if s == 1 else F.avg_pool2d(z, s)
            f += self._scale(zs, s, s == self.scales[0])
        return torch.cat(f, dim=1)

    def standardise(self, feats: torch.Tensor) -> torch.Tensor:
        return ((feats - self.feat_mean) / self.feat_std).clamp(-CLIP, CLIP)

    def fit_standardisation(self, feats: np.ndarray | torch.Tensor) -> None:
        """Set the feature mean / std buffers from training features (N, F)."""
        f = torch.as_tensor(np.asarray(feats), dtype=torch.float64)
        mean = f.mean(dim=0)
        std = f.std(dim=0, unbiased=False) if len(f) > 1 else torch.ones_like(mean)
        std = torch.maximum(std, 1e-3 * (1.0 + mean.abs()))  # near-constant features
        self.feat_mean.copy_(mean.float())
        self.feat_std.copy_(std.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.standardise(self.features(x)))

    def architecture(self) -> dict[str, Any]:
        """What export_onnx stores as the ``architecture`` metadata."""
        return {"name": "TextureNet", "features": FEATURE_VERSION, "n_features": self.n_features,
                "scales": self.scales, "light_first": self.light_first, "hidden": self.hidden,
                "input_size": list(self.input_size)}

    def describe(self) -> str:
        """One line for the model card."""
        head = f"MLP {self.hidden}" if self.hidden else "linear"
        return (f"TextureNet {self.n_features} fixed texture features (gradient, Laplacian, "
                f"Gabor {GABOR_ORIENTATIONS}×{len(GABOR_WAVELENGTHS)}, LBP-like, co-occurrence) "
                f"at scales {'/'.join(map(str, self.scales))}, {head} head")


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Training of the texture model was cancelled; nothing was kept")


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _extract(net: TextureNet, x: np.ndarray, batch_size: int,
             progress: Progress | None = None, cancel: threading.Event | None = None,
             what: str = "images") -> np.ndarray:
    """Features of ``x`` in batches of ``batch_size`` (progress and cancel checks between
    batches), computed ``CHUNK`` images at a time on ``TEXTURE_THREADS`` thread(s)."""
    out = np.empty((len(x), net.n_features), np.float32)
    net.eval()
    with torch.inference_mode(), _threads(TEXTURE_THREADS):
        for i in range(0, len(x), max(1, batch_size)):
            _check_cancel(cancel)
            stop = min(i + max(1, batch_size), len(x))
            for j in range(i, stop, CHUNK):
                xb = np.ascontiguousarray(x[j : min(j + CHUNK, stop)], np.float32)
                out[j : j + len(xb)] = net.features(torch.from_numpy(xb)).numpy()
            if progress is not None:
                progress(stop / len(x), f"texture features of {stop}/{len(x)} {what}")
    _check_cancel(cancel)
    return out


def _check_inputs(x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, np.float32)
    if a.ndim != 4 or a.shape[1] < 1:
        raise ValueError(f"{what} must be (N, C, H, W) prepared inputs, got shape {a.shape}")
    return a


def texture_features(x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """(N, F) float32 fixed texture features of prepared inputs (N, 1, H, W) — the same numbers
    a :class:`TextureNet` of that input size computes before its standardisation."""
    a = _check_inputs(x, "x")
    return _extract(TextureNet(2, (a.shape[2], a.shape[3])), a, batch_size)


def train_texture(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray, *,
                  class_names: Sequence[str], epochs: int = 200, seed: int = 0,
                  weight_decay: float = 1e-3, progress: Progress | None = None,
                  cancel: threading.Event | None = None,
                  training_data: dict[str, Any] | None = None,
                  hidden: int = 0, lr: float = 0.05, batch_size: int = 128) -> TrainResult:
    """Fit a :class:`TextureNet` on prepared inputs (N, 1, H, W) with integer labels.

    Features are computed once; the standardisation is fitted on the training features; the
    head is trained full-batch with Adam for ``epochs`` steps on class-balanced cross-entropy
    plus ``weight_decay`` · ‖W‖² (weights, not biases). The temperature is fitted on the
    validation split, and ``metrics`` are those of :func:`core.training.train_arrays` (empty when
    there is no validation split, T = 1). ``cancel`` set → :class:`Cancelled` (checked between
    feature batches of ``batch_size`` images and between head steps). ``hidden`` > 0: one
    hidden ReLU layer of that width instead of a linear head.
    """
    with _threads(TEXTURE_THREADS):
        return _train_texture(xtr, ytr, xva, yva, class_names=class_names, epochs=epochs,
                              seed=seed, weight_decay=weight_decay, progress=progress,
                              cancel=cancel, training_data=training_data, hidden=hidden, lr=lr,
                              batch_size=batch_size)


def _train_texture(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray, *,
                   class_names: Sequence[str], epochs: int = 200, seed: int = 0,
                   weight_decay: float = 1e-3, progress: Progress | None = None,
                   cancel: threading.Event | None = None,
                   training_data: dict[str, Any] | None = None,
                   hidden: int = 0, lr: float = 0.05, batch_size: int = 128) -> TrainResult:
    """The body of :func:`train_texture` (on the caller's thread settings)."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    class_names = list(class_names)
    k = len(class_names)
    if k < 2:
        raise ValueError(f"Need at least 2 classes to train, got {class_names!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be ≥ 1, got {epochs!r}")
    xtr = _check_inputs(xtr, "xtr")
    ytr = np.asarray(ytr, np.int64).reshape(-1)
    xva = np.asarray(xva, np.float32)
    yva = np.asarray(yva, np.int64).reshape(-1)
    if len(xtr) != len(ytr) or len(xva) != len(yva):
        raise ValueError(f"inputs and labels differ in length: {len(xtr)}/{len(ytr)} train, "
                         f"{len(xva)}/{len(yva)} validation")
    for y, what in ((ytr, "ytr"), (yva, "yva")):
        if len(y) and (y.min() < 0 or y.max() >= k):
            raise ValueError(f"{what} holds class indices outside 0..{k - 1} ({class_names!r})")
    if len(np.unique(ytr)) < 2:
        raise ValueError("The training images cover fewer than 2 classes")
    if len(xva):
        xva = _check_inputs(xva, "xva")
    prog = progress or (lambda f, m: None)
    input_size = (int(xtr.shape[2]), int(xtr.shape[3]))
    net = TextureNet(k, input_size, hidden=hidden)

    ftr = _extract(net, xtr, batch_size, lambda f, m: prog(0.7 * f, m), cancel, "training images")
    fva = (_extract(net, xva, batch_size, lambda f, m: prog(0.7 + 0.1 * f, m), cancel,
                    "validation images") if len(xva) else np.zeros((0, net.n_features), np.float32))
    net.fit_standardisation(ftr)
    with torch.no_grad():
        s_tr = net.standardise(torch.from_numpy(ftr))
        sva = net.standardise(torch.from_numpy(fva))

    torch.manual_seed(seed)
    for m in net.head.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
    freq = np.bincount(ytr, minlength=k).astype(np.float64)
    cw = np.where(freq > 0, freq.sum() / np.maximum(freq, 1) / (freq > 0).sum(), 0.0)
    weights = torch.tensor(cw, dtype=torch.float32)
    yt = torch.from_numpy(ytr)
    params = list(net.head.parameters())
    decayed = [p for p in params if p.ndim > 1]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    history: list[dict[str, float]] = []
    every = max(1, epochs // 10)
    net.head.train()
    for ep in range(epochs):
        _check_cancel(cancel)
        out = net.head(s_tr)
        ce = F.cross_entropy(out, yt, weight=weights)
        loss = ce + weight_decay * sum((p * p).sum() for p in decayed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (ep + 1) % every == 0 or ep + 1 == epochs:
            rec = {"epoch": ep + 1, "loss": round(float(ce.detach()), 4),
                   "train_acc": round(float((out.argmax(1) == yt).float().mean()), 4)}
            if len(sva):
                with torch.no_grad():
                    rec["val_acc"] = round(float((net.head(sva).argmax(1).numpy() == yva).mean()),
                                           4)
            history.append(rec)
            prog(0.8 + 0.15 * (ep + 1) / epochs,
                 f"head step {ep + 1}/{epochs}: loss {rec['loss']:.3f}, train acc "
                 f"{rec['train_acc']:.3f}"
                 + (f", val acc {rec['val_acc']:.3f}" if "val_acc" in rec else ""))
    _check_cancel(cancel)
    net.eval()
    if len(yva):
        with torch.no_grad():
            val_logits = net.head(sva).numpy().astype(np.float32)
        temperature = fit_temperature(val_logits, yva)
        metrics = held_out_metrics(val_logits, yva, class_names, temperature)
    else:
        val_logits, temperature, metrics = np.zeros((0, k), np.float32), 1.0, {}
    metrics["evaluated_on"] = f"{len(yva)} held-out single-class images"
    counts = split_counts(ytr, yva, class_names)
    td = dict(training_data or {})
    td.setdefault("images", {"train": len(ytr), "val": len(yva)})
    td.setdefault("model_family", "TextureNet")
    prog(1.0, f"done: val acc {metrics.get('accuracy', float('nan'))}, T = {temperature:.3f}")
    return TrainResult(model=net, class_names=class_names, temperature=temperature,
                       metrics=metrics, counts=counts, history=history,
                       seconds=round(time.perf_counter() - t0, 1), epochs=epochs, seed=seed,
                       input_size=input_size, training_data=td,
                       val_logits=val_logits, val_labels=yva)
