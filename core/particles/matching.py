"""Detections against ground truth: one-to-one matching (IoU ≥ 0.5 *and* centroid within half
the true particle's diameter), precision / recall / F1, false merges and splits, and the error
of the size distribution (D10 / D50 / D90, Wasserstein distance)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage
from scipy.stats import wasserstein_distance

IOU_MIN = 0.5


@dataclass
class MatchResult:
    """Counts of one image or a sum over images (``+``)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    merges: int = 0  # detections covering ≥ 2 true particles (each more than half)
    splits: int = 0  # true particles cut into ≥ 2 detections (each mostly inside it)
    iou_sum: float = 0.0
    pred_ecd: list[float] = field(default_factory=list)  # detections not edge/bar-cut
    true_ecd: list[float] = field(default_factory=list)

    def __add__(self, o: MatchResult) -> MatchResult:
        return MatchResult(self.tp + o.tp, self.fp + o.fp, self.fn + o.fn, self.merges + o.merges,
                           self.splits + o.splits, self.iou_sum + o.iou_sum,
                           self.pred_ecd + o.pred_ecd, self.true_ecd + o.true_ecd)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def summary(self) -> dict[str, float | int | None]:
        d = {k: v for k, v in asdict(self).items() if k not in ("pred_ecd", "true_ecd", "iou_sum")}
        d.update(precision=round(self.precision, 4), recall=round(self.recall, 4),
                 f1=round(self.f1, 4),
                 mean_iou=round(self.iou_sum / self.tp, 4) if self.tp else None)
        d.update(size_errors(self.pred_ecd, self.true_ecd))
        return d


def _inner_ids(labels: np.ndarray, excluded_border: bool) -> set[int]:
    """Labels not touching the frame (when ``excluded_border``)."""
    if not excluded_border:
        return set(np.unique(labels).tolist()) - {0}
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return set(np.unique(labels).tolist()) - {0} - set(np.unique(border).tolist())


def match(pred: np.ndarray, true: np.ndarray) -> MatchResult:
    """Match the instance labels ``pred`` to ``true`` (same shape, 0 = background)."""
    if pred.shape != true.shape:
        raise ValueError(f"shapes differ: detections {pred.shape}, truth {true.shape}")
    pred = pred.astype(np.int64, copy=False)
    true = true.astype(np.int64, copy=False)
    n_p, n_t = int(pred.max()), int(true.max())
    ap = np.bincount(pred.ravel(), minlength=n_p + 1)
    at = np.bincount(true.ravel(), minlength=n_t + 1)
    both = (pred > 0) & (true > 0)
    key = pred[both] * (n_t + 1) + true[both]
    pairs, inter = np.unique(key, return_counts=True)
    pi, ti = pairs // (n_t + 1), pairs % (n_t + 1)
    iou = inter / (ap[pi] + at[ti] - inter)
    # centroids
    present_p = np.nonzero(ap[1:])[0] + 1
    present_t = np.nonzero(at[1:])[0] + 1
    cp = np.zeros((n_p + 1, 2))
    ct = np.zeros((n_t + 1, 2))
    if len(present_p):
        cp[present_p] = np.array(ndimage.center_of_mass(np.ones_like(pred), pred, present_p))
    if len(present_t):
        ct[present_t] = np.array(ndimage.center_of_mass(np.ones_like(true), true, present_t))
    d_true = 2 * np.sqrt(at / math.pi)
    close = np.hypot(*(cp[pi] - ct[ti]).T) <= d_true[ti] / 2
    ok = (iou >= IOU_MIN) & close
    order = np.argsort(-iou[ok])
    used_p: set[int] = set()
    used_t: set[int] = set()
    iou_sum = 0.0
    for j in order:
        a, b = int(pi[ok][j]), int(ti[ok][j])
        if a in used_p or b in used_t:
            continue
        used_p.add(a)
        used_t.add(b)
        iou_sum += float(iou[ok][j])
    tp = len(used_p)
    fp = len(present_p) - tp
    fn = len(present_t) - tp
    # merges: a detection holding more than half of each of ≥ 2 true particles
    cover_t = inter / at[ti]
    big = cover_t > 0.5
    merges = int((np.bincount(pi[big], minlength=n_p + 1) >= 2).sum())
    cover_p = inter / ap[pi]
    mostly = cover_p > 0.5
    splits = int((np.bincount(ti[mostly], minlength=n_t + 1) >= 2).sum())
    inner_p = _inner_ids(pred, True)
    inner_t = _inner_ids(true, True)
    return MatchResult(tp, fp, fn, merges, splits, iou_sum,
                       [float(2 * math.sqrt(ap[k] / math.pi)) for k in sorted(inner_p)],
                       [float(2 * math.sqrt(at[k] / math.pi)) for k in sorted(inner_t)])


def size_errors(pred: list[float] | np.ndarray, true: list[float] | np.ndarray
                ) -> dict[str, float | None]:
    """Relative errors of D10 / D50 / D90 and the Wasserstein distance relative to the true
    D50 (None when either side is empty)."""
    p, t = np.asarray(pred, float), np.asarray(true, float)
    if not len(p) or not len(t):
        return {"d10_rel_err": None, "d50_rel_err": None, "d90_rel_err": None,
                "wasserstein_rel": None}
    out: dict[str, float | None] = {}
    for q in (10, 50, 90):
        tq = float(np.percentile(t, q))
        out[f"d{q}_rel_err"] = round(float(np.percentile(p, q)) / tq - 1.0, 4)
    out["wasserstein_rel"] = round(wasserstein_distance(p, t) / float(np.median(t)), 4)
    return out
