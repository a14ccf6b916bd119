"""Held-out human labels: the labelled images a model has a prediction for and did not train
on (``model_images``), with its stored probabilities — what thresholds are certified and
temperatures refitted on (core.models.calibration does the maths)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.errors import NotFound
from core.review.routing import INDEPENDENT_SQL


@dataclass
class HeldOut:
    """Held-out human labels with a model's stored predictions. Unpacks as
    ``probs, labels, image_ids = heldout_predictions(db, model_id)``.

    ``labels`` are indices into ``class_names``; ``skipped`` counts the labels left out because
    they are not one of the model's classes (e.g. 'several', 'unusable', a new class);
    ``excluded_train`` the labelled images left out because the model trained on them.
    """

    probs: np.ndarray
    labels: np.ndarray
    image_ids: list[int]
    class_names: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    excluded_train: int = 0

    def __iter__(self) -> Iterator[Any]:
        return iter((self.probs, self.labels, self.image_ids))

    def __len__(self) -> int:
        return len(self.image_ids)


def _has_table(db: Database, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                      [name]).fetchone() is not None


def heldout_predictions(db: Database, model_id: int) -> HeldOut:
    """Independent human (and imported) labels (not auto labels confirmed while seen) of images that ``model_id`` has a stored prediction for and
    did not train on (``model_images`` role 'train'; none when that table does not exist), with
    the stored probabilities in the model's class order. Ordered by image id."""
    row = db.execute("SELECT class_names FROM models WHERE id = ?", [model_id]).fetchone()
    if row is None:
        raise NotFound(f"No model with id {model_id!r}")
    names = list(json.loads(row[0]))
    index = {c: i for i, c in enumerate(names)}
    train = _has_table(db, "model_images")
    in_train = ("EXISTS (SELECT 1 FROM model_images t WHERE t.model_id = p.model_id "
                "AND t.image_id = c.image_id AND t.role = 'train')") if train else "0"
    rows = db.execute(
        f"SELECT c.image_id, c.label, p.probs, {in_train} FROM current_labels c "
        "CROSS JOIN predictions p ON p.image_id = c.image_id AND p.model_id = ? "  # labels first
        f"WHERE {INDEPENDENT_SQL} ORDER BY c.image_id",
        [model_id],
    ).fetchall()
    probs: list[list[float]] = []
    labels: list[int] = []
    ids: list[int] = []
    skipped: Counter[str] = Counter()
    excluded = 0
    for image_id, label, pj, trained in rows:
        if trained:
            excluded += 1
            continue
        if label not in index:
            skipped[label] += 1
            continue
        probs.append(json.loads(pj))
        labels.append(index[label])
        ids.append(int(image_id))
    p = np.asarray(probs, np.float64).reshape(len(probs), len(names))
    return HeldOut(probs=p, labels=np.asarray(labels, np.int64), image_ids=ids, class_names=names,
                   skipped=dict(skipped), excluded_train=excluded)
