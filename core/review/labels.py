"""Labels: an append-only history of decisions and the current label derived from it.

Derivation rule (kept in :func:`_recompute_current`): the current label of an image is its
latest human or imported label event that has not been undone; failing that, its latest
auto-accept event if that one has not been undone (revoked). ``skip`` and ``undo`` events
carry no label. Undo is a new event pointing at the one it cancels — nothing is deleted.
Auto-accepted labels never overwrite a human label.

A ``several`` decision may name the classes present (``classes``, a JSON list); ``context``
tells what the reviewer saw when deciding: ``'blind'`` (the model's answer hidden: the blind
spot-check), ``'auto'`` (confirming an auto-accepted label while seeing it), or NULL. Only
independent labels (:data:`INDEPENDENT_SQL`) measure how often auto-accepting is wrong.
"""


from __future__ import annotations

import json
import time
from typing import Any

from sqlite_utils import Database

from core.config import LABEL_RE
from core.errors import ClaimConflict, InvalidValue, NotFound, StoreError
from core.models import active_model
from core.review.certification import auto_label_rule
from core.store import Pacer, now_iso, write_tx

SPECIAL_LABELS = ("several", "unusable")
HUMAN_ACTIONS = ("accept", "relabel", "several", "unusable", "skip")


_LABEL_RE = LABEL_RE  # one rule with the class names models declare (core.config)


def clean_reviewer(reviewer: str) -> str:
    r = (reviewer or "").strip()
    if not r or len(r) > 64 or any(ord(ch) < 32 for ch in r):
        raise InvalidValue(f"Reviewer name {reviewer!r} must be 1–64 printable characters")
    return r


def clean_label(label: str) -> str:
    lab = (label or "").strip()
    if not _LABEL_RE.match(lab):
        raise InvalidValue(
            f"Label {label!r} is not a valid class name: use 1–64 letters, digits, spaces or . + - / ( )"
        )
    return lab


def clean_classes(classes: list[str] | tuple[str, ...] | None) -> list[str]:
    """The classes of a ``several`` decision: each a valid class name, at least two distinct,
    in the order given (duplicates dropped)."""
    out: list[str] = []
    for c in classes or ():
        lab = clean_label(c)
        if lab in SPECIAL_LABELS:
            raise InvalidValue(f"{lab!r} is not a class an image can show; choose the classes present")
        if lab not in out:
            out.append(lab)
    if len(out) < 2:
        raise InvalidValue(
            f"'Several' needs at least two different classes present; got {', '.join(out) or 'none'}"
        )
    return out


def _prediction(db: Database, image_id: int, model_id: int | None) -> dict[str, Any] | None:
    if model_id is None:
        return None
    row = db.execute(
        "SELECT pred, p1, probs, m.class_names FROM predictions p JOIN models m ON m.id = p.model_id "
        "WHERE p.image_id = ? AND p.model_id = ?",
        [image_id, model_id],
    ).fetchone()
    if not row:
        return None
    return {"pred": row[0], "p1": row[1], "probs": dict(zip(json.loads(row[3]), json.loads(row[2])))}


def _insert_event(db: Database, **ev: Any) -> int:
    ev.setdefault("created_at", now_iso())
    cols = ", ".join(ev)
    marks = ", ".join("?" for _ in ev)
    cur = db.execute(f"INSERT INTO label_events ({cols}) VALUES ({marks})", list(ev.values()))
    assert cur.lastrowid is not None
    return cur.lastrowid


def _recompute_current(db: Database, image_id: int) -> None:
    row = db.execute(
        """
        SELECT e.id, e.label, e.action, e.source, e.reviewer, e.model_version, e.prob, e.created_at,
               e.classes, e.context
        FROM label_events e
        WHERE e.image_id = ? AND e.label IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id)
          AND (e.source != 'auto' OR e.id = (SELECT MAX(a.id) FROM label_events a
                                             WHERE a.image_id = e.image_id AND a.source = 'auto'
                                             AND a.label IS NOT NULL))
        ORDER BY (e.source != 'auto') DESC, e.id DESC LIMIT 1
        """,
        [image_id],
    ).fetchone()
    if row is None:
        db.execute("DELETE FROM current_labels WHERE image_id = ?", [image_id])
        done = 0
    else:
        db.execute(
            "INSERT INTO current_labels(image_id, event_id, label, action, source, reviewer, "
            "model_version, prob, updated_at, classes, context) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(image_id) DO UPDATE SET event_id = excluded.event_id, label = excluded.label, "
            "action = excluded.action, source = excluded.source, reviewer = excluded.reviewer, "
            "model_version = excluded.model_version, prob = excluded.prob, updated_at = excluded.updated_at, "
            "classes = excluded.classes, context = excluded.context",
            [image_id, *row],
        )
        done = int(row[3] != "auto")
    db.execute("UPDATE predictions SET done = ? WHERE image_id = ?", [done, image_id])


def _check_claim(db: Database, image_id: int, reviewer: str) -> None:
    row = db.execute(
        "SELECT reviewer FROM claims WHERE image_id = ? AND reviewer != ? AND expires_at > ?",
        [image_id, reviewer, time.time()],
    ).fetchone()
    if row:
        raise ClaimConflict(
            f"Image {image_id} is being reviewed by {row[0]!r}; its claim expires soon. Take the next image."
        )


def decide(
    db: Database,
    image_id: int,
    action: str,
    *,
    reviewer: str,
    label: str | None = None,
    note: str | None = None,
    classes: list[str] | tuple[str, ...] | None = None,
    blind: bool = False,
) -> dict[str, Any]:
    """Record one human decision on ``image_id`` and return the event.

    ``accept`` takes the active model's prediction (or ``label`` if given); ``relabel`` needs
    ``label``; ``several`` and ``unusable`` set those special labels (``several`` with the
    ``classes`` present, at least two, when the reviewer named them); ``skip`` records a skip
    (the image comes back when the queue is otherwise empty). ``blind``: the reviewer decided
    without seeing the model's answer (the blind spot-check; ``accept`` is not possible then).
    """
    reviewer = clean_reviewer(reviewer)
    if action not in HUMAN_ACTIONS:
        raise InvalidValue(f"Unknown action {action!r}; expected one of {', '.join(HUMAN_ACTIONS)}")
    if classes is not None and action != "several":
        raise InvalidValue(f"Classes present are given with 'several' only, not with {action!r}")
    kept_classes = clean_classes(classes) if classes is not None else None
    if blind and action == "accept" and label is None:
        raise InvalidValue("A blind check cannot accept the hidden answer; choose the class you see")
    with write_tx(db, "saving a label"):
        if not db.execute("SELECT 1 FROM images WHERE id = ?", [image_id]).fetchone():
            raise NotFound(f"No image with id {image_id!r}")
        _check_claim(db, image_id, reviewer)
        model = active_model(db)
        model_id, version = (model["id"], model["version"]) if model else (None, None)
        pred = _prediction(db, image_id, model_id)
        prob: float | None = None
        if action == "accept":
            if label is None:
                if pred is None:
                    raise StoreError(
                        f"Image {image_id} has no prediction from the active model to accept; choose a class"
                    )
                label = pred["pred"]
            label = clean_label(label)
        elif action == "relabel":
            if not label:
                raise InvalidValue("Relabel needs a class")
            label = clean_label(label)
        elif action in SPECIAL_LABELS:
            label = action
        else:  # skip
            label = None
        if pred is not None and label is not None:
            prob = pred["probs"].get(label)
        context = "blind" if blind else None
        if not blind and label is not None:
            cur = db.execute("SELECT source FROM current_labels WHERE image_id = ?", [image_id]).fetchone()
            if cur and cur[0] == "auto":
                context = "auto"  # confirming (or correcting) an auto label while seeing it
        event_id = _insert_event(
            db, image_id=image_id, label=label, action=action, source="human", reviewer=reviewer,
            model_id=model_id, model_version=version, prob=prob, note=note,
            classes=json.dumps(kept_classes) if kept_classes else None, context=context,
        )
        if action == "skip":
            db.execute(
                "INSERT INTO skips(image_id, reviewer, at) VALUES (?, ?, ?) "
                "ON CONFLICT(image_id, reviewer) DO UPDATE SET at = excluded.at",
                [image_id, reviewer, now_iso()],
            )
        else:
            _recompute_current(db, image_id)
        db.execute("DELETE FROM claims WHERE image_id = ? AND reviewer = ?", [image_id, reviewer])
    return event(db, event_id)


def undo_last(db: Database, reviewer: str) -> dict[str, Any] | None:
    """Undo ``reviewer``'s latest decision not yet undone (a new ``undo`` event). Returns the
    undone event, or None when there is nothing to undo. Repeated calls step further back."""
    reviewer = clean_reviewer(reviewer)
    with write_tx(db, "undoing a label"):
        row = db.execute(
            "SELECT e.id, e.image_id, e.action FROM label_events e WHERE e.reviewer = ? "
            "AND e.source = 'human' AND e.action != 'undo' "
            "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id) "
            "ORDER BY e.id DESC LIMIT 1",
            [reviewer],
        ).fetchone()
        if row is None:
            return None
        ev_id, image_id, action = row
        model = active_model(db)
        model_id, version = (model["id"], model["version"]) if model else (None, None)
        _insert_event(
            db, image_id=image_id, label=None, action="undo", source="human", reviewer=reviewer,
            model_id=model_id, model_version=version, undoes=ev_id,
        )
        if action == "skip":
            db.execute("DELETE FROM skips WHERE image_id = ? AND reviewer = ?", [image_id, reviewer])
        _recompute_current(db, image_id)
    return event(db, ev_id)


def import_labels(db: Database, items: list[tuple[int, str]], *, reviewer: str = "import",
                  replace: bool = False, kept: list[int] | None = None) -> int:
    """Record imported (e.g. folder-name) labels for ``(image_id, label)`` pairs under
    ``reviewer`` (who imported them: ``import:bob``). An image that already has a label (a
    person's or an earlier import; an auto-accepted one is replaced) keeps it, and its id goes to ``kept``
    when the label differs, unless ``replace`` (the caller has checked that an administrator
    confirmed it: core.intake.ingest). Returns how many were recorded."""
    reviewer = clean_reviewer(reviewer)
    n = 0
    with write_tx(db, "importing labels", bulk=True):
        for image_id, label in items:
            label = clean_label(label)
            cur = db.execute(
                "SELECT label, source FROM current_labels WHERE image_id = ?", [image_id]
            ).fetchone()
            # an auto-accepted label is the model's guess, not a reference label: an import replaces it
            held = cur is not None and cur[0] is not None and cur[1] != "auto"
            if held and ((cur[0], cur[1]) == (label, "import") or not replace):
                if cur[0] != label and kept is not None:
                    kept.append(image_id)
                continue  # the label it has stands
            _insert_event(
                db, image_id=image_id, label=label, action="import", source="import",
                reviewer=reviewer, model_id=None, model_version=None, prob=None,
            )
            _recompute_current(db, image_id)
            n += 1
    return n


def sync_auto_labels(db: Database, model_id: int, chunk: int = 5_000) -> dict[str, int]:
    """Bring auto-accepted labels in line with ``model_id``'s current routing: unlabelled
    images in the ``auto`` queue get an auto label where the model's certification allows it
    (core/review/certification.py: none while it is provisional); auto labels whose image left
    the ``auto`` queue (or whose class changed, or that certification no longer allows) are
    revoked. Human and imported labels are never touched. Walks the images by id, ``chunk``
    at a time, one short bulk transaction each (people's label writes go first between them;
    see :func:`core.store.write_tx`)."""
    version = db.execute("SELECT version FROM models WHERE id = ?", [model_id]).fetchone()
    if version is None:
        raise NotFound(f"No model with id {model_id!r}")
    stamp = now_iso()
    allowed, allowed_params = auto_label_rule(db, model_id)
    added = revoked = 0
    first, top = db.execute("SELECT MIN(id) - 1, MAX(id) FROM images").fetchone()
    pacer = Pacer(chunk)
    for lo, hi in pacer.ranges(first, top):
        with write_tx(db, "updating auto-accepted labels", pacer=pacer):
            # 1. revoke auto labels that no longer hold
            stale = db.execute(
                f"""
                SELECT c.image_id, c.event_id FROM current_labels c
                LEFT JOIN predictions p ON p.image_id = c.image_id AND p.model_id = ?
                WHERE c.image_id > ? AND c.image_id <= ? AND +c.source = 'auto'
                  AND (p.image_id IS NULL OR p.queue != 'auto' OR p.pred != c.label
                       OR c.model_version != ? OR NOT ({allowed}))
                """,
                [model_id, lo, hi, version[0], *allowed_params],
            ).fetchall()
            db.conn.executemany(
                "INSERT INTO label_events(image_id, label, action, source, reviewer, model_id, "
                "model_version, undoes, created_at) VALUES (?, NULL, 'undo', 'auto', 'auto', ?, ?, ?, ?)",
                [(img, model_id, version[0], ev, stamp) for img, ev in stale],
            )
            db.conn.executemany(
                "DELETE FROM current_labels WHERE image_id = ?", [(img,) for img, _ in stale]
            )
            # 2. add auto labels where there is no label at all ("+": walk the primary key by
            # image id, not the queue indexes)
            before = db.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0]
            db.execute(
                f"""
                INSERT INTO label_events(image_id, label, action, source, reviewer, model_id,
                                         model_version, prob, created_at)
                SELECT p.image_id, p.pred, 'auto', 'auto', 'auto', p.model_id, ?, p.p1, ?
                FROM predictions p
                WHERE p.image_id > ? AND p.image_id <= ? AND +p.model_id = ? AND +p.queue = 'auto'
                  AND ({allowed})
                  AND NOT EXISTS (SELECT 1 FROM current_labels c WHERE c.image_id = p.image_id)
                ORDER BY p.image_id
                """,
                [version[0], stamp, lo, hi, model_id, *allowed_params],
            )
            added += db.execute(
                """
                INSERT INTO current_labels(image_id, event_id, label, action, source, reviewer,
                                           model_version, prob, updated_at)
                SELECT image_id, id, label, action, source, reviewer, model_version, prob, created_at
                FROM label_events WHERE id > ? AND action = 'auto'
                """,
                [before],
            ).rowcount
            revoked += len(stale)
    return {"added": int(added), "revoked": revoked}


# ---------------------------------------------------------------- reading


def event(db: Database, event_id: int) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM label_events WHERE id = ?", [event_id]))
    if not rows:
        raise NotFound(f"No label event {event_id!r}")
    return rows[0]


def history(db: Database, image_id: int) -> list[dict[str, Any]]:
    """Every event of one image, oldest first, with whether it was later undone."""
    return list(
        db.query(
            "SELECT e.*, EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id) AS undone "
            "FROM label_events e WHERE e.image_id = ? ORDER BY e.id",
            [image_id],
        )
    )


def several_labels(db: Database) -> list[dict[str, Any]]:
    """The images whose current label is ``several`` with the classes present named:
    ``image_id``, ``classes`` (list), ``source``, ``reviewer`` — for the mixed-queue bench and
    multi-label training."""
    return [
        {**r, "classes": json.loads(r["classes"])}
        for r in db.query(
            "SELECT image_id, classes, source, reviewer FROM current_labels "
            "WHERE label = 'several' AND classes IS NOT NULL ORDER BY image_id"
        )
    ]


def current_label(db: Database, image_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM current_labels WHERE image_id = ?", [image_id]))
    return rows[0] if rows else None


def label_version(db: Database) -> int:
    """Grows with every label event: a cheap cache key for anything computed from labels."""
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0])
