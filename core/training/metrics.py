"""The numbers of a model card: classification report, split counts, held-out calibration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.models import expected_calibration_error, softmax


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
