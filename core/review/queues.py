"""The review queues: the next images of a queue for a reviewer in a review order (claimed as
they are handed out), each queue's stored default order, queue sizes, one image as the review
screen shows it, and re-routing every prediction when thresholds or models change."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from sqlite_utils import Database

from core.access import User, require_admin
from core.errors import InvalidValue, NotFound
from core.models import active_model
from core.review.labels import clean_reviewer, sync_auto_labels
from core.review.routing import (
    BLIND_QUEUE,
    GLOBAL,
    QUEUES,
    Thresholds,
    clear_class_thresholds,
    current_reason,
    decide_queue,
    for_class,
    get_thresholds,
    queue_sql,
    set_thresholds,
)
from core.store import Pacer, get_setting, set_setting, write_tx

ORDERS = ("margin", "confidence", "entropy", "file", "random")
QUEUE_CHOICES = ("uncertain", "mixed", "auto", BLIND_QUEUE, "all")


# active-learning names of the orders (what the Review page and `semtriage queue` show)
ORDER_NAMES = {"confidence": "least confidence", "margin": "margin", "entropy": "entropy",
               "random": "random", "file": "file name"}


DEFAULT_ORDER = "margin"


# Review orders as (sort key, descending?); ties always go to the lower image id.
_ORDER_KEY = {
    "margin": ("p.margin", False),
    "confidence": ("p.p1", False),
    "entropy": ("p.entropy", True),
    "file": ("i.path", False),
    "random": ("p.rnd", False),
}


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


def queue_counts(db: Database, model_id: int | None = None) -> dict[str, int]:
    """Images still to review per queue (for ``auto``: auto-labelled, not yet confirmed)."""
    if model_id is None:
        model_id = (active_model(db) or {}).get("id")
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
        raise InvalidValue(f"Unknown queue {queue!r}; expected one of {', '.join(QUEUE_CHOICES)}")
    return f"queue_order.{queue}"


def queue_order(db: Database, queue: str, reviewer: str | None = None) -> str:
    """The review order ``queue`` opens in: ``reviewer``'s own choice if they saved one, else
    the default for everyone an administrator set, else ``margin``. The blind spot-check is
    always random (a sample, not the model's hardest cases)."""
    key = _order_key(queue)
    if queue == BLIND_QUEUE:
        return "random"
    order = get_setting(db, f"{key}.by.{clean_reviewer(reviewer)}") if reviewer else None
    order = order or get_setting(db, key, DEFAULT_ORDER) or DEFAULT_ORDER
    return order if order in ORDERS else DEFAULT_ORDER


def set_queue_order(
    db: Database, queue: str, order: str, *, reviewer: str | None = None, by: User | None = None
) -> None:
    """Store ``order`` as ``reviewer``'s own order of ``queue`` (the Review page and ``semtriage
    queue`` open it in that order for them) or, with no ``reviewer``, as the default for
    everyone — administrators only (``by``; ``None`` = local use)."""
    key = _order_key(queue)
    if order not in ORDERS:
        raise InvalidValue(f"Unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    if queue == BLIND_QUEUE:
        raise InvalidValue("The blind spot-check is always in random order")
    if reviewer:
        set_setting(db, f"{key}.by.{clean_reviewer(reviewer)}", order)
    else:
        require_admin(by, "set the review order for everyone")
        set_setting(db, key, order)


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
        raise InvalidValue(f"Unknown queue {queue!r}; expected one of {', '.join(QUEUE_CHOICES)}")
    if order is None or queue == BLIND_QUEUE:
        order = queue_order(db, queue, reviewer)
    if order == "informative":
        order = "margin"
    if order not in ORDERS:
        raise InvalidValue(f"Unknown order {order!r}; expected one of {', '.join(ORDERS)}")
    if model_id is None:
        model_id = (active_model(db) or {}).get("id")
    if model_id is None:
        return []
    now = time.time()
    source = "auto" if queue == BLIND_QUEUE else queue  # the blind check samples the auto queue
    qfilter = "" if queue == "all" else "AND p.queue = ?"
    qparams: list[Any] = [] if queue == "all" else [source]
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
            for q in (QUEUES if queue == "all" else (source,))
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
        model_id = (active_model(db) or {}).get("id")
    rows = list(
        db.query(
            """
            SELECT i.id AS image_id, i.path, i.name, i.sha256, i.width, i.height, i.bit_depth,
                   i.raw_dtype, i.pages, i.instrument, i.pixel_size_m, i.pixel_size_source,
                   i.databar_px, i.metadata, i.warnings,
                   p.pred, p.p1, p.second, p.p2, p.margin, p.entropy, p.probs, p.queue, p.reason,
                   p.ood, p.unfamiliar,
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
        r["reason"] = current_reason(get_thresholds(db), r["pred"], r["p1"], r["second"], r["p2"],
                                     r["unfamiliar"])
        if r["queue"] == "auto" and r["current_source"] is None:  # no auto label was written
            r["reason"] += (" — confident, unverified: auto-accept is not certified for this "
                            "model on this lab's labels")
    probs = json.loads(r["probs"]) if r["probs"] else []
    r["probs"] = dict(sorted(zip(names, probs), key=lambda kv: -kv[1]))
    return r


# ---------------------------------------------------------------- re-routing


def reroute(
    db: Database, model_id: int, chunk: int = 5_000, *, by: User | None = None
) -> dict[str, int]:
    """Recompute the queue of every prediction of ``model_id`` under the stored thresholds,
    then bring auto-accepted labels in line. Returns the new queue sizes. Only predictions
    whose queue changes are written; the reason shown to people is worded from the current
    thresholds when it is read (:func:`current_reason`), so the stored one may name old
    threshold values.
    Administrators only (``by``; ``None`` = local use): it revokes and adds auto labels."""
    require_admin(by, "re-route the queues")

    ts = get_thresholds(db)
    expr, params = queue_sql(ts)
    first, top = db.execute("SELECT MIN(id) - 1, MAX(id) FROM images").fetchone()
    pacer = Pacer(chunk)  # each write about BULK_HOLD_S, however large the database
    for lo, hi in pacer.ranges(first, top):
        # SQLite picks the rows whose queue changes (the same rule, as SQL) walking the primary
        # key by image id ("+model_id": not the queue indexes); only those are written — a
        # threshold change that moves 2 % of a million images writes 20,000 rows
        moved = [
            (*decide_queue(c1, p1, c2, p2, for_class(ts, c1), unf), image_id, model_id)
            for image_id, c1, p1, c2, p2, unf in db.execute(
                "SELECT p.image_id, p.pred, p.p1, p.second, p.p2, p.unfamiliar FROM predictions p "
                "WHERE p.image_id > ? AND p.image_id <= ? AND +p.model_id = ? "
                f"AND p.queue != {expr}",
                [lo, hi, model_id, *params],
            ).fetchall()
        ]
        if moved:
            with write_tx(db, "re-routing", pacer=pacer):
                db.conn.executemany(
                    "UPDATE predictions SET queue = ?, reason = ? "
                    "WHERE image_id = ? AND model_id = ?",
                    moved,
                )
    sync_auto_labels(db, model_id)
    return dict(
        db.execute(
            "SELECT queue, SUM(n) FROM pred_counts WHERE model_id = ? AND done = 0 "
            "GROUP BY queue HAVING SUM(n) > 0",  # trigger-kept counts (migration m006)
            [model_id],
        ).fetchall()
    )


def save_thresholds(
    db: Database,
    model_id: int,
    thresholds: Thresholds,
    per_class: dict[str, Thresholds],
    classes: Iterable[str],
    *,
    by: User | None = None,
) -> dict[str, int]:
    """Store ``thresholds`` as the global ones and, for each of ``classes``, its entry of
    ``per_class`` or none (a stored override without an entry is removed); then re-route
    ``model_id``'s predictions. Returns the new queue sizes. Administrators only."""
    require_admin(by, "change the routing thresholds")
    stored = get_thresholds(db)
    set_thresholds(db, thresholds, by=by)
    for cls in classes:
        if cls == GLOBAL:
            continue
        if cls in per_class:
            set_thresholds(db, per_class[cls], cls, by=by)
        elif cls in stored:
            clear_class_thresholds(db, cls, by=by)
    return reroute(db, model_id, by=by)
