"""Certifying, forcing and revoking a model's auto-accept (see core/review/certification.py
for the states and the rule): each writes a record to ``certifications``, stores thresholds and
re-routes, so that auto labels follow at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.access import User, require_admin
from core.errors import InvalidValue
from core.models import DEFAULT_LEVEL, DEFAULT_TARGET, Recommendation, recommend_per_class
from core.review.certification import (
    CERTIFIED,
    FORCED,
    Certification,
    certification,
    latest_records,
    model_names,
)
from core.review.heldout import HeldOut, heldout_predictions
from core.review.labels import sync_auto_labels
from core.review.queues import save_thresholds
from core.review.routing import GLOBAL, Thresholds, for_class, get_thresholds
from core.store import now_iso, write_tx


@dataclass
class CertifyReport:
    certification: Certification
    recommendations: dict[str, Recommendation]
    held_out: int
    applied: bool
    queues: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"certification": self.certification.to_json(), "held_out": self.held_out,
                "applied": self.applied, "queues": self.queues,
                "recommendations": {k: r.to_json() for k, r in self.recommendations.items()}}


def recommend(db: Database, model_id: int | None = None, *, target: float = DEFAULT_TARGET,
              level: float = DEFAULT_LEVEL) -> tuple[HeldOut, dict[str, Recommendation]]:
    """The held-out human labels of ``model_id`` and the recommended thresholds (global and
    per class) for ``target``; nothing is written."""
    model_id, _, _ = model_names(db, model_id)
    if not 0.0 < target < 1.0:
        raise InvalidValue(f"Target error {target!r} is outside (0, 1); e.g. 0.02 for 2 %")
    held = heldout_predictions(db, model_id)
    return held, recommend_per_class(held.probs, held.labels, held.class_names, target, level)


def _record(db: Database, model_id: int, scope: str, state: str, by: str, *,
            accept: float | None = None, rec: Recommendation | None = None,
            note: str | None = None) -> None:
    db.execute(
        "INSERT INTO certifications(model_id, scope, state, accept, target, level, n_labels, "
        "n_accepted, errors, risk_upper, by, note, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [model_id, scope, state, accept, rec.target if rec else None, rec.level if rec else None,
         rec.n if rec else 0, rec.n_accepted if rec else 0, rec.errors if rec else 0,
         rec.risk_upper if rec else None, by, note, now_iso()],
    )


def _who(by: User | None) -> str:
    return by.name if by is not None else "cli"


def certify(db: Database, model_id: int | None = None, *, target: float = DEFAULT_TARGET,
            level: float = DEFAULT_LEVEL, per_class: bool = True, apply: bool = True,
            by: User | None = None) -> CertifyReport:
    """Recommend thresholds from the held-out human labels and, with ``apply``, certify them:
    record each scope's outcome, store the thresholds and re-route (auto labels follow).
    A scope whose labels allow no threshold is recorded as ``refused`` (an earlier
    certification of it no longer holds); a class with too few labels of its own follows the
    global outcome. Administrators only when applying."""
    model_id, _, names = model_names(db, model_id)
    held, recs = recommend(db, model_id, target=target, level=level)
    if not apply:
        return CertifyReport(certification(db, model_id, target=target, level=level), recs,
                             len(held), applied=False)
    require_admin(by, "certify a model's auto-accept thresholds")
    g = recs[GLOBAL]
    ts = get_thresholds(db)
    base = for_class(ts, GLOBAL)
    per: dict[str, Thresholds] = {}
    who = _who(by)
    before = latest_records(db, model_id)
    with write_tx(db, "certifying"):
        if g.threshold is not None:
            _record(db, model_id, GLOBAL, CERTIFIED, who, accept=g.threshold, rec=g)
            base = Thresholds(float(g.threshold), base.mixed_margin, base.mixed_mass, base.cooccur)
        else:
            _record(db, model_id, GLOBAL, "refused", who, rec=g, note=g.reason)
        for cls in names:
            r = recs.get(cls)
            keep = for_class(ts, cls)
            if cls in ts:
                per[cls] = keep
            if not per_class or r is None or r.fallback:
                if cls in before:  # an earlier record of its own: it follows the global one now
                    _record(db, model_id, cls, "revoked", who, note="follows the global outcome")
                continue
            if r.threshold is not None:
                _record(db, model_id, cls, CERTIFIED, who, accept=r.threshold, rec=r)
                per[cls] = Thresholds(float(r.threshold), keep.mixed_margin, keep.mixed_mass,
                                      keep.cooccur)
            else:
                _record(db, model_id, cls, "refused", who, rec=r, note=r.reason)
    queues = save_thresholds(db, model_id, base, per, names, by=by)
    return CertifyReport(certification(db, model_id, target=target, level=level), recs,
                         len(held), applied=True, queues=queues)


def force_threshold(db: Database, accept: float, cls: str = GLOBAL, model_id: int | None = None,
                    *, note: str | None = None, by: User | None = None) -> Certification:
    """Let ``model_id`` auto-accept ``cls`` (``*`` = every class) at p ≥ ``accept`` without
    certification: recorded as an override (who, when, ``note``), thresholds stored, queues
    re-routed. Administrators only."""
    require_admin(by, "force an auto-accept threshold")
    if not 0.0 <= float(accept) <= 1.0 or not np.isfinite(accept):
        raise InvalidValue(f"Threshold accept = {accept!r} is outside [0, 1]")
    model_id, _, names = model_names(db, model_id)
    if cls != GLOBAL and cls not in names:
        raise InvalidValue(f"Unknown class {cls!r}; the model's classes are {', '.join(names)}")
    ts = get_thresholds(db)
    base = for_class(ts, GLOBAL)
    per = {c: for_class(ts, c) for c in names if c in ts}
    t = for_class(ts, cls)
    t = Thresholds(float(accept), t.mixed_margin, t.mixed_mass, t.cooccur)
    if cls == GLOBAL:
        base = t
    else:
        per[cls] = t
    with write_tx(db, "forcing a threshold"):
        _record(db, model_id, cls, FORCED, _who(by), accept=float(accept), note=note)
    save_thresholds(db, model_id, base, per, names, by=by)
    return certification(db, model_id)


def revoke(db: Database, cls: str = GLOBAL, model_id: int | None = None, *,
           note: str | None = None, by: User | None = None) -> Certification:
    """Take back a certification or override of ``cls`` (``*``: every scope): the model is
    provisional there again and its auto labels there are revoked. Administrators only."""
    require_admin(by, "revoke a certification")
    model_id, _, _ = model_names(db, model_id)
    with write_tx(db, "revoking a certification"):
        for scope in list(latest_records(db, model_id)):
            if cls == GLOBAL or scope == cls:
                _record(db, model_id, scope, "revoked", _who(by), note=note)
    sync_auto_labels(db, model_id)
    return certification(db, model_id)


def certification_history(db: Database, model_id: int | None = None) -> list[dict[str, Any]]:
    """Every certification record of ``model_id``, oldest first (overrides included)."""
    model_id, _, _ = model_names(db, model_id)
    return list(db.query("SELECT * FROM certifications WHERE model_id = ? ORDER BY id", [model_id]))
