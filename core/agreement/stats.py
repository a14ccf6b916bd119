"""Agreement statistics on nominal ratings (numpy; scikit-learn for Cohen's κ).

* :func:`cohen_kappa` — two raters on the same items: scikit-learn's ``cohen_kappa_score``,
  with a percentile bootstrap interval over items.
* :func:`krippendorff_alpha` — any number of raters, any of them missing on any item
  (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability", nominal metric), from the
  coincidence matrix, with a percentile bootstrap interval over items.

The bootstrap works on per-item contributions: a resample of items is a vector of
multiplicities ``w`` (multinomial), and the resampled confusion or coincidence matrix is
``w @ contributions`` — a thousand resamples are a few matrix products, not a thousand loops.
Both point estimates are checked against scikit-learn and the ``krippendorff`` package (and
Krippendorff's published example) in tests/agreement/test_stats.py.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import cohen_kappa_score

BOOTSTRAP = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A statistic on ``n`` items with its bootstrap interval (``None`` where undefined: no
    variation in the ratings, or fewer than two items)."""

    value: float | None
    low: float | None
    high: float | None
    n: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _interval(samples: np.ndarray, level: float) -> tuple[float | None, float | None]:
    s = samples[np.isfinite(samples)]
    if s.size < max(10, samples.size // 2):  # most resamples undefined: no honest interval
        return None, None
    lo, hi = np.quantile(s, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def _resample_weights(n_items: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n_items) multiplicities of a bootstrap resample of items."""
    return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), size=n_boot).astype(np.float64)


# ---------------------------------------------------------------- Cohen's kappa


def kappa_from_confusion(c: np.ndarray) -> np.ndarray:
    """Cohen's κ of confusion matrices ``c`` (..., k, k): (p_o − p_e) / (1 − p_e); NaN where
    p_e = 1 (both raters used one and the same class throughout)."""
    c = np.asarray(c, dtype=np.float64)
    n = c.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        po = np.trace(c, axis1=-2, axis2=-1) / n
        pe = (c.sum(axis=-1) * c.sum(axis=-2)).sum(axis=-1) / n**2
        return (po - pe) / (1 - pe)


def confusion(a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[Hashable]) -> np.ndarray:
    """Counts of (rater a's label, rater b's label), rows a, columns b, in ``labels`` order."""
    index = {lab: i for i, lab in enumerate(labels)}
    c = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for x, y in zip(a, b, strict=True):
        c[index[x], index[y]] += 1
    return c


def cohen_kappa(
    a: Sequence[Hashable], b: Sequence[Hashable], *, n_boot: int = BOOTSTRAP, level: float = LEVEL,
    seed: int = 0,
) -> Estimate:
    """Cohen's κ of two raters' labels on the same items (scikit-learn), with a percentile
    bootstrap interval over items."""
    if len(a) != len(b):
        raise ValueError(f"Two raters need the same items: {len(a)} labels against {len(b)}")
    n = len(a)
    if n < 2:
        return Estimate(None, None, None, n)
    labels = sorted({*a, *b}, key=str)
    if len(labels) < 2:  # both used one class throughout: agreement is perfect, κ undefined
        return Estimate(None, None, None, n)
    value = _finite(cohen_kappa_score([str(x) for x in a], [str(x) for x in b]))
    index = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    cells = np.array([index[x] * k + index[y] for x, y in zip(a, b)])
    onehot = np.zeros((n, k * k))
    onehot[np.arange(n), cells] = 1.0
    rng = np.random.default_rng(seed)
    boot = kappa_from_confusion((_resample_weights(n, n_boot, rng) @ onehot).reshape(-1, k, k))
    low, high = _interval(boot, level)
    return Estimate(value, low, high, n)


# ---------------------------------------------------------------- Krippendorff's alpha


def _unit_counts(units: Sequence[Mapping[str, Hashable]], labels: Sequence[Hashable]) -> np.ndarray:
    """(items, k) how many raters gave each label, for items with at least two ratings."""
    index = {lab: i for i, lab in enumerate(labels)}
    x = np.zeros((len(units), len(labels)))
    for u, ratings in enumerate(units):
        for lab in ratings.values():
            x[u, index[lab]] += 1
    return x[x.sum(axis=1) >= 2]


def coincidences(counts: np.ndarray) -> np.ndarray:
    """Per-item coincidence matrices (items, k, k): o_u = (x xᵀ − diag x) / (m_u − 1)."""
    m = counts.sum(axis=1)
    outer = counts[:, :, None] * counts[:, None, :]
    idx = np.arange(counts.shape[1])
    outer[:, idx, idx] -= counts
    return outer / (m - 1)[:, None, None]


def alpha_from_coincidence(o: np.ndarray) -> np.ndarray:
    """Nominal α of coincidence matrices ``o`` (..., k, k): 1 − (n − 1) D_o / D_e; NaN where
    every pairable value is one class (no variation)."""
    o = np.asarray(o, dtype=np.float64)
    nc = o.sum(axis=-1)
    n = nc.sum(axis=-1)
    observed = o.sum(axis=(-2, -1)) - np.trace(o, axis1=-2, axis2=-1)
    expected = n**2 - (nc**2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1 - (n - 1) * observed / expected


def krippendorff_alpha(
    units: Sequence[Mapping[str, Hashable]], *, n_boot: int = BOOTSTRAP, level: float = LEVEL,
    seed: int = 0,
) -> Estimate:
    """Krippendorff's α (nominal) of items rated by any raters: ``units`` holds one
    {rater: label} per item; items with fewer than two ratings are not pairable and left out.
    ``n`` of the result = pairable items. Percentile bootstrap interval over items."""
    labels = sorted({lab for r in units for lab in r.values()}, key=str)
    counts = _unit_counts(units, labels) if labels else np.zeros((0, 0))
    n = int(counts.shape[0])
    if n < 2 or len(labels) < 2:
        return Estimate(None, None, None, n)
    per_item = coincidences(counts)
    value = _finite(float(alpha_from_coincidence(per_item.sum(axis=0))))
    k = len(labels)
    rng = np.random.default_rng(seed)
    boot = alpha_from_coincidence(
        (_resample_weights(n, n_boot, rng) @ per_item.reshape(n, k * k)).reshape(-1, k, k))
    low, high = _interval(boot, level)
    return Estimate(value, low, high, n)


def coincidence_matrix(units: Sequence[Mapping[str, Hashable]], labels: Sequence[Hashable]) -> np.ndarray:
    """The coincidence matrix of all pairable ratings (labels × labels, symmetric): how often
    one reviewer's label met another's on the same item — the confusion between reviewers."""
    counts = _unit_counts(units, labels)
    if counts.shape[0] == 0:
        return np.zeros((len(labels), len(labels)))
    return coincidences(counts).sum(axis=0)


def percent_agreement(units: Sequence[Mapping[str, Hashable]]) -> float | None:
    """Share of agreeing pairs among all pairs of ratings on the same item."""
    agree = pairs = 0
    for r in units:
        labs = list(r.values())
        for i in range(len(labs)):
            for j in range(i + 1, len(labs)):
                pairs += 1
                agree += labs[i] == labs[j]
    return agree / pairs if pairs else None
