"""The review flow with overlap and gold probes mixed in: what the Review page and
``semtriage queue / label`` call instead of core.review's functions of the same names.

* :func:`next_images` — first the probe this reviewer holds (an overlap or gold image handed
  out and not yet answered), else a gold probe when one is due (a draw fixed by the reviewer
  and their number of decisions, below the gold rate, so a rerun shows the same image), else an
  overlap image of this queue waiting for a reviewer; then the queue as core.review hands it
  out. At most one probe per call. A probe looks like any other image: its current label is
  not shown. A reviewer is never handed an image twice (``assignments`` is unique per reviewer
  and image) nor one they labelled or marked gold.
* :func:`decide` — an answer to a gold probe goes to ``gold_answers`` (the gold image's label
  is untouched); everything else is core.review's decision, overlap ratings included.
* :func:`undo_last` — takes back the reviewer's latest act, a gold answer or a decision.
"""

from __future__ import annotations

import time
from typing import Any

from sqlite_utils import Database

from core.agreement.gold import gold_rate
from core.agreement.overlap import DECISIONS_SQL, sync_overlap, unit_draw
from core.errors import InvalidValue, NotFound
from core.models import active_model
from core.review import (
    HUMAN_ACTIONS,
    QUEUES,
    SPECIAL_LABELS,
    claim,
    clean_label,
    clean_reviewer,
    review_item,
)
from core.review import decide as review_decide
from core.review import next_images as review_next_images
from core.review import undo_last as review_undo_last
from core.store import now_iso, write_tx

_LIVE_ANSWER = ("EXISTS (SELECT 1 FROM gold_answers x WHERE x.image_id = {0}.image_id AND x.reviewer = ? "
                "AND x.action != 'undo' AND NOT EXISTS (SELECT 1 FROM gold_answers u WHERE u.undoes = x.id))")
# other raters an overlap image has or waits for: those who answered, and those holding a claim
_TAKEN = (
    "(SELECT COUNT(*) FROM assignments a WHERE a.image_id = o.image_id AND a.kind = 'overlap' "
    "AND a.reviewer != :r "
    "AND (EXISTS (SELECT 1 FROM label_events e WHERE e.image_id = a.image_id AND e.reviewer = a.reviewer "
    f"AND e.source = 'human' AND e.action IN {DECISIONS_SQL} "
    "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id)) "
    "OR EXISTS (SELECT 1 FROM claims c WHERE c.image_id = a.image_id AND c.reviewer = a.reviewer "
    "AND c.expires_at > :now)))"
)


def _decisions_of(db: Database, reviewer: str) -> int:
    return int(db.execute("SELECT COUNT(*) FROM label_events WHERE reviewer = ? AND source = 'human'",
                          [reviewer]).fetchone()[0]
               + db.execute("SELECT COUNT(*) FROM gold_answers WHERE reviewer = ?", [reviewer]).fetchone()[0])


def _held_probe(db: Database, reviewer: str, queue: str, model_id: int, now: float) -> int | None:
    """The probe handed to ``reviewer`` and not answered yet, if any."""
    row = db.execute(
        "SELECT a.image_id FROM assignments a JOIN gold_images g ON g.image_id = a.image_id "
        f"WHERE a.reviewer = ? AND a.kind = 'gold' AND g.active = 1 AND NOT {_LIVE_ANSWER.format('a')} "
        "ORDER BY a.id LIMIT 1",
        [reviewer, reviewer],
    ).fetchone()
    if row:
        return int(row[0])
    qcond = "" if queue == "all" else "AND p.queue = :queue"
    row = db.execute(
        f"""
        SELECT o.image_id FROM assignments mine
        JOIN overlap_items o ON o.image_id = mine.image_id
        JOIN predictions p ON p.image_id = o.image_id AND p.model_id = :model
        WHERE mine.reviewer = :r AND mine.kind = 'overlap' {qcond}
          AND NOT EXISTS (SELECT 1 FROM label_events e WHERE e.image_id = o.image_id
                          AND e.reviewer = :r AND e.source = 'human' AND e.action != 'undo'
                          AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id))
          AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.image_id = o.image_id AND c.reviewer != :r
                          AND c.expires_at > :now)
          AND 1 + {_TAKEN} < o.needed
        ORDER BY mine.id LIMIT 1
        """,
        {"r": reviewer, "model": model_id, "queue": queue, "now": now},
    ).fetchone()
    return int(row[0]) if row else None


def _new_gold(db: Database, reviewer: str) -> int | None:
    rate = gold_rate(db)
    if rate <= 0 or unit_draw("gold", reviewer, _decisions_of(db, reviewer)) >= rate:
        return None
    row = db.execute(
        "SELECT g.image_id FROM gold_images g WHERE g.active = 1 AND g.marked_by != ? "
        "AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.image_id = g.image_id AND a.reviewer = ?) "
        "AND NOT EXISTS (SELECT 1 FROM label_events e WHERE e.image_id = g.image_id AND e.reviewer = ?) "
        "ORDER BY random() LIMIT 1",
        [reviewer, reviewer, reviewer],
    ).fetchone()
    return int(row[0]) if row else None


def _new_overlap(db: Database, reviewer: str, queue: str, model_id: int, now: float) -> int | None:
    if queue != "all" and queue not in QUEUES:
        return None
    qcond = "" if queue == "all" else "AND p.queue = :queue"
    row = db.execute(
        f"""
        SELECT o.image_id FROM overlap_items o
        JOIN predictions p ON p.image_id = o.image_id AND p.model_id = :model
        WHERE o.first_reviewer != :r {qcond}
          AND NOT EXISTS (SELECT 1 FROM assignments a WHERE a.image_id = o.image_id AND a.reviewer = :r)
          AND NOT EXISTS (SELECT 1 FROM label_events e WHERE e.image_id = o.image_id AND e.reviewer = :r)
          AND NOT EXISTS (SELECT 1 FROM gold_images g WHERE g.image_id = o.image_id AND g.active = 1)
          AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.image_id = o.image_id AND c.reviewer != :r
                          AND c.expires_at > :now)
          AND 1 + {_TAKEN} < o.needed
        ORDER BY o.selected_at, o.image_id LIMIT 1
        """,
        {"r": reviewer, "model": model_id, "queue": queue, "now": now},
    ).fetchone()
    return int(row[0]) if row else None


def next_probe(db: Database, queue: str, reviewer: str, *, claim_seconds: float = 300,
               model_id: int | None = None) -> int | None:
    """The overlap or gold image ``reviewer`` should see next in ``queue``, handed out
    (assigned, and claimed for an overlap image), or None."""
    reviewer = clean_reviewer(reviewer)
    if model_id is None:
        model_id = (active_model(db) or {}).get("id")
    if model_id is None:
        return None
    now = time.time()
    with write_tx(db, "handing out a probe"):
        sync_overlap(db, model_id)
        image_id = _held_probe(db, reviewer, queue, model_id, now)
        kind = None
        if image_id is None and (image_id := _new_gold(db, reviewer)) is not None:
            kind = "gold"
        if image_id is None and (image_id := _new_overlap(db, reviewer, queue, model_id, now)) is not None:
            kind = "overlap"
        if image_id is None:
            return None
        if kind is not None:
            db.execute("INSERT INTO assignments(image_id, reviewer, kind, assigned_at) VALUES (?, ?, ?, ?)",
                       [image_id, reviewer, kind, now_iso()])
        is_gold = db.execute("SELECT 1 FROM gold_images WHERE image_id = ? AND active = 1",
                             [image_id]).fetchone()
        if not is_gold and not claim(db, [image_id], reviewer, claim_seconds=claim_seconds):
            return None
    return image_id


def next_images(
    db: Database, queue: str, reviewer: str, *, n: int = 1, order: str | None = None,
    claim_seconds: float = 300, model_id: int | None = None, **kw: Any,
) -> list[dict[str, Any]]:
    """:func:`core.review.next_images` with at most one overlap or gold probe first (see the
    module's text); the probe's current label is left out (the reviewer is blind to it)."""
    reviewer = clean_reviewer(reviewer)
    if model_id is None:
        model_id = (active_model(db) or {}).get("id")
    probe = next_probe(db, queue, reviewer, claim_seconds=claim_seconds, model_id=model_id) if n > 0 else None
    items: list[dict[str, Any]] = []
    if probe is not None:
        item = review_item(db, probe, model_id)
        item["current_label"] = item["current_source"] = None
        items.append(item)
    if n > len(items):
        rest = review_next_images(db, queue, reviewer, n=n - len(items), order=order,
                                  claim_seconds=claim_seconds, model_id=model_id, **kw)
        items += [r for r in rest if r["image_id"] != probe]
    return items[:n]


def _gold_probe_of(db: Database, image_id: int, reviewer: str) -> bool:
    return db.execute(
        "SELECT 1 FROM assignments a JOIN gold_images g ON g.image_id = a.image_id "
        "WHERE a.image_id = ? AND a.reviewer = ? AND a.kind = 'gold' AND g.active = 1",
        [image_id, reviewer],
    ).fetchone() is not None


def decide(
    db: Database, image_id: int, action: str, *, reviewer: str, label: str | None = None,
    note: str | None = None, **kw: Any,
) -> dict[str, Any]:
    """:func:`core.review.decide`, except for a gold probe of ``reviewer``: the answer is
    scored against the known one and kept in ``gold_answers``; the image's label stays."""
    reviewer = clean_reviewer(reviewer)
    if not _gold_probe_of(db, image_id, reviewer):
        return review_decide(db, image_id, action, reviewer=reviewer, label=label, note=note, **kw)
    if action not in HUMAN_ACTIONS:
        raise InvalidValue(f"Unknown action {action!r}; expected one of {', '.join(HUMAN_ACTIONS)}")
    if action == "accept" and label is None:
        label = review_item(db, image_id)["pred"]
        if label is None:
            raise NotFound(f"Image {image_id} has no prediction from the active model to accept; choose a class")
    elif action == "relabel" and not label:
        raise InvalidValue("Relabel needs a class")
    if action in SPECIAL_LABELS:
        label = action
    elif action == "skip":
        label = None
    elif label is not None:
        label = clean_label(label)
    stamp = now_iso()
    with write_tx(db, "saving an answer"):
        cur = db.execute(
            "INSERT INTO gold_answers(image_id, reviewer, label, action, created_at) VALUES (?, ?, ?, ?, ?)",
            [image_id, reviewer, label, action, stamp])
    return {"id": cur.lastrowid, "image_id": image_id, "label": label, "action": action,
            "source": "human", "reviewer": reviewer, "created_at": stamp, "note": note}


def undo_last(db: Database, reviewer: str) -> dict[str, Any] | None:
    """Undo ``reviewer``'s latest act not yet undone: an answer to a gold probe (the probe comes
    back) or a decision (:func:`core.review.undo_last`). Returns what was undone, or None."""
    reviewer = clean_reviewer(reviewer)
    with write_tx(db, "undoing"):
        gold = db.execute(
            "SELECT a.id, a.image_id, a.label, a.action, a.created_at FROM gold_answers a "
            "WHERE a.reviewer = ? AND a.action != 'undo' "
            "AND NOT EXISTS (SELECT 1 FROM gold_answers u WHERE u.undoes = a.id) ORDER BY a.id DESC LIMIT 1",
            [reviewer]).fetchone()
        if gold is not None:
            last = db.execute(
                "SELECT MAX(e.created_at) FROM label_events e WHERE e.reviewer = ? AND e.source = 'human' "
                "AND e.action != 'undo' AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id)",
                [reviewer]).fetchone()[0]
            if last is None or gold[4] >= last:
                db.execute("INSERT INTO gold_answers(image_id, reviewer, label, action, undoes, created_at) "
                           "VALUES (?, ?, NULL, 'undo', ?, ?)", [gold[1], reviewer, gold[0], now_iso()])
                return {"id": gold[0], "image_id": gold[1], "label": gold[2], "action": gold[3],
                        "reviewer": reviewer, "source": "human"}
        return review_undo_last(db, reviewer)
