"""Labels: an append-only history of decisions, the current label derived from it, claims and
the review queues.

Derivation rule (kept in :func:`_recompute_current`): the current label of an image is its
latest human or imported label event that has not been undone; failing that, its latest
auto-accept event if that one has not been undone (revoked). ``skip`` and ``undo`` events
carry no label. Undo is a new event pointing at the one it cancels — nothing is deleted.
Auto-accepted labels never overwrite a human label.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from sqlite_utils import Database

from core.errors import ClaimConflict, NotFound, StoreError
from core.routing import current_reason, get_thresholds
from core.store import get_setting, now_iso, set_setting, write_tx

SPECIAL_LABELS = ("several", "unusable")
HUMAN_ACTIONS = ("accept", "relabel", "several", "unusable", "skip")
ORDERS = ("margin", "confidence", "entropy", "file", "random")
QUEUE_CHOICES = ("uncertain", "mixed", "auto", "all")
# active-learning names of the orders (what the Review page and `semtriage queue` show)
ORDER_NAMES = {"confidence": "least confidence", "margin": "margin", "entropy": "entropy",
               "random": "random", "file": "file name"}
DEFAULT_ORDER = "margin"
_LABEL_RE = re.compile(r"^\w[\w .+\-/()]{0,63}$")


def clean_reviewer(reviewer: str) -> str:
    r = (reviewer or "").strip()
    if not r or len(r) > 64 or any(ord(ch) < 32 for ch in r):
        raise StoreError(f"Reviewer name {reviewer!r} must be 1–64 printable characters")
    return r


def clean_label(label: str) -> str:
    lab = (label or "").strip()
    if not _LABEL_RE.match(lab):
        raise StoreError(
            f"Label {label!r} is not a valid class name: use 1–64 letters, digits, spaces or . + - / ( )"
        )
    return lab


def _active(db: Database) -> tuple[int | None, str | None]:
    row = db.execute("SELECT id, version FROM models WHERE active = 1").fetchone()
    return (row[0], row[1]) if row else (None, None)


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
        SELECT e.id, e.label, e.action, e.source, e.reviewer, e.model_version, e.prob, e.created_at
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
            "model_version, prob, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(image_id) DO UPDATE SET event_id = excluded.event_id, label = excluded.label, "
            "action = excluded.action, source = excluded.source, reviewer = excluded.reviewer, "
            "model_version = excluded.model_version, prob = excluded.prob, updated_at = excluded.updated_at",
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
) -> dict[str, Any]:
    """Record one human decision on ``image_id`` and return the event.

    ``accept`` takes the active model's prediction (or ``label`` if given); ``relabel`` needs
    ``label``; ``several`` and ``unusable`` set those special labels; ``skip`` records a skip
    (the image comes back when the queue is otherwise empty).
    """
    reviewer = clean_reviewer(reviewer)
    if action not in HUMAN_ACTIONS:
        raise StoreError(f"Unknown action {action!r}; expected one of {', '.join(HUMAN_ACTIONS)}")
    with write_tx(db, "saving a label"):
        if not db.execute("SELECT 1 FROM images WHERE id = ?", [image_id]).fetchone():
            raise NotFound(f"No image with id {image_id!r}")
        _check_claim(db, image_id, reviewer)
        model_id, version = _active(db)
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
                raise StoreError("Relabel needs a class")
            label = clean_label(label)
        elif action in SPECIAL_LABELS:
            label = action
        else:  # skip
            label = None
        if pred is not None and label is not None:
            prob = pred["probs"].get(label)
        event_id = _insert_event(
            db, image_id=image_id, label=label, action=action, source="human", reviewer=reviewer,
            model_id=model_id, model_version=version, prob=prob, note=note,
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
        model_id, version = _active(db)
        _insert_event(
            db, image_id=image_id, label=None, action="undo", source="human", reviewer=reviewer,
            model_id=model_id, model_version=version, undoes=ev_id,
        )
        if action == "skip":
            db.execute("DELETE FROM skips WHERE image_id = ? AND reviewer = ?", [image_id, reviewer])
        _recompute_current(db, image_id)
    return event(db, ev_id)


def import_labels(db: Database, items: list[tuple[int, str]], *, reviewer: str = "import") -> int:
    """Record imported (e.g. folder-name) labels for ``(image_id, label)`` pairs; an image that
    already carries the same imported label is left alone. Returns how many were recorded."""
    n = 0
    with write_tx(db, "importing labels"):
        for image_id, label in items:
            label = clean_label(label)
            cur = db.execute(
                "SELECT label, source FROM current_labels WHERE image_id = ?", [image_id]
            ).fetchone()
            if cur and cur[1] != "auto":
                continue  # a human or earlier import decision stands
            _insert_event(
                db, image_id=image_id, label=label, action="import", source="import",
                reviewer=reviewer, model_id=None, model_version=None, prob=None,
            )
            _recompute_current(db, image_id)
            n += 1
    return n


def sync_auto_labels(db: Database, model_id: int) -> dict[str, int]:
    """Bring auto-accepted labels in line with ``model_id``'s current routing: unlabelled
    images in the ``auto`` queue get an auto label; auto labels whose image left the ``auto``
    queue (or whose class changed) are revoked. Human and imported labels are never touched."""
    version = db.execute("SELECT version FROM models WHERE id = ?", [model_id]).fetchone()
    if version is None:
        raise NotFound(f"No model with id {model_id!r}")
    stamp = now_iso()
    with write_tx(db, "updating auto-accepted labels"):
        # 1. revoke auto labels that no longer hold
        stale = db.execute(
            """
            SELECT c.image_id, c.event_id FROM current_labels c
            LEFT JOIN predictions p ON p.image_id = c.image_id AND p.model_id = ?
            WHERE c.source = 'auto'
              AND (p.image_id IS NULL OR p.queue != 'auto' OR p.pred != c.label OR c.model_version != ?)
            """,
            [model_id, version[0]],
        ).fetchall()
        db.conn.executemany(
            "INSERT INTO label_events(image_id, label, action, source, reviewer, model_id, "
            "model_version, undoes, created_at) VALUES (?, NULL, 'undo', 'auto', 'auto', ?, ?, ?, ?)",
            [(img, model_id, version[0], ev, stamp) for img, ev in stale],
        )
        db.conn.executemany(
            "DELETE FROM current_labels WHERE image_id = ?", [(img,) for img, _ in stale]
        )
        # 2. add auto labels where there is no label at all
        before = db.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0]
        db.execute(
            """
            INSERT INTO label_events(image_id, label, action, source, reviewer, model_id,
                                     model_version, prob, created_at)
            SELECT p.image_id, p.pred, 'auto', 'auto', 'auto', p.model_id, ?, p.p1, ?
            FROM predictions p
            WHERE p.model_id = ? AND p.queue = 'auto'
              AND NOT EXISTS (SELECT 1 FROM current_labels c WHERE c.image_id = p.image_id)
            ORDER BY p.image_id
            """,
            [version[0], stamp, model_id],
        )
        added = db.execute(
            """
            INSERT INTO current_labels(image_id, event_id, label, action, source, reviewer,
                                       model_version, prob, updated_at)
            SELECT image_id, id, label, action, source, reviewer, model_version, prob, created_at
            FROM label_events WHERE id > ? AND action = 'auto'
            """,
            [before],
        ).rowcount
    return {"added": int(added), "revoked": len(stale)}


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


def current_label(db: Database, image_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM current_labels WHERE image_id = ?", [image_id]))
    return rows[0] if rows else None


# ---------------------------------------------------------------- queues and claims

# Review orders as (sort key, descending?); ties always go to the lower image id.
_ORDER_KEY = {
    "margin": ("p.margin", False),
    "confidence": ("p.p1", False),
    "entropy": ("p.entropy", True),
    "file": ("i.path", False),
    "random": ("p.rnd", False),
}
_QUEUES = ("uncertain", "mixed", "auto")


def _fresh_ids(
    db: Database, model_id: int, queue: str, reviewer: str, n: int, order: str
) -> list[tuple[Any, int]]:
    """(sort key, image id) of the first ``n`` images of one queue in ``order`` that carry no
    human label, are not claimed by another reviewer and were not skipped by ``reviewer``.

    One queue at a time, so that each order walks its (model, queue, done, key) index and stops
    after ``n`` rows. ``file`` order has no such index (the path lives in ``images``): a large
    queue is walked in path order from the images side (it is dense there, so ``n`` hits come
    quickly), a small one is sorted; the cut-over is where both cost about the same.
    """
    key, desc = _ORDER_KEY[order]
    cond = (
        "p.model_id = ? AND p.queue = ? AND p.done = 0 "
        "AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.image_id = p.image_id AND c.reviewer != ?) "
        "AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.image_id = p.image_id AND s.reviewer = ?)"
    )
    params: list[Any] = [model_id, queue, reviewer, reviewer, n]
    if order == "file" and _queue_at_least(db, model_id, queue, _file_walk_threshold(db, n)):
        sql = (
            "SELECT i.path, i.id FROM images i CROSS JOIN predictions p ON p.image_id = i.id "
            f"WHERE {cond} ORDER BY i.path, i.id LIMIT ?"
        )
    else:
        sql = (
            f"SELECT {key}, p.image_id FROM predictions p JOIN images i ON i.id = p.image_id "
            f"WHERE {cond} ORDER BY {key} {'DESC' if desc else 'ASC'}, p.image_id LIMIT ?"
        )
    return [(r[0], r[1]) for r in db.execute(sql, params)]


def _file_walk_threshold(db: Database, n: int) -> int:
    """Queue size above which walking images in path order beats sorting the queue: the walk
    visits about n * images / queue rows, the sort queue rows, equal at sqrt(n * images)."""
    top = db.execute("SELECT MAX(id) FROM images").fetchone()[0] or 0
    return max(100, int((max(n, 1) * top) ** 0.5))


def _queue_at_least(db: Database, model_id: int, queue: str, k: int) -> bool:
    return db.execute(  # trigger-kept counts (migration m006)
        "SELECT COALESCE(SUM(n), 0) FROM pred_counts WHERE model_id = ? AND queue = ? AND done = 0",
        [model_id, queue],
    ).fetchone()[0] >= k


def label_version(db: Database) -> int:
    """Grows with every label event: a cheap cache key for anything computed from labels."""
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM label_events").fetchone()[0])


def queue_counts(db: Database, model_id: int | None = None) -> dict[str, int]:
    """Images still to review per queue (for ``auto``: auto-labelled, not yet confirmed)."""
    if model_id is None:
        model_id, _ = _active(db)
    out = {"uncertain": 0, "mixed": 0, "auto": 0}
    if model_id is None:
        return out
    out.update(
        dict(
            db.execute(
                "SELECT queue, SUM(n) FROM pred_counts WHERE model_id = ? AND done = 0 "
                "GROUP BY queue HAVING SUM(n) > 0",  # trigger-kept counts (migration m006)
                [model_id],
            ).fetchall()
        )
    )
    return out


def _order_key(queue: str) -> str:
    if queue not in QUEUE_CHOICES:
        raise StoreError(f"Unknown queue {queue!r}; expected one of {', '.join(QUEUE_CHOICES)}")
    return f"queue_order.{queue}"


def queue_order(db: Database, queue: str) -> str:
    """The stored default review order of ``queue`` (``margin`` until one is set)."""
    order = get_setting(db, _order_key(queue), DEFAULT_ORDER) or DEFAULT_ORDER
    return order if order in ORDERS else DEFAULT_ORDER


def set_queue_order(db: Database, queue: str, order: str) -> None:
    """Store ``order`` as ``queue``'s default review order (for everyone: the Review page opens
    the queue in it, ``semtriage queue`` without ``--order`` uses it)."""
    if order not in ORDERS:
        raise StoreError(f"Unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    set_setting(db, _order_key(queue), order)


def next_images(
    db: Database,
    queue: str,
    reviewer: str,
    *,
    n: int = 1,
    order: str | None = None,
    claim_seconds: float = 300,
    model_id: int | None = None,
) -> list[dict[str, Any]]:
    """Claim and return up to ``n`` images to review from ``queue`` for ``reviewer``.

    Images claimed (unexpired) by another reviewer, labelled by a human, or skipped by this
    reviewer are passed over; skipped ones come back once nothing else is left. The reviewer's
    own claims are returned again (a page refresh shows the same image). Each row has the
    image, its prediction (``probs`` as {class: p}) and ``queue``/``reason``. ``order``: one of
    ``ORDERS``; None = the queue's stored default (:func:`queue_order`).
    """
    reviewer = clean_reviewer(reviewer)
    if queue not in QUEUE_CHOICES:
        raise StoreError(f"Unknown queue {queue!r}; expected one of {', '.join(QUEUE_CHOICES)}")
    if order is None:
        order = queue_order(db, queue)
    if order == "informative":
        order = "margin"
    if order not in ORDERS:
        raise StoreError(f"Unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    if model_id is None:
        model_id, _ = _active(db)
    if model_id is None:
        return []
    now = time.time()
    qfilter = "" if queue == "all" else "AND p.queue = ?"
    qparams: list[Any] = [] if queue == "all" else [queue]
    base = (
        "SELECT p.image_id FROM predictions p JOIN images i ON i.id = p.image_id "
        f"WHERE p.model_id = ? {qfilter} AND p.done = 0 "
        "AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.image_id = p.image_id AND c.reviewer != ?) "
    )
    with write_tx(db, "claiming images"):
        db.execute("DELETE FROM claims WHERE expires_at <= ?", [now])
        # the first n of each queue, merged: the same rows as one ORDER BY over all queues
        desc = _ORDER_KEY[order][1]
        fresh = [
            row
            for q in (_QUEUES if queue == "all" else (queue,))
            for row in _fresh_ids(db, model_id, q, reviewer, n, order)
        ]
        if queue == "all":
            fresh.sort(key=lambda r: (-r[0], r[1]) if desc else r)
        ids = [image_id for _, image_id in fresh[:n]]
        if len(ids) < n:
            ids += [
                r[0]
                for r in db.execute(
                    base + "AND EXISTS (SELECT 1 FROM skips s WHERE s.image_id = p.image_id "
                    "AND s.reviewer = ?) ORDER BY (SELECT at FROM skips s WHERE s.image_id = "
                    "p.image_id AND s.reviewer = ?) LIMIT ?",
                    [model_id, *qparams, reviewer, reviewer, reviewer, n - len(ids)],
                )
            ]
        db.conn.executemany(
            "INSERT INTO claims(image_id, reviewer, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT(image_id) DO UPDATE SET reviewer = excluded.reviewer, "
            "expires_at = excluded.expires_at",
            [(i, reviewer, now + claim_seconds) for i in ids],
        )
    return [review_item(db, i, model_id) for i in ids]


def review_item(db: Database, image_id: int, model_id: int | None = None) -> dict[str, Any]:
    """One image with its active-model prediction and current label, for the review screen."""
    if model_id is None:
        model_id, _ = _active(db)
    rows = list(
        db.query(
            """
            SELECT i.id AS image_id, i.path, i.name, i.sha256, i.width, i.height, i.bit_depth,
                   i.raw_dtype, i.pages, i.instrument, i.pixel_size_m, i.pixel_size_source,
                   i.databar_px, i.metadata, i.warnings,
                   p.pred, p.p1, p.second, p.p2, p.margin, p.entropy, p.probs, p.queue, p.reason,
                   m.class_names, m.version AS model_version,
                   c.label AS current_label, c.source AS current_source
            FROM images i
            LEFT JOIN predictions p ON p.image_id = i.id AND p.model_id = ?
            LEFT JOIN models m ON m.id = p.model_id
            LEFT JOIN current_labels c ON c.image_id = i.id
            WHERE i.id = ?
            """,
            [model_id, image_id],
        )
    )
    if not rows:
        raise NotFound(f"No image with id {image_id!r}")
    r = rows[0]
    r["metadata"] = json.loads(r["metadata"] or "{}")
    r["warnings"] = json.loads(r["warnings"] or "[]")
    names = json.loads(r.pop("class_names") or "[]")
    if r["pred"] is not None:
        r["reason"] = current_reason(get_thresholds(db), r["pred"], r["p1"], r["second"], r["p2"])
    probs = json.loads(r["probs"]) if r["probs"] else []
    r["probs"] = dict(sorted(zip(names, probs), key=lambda kv: -kv[1]))
    return r


def claim(db: Database, image_ids: list[int], reviewer: str, *, claim_seconds: float = 300) -> list[int]:
    """Claim the given images for ``reviewer`` (e.g. a grid of thumbnails), skipping those an
    unexpired claim of another reviewer holds. Returns the ids now claimed, in the given order."""
    reviewer = clean_reviewer(reviewer)
    now = time.time()
    got: list[int] = []
    with write_tx(db, "claiming images"):
        for i in image_ids:
            cur = db.execute(
                "INSERT INTO claims(image_id, reviewer, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(image_id) DO UPDATE SET reviewer = excluded.reviewer, "
                "expires_at = excluded.expires_at "
                "WHERE claims.reviewer = excluded.reviewer OR claims.expires_at <= ?",
                [i, reviewer, now + claim_seconds, now],
            )
            if cur.rowcount:
                got.append(i)
    return got


def release_claims(db: Database, reviewer: str) -> None:
    with write_tx(db, "releasing claims"):
        db.execute("DELETE FROM claims WHERE reviewer = ?", [clean_reviewer(reviewer)])


def random_key(sha256: str) -> int:
    """A stable pseudo-random sort key for the 'random' queue order (from the image hash)."""
    return int(sha256[:15], 16)
