"""Gold images: images an administrator marked with a known answer. They are mixed into
reviewers' queues unannounced at a set rate (:mod:`core.agreement.flow`) and score each
reviewer; an answer to a gold probe is kept apart (``gold_answers``), so it never changes the
image's label. Marking an image gold with an answer other than its current label records that
answer as the administrator's label (an ordinary label event)."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from core.access import User, require_admin
from core.errors import InvalidValue, NotFound
from core.review import SPECIAL_LABELS, clean_label, clean_reviewer, current_label, decide
from core.store import get_setting, now_iso, set_setting, write_tx

_RATE = "agreement.gold_rate"
DEFAULT_GOLD_RATE = 0.02


def gold_rate(db: Database) -> float:
    """Share of handed-out images that are gold probes (default 2 %)."""
    try:
        return float(get_setting(db, _RATE, str(DEFAULT_GOLD_RATE)) or DEFAULT_GOLD_RATE)
    except ValueError:
        return DEFAULT_GOLD_RATE


def set_gold_rate(db: Database, rate: float, *, by: User | None = None) -> float:
    require_admin(by, "change the gold-image rate")
    if not 0 <= rate <= 0.5:
        raise InvalidValue(f"Gold rate {rate!r} must lie in [0, 0.5] (0.02 = one image in fifty)")
    set_setting(db, _RATE, repr(float(rate)))
    return float(rate)


def mark_gold(
    db: Database, image_id: int, label: str | None = None, *, marked_by: str, by: User | None = None
) -> dict[str, Any]:
    """Mark ``image_id`` as gold with the known answer ``label`` (default: its current label,
    which must be one people gave). Administrators only."""
    require_admin(by, "mark gold images")
    marked_by = clean_reviewer(marked_by)
    with write_tx(db, "marking a gold image"):
        if not db.execute("SELECT 1 FROM images WHERE id = ?", [image_id]).fetchone():
            raise NotFound(f"No image with id {image_id!r}")
        cur = current_label(db, image_id)
        if label is None:
            if cur is None or cur["source"] == "auto":
                raise InvalidValue(
                    f"Image {image_id} has no label given by a person "
                    f"({'auto-accepted ' + repr(cur['label']) if cur else 'unlabelled'}); "
                    "give the known answer (--label CLASS)")
            label = cur["label"]
        label = label if label in SPECIAL_LABELS else clean_label(label)
        if cur is None or cur["label"] != label or cur["source"] == "auto":
            action = label if label in SPECIAL_LABELS else "relabel"
            decide(db, image_id, action, reviewer=marked_by, label=label, note="gold")
        db.execute(
            "INSERT INTO gold_images(image_id, label, marked_by, marked_at, active) VALUES (?, ?, ?, ?, 1) "
            "ON CONFLICT(image_id) DO UPDATE SET label = excluded.label, marked_by = excluded.marked_by, "
            "marked_at = excluded.marked_at, active = 1",
            [image_id, label, marked_by, now_iso()],
        )
    return {"image_id": image_id, "label": label, "marked_by": marked_by}


def unmark_gold(db: Database, image_id: int, *, by: User | None = None) -> bool:
    """No longer use ``image_id`` as gold (its answers so far are kept). Administrators only."""
    require_admin(by, "unmark gold images")
    with write_tx(db, "unmarking a gold image"):
        return db.execute("UPDATE gold_images SET active = 0 WHERE image_id = ? AND active = 1",
                          [image_id]).rowcount > 0


def gold_images(db: Database) -> list[dict[str, Any]]:
    """The active gold images with their answer and how many live answers they scored."""
    return list(db.query(
        """
        SELECT g.image_id, i.name, g.label, g.marked_by, g.marked_at,
               (SELECT COUNT(*) FROM gold_answers a WHERE a.image_id = g.image_id AND a.action != 'undo'
                AND a.label IS NOT NULL
                AND NOT EXISTS (SELECT 1 FROM gold_answers u WHERE u.undoes = a.id)) AS answers
        FROM gold_images g JOIN images i ON i.id = g.image_id WHERE g.active = 1 ORDER BY g.image_id
        """))


def gold_scores(db: Database) -> dict[str, tuple[int, int]]:
    """{reviewer: (right, answered)} over live answers to gold probes (each reviewer's latest
    live answer per image; skips not counted)."""
    rows = db.execute(
        """
        SELECT a.reviewer, a.label = g.label FROM gold_answers a JOIN gold_images g ON g.image_id = a.image_id
        WHERE a.action NOT IN ('undo', 'skip') AND a.label IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM gold_answers u WHERE u.undoes = a.id)
          AND a.id = (SELECT MAX(b.id) FROM gold_answers b WHERE b.image_id = a.image_id
                      AND b.reviewer = a.reviewer AND b.action != 'undo'
                      AND NOT EXISTS (SELECT 1 FROM gold_answers v WHERE v.undoes = b.id))
        """
    ).fetchall()
    out: dict[str, list[int]] = {}
    for reviewer, right in rows:
        s = out.setdefault(reviewer, [0, 0])
        s[0] += int(right)
        s[1] += 1
    return {r: (s[0], s[1]) for r, s in out.items()}
