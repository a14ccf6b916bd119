"""Overlap: a share of decided images shown to more reviewers, blind to the first decision.

Rules (``overlap_rules``) say what share of images gets how many reviewers in all, by scope:
``class:<c>`` (the first reviewer's label) before ``queue:<q>`` (the image's queue under the
active model) before ``*``. An image is chosen when its first human decision is seen
(:func:`sync_overlap`, incremental over new label events), by a draw fixed by its SHA-256: the
same image is always in or out at a given rate, and a higher rate keeps every image a lower one
chose. Rules apply to decisions made after they are set.

The ratings of an overlap image are ordinary label events (core.review): the first reviewer's
and each overlap reviewer's earliest decision on it that was not undone (later changes after
seeing others' labels, and adjudications, are not ratings).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from core.access import User, require_admin
from core.errors import InvalidValue
from core.review import QUEUES, clean_label
from core.store import get_setting, now_iso, set_setting, write_tx

DECISIONS = ("accept", "relabel", "several", "unusable")
DECISIONS_SQL = "(" + ", ".join(f"'{a}'" for a in DECISIONS) + ")"
_SCANNED = "agreement.scanned_event"
ALL = "*"


@dataclass(frozen=True)
class OverlapRule:
    scope: str  # '*', 'queue:<q>' or 'class:<c>'
    rate: float
    reviewers: int


def scope_of(queue: str | None = None, cls: str | None = None) -> str:
    """The scope name of a rule: one queue, one class, or every image."""
    if queue is not None and cls is not None:
        raise InvalidValue("An overlap rule applies to one queue or one class, not both")
    if queue is not None:
        if queue not in QUEUES:
            raise InvalidValue(f"Unknown queue {queue!r}; expected one of {', '.join(QUEUES)}")
        return f"queue:{queue}"
    if cls is not None:
        return f"class:{clean_label(cls)}"
    return ALL


def overlap_rules(db: Database) -> dict[str, OverlapRule]:
    return {r[0]: OverlapRule(r[0], float(r[1]), int(r[2]))
            for r in db.execute("SELECT scope, rate, reviewers FROM overlap_rules ORDER BY scope")}


def set_overlap(
    db: Database, rate: float, *, reviewers: int = 2, queue: str | None = None,
    cls: str | None = None, by: User | None = None,
) -> OverlapRule:
    """Show ``rate`` of the images (of one queue or class, or all) to ``reviewers`` reviewers
    in all. Administrators only."""
    require_admin(by, "change the overlap between reviewers")
    scope = scope_of(queue, cls)
    if not 0 <= rate <= 1:
        raise InvalidValue(f"Overlap rate {rate!r} must lie in [0, 1] (0.1 = one image in ten)")
    if not 2 <= reviewers <= 10:
        raise InvalidValue(f"Reviewers per overlap image {reviewers!r} must be 2–10 (the first one included)")
    with write_tx(db, "saving an overlap rule"):
        sync_overlap(db)  # decisions made so far fall under the rules they were made under
        db.execute(
            "INSERT INTO overlap_rules(scope, rate, reviewers) VALUES (?, ?, ?) "
            "ON CONFLICT(scope) DO UPDATE SET rate = excluded.rate, reviewers = excluded.reviewers",
            [scope, float(rate), int(reviewers)],
        )
    return OverlapRule(scope, float(rate), int(reviewers))


def clear_overlap(db: Database, scope: str, *, by: User | None = None) -> bool:
    """Remove one rule (``*``, ``queue:<q>``, ``class:<c>``). Administrators only."""
    require_admin(by, "change the overlap between reviewers")
    with write_tx(db, "removing an overlap rule"):
        sync_overlap(db)
        return db.execute("DELETE FROM overlap_rules WHERE scope = ?", [scope]).rowcount > 0


def rule_for(rules: dict[str, OverlapRule], label: str | None, queue: str | None) -> OverlapRule | None:
    for scope in (f"class:{label}", f"queue:{queue}", ALL):
        if scope in rules:
            return rules[scope]
    return None


def draw(sha256: str) -> float:
    """The image's fixed draw in [0, 1): chosen for overlap when below the rate."""
    return int(sha256[:12], 16) / float(16**12)


def unit_draw(*parts: object) -> float:
    """A fixed draw in [0, 1) from any values (e.g. a reviewer and a count)."""
    h = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()
    return draw(h)


def _scanned(db: Database) -> int:
    return int(get_setting(db, _SCANNED, "0") or 0)


def _top_event(db: Database) -> int:
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0])


def sync_overlap(db: Database, model_id: int | None = None) -> int:
    """Choose overlap images among the first human decisions made since the last call.
    Returns how many were chosen."""
    if not db.conn.in_transaction and _scanned(db) >= _top_event(db):
        return 0  # nothing new: no write lock taken (the Review page calls this on every image)
    with write_tx(db, "choosing overlap images"):
        scanned, top = _scanned(db), _top_event(db)
        if top <= scanned:
            return 0
        rules = overlap_rules(db)
        chosen = []
        if rules:
            if model_id is None:
                row = db.execute("SELECT id FROM models WHERE active = 1").fetchone()
                model_id = row[0] if row else None
            rows = db.execute(
                f"""
                SELECT e.id, e.image_id, e.reviewer, e.label, i.sha256, p.queue
                FROM label_events e JOIN images i ON i.id = e.image_id
                LEFT JOIN predictions p ON p.image_id = e.image_id AND p.model_id = ?
                WHERE e.id > ? AND e.id <= ? AND e.source = 'human' AND e.action IN {DECISIONS_SQL}
                  AND NOT EXISTS (SELECT 1 FROM label_events f WHERE f.image_id = e.image_id
                                  AND f.id < e.id AND f.source = 'human' AND f.action IN {DECISIONS_SQL})
                  AND NOT EXISTS (SELECT 1 FROM overlap_items o WHERE o.image_id = e.image_id)
                  AND NOT EXISTS (SELECT 1 FROM gold_images g WHERE g.image_id = e.image_id)
                ORDER BY e.id
                """,
                [model_id, scanned, top],
            ).fetchall()
            stamp = now_iso()
            for ev_id, image_id, reviewer, label, sha, queue in rows:
                rule = rule_for(rules, label, queue)
                if rule is not None and draw(sha) < rule.rate:
                    chosen.append((image_id, ev_id, reviewer, rule.reviewers, rule.scope, stamp))
            db.conn.executemany(
                "INSERT INTO overlap_items(image_id, first_event_id, first_reviewer, needed, scope, "
                "selected_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(image_id) DO NOTHING",
                chosen,
            )
        set_setting(db, _SCANNED, str(top))
    return len(chosen)


def ratings(db: Database, image_ids: list[int] | None = None) -> dict[int, dict[str, str]]:
    """{image id: {reviewer: label}} of overlap images: each rater's (the first reviewer's and
    every overlap reviewer's) earliest decision on the image that was not undone."""
    where, params = "", []
    if image_ids is not None:
        if not image_ids:
            return {}
        where = f"WHERE r.image_id IN ({', '.join('?' for _ in image_ids)})"
        params = list(image_ids)
    rows = db.execute(
        f"""
        WITH raters AS (
            SELECT image_id, first_reviewer AS reviewer FROM overlap_items
            UNION SELECT a.image_id, a.reviewer FROM assignments a
                  JOIN overlap_items o ON o.image_id = a.image_id WHERE a.kind = 'overlap'
        )
        SELECT r.image_id, r.reviewer,
               (SELECT e.label FROM label_events e
                WHERE e.image_id = r.image_id AND e.reviewer = r.reviewer AND e.source = 'human'
                  AND e.action IN {DECISIONS_SQL}
                  AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id)
                  AND NOT EXISTS (SELECT 1 FROM adjudications j WHERE j.event_id = e.id)
                ORDER BY e.id LIMIT 1) AS label
        FROM raters r {where} ORDER BY r.image_id, r.reviewer
        """,
        params,
    ).fetchall()
    out: dict[int, dict[str, str]] = {}
    for image_id, reviewer, label in rows:
        if label is not None:
            out.setdefault(image_id, {})[reviewer] = label
    return out


def overlap_status(db: Database) -> dict[str, Any]:
    """Counts: images chosen, those with every rating in, those still waiting."""
    chosen = int(db.execute("SELECT COUNT(*) FROM overlap_items").fetchone()[0])
    needed = dict(db.execute("SELECT image_id, needed FROM overlap_items").fetchall())
    got = ratings(db)
    complete = sum(1 for i, n in needed.items() if len(got.get(i, {})) >= n)
    return {"chosen": chosen, "complete": complete, "waiting": chosen - complete,
            "rules": [vars(r) for r in overlap_rules(db).values()]}
