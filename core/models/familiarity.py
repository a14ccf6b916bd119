"""Familiarity: is an image like what a model was trained on? (numpy only.)

A classifier answers with a probability for any input, also for a micrograph unlike anything it
has seen, and there its confidence means nothing (the shipped synthetic model auto-labelled
real micrographs confidently and wrongly). So every prediction also gets an *unfamiliarity
score*: the Mahalanobis distance of the image's texture features to the features of the
model's training images, divided by the distance that 99 % of held-out training-like images
stay under (the *limit*). A score ≥ 1 says "unlike anything this model was trained on": such
an image is never auto-accepted (core.review routes it to *uncertain* with that reason).

Why this score (bench/ood.py, measured): Mahalanobis on the 136 fixed texture features
(core.training.texture, exported once as ``data/models/texture-features.onnx``) separated
real micrographs from the synthetic training images better than distances in the CNN's own
embedding or its softmax confidence; it needs no change to a model and works for every model
family trained on our inputs.

What a model ships (its card's ``familiarity`` block, :meth:`Familiarity.to_json`): the
feature version and the extractor's SHA-256, the training features' mean and standard
deviation, a whitening matrix (inverse square root of the Ledoit–Wolf-shrunk covariance of the
standardised features), the limit and the quantile it was taken at, how many images it was fitted
on, and — for models trained on a lab's own images — the range of pixel sizes and the
instruments of the training images (an image outside them is flagged too).

    fam = fit_familiarity(train_features, pixel_sizes=..., instruments=...)
    card["familiarity"] = fam.to_json()
    ...
    scores = fam.score(features)              # (N,), ≥ 1 = unfamiliar
    why = fam.reason(scores[0], pixel_size_m=2e-9, instrument="FEI Helios")
"""

from __future__ import annotations

import base64
import binascii
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import DEFAULT_MODEL
from core.errors import ModelError
from core.files import sha256_file
from core.models.cards import read_card
from core.models.session import OnnxSession

FEATURES = "texture-v1"
EXTRACTOR_FILE = "texture-features.onnx"
FAMILIARITY_QUANTILE = 0.95
PIXEL_SIZE_SLACK = 2.0  # pixel sizes within a factor 2 of the trained range count as familiar
_Z_CLIP = 50.0  # standardised features are clipped: one broken feature cannot dominate
FAMILIARITY_MIN_IMAGES = 20  # fewer training images than this: no familiarity statistics


def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """The Ledoit–Wolf shrunk covariance of the rows of ``x`` (centred here) and the shrinkage
    used (Ledoit & Wolf 2004, the estimator scikit-learn's ``ledoit_wolf`` computes)."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    x = x - x.mean(axis=0)
    emp = x.T @ x / n
    mu = float(np.trace(emp)) / d
    x2 = x * x
    beta_ = float(np.sum(x2.T @ x2 / n - emp * emp)) / (d * n)
    delta = float(np.sum((emp - mu * np.eye(d)) ** 2)) / d
    shrink = 0.0 if delta <= 0 else min(beta_, delta) / delta
    return (1.0 - shrink) * emp + shrink * mu * np.eye(d), shrink


@dataclass
class Familiarity:
    """A model's training-feature statistics (see the module docstring)."""

    mean: np.ndarray  # (d,) raw feature means
    scale: np.ndarray  # (d,) raw feature standard deviations
    whiten: np.ndarray  # (d, d): distance = || clip((f − mean) / scale) @ whiten ||
    limit: float  # distance at the ``quantile`` of held-out training-like images
    quantile: float = FAMILIARITY_QUANTILE
    n: int = 0
    features: str = FEATURES
    extractor_sha256: str = ""
    pixel_size_m: tuple[float, float] | None = None  # trained range (None: unknown)
    instruments: list[str] | None = None  # instruments trained on (None: unknown / any)
    fitted_on: str = ""
    shrinkage: float = 0.0
    # the classifier's energy score −logsumexp(logits) on held-out training-like images: its
    # median and its value at ``quantile`` (None: not measured, the texture distance alone)
    energy_median: float | None = None
    energy_limit: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------ scores

    def distance(self, feats: np.ndarray) -> np.ndarray:
        f = np.asarray(feats, np.float64)
        if f.ndim != 2 or f.shape[1] != len(self.mean):
            raise ModelError(f"Familiarity expects (N, {len(self.mean)}) features, got {f.shape}")
        z = np.clip((f - self.mean) / self.scale, -_Z_CLIP, _Z_CLIP)
        z = np.nan_to_num(z, nan=_Z_CLIP, posinf=_Z_CLIP, neginf=-_Z_CLIP)
        return np.sqrt(((z @ self.whiten) ** 2).sum(axis=1))

    def score(self, feats: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """Unfamiliarity per image, ≥ 1 = unlike the training images: the texture distance over
        its limit, or — with the classifier's ``logits`` and a measured energy limit — the larger
        of that and the energy score scaled so that its limit is 1 too."""
        s = self.distance(feats) / self.limit
        if logits is not None and self.energy_limit is not None and self.energy_median is not None:
            spread = max(self.energy_limit - self.energy_median, 1e-6)
            s = np.maximum(s, 1.0 + (energy(logits) - self.energy_limit) / spread)
        return s

    def reason(self, score: float | None, *, pixel_size_m: float | None = None,
               instrument: str | None = None) -> str | None:
        """Why an image counts as unfamiliar, in words, or None when it does not."""
        why: list[str] = []
        if score is not None and score >= 1.0:
            why.append(f"unlike anything this model was trained on (unfamiliarity {score:.1f}; "
                       f"{self.quantile:.0%} of images like its training images stay under 1)")
        if pixel_size_m and self.pixel_size_m:
            lo, hi = self.pixel_size_m
            if not lo / PIXEL_SIZE_SLACK <= pixel_size_m <= hi * PIXEL_SIZE_SLACK:
                why.append(f"pixel size {_length(pixel_size_m)} outside the trained range "
                           f"{_length(lo)}–{_length(hi)}")
        if instrument and self.instruments and instrument not in self.instruments:
            why.append(f"instrument {instrument!r} not among those trained on "
                       f"({', '.join(self.instruments)})")
        return "; ".join(why) or None

    # ------------------------------------------------------------ the card's block

    def to_json(self) -> dict[str, Any]:
        return {
            "features": self.features, "extractor_sha256": self.extractor_sha256,
            "method": "Mahalanobis distance (Ledoit–Wolf) on standardised texture features",
            "n": self.n, "quantile": self.quantile, "limit": round(float(self.limit), 6),
            "shrinkage": round(float(self.shrinkage), 6), "fitted_on": self.fitted_on,
            "energy_median": self.energy_median, "energy_limit": self.energy_limit,
            "pixel_size_m": list(self.pixel_size_m) if self.pixel_size_m else None,
            "instruments": self.instruments, "notes": self.notes,
            "mean": _rounded(self.mean), "scale": _rounded(self.scale),
            # (d, d) float32, little-endian, row-major, base64: a tenth of the JSON list's size
            "whiten_f32_b64": base64.b64encode(
                np.ascontiguousarray(self.whiten, "<f4").tobytes()).decode("ascii"),
        }

    @classmethod
    def from_json(cls, d: Any, where: str = "model card") -> Familiarity:
        try:
            mean = np.asarray(d["mean"], np.float64)
            scale = np.asarray(d["scale"], np.float64)
            k = len(mean)
            raw = base64.b64decode(d["whiten_f32_b64"], validate=True)
            if len(raw) != 4 * k * k:
                raise ValueError(f"whiten holds {len(raw)} bytes, expected {4 * k * k} for {k} features")
            whiten = np.frombuffer(raw, "<f4").astype(np.float64).reshape(k, k)
            limit = float(d["limit"])
            px = d.get("pixel_size_m")
            fam = cls(mean=mean, scale=scale, whiten=whiten, limit=limit,
                      quantile=float(d.get("quantile", FAMILIARITY_QUANTILE)), n=int(d.get("n", 0)),
                      features=str(d.get("features", FEATURES)),
                      extractor_sha256=str(d.get("extractor_sha256", "")),
                      pixel_size_m=(float(px[0]), float(px[1])) if px else None,
                      instruments=list(d["instruments"]) if d.get("instruments") else None,
                      fitted_on=str(d.get("fitted_on", "")),
                      shrinkage=float(d.get("shrinkage", 0.0)), notes=dict(d.get("notes") or {}),
                      energy_median=_opt_float(d.get("energy_median")),
                      energy_limit=_opt_float(d.get("energy_limit")))
        except (TypeError, ValueError, KeyError, IndexError, binascii.Error) as e:
            raise ModelError(f"{where}: the familiarity block does not make sense "
                             f"({type(e).__name__}: {e})") from None
        k = len(mean)
        if k == 0 or scale.shape != (k,) or whiten.shape != (k, k) or not limit > 0 \
                or not np.isfinite(whiten).all() or not (scale > 0).all():
            raise ModelError(f"{where}: the familiarity block has inconsistent shapes or values "
                             f"(mean {mean.shape}, scale {scale.shape}, whiten {whiten.shape}, "
                             f"limit {limit!r})")
        return fam


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def energy(logits: np.ndarray) -> np.ndarray:
    """The energy score −logsumexp(z) per row of raw logits (higher = less familiar; Liu et
    al. 2020)."""
    z = np.asarray(logits, np.float64)
    m = z.max(axis=1)
    return -(m + np.log(np.exp(z - m[:, None]).sum(axis=1)))


def set_energy_limit(fam: Familiarity, holdout_logits: np.ndarray) -> None:
    """Measure the energy median and limit (at ``fam.quantile``) on held-out training-like
    images' raw logits."""
    e = energy(holdout_logits)
    fam.energy_median = round(float(np.median(e)), 6)
    fam.energy_limit = round(float(np.quantile(e, fam.quantile)), 6)
    fam.notes["energy_from"] = f"{len(e)} held-out images"


def _rounded(a: np.ndarray) -> list[float]:
    return [float(f"{v:.6g}") for v in np.asarray(a, np.float64)]


def _length(m: float) -> str:
    for unit, f in (("mm", 1e-3), ("µm", 1e-6), ("nm", 1e-9)):
        if m >= f:
            return f"{m / f:.3g} {unit}"
    return f"{m / 1e-12:.3g} pm"


def _fit_stats(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    mean = f.mean(axis=0)
    scale = f.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.clip((f - mean) / scale, -_Z_CLIP, _Z_CLIP)
    cov, shrink = ledoit_wolf(z)
    w, v = np.linalg.eigh(cov)
    w = np.maximum(w, 1e-6 * max(float(w.max()), 1e-12))
    return mean, scale, v / np.sqrt(w), shrink


def fit_familiarity(
    feats: np.ndarray,
    *,
    holdout: np.ndarray | None = None,
    quantile: float = FAMILIARITY_QUANTILE,
    pixel_sizes: Sequence[float | None] | None = None,
    instruments: Sequence[str | None] | None = None,
    extractor_sha256: str = "",
    fitted_on: str = "",
    seed: int = 0,
) -> Familiarity:
    """Familiarity statistics from the training images' features ``feats`` (N, d).

    The limit is the ``quantile`` of distances of images the statistics were not fitted on:
    ``holdout`` features when given, else 2-fold cross-fitting over ``feats`` (an image's own
    distance to statistics fitted on it is too small). ``pixel_sizes`` / ``instruments`` of the
    training images set the familiar range when every image has one (else unknown)."""
    f = np.asarray(feats, np.float64)
    if f.ndim != 2 or len(f) < FAMILIARITY_MIN_IMAGES:
        raise ValueError(f"familiarity needs ≥ {FAMILIARITY_MIN_IMAGES} training images' features (N, d), "
                         f"got {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("training features hold NaN or infinite values")
    mean, scale, whiten, shrink = _fit_stats(f)
    fam = Familiarity(mean=mean, scale=scale, whiten=whiten, limit=1.0, quantile=quantile,
                      n=len(f), extractor_sha256=extractor_sha256, fitted_on=fitted_on,
                      shrinkage=shrink)
    if holdout is not None and len(holdout):
        d_out = fam.distance(np.asarray(holdout, np.float64))
        how = f"{len(holdout)} held-out images"
    else:
        order = np.random.default_rng(seed).permutation(len(f))
        halves = (order[: len(f) // 2], order[len(f) // 2 :])
        d_out = np.empty(len(f))
        for a, b in (halves, halves[::-1]):
            m, s, w, _ = _fit_stats(f[a])
            half = Familiarity(mean=m, scale=s, whiten=w, limit=1.0)
            d_out[b] = half.distance(f[b])
        # each half's statistics come from half the images: a little wider than the full fit's
        how = "2-fold cross-fitted over the training images"
    fam.limit = float(np.quantile(d_out, quantile))
    fam.notes["limit_from"] = how
    px = [p for p in (pixel_sizes or []) if p]
    if pixel_sizes is not None and len(px) == len(f):
        fam.pixel_size_m = (float(min(px)), float(max(px)))
    ins = [i for i in (instruments or []) if i]
    if instruments is not None and len(ins) == len(f):
        fam.instruments = sorted(set(ins))
    return fam


# ---------------------------------------------------------------- the feature extractor


EXTRACTOR_INPUT: dict[str, Any] = {"input_size": (128, 128), "channels": 1, "mean": [0.5],
                                   "std": [0.25]}
"""What the extractor takes: the same prepared input as every model we train
(core.training.INPUT_SIZE, MEAN, STD), so a classifier's batch feeds it as it is."""


def extractor_path() -> Path:
    """The shipped texture-feature extractor (``python -m core.training --familiarity``)."""
    return DEFAULT_MODEL.parent / EXTRACTOR_FILE


class FeatureExtractor(OnnxSession):
    """The fixed texture features (N, 136) of prepared inputs (N, 1, 128, 128), in ONNX."""

    def features(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.run_batches(batch), np.float64)


_EXTRACTORS: dict[tuple[str, float], FeatureExtractor] = {}
_LOCK = threading.Lock()


def feature_extractor(path: str | Path | None = None) -> FeatureExtractor:
    """One shared extractor session per file (and modification time)."""
    p = Path(path or extractor_path())
    if not p.is_file():
        raise ModelError(f"The texture-feature extractor {str(p)!r} is missing; rebuild it with "
                         "`python -m core.training --familiarity`")
    key = (str(p.resolve()), p.stat().st_mtime)
    with _LOCK:
        if key not in _EXTRACTORS:
            _EXTRACTORS[key] = FeatureExtractor(p, providers=["CPUExecutionProvider"], threads=1)
        return _EXTRACTORS[key]


@dataclass
class FamiliarityCheck:
    """A model's familiarity statistics with the extractor that feeds them."""

    familiarity: Familiarity
    extractor: FeatureExtractor

    def scores(self, batch: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        return self.familiarity.score(self.extractor.features(batch), logits)

    def reason(self, score: float | None, *, pixel_size_m: float | None = None,
               instrument: str | None = None) -> str | None:
        return self.familiarity.reason(score, pixel_size_m=pixel_size_m, instrument=instrument)


def load_familiarity(model_path: str | Path, input_spec: dict[str, Any]
                     ) -> tuple[FamiliarityCheck | None, str]:
    """The familiarity check of the model at ``model_path`` (its card's ``familiarity`` block
    and the shipped extractor), or None and the reason in words: no card or block (a model
    from elsewhere), another input than the extractor's, or a changed extractor."""
    card = read_card(model_path)
    block = (card or {}).get("familiarity")
    if not block:
        return None, "no familiarity statistics in the model card: unfamiliar images are not flagged"
    want = EXTRACTOR_INPUT
    same = (tuple(input_spec.get("input_size", ())) == want["input_size"]
            and int(input_spec.get("channels", 0)) == want["channels"]
            and list(input_spec.get("mean", [])) == want["mean"]
            and list(input_spec.get("std", [])) == want["std"])
    if not same:
        return None, "the model's input differs from the texture-feature extractor's: not flagged"
    fam = Familiarity.from_json(block, f"Model card of {str(model_path)!r}")
    ext = feature_extractor()
    sha = sha256_file(ext.path)
    if fam.extractor_sha256 and fam.extractor_sha256 != sha:
        return None, (f"the texture-feature extractor changed since the statistics were fitted "
                      f"({fam.extractor_sha256[:12]} → {sha[:12]}): not flagged")
    return FamiliarityCheck(fam, ext), f"familiarity: {fam.fitted_on or f'{fam.n} images'}"


def auroc(scores_pos: Sequence[float] | np.ndarray, scores_neg: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve: the chance that a positive (e.g. unfamiliar) image scores
    higher than a negative one (ties count half). NaN when either side is empty."""
    pos = np.asarray(scores_pos, np.float64).ravel()
    neg = np.asarray(scores_neg, np.float64).ravel()
    if not len(pos) or not len(neg):
        return math.nan
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    while i < len(sv):  # average ranks over ties
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    r_pos = ranks[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
