"""Certification: a model writes auto labels only where this lab's own labels have earned it.

A model trained elsewhere (the shipped synthetic one, or any model from outside) has never been
checked on this lab's micrographs: its confidence is a claim, not a measurement. So every model
starts **provisional**: its confident predictions (the ``auto`` queue) are *not* written as
labels; they wait as *confident (unverified)* for a reviewer to confirm (the Grid confirm page:
one key per image), and every confirmation or correction is a human label the model did not
train on — evidence for certification.

**Certified**: :func:`certify` takes the held-out human labels (core.review.heldout_predictions)
and, through the Clopper–Pearson machinery of core.models.calibration, the lowest accept
threshold whose error bound stays under the target (default 2 % at 95 % confidence) —
globally, and per class where a class has enough labels of its own. It records the result
(who, when, on how many labels, the bound) in ``certifications``, stores the thresholds and
re-routes. From then on auto labels are written for predictions at or above the certified
threshold of their class; a class whose own labels refuse every threshold never gets one.

**Forced**: an administrator may set a threshold without that evidence
(:func:`force_threshold`); it works like a certification and is recorded as an override
(``state = 'forced'``, who and why), shown as such everywhere.

The rule a stored prediction must meet to become an auto label, as SQL over ``predictions p``:
:func:`auto_label_rule` (core.review.sync_auto_labels applies it). Certifying, forcing and
revoking write through core/review/certify.py.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlite_utils import Database

from core.errors import NotFound
from core.models import DEFAULT_LEVEL, DEFAULT_TARGET, active_model, min_clean_accepted
from core.review.routing import GLOBAL, INDEPENDENT_SQL

PROVISIONAL = "provisional"
CERTIFIED = "certified"
FORCED = "forced"
PARTLY = "partly certified"
_ALLOWING = ("certified", "forced")
_NEVER = 2.0  # an accept threshold no probability reaches


@dataclass
class Certification:
    """Where a model stands. ``scopes``: the latest record per scope (``*`` or a class);
    ``n_labels``: held-out human labels of its classes; ``needed``: the fewest accepted
    labels without an error that any certification at ``target`` needs."""

    model_id: int
    version: str
    state: str
    scopes: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_labels: int = 0
    needed: int = 0
    target: float = DEFAULT_TARGET
    level: float = DEFAULT_LEVEL

    def accept_for(self, cls: str) -> float | None:
        """The threshold at which ``cls`` predictions become auto labels (None: never)."""
        row = self.scopes.get(cls) or self.scopes.get(GLOBAL)
        if row is None or row["state"] not in _ALLOWING:
            return None
        return float(row["accept"])

    @property
    def more_labels(self) -> int:
        """At least this many more held-out human labels before a certification can pass."""
        return max(0, self.needed - self.n_labels)

    def summary(self) -> str:
        """The state in a microscopist's words."""
        if self.state == PROVISIONAL:
            more = self.more_labels
            lab = (f"{self.n_labels:,} of this lab's labels checked so far; at least {more:,} more "
                   "needed" if more else f"{self.n_labels:,} of this lab's labels checked: enough to "
                   "try — run `semtriage thresholds --recommend --apply`")
            return (f"Model {self.version!r} is PROVISIONAL: its accuracy on this lab's images has "
                    f"not been measured, so confident predictions are not written as labels — they "
                    f"wait as 'confident (unverified)' for a reviewer to confirm ({lab}; a "
                    f"certification needs ≥ {self.needed} correct confident labels for ≤ "
                    f"{self.target:.0%} error at {self.level:.0%} confidence).")
        parts = []
        for scope, r in sorted(self.scopes.items()):
            what = "all classes" if scope == GLOBAL else scope
            if r["state"] == CERTIFIED:
                parts.append(f"{what}: auto-accept at p ≥ {r['accept']:.3f}, certified on "
                             f"{r['n_labels']:,} held-out labels (error ≤ {r['risk_upper']:.1%} at "
                             f"{r['level']:.0%} confidence) by {r['by']} on {r['created_at'][:10]}")
            elif r["state"] == FORCED:
                parts.append(f"{what}: auto-accept at p ≥ {r['accept']:.3f} FORCED by {r['by']} on "
                             f"{r['created_at'][:10]} without certification"
                             + (f" ({r['note']})" if r.get("note") else ""))
            elif r["state"] == "refused":
                parts.append(f"{what}: never auto-accepted (its held-out labels hold too many "
                             "errors for any threshold)")
        return f"Model {self.version!r} is {self.state.upper()}: " + "; ".join(parts) + "."

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["more_labels"] = self.more_labels
        d["summary"] = self.summary()
        return d


def model_names(db: Database, model_id: int | None) -> tuple[int, str, list[str]]:
    """(id, version, class names) of ``model_id`` (default: the active model)."""
    if model_id is None:
        m = active_model(db)
        if m is None:
            raise NotFound("No active model")
        model_id = int(m["id"])
    row = db.execute("SELECT version, class_names FROM models WHERE id = ?", [model_id]).fetchone()
    if row is None:
        raise NotFound(f"No model with id {model_id!r}")
    return model_id, str(row[0]), list(json.loads(row[1]))


def latest_records(db: Database, model_id: int) -> dict[str, dict[str, Any]]:
    """The latest certification record per scope of ``model_id``, revoked ones left out."""
    rows = db.execute(
        "SELECT c.* FROM certifications c WHERE c.model_id = ? AND c.id = (SELECT MAX(d.id) "
        "FROM certifications d WHERE d.model_id = c.model_id AND d.scope = c.scope)",
        [model_id],
    )
    cols = [d[0] for d in rows.description]
    out = {}
    for r in rows.fetchall():
        rec = dict(zip(cols, r))
        if rec["state"] != "revoked":
            out[rec["scope"]] = rec
    return out


def certification(db: Database, model_id: int | None = None, *, target: float = DEFAULT_TARGET,
                  level: float = DEFAULT_LEVEL, count_labels: bool = True) -> Certification:
    """Where ``model_id`` (default: the active model) stands (see the module docstring);
    ``count_labels``: also count its held-out human labels (``n_labels``)."""
    model_id, version, names = model_names(db, model_id)
    scopes = latest_records(db, model_id)
    allowing = [s for s, r in scopes.items() if r["state"] in _ALLOWING]
    if not allowing:
        state = PROVISIONAL
    elif any(scopes[s]["state"] == FORCED for s in allowing):
        state = FORCED
    elif GLOBAL in allowing and all(scopes.get(c, scopes[GLOBAL])["state"] in _ALLOWING for c in names):
        state = CERTIFIED
    else:
        state = PARTLY
    n = heldout_count(db, model_id, names) if count_labels else 0
    return Certification(model_id=model_id, version=version, state=state, scopes=scopes,
                         n_labels=n, needed=min_clean_accepted(target, level), target=target,
                         level=level)


def heldout_count(db: Database, model_id: int, names: list[str]) -> int:
    """Human and imported labels of ``names`` on images ``model_id`` predicted and did not
    train on: what :func:`core.review.heldout_predictions` would return, counted in SQL."""
    if not names:
        return 0
    marks = ", ".join("?" for _ in names)
    return int(db.execute(  # independent labels only, as heldout_predictions takes them
        "SELECT COUNT(*) FROM current_labels c CROSS JOIN predictions p "
        "ON p.image_id = c.image_id AND p.model_id = ? "
        f"WHERE {INDEPENDENT_SQL} AND c.label IN ({marks}) AND NOT EXISTS (SELECT 1 FROM "
        "model_images t WHERE t.model_id = p.model_id AND t.image_id = c.image_id "
        "AND t.role = 'train')",
        [model_id, *names],
    ).fetchone()[0])


def auto_label_rule(db: Database, model_id: int, alias: str = "p") -> tuple[str, list[Any]]:
    """SQL (and parameters) true for a prediction row of ``model_id`` that may be written as an
    auto label: p1 at or above its class's certified or forced threshold. A provisional model's
    rule is false for every row."""
    c = certification(db, model_id, count_labels=False)
    scopes = c.scopes
    g = c.accept_for(GLOBAL)
    overrides = [(s, c.accept_for(s)) for s in scopes if s != GLOBAL]
    if g is None and not any(a is not None for _, a in overrides):
        return "0", []
    if not overrides:
        return f"{alias}.p1 >= ?", [g]
    sql = (f"{alias}.p1 >= CASE {alias}.pred " + " ".join("WHEN ? THEN ?" for _ in overrides)
           + " ELSE ? END")
    params: list[Any] = []
    for s, a in overrides:
        params += [s, _NEVER if a is None else a]
    return sql, params + [_NEVER if g is None else g]


def guard_counts(db: Database, model_id: int | None = None) -> dict[str, int]:
    """What the guard holds back for ``model_id`` (default: the active model), among images no
    person has labelled: ``unfamiliar`` (flagged, routed to uncertain), ``confident_unverified``
    (in the auto queue without an auto label: not certified) and ``auto_labelled``."""
    model_id, _, _ = model_names(db, model_id)
    unf, conf, auto = db.execute(
        "SELECT COALESCE(SUM(p.unfamiliar IS NOT NULL), 0), "
        "COALESCE(SUM(p.queue = 'auto' AND c.image_id IS NULL), 0), "
        "COALESCE(SUM(p.queue = 'auto' AND c.source = 'auto'), 0) "
        "FROM predictions p LEFT JOIN current_labels c ON c.image_id = p.image_id "
        "WHERE p.model_id = ? AND p.done = 0",
        [model_id],
    ).fetchone()
    return {"unfamiliar": int(unf), "confident_unverified": int(conf), "auto_labelled": int(auto)}
