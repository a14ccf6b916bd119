"""Adjudication: overlap images whose reviewers disagree wait in the *adjudication* queue of
reviewers with that role (``SEMTRIAGE_ADJUDICATORS``; empty = the administrators). The
adjudicator sees every rating, decides, and that decision — an ordinary label event, so the
history stays append-only — becomes the image's current label. Nobody settles a disagreement
they took part in."""

from __future__ import annotations

import time
from typing import Any

from sqlite_utils import Database

from core.access import is_admin, same_identity
from core.agreement.overlap import ratings, sync_overlap
from core.config import Settings
from core.errors import Forbidden, InvalidValue, NotFound
from core.models import active_model
from core.review import SPECIAL_LABELS, claim, clean_label, clean_reviewer, decide, review_item
from core.store import now_iso, write_tx

_LIVE = ("EXISTS (SELECT 1 FROM adjudications j JOIN label_events e ON e.id = j.event_id "
         "WHERE j.image_id = {0} AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id))")


def may_adjudicate(name: str, settings: Settings) -> bool:
    """Whether ``name`` may settle disagreements: listed in ``SEMTRIAGE_ADJUDICATORS``, or an
    administrator."""
    if not name.strip():
        return False
    return is_admin(name, settings) or any(same_identity(name, a) for a in settings.adjudicators)


def require_adjudicator(name: str, settings: Settings | None) -> None:
    """Raise :class:`Forbidden` unless ``name`` may adjudicate (``settings`` None: local use)."""
    if settings is None or may_adjudicate(name, settings):
        return
    who = repr(name) if name else "Nobody signed in"
    raise Forbidden(
        f"{who} may not adjudicate disagreements: only adjudicators (SEMTRIAGE_ADJUDICATORS) and "
        "administrators may. Ask one of them to add you.")


def disputes(db: Database, *, exclude_rater: str | None = None) -> list[dict[str, Any]]:
    """Overlap images with every rating in that disagree and no adjudication yet, oldest
    first: {image_id, ratings {reviewer: label}}. ``exclude_rater``: leave out images that
    reviewer rated."""
    sync_overlap(db)
    needed = dict(db.execute(
        f"SELECT o.image_id, o.needed FROM overlap_items o WHERE NOT {_LIVE.format('o.image_id')} "
        "ORDER BY o.selected_at, o.image_id").fetchall())
    got = ratings(db, list(needed))
    out = []
    for image_id, n in needed.items():
        r = got.get(image_id, {})
        if len(r) >= n and len(set(r.values())) > 1:
            if exclude_rater is not None and any(same_identity(exclude_rater, x) for x in r):
                continue
            out.append({"image_id": image_id, "ratings": r})
    return out


def adjudication_queue(
    db: Database, reviewer: str, *, n: int = 1, claim_seconds: float = 300,
    settings: Settings | None = None,
) -> list[dict[str, Any]]:
    """Claim and return up to ``n`` disputed images for ``reviewer`` to settle, each as the
    review screen shows it plus ``ratings``. Images another reviewer holds are passed over."""
    reviewer = clean_reviewer(reviewer)
    require_adjudicator(reviewer, settings)
    model_id = (active_model(db) or {}).get("id")
    now = time.time()
    out = []
    for d in disputes(db, exclude_rater=reviewer):
        held = db.execute("SELECT 1 FROM claims WHERE image_id = ? AND reviewer != ? AND expires_at > ?",
                          [d["image_id"], reviewer, now]).fetchone()
        if held or not claim(db, [d["image_id"]], reviewer, claim_seconds=claim_seconds):
            continue
        item = review_item(db, d["image_id"], model_id)
        item["ratings"] = d["ratings"]
        out.append(item)
        if len(out) >= n:
            break
    return out


def adjudicate(
    db: Database, image_id: int, label: str, *, reviewer: str, settings: Settings | None = None,
) -> dict[str, Any]:
    """Settle the disagreement on ``image_id`` with ``label`` (a class, ``several`` or
    ``unusable``): a label event by ``reviewer`` that becomes the current label. Returns it."""
    reviewer = clean_reviewer(reviewer)
    require_adjudicator(reviewer, settings)
    label = label if label in SPECIAL_LABELS else clean_label(label)
    with write_tx(db, "saving an adjudication"):
        open_ = {d["image_id"]: d for d in disputes(db)}
        if image_id not in open_:
            if not db.execute("SELECT 1 FROM images WHERE id = ?", [image_id]).fetchone():
                raise NotFound(f"No image with id {image_id!r}")
            raise InvalidValue(f"Image {image_id} has no open disagreement to adjudicate "
                               "(its reviewers agree, a rating is missing, or it was settled)")
        if any(same_identity(reviewer, r) for r in open_[image_id]["ratings"]):
            raise Forbidden(f"{reviewer!r} rated image {image_id} and may not settle its disagreement; "
                            "another adjudicator must")
        action = label if label in SPECIAL_LABELS else "relabel"
        ev = decide(db, image_id, action, reviewer=reviewer, label=label, note="adjudication")
        db.execute("INSERT INTO adjudications(image_id, label, reviewer, event_id, created_at) "
                   "VALUES (?, ?, ?, ?, ?)", [image_id, label, reviewer, ev["id"], now_iso()])
    return ev


def adjudicated(db: Database) -> dict[int, str]:
    """{image id: label} of the live adjudications (latest per image)."""
    return dict(db.execute(
        "SELECT j.image_id, j.label FROM adjudications j JOIN label_events e ON e.id = j.event_id "
        "WHERE NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id) ORDER BY j.id").fetchall())
