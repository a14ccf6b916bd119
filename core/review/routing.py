"""Routing: every prediction goes to exactly one queue — ``mixed``, ``auto`` or ``uncertain``.

From the sorted probabilities p1 ≥ p2 of the top two classes (margin m = p1 − p2):

0. ``uncertain`` when the top two tie exactly (p1 = p2): no signal — a blank scan, which the
                 classifier answers with a uniform distribution; and ``uncertain`` when the
                 image is *unfamiliar* to the model (``unfamiliar``: the reason in words, from
                 core.models.familiarity — unlike its training images, or a pixel size or
                 instrument outside what it was trained on): its probabilities mean nothing;
1. ``mixed``     when two classes are strong candidates: p2 ≥ ``cooccur`` (both present), or
                 m < ``mixed_margin`` while p1 + p2 ≥ ``mixed_mass`` (a boundary case between
                 two classes rather than a generally unsure model);
2. ``auto``      otherwise, when p1 ≥ ``accept``;
3. ``uncertain`` otherwise.

Thresholds are global (class ``*``) with optional per-class overrides keyed by the top-1 class,
stored in the ``thresholds`` table. :func:`route` is the Python form; :func:`queue_sql` builds the
same rule as SQL so that previews (counts) and re-routing (:func:`core.review.reroute`) of
millions of rows run inside SQLite.
"""


from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sqlite_utils import Database

from core.access import User, require_admin
from core.errors import InvalidValue
from core.store import write_tx

QUEUES = ("uncertain", "mixed", "auto")
# The blind spot-check: not a queue predictions are routed to but a random sample of the auto
# queue, shown with the model's answer hidden; its decisions (context 'blind') are the
# independent measure of how often auto-accepting is wrong.
BLIND_QUEUE = "blind"
# Labels that are evidence of the model's error rate: human or imported, and not a confirmation
# of an auto-accepted label made while seeing it (one-key "yes" to the model flatters it).
# ``c`` is the current_labels (or label_events) alias.
INDEPENDENT_SQL = "(c.source IN ('human', 'import') AND c.context IS NOT 'auto')"
GLOBAL = "*"


@dataclass(frozen=True)
class Thresholds:
    """Defaults suited to a temperature-calibrated model (p ≈ probability of being right)."""

    accept: float = 0.70
    mixed_margin: float = 0.15
    mixed_mass: float = 0.60
    cooccur: float = 0.30

    def validate(self) -> Thresholds:
        for name, v in asdict(self).items():
            if not (0.0 <= float(v) <= 1.0):
                raise InvalidValue(f"Threshold {name} = {v!r} is outside [0, 1]")
        return self


ThresholdSet = dict[str, Thresholds]  # class name (or "*") -> thresholds


def for_class(ts: ThresholdSet, cls: str) -> Thresholds:
    return ts.get(cls) or ts.get(GLOBAL) or Thresholds()


def top2(probs: np.ndarray) -> tuple[int, float, int, float]:
    """Indices and values of the two largest probabilities (second = -1/0.0 for one class)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.size == 1:
        return 0, float(p[0]), -1, 0.0
    i1, i2 = np.argsort(-p, kind="stable")[:2]
    return int(i1), float(p[i1]), int(i2), float(p[i2])


# An exact tie at the top is no boundary case but no information: the model's probabilities
# for a blank scan (core.models.Classifier.blank_rows) are uniform.
NO_SIGNAL = 1e-7


def decide_queue(c1: str, p1: float, c2: str | None, p2: float, t: Thresholds,
                 unfamiliar: str | None = None) -> tuple[str, str]:
    m = p1 - p2
    if c2 is not None and m < NO_SIGNAL:
        return "uncertain", "no signal: blank or flat image, the model cannot tell"
    if unfamiliar:
        return "uncertain", f"{unfamiliar} — p = {p1:.2f} {c1} is not to be trusted"
    if c2 is not None and m < t.mixed_margin and p1 + p2 >= t.mixed_mass:
        return "mixed", f"margin {m:.2f} between {c1} and {c2}"
    if c2 is not None and p2 >= t.cooccur:
        return "mixed", f"{c1} {p1:.2f} and {c2} {p2:.2f} both ≥ {t.cooccur:.2f}"
    if p1 >= t.accept:
        return "auto", f"p = {p1:.2f} ≥ {t.accept:.2f}"
    return "uncertain", f"p = {p1:.2f} < {t.accept:.2f}"


def current_reason(ts: ThresholdSet, pred: str, p1: float, second: str | None, p2: float,
                   unfamiliar: str | None = None) -> str:
    """Why a stored prediction is in its queue, in words, under the thresholds ``ts``."""
    return decide_queue(pred, p1, second, p2, for_class(ts, pred), unfamiliar)[1]


def route(
    probs: Sequence[float] | np.ndarray,
    class_names: Sequence[str],
    thresholds: ThresholdSet | Thresholds | None = None,
    unfamiliar: str | None = None,
) -> tuple[str, str]:
    """(queue, reason in words) for one probability vector."""
    if isinstance(thresholds, Thresholds):
        ts: ThresholdSet = {GLOBAL: thresholds}
    else:
        ts = thresholds or {}
    i1, p1, i2, p2 = top2(np.asarray(probs))
    c1 = class_names[i1]
    c2 = class_names[i2] if i2 >= 0 else None
    return decide_queue(c1, p1, c2, p2, for_class(ts, c1), unfamiliar)


# ---------------------------------------------------------------- stored thresholds


def get_thresholds(db: Database) -> ThresholdSet:
    rows = db.execute(
        "SELECT class, accept, mixed_margin, mixed_mass, cooccur FROM thresholds"
    ).fetchall()
    ts: ThresholdSet = {GLOBAL: Thresholds()}
    for cls, a, mm, ms, co in rows:
        ts[cls] = Thresholds(a, mm, ms, co)
    return ts


def set_thresholds(db: Database, t: Thresholds, cls: str = GLOBAL, *, by: User | None = None) -> None:
    """Store thresholds for ``cls`` (``*`` = global). Does not re-route: call :func:`reroute`.
    Administrators only (``by``; ``None`` = local use)."""
    require_admin(by, "change the routing thresholds")
    t.validate()
    with write_tx(db, "saving thresholds"):
        db.execute(
            "INSERT INTO thresholds(class, accept, mixed_margin, mixed_mass, cooccur) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(class) DO UPDATE SET accept = excluded.accept, "
            "mixed_margin = excluded.mixed_margin, mixed_mass = excluded.mixed_mass, "
            "cooccur = excluded.cooccur",
            [cls, t.accept, t.mixed_margin, t.mixed_mass, t.cooccur],
        )


def clear_class_thresholds(db: Database, cls: str, *, by: User | None = None) -> None:
    require_admin(by, "change the routing thresholds")
    if cls == GLOBAL:
        raise InvalidValue("The global thresholds cannot be removed, only changed")
    with write_tx(db, "removing thresholds"):
        db.execute("DELETE FROM thresholds WHERE class = ?", [cls])


# ---------------------------------------------------------------- the rule in SQL


def _case(ts: ThresholdSet, col: str, alias: str) -> tuple[str, list[float | str]]:
    """``CASE pred WHEN 'a' THEN x ... ELSE global END`` for one threshold field."""
    g = getattr(for_class(ts, GLOBAL), col)
    overrides = [(c, getattr(t, col)) for c, t in ts.items() if c != GLOBAL]
    if not overrides:
        return "?", [g]
    sql = f"CASE {alias}.pred " + " ".join("WHEN ? THEN ?" for _ in overrides) + " ELSE ? END"
    params: list[float | str] = []
    for c, v in overrides:
        params += [c, v]
    return sql, params + [g]


def queue_sql(ts: ThresholdSet, alias: str = "p") -> tuple[str, list[float | str]]:
    """SQL expression (and its parameters) giving the queue of a ``predictions`` row; the same
    rule as :func:`decide_queue`."""
    co, co_p = _case(ts, "cooccur", alias)
    mm, mm_p = _case(ts, "mixed_margin", alias)
    ms, ms_p = _case(ts, "mixed_mass", alias)
    ac, ac_p = _case(ts, "accept", alias)
    sql = (
        f"CASE WHEN {alias}.second IS NOT NULL AND {alias}.p1 - {alias}.p2 < {NO_SIGNAL!r} "
        "THEN 'uncertain' "
        f"WHEN {alias}.unfamiliar IS NOT NULL THEN 'uncertain' "
        f"WHEN {alias}.second IS NOT NULL AND {alias}.p2 >= {co} THEN 'mixed' "
        f"WHEN {alias}.second IS NOT NULL AND {alias}.p1 - {alias}.p2 < {mm} "
        f"AND {alias}.p1 + {alias}.p2 >= {ms} THEN 'mixed' "
        f"WHEN {alias}.p1 >= {ac} THEN 'auto' ELSE 'uncertain' END"
    )
    return sql, co_p + mm_p + ms_p + ac_p


def preview_counts(db: Database, model_id: int, ts: ThresholdSet) -> dict[str, int]:
    """Queue sizes (unlabelled images only) that ``ts`` would give, without writing anything."""
    expr, params = queue_sql(ts)
    rows = db.execute(
        f"SELECT {expr} AS q, COUNT(*) FROM predictions p "
        "WHERE p.model_id = ? AND p.done = 0 GROUP BY q",
        params + [model_id],
    ).fetchall()
    out = {q: 0 for q in QUEUES}
    out.update({q: n for q, n in rows})
    return out
