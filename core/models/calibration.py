"""Calibration, in one place (numpy and scipy, no torch: training imports it): softmax with a
temperature, the temperature fit (from logits, or refitted from stored probabilities), the
expected calibration error, Wilson and Clopper–Pearson intervals, and from held-out human
labels the risk–coverage curve and an auto-accept threshold with an honest error guarantee
(global and per class).

Risk here is the error rate of what would be auto-accepted: among held-out labelled images whose
top-1 probability is ≥ t, the share whose top-1 class is not the human label. Coverage is the
share of held-out images accepted at t.

How the threshold is chosen (:func:`recommend_accept`)
------------------------------------------------------
For each candidate threshold t the errors among the n(t) accepted images are Binomial, so a
one-sided Clopper–Pearson bound U(t) at ``level`` (default 95 %) holds for the true error rate
at t. Picking "the lowest t with U(t) ≤ target" after looking at every t would be optimistic
(the lowest crossing of a noisy curve), so the candidates are tested in a fixed sequence, from
the most confident down, and the walk stops at the first t whose bound exceeds the target
(fixed-sequence testing, as in Angelopoulos et al., "Learn then Test", 2021): the threshold
returned keeps the true error ≤ target with probability ≥ ``level``. The walk starts at the
first t that accepts at least ``min_accepted`` images, by default the fewest for which a clean
record could pass at all: with no error among n accepted the bound is 1 − (1 − level)^(1/n),
so a 2 % target at 95 % needs n ≥ 149. With fewer held-out labels no threshold can be
recommended, and the reason says so — that is the honest answer, not a failure.

Temperature
-----------
Stored predictions hold probabilities, not logits. log p = z / T0 − logsumexp(z / T0), so the
log-probabilities are the model's (already tempered) logits up to a constant per row, which
softmax ignores: softmax(log p / T) = softmax(z / (T0 · T)). :func:`refit_temperature` fits that
T on human labels; the model's new temperature is T0 · T (T < 1 sharpens, T > 1 softens).

The held-out labels themselves come from the store: :func:`core.review.heldout_predictions`.
"""


from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import beta

DEFAULT_TARGET = 0.02
DEFAULT_LEVEL = 0.95


# ---------------------------------------------------------------- softmax and temperature


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: Any, labels: Any, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T minimising the NLL of softmax(logits / T), searched on log T within
    ``bounds``; 1.0 when there are no labels.

    ``labels``: class indices (N,), or soft targets (N, K) rows summing to 1.
    """
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels)
    if len(y) == 0:
        return 1.0
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"logits must be (N, K) and labels (N,) or (N, K), got {z.shape} and {y.shape}")
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        lse = np.log(np.exp(s).sum(axis=1))
        if y.ndim == 2:
            return float((y * (lse[:, None] - s)).sum(axis=1).mean())
        return float((lse - s[rows, y.astype(np.int64)]).mean())

    res = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-5})
    t = float(math.exp(res.x))
    return t if math.isfinite(t) and t > 0 else 1.0


def refit_temperature(probs: Any, labels: Any, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T minimising the NLL of softmax(log p / T) on human labels.

    ``probs``: stored (already calibrated) probabilities (N, K); ``labels``: class indices (N,).
    Returns the factor T relative to the model's current temperature T0: the refitted model
    temperature is T0 · T (see the module docstring). 1.0 when there are no labels.
    """
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, np.int64)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probs must be (N, K) and labels (N,), got {p.shape} and {y.shape}")
    return fit_temperature(np.log(np.clip(p, 1e-12, 1.0)), y, bounds)


def apply_temperature(probs: Any, t: float) -> np.ndarray:
    """softmax(log p / t): stored probabilities re-tempered by the factor ``t``."""
    return softmax(np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)), t)


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


# ---------------------------------------------------------------- bounds


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (95 % by default); (0, 1) when n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cp_upper(errors: int | np.ndarray, n: int | np.ndarray, level: float = DEFAULT_LEVEL) -> np.ndarray:
    """One-sided Clopper–Pearson upper bound on an error rate: P(rate ≤ bound) ≥ ``level``."""
    e = np.asarray(errors, np.float64)
    n_ = np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = beta.ppf(level, e + 1, np.maximum(n_ - e, 1.0))
    return np.where((e >= n_) | (n_ <= 0), 1.0, u)


def cp_interval(errors: int, n: int, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Two-sided Clopper–Pearson interval at ``level`` (for display)."""
    if n <= 0:
        return 0.0, 1.0
    a = (1 - level) / 2
    lo = 0.0 if errors == 0 else float(beta.ppf(a, errors, n - errors + 1))
    hi = 1.0 if errors >= n else float(beta.ppf(1 - a, errors + 1, n - errors))
    return lo, hi


def min_clean_accepted(target: float, level: float = DEFAULT_LEVEL) -> int:
    """The fewest accepted images, all correct, whose upper bound is ≤ ``target``."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target must be in (0, 1), got {target!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    n = math.ceil(math.log(1 - level) / math.log(1 - target))
    while n > 1 and cp_upper(0, n - 1, level) <= target:  # guard against rounding
        n -= 1
    while cp_upper(0, n, level) > target:
        n += 1
    return n


# ---------------------------------------------------------------- curves


def _check(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(confidence, np.float64).ravel()
    ok = np.asarray(correct, bool).ravel()
    if len(c) != len(ok):
        raise ValueError(f"confidence ({len(c)}) and correct ({len(ok)}) differ in length")
    if len(c) and not np.isfinite(c).all():
        raise ValueError("confidence holds NaN or infinite values")
    return c, ok


def _steps(c: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, accepted, errors) at each distinct confidence."""
    o = np.argsort(-c, kind="stable")
    cs = c[o]
    errs = np.cumsum(~ok[o])
    n = np.arange(1, len(c) + 1)
    last = np.r_[cs[1:] != cs[:-1], True] if len(cs) else np.zeros(0, bool)
    return cs[last], n[last], errs[last]


def thin_curve(curve: Sequence[dict[str, Any]], n: int = 400) -> list[dict[str, Any]]:
    """At most ``n`` evenly spaced points of a risk–coverage curve (first and last kept): the
    curve has one point per distinct confidence, too many to draw in a browser."""
    if len(curve) <= n:
        return list(curve)
    return [curve[int(i)] for i in np.unique(np.linspace(0, len(curve) - 1, n).round())]


def risk_coverage(confidence: Any, correct: Any, level: float = DEFAULT_LEVEL) -> list[dict[str, Any]]:
    """The risk–coverage curve: one row per distinct confidence t (highest first) with what
    auto-accepting ``confidence ≥ t`` would do on these labels: ``coverage`` (share accepted),
    ``risk`` (error rate among accepted), ``n_accepted``, ``errors`` and ``risk_upper`` (its
    one-sided Clopper–Pearson bound at ``level``)."""
    c, ok = _check(confidence, correct)
    t, n, e = _steps(c, ok)
    u = cp_upper(e, n, level)
    total = max(len(c), 1)
    return [
        {"threshold": float(t[i]), "coverage": float(n[i] / total), "risk": float(e[i] / n[i]),
         "n_accepted": int(n[i]), "errors": int(e[i]), "risk_upper": float(u[i])}
        for i in range(len(t))
    ]


# ---------------------------------------------------------------- recommendation


@dataclass
class Recommendation:
    """An auto-accept threshold and what it does on the held-out labels it was chosen on.

    ``threshold`` is None when no threshold meets the target with the labels at hand
    (``reason`` says why). ``interval`` is the two-sided Clopper–Pearson interval of the error
    rate of accepted images at ``level``; ``risk_upper`` the one-sided bound the choice rests on.
    ``scope`` is ``"*"`` (all classes) or the predicted class; ``fallback`` is True for a class
    that had too few labels of its own and takes the global recommendation.
    """

    threshold: float | None
    target: float
    level: float
    n: int  # held-out labels considered
    n_accepted: int = 0
    errors: int = 0
    coverage: float = 0.0
    risk: float = 0.0
    risk_upper: float = 1.0
    interval: tuple[float, float] = (0.0, 1.0)
    min_accepted: int = 0
    reason: str = ""
    scope: str = "*"
    fallback: bool = False
    curve: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_json(self, with_curve: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = list(self.interval)
        if not with_curve:
            d.pop("curve")
        return d


def _pct(x: float) -> str:
    return f"{100 * x:.3g}%"


def recommend_accept(
    confidence: Any,
    correct: Any,
    target: float = DEFAULT_TARGET,
    level: float = DEFAULT_LEVEL,
    min_accepted: int | None = None,
    *,
    scope: str = "*",
) -> Recommendation:
    """The lowest auto-accept threshold whose error guarantee holds: walking down from the most
    confident held-out image, the last threshold before the first one whose one-sided
    Clopper–Pearson upper bound on the accepted error exceeds ``target`` (see the module
    docstring for why the walk stops there). ``confidence``: top-1 probabilities (N,);
    ``correct``: whether the top-1 class was the human label (N,)."""
    c, ok = _check(confidence, correct)
    need = min_clean_accepted(target, level)
    start_n = max(need, int(min_accepted or 0))
    curve = risk_coverage(c, ok, level)
    rec = Recommendation(threshold=None, target=target, level=level, n=len(c), min_accepted=need,
                         scope=scope, curve=curve)
    what = "all classes" if scope == "*" else f"images predicted {scope!r}"
    if len(c) < start_n:
        rec.reason = (
            f"With {len(c)} held-out labels ({what}) no threshold can guarantee ≤ {_pct(target)} "
            f"error at {_pct(level)} confidence: that needs ≥ {need} accepted images without an "
            "error (more if any is wrong). Label more images the model has not trained on."
        )
        return rec
    best: dict[str, Any] | None = None
    first: dict[str, Any] | None = None
    for row in curve:  # highest threshold first
        if row["n_accepted"] < start_n:
            continue
        first = first or row
        if row["risk_upper"] > target:
            break
        best = row
    if best is None:
        assert first is not None
        rec.n_accepted, rec.errors = first["n_accepted"], first["errors"]
        rec.risk, rec.risk_upper = first["risk"], first["risk_upper"]
        rec.coverage = first["coverage"]
        rec.interval = cp_interval(first["errors"], first["n_accepted"], level)
        rec.reason = (
            f"No threshold keeps the error of auto-accepted images ≤ {_pct(target)} at "
            f"{_pct(level)} confidence ({what}): the {first['n_accepted']} most confident "
            f"held-out images (p ≥ {first['threshold']:.3f}) already hold {first['errors']} "
            f"errors (upper bound {_pct(first['risk_upper'])}). Relax the target or label more."
        )
        return rec
    rec.threshold = float(best["threshold"])
    rec.n_accepted, rec.errors = best["n_accepted"], best["errors"]
    rec.risk, rec.risk_upper, rec.coverage = best["risk"], best["risk_upper"], best["coverage"]
    rec.interval = cp_interval(best["errors"], best["n_accepted"], level)
    rec.reason = (
        f"Accept at p ≥ {rec.threshold:.3f} ({what}): {rec.n_accepted} of {len(c)} held-out "
        f"images ({_pct(rec.coverage)}) would be auto-accepted with {rec.errors} errors "
        f"(observed {_pct(rec.risk)}; true error ≤ {_pct(rec.risk_upper)} at {_pct(level)} "
        "confidence)."
    )
    return rec


def recommend_per_class(
    probs: Any,
    labels: Any,
    class_names: Sequence[str],
    target: float = DEFAULT_TARGET,
    level: float = DEFAULT_LEVEL,
) -> dict[str, Recommendation]:
    """One recommendation per predicted class, plus the global one under ``"*"``.

    A class's threshold is chosen on the held-out images the model predicts as that class
    (confidence = its top-1 probability, correct = the human label agrees). A class with fewer
    such images than a clean record needs (see :func:`min_clean_accepted`) takes the global
    threshold, with ``fallback`` set and the reason saying so.
    """
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, np.int64)
    if p.ndim != 2 or p.shape[1] != len(class_names) or len(p) != len(y):
        raise ValueError(f"probs must be (N, {len(class_names)}) and labels (N,), got "
                         f"{p.shape} and {y.shape}")
    conf = p.max(axis=1) if len(p) else np.zeros(0)
    pred = p.argmax(axis=1) if len(p) else np.zeros(0, np.int64)
    correct = pred == y
    out = {"*": recommend_accept(conf, correct, target, level)}
    g = out["*"]
    need = min_clean_accepted(target, level)
    for k, name in enumerate(class_names):
        m = pred == k
        if int(m.sum()) < need:
            r = Recommendation(
                threshold=g.threshold, target=target, level=level, n=int(m.sum()),
                n_accepted=g.n_accepted, errors=g.errors, coverage=g.coverage, risk=g.risk,
                risk_upper=g.risk_upper, interval=g.interval, min_accepted=need, scope=name,
                fallback=True,
                reason=(f"Only {int(m.sum())} held-out images are predicted {name!r} (a threshold "
                        f"of its own needs ≥ {need}): uses the global recommendation."),
            )
        else:
            r = recommend_accept(conf[m], correct[m], target, level, scope=name)
        out[name] = r
    return out
