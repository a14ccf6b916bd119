"""A model's life-cycle step that spans the engine: making a model active means predicting
every image it has not seen, re-routing all its predictions under the stored thresholds and
bringing the auto-accepted labels in line (models, intake and review together)."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from core.access import User, require_admin
from core.config import Settings
from core.intake import predict_pending
from core.models import get_model, model_classifier, set_active_model
from core.progress import Progress
from core.review import reroute


def promote(db: Database, model_id: int, settings: Settings | None = None,
            progress: Progress | None = None, *, by: User | None = None,
            predict: bool = True) -> dict[str, Any]:
    """Make ``model_id`` the active model, predict every image it has not predicted yet (unless
    ``predict`` is False), re-route all its predictions under the stored thresholds and bring
    auto labels in line. Returns the new queue sizes (``queues``: every queue; ``routed``: the
    non-empty ones) and what was predicted. Administrators only (``by``; ``None`` = local use).
    """
    require_admin(by, "promote a model")
    prog = progress or (lambda f, m: None)
    m = get_model(db, model_id)
    clf = model_classifier(m)  # a model that no longer loads is refused before the switch
    set_active_model(db, model_id)
    prog(0.02, f"{m['version']} is now active; predicting")
    predicted, failed = 0, []
    if predict:
        rep = predict_pending(db, clf, model_id, settings=settings or Settings(),
                              progress=lambda f, msg: prog(0.02 + 0.93 * f, f"predicting {msg}"))
        predicted, failed = rep.predicted, rep.failed
    prog(0.96, "re-routing the queues")
    queues = reroute(db, model_id)
    prog(1.0, f"{m['version']} active; queues rebuilt")
    return {"active": m["version"], "model_id": model_id, "predicted": predicted,
            "failed": [{"path": p, "reason": r} for p, r in failed],
            "queues": {q: int(queues.get(q, 0)) for q in ("uncertain", "mixed", "auto")},
            "routed": queues}
