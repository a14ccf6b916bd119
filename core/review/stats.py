"""Read-only numbers for the app: overview totals and chart data, the grid's thumbnails, and the
estimated error rate of auto-accepted labels.

Everything here only reads; writes go through core.review's labels / routing / queues and
core.models' registry.
Queries work from the ``predictions`` indexes and stay fast at a million rows: nothing loads a
whole table into Python.
"""


from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlite_utils import Database

from core.models import active_model, wilson
from core.review.routing import BLIND_QUEUE, INDEPENDENT_SQL, QUEUES, ThresholdSet, queue_sql
from core.store import HUMAN_SOURCES

DECISION_ACTIONS = ("accept", "relabel", "several", "unusable")


HIST_BINS = 20  # the Overview histogram's bins, kept by triggers in pred_counts (migration m006)


def _class_names(db: Database, model_id: int | None) -> list[str]:
    if model_id is None:
        return []
    row = db.execute("SELECT class_names FROM models WHERE id = ?", [model_id]).fetchone()
    return list(json.loads(row[0])) if row else []


# ---------------------------------------------------------------- overview


def row_count(db: Database, table: str) -> int:
    """Rows of ``images`` or ``ingest_errors``, from the trigger-kept ``row_counts``."""
    row = db.execute("SELECT n FROM row_counts WHERE tbl = ?", [table]).fetchone()
    return int(row[0]) if row else 0


def overview(db: Database, model_id: int | None = None) -> dict[str, Any]:
    """Totals for the overview page: images, predicted, queue sizes, labels by source.

    Read from the trigger-kept counts of migration m006 (a few rows, whatever the archive size).
    """
    model_id = model_id if model_id is not None else (active_model(db) or {}).get("id")
    images = row_count(db, "images")
    models = db.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    by_source = dict(db.execute(
        "SELECT source, SUM(n) FROM label_counts GROUP BY source HAVING SUM(n) > 0").fetchall())
    queues = {"uncertain": 0, "mixed": 0, "auto": 0}
    predicted = 0
    if model_id is not None:
        predicted = db.execute(
            "SELECT COALESCE(SUM(n), 0) FROM pred_counts WHERE model_id = ?", [model_id]
        ).fetchone()[0]
        queues.update(
            dict(
                db.execute(
                    "SELECT queue, SUM(n) FROM pred_counts WHERE model_id = ? AND done = 0 "
                    "GROUP BY queue HAVING SUM(n) > 0",
                    [model_id],
                ).fetchall()
            )
        )
    failed = row_count(db, "ingest_errors")
    return {
        "images": images,
        "models": models,
        "model_id": model_id,
        "predicted": predicted,
        "queues": queues,
        "human": by_source.get("human", 0),
        "imported": by_source.get("import", 0),
        "auto": by_source.get("auto", 0),
        "ingest_errors": failed,
    }


def per_class(db: Database, model_id: int | None = None) -> list[dict[str, Any]]:
    """One row per class: predicted by the model, still to review, auto-labelled, and
    labelled by a human (human or imported labels)."""
    model_id = model_id if model_id is not None else (active_model(db) or {}).get("id")
    names = _class_names(db, model_id)
    pred: dict[str, tuple[int, int]] = {}
    if model_id is not None:  # from the trigger-kept counts (migration m006)
        for cls, n, todo in db.execute(
            "SELECT pred, SUM(n), SUM(CASE WHEN done = 0 AND queue != 'auto' THEN n ELSE 0 END) "
            "FROM pred_counts WHERE model_id = ? GROUP BY pred HAVING SUM(n) > 0",
            [model_id],
        ):
            pred[cls] = (n, todo or 0)
    labels: dict[str, dict[str, int]] = {}
    for lab, src, n in db.execute("SELECT label, source, n FROM label_counts WHERE n > 0"):
        labels.setdefault(lab, {})[src] = n
    order = names + sorted(k for k in set(labels) | set(pred) if k not in names)
    rows = []
    for cls in order:
        n, todo = pred.get(cls, (0, 0))
        by = labels.get(cls, {})
        rows.append({
            "class": cls,
            "predicted": n,
            "to_review": todo,
            "auto": by.get("auto", 0),
            "human": by.get("human", 0) + by.get("import", 0),
        })
    return rows


def confidence_histogram(db: Database, model_id: int, bins: int = HIST_BINS) -> list[dict[str, Any]]:
    """Counts of top-1 probability in ``bins`` equal bins over [0, 1], split by queue.

    Bin of a row: ``min(int(p1 * bins), bins - 1)`` (p1 = 1 goes to the last bin). With the
    Overview's ``HIST_BINS`` read from the trigger-kept ``pred_counts``; other bin counts are
    counted as index ranges of (model, queue, done, p1), one per queue and bin, between the
    exact edges of that formula: three times faster at a million rows than grouping by the
    computed bin.
    """
    if bins == HIST_BINS:
        kept = db.execute(
            "SELECT bin, queue, SUM(n) FROM pred_counts WHERE model_id = ? "
            "AND queue IN ('uncertain', 'mixed', 'auto') GROUP BY bin, queue HAVING SUM(n) > 0",
            [model_id],
        ).fetchall()
        return [
            {"lo": b / bins, "hi": (b + 1) / bins, "mid": (b + 0.5) / bins, "queue": q, "count": n}
            for b, q, n in sorted(kept)
        ]
    edges = _bin_edges(bins)  # edges[k] = first p1 of bin k; bin k is [edges[k], edges[k + 1])
    counts: dict[tuple[int, str], int] = {}
    for queue in QUEUES:
        for k in range(bins):
            last = k + 1 == bins
            n = db.execute(
                "SELECT COUNT(*) FROM predictions WHERE model_id = ? AND queue = ? "
                "AND done IN (0, 1) AND p1 >= ?"  # done is always 0 or 1
                + ("" if last else " AND p1 < ?"),
                [model_id, queue, edges[k], *([] if last else [edges[k + 1]])],
            ).fetchone()[0]
            if n:
                counts[(k, queue)] = n
    # values below bin 0 (never a probability) keep the formula's own (negative) bins
    for b, queue, n in db.execute(
        "SELECT MIN(CAST(p1 * ? AS INTEGER), ? - 1) AS b, queue, COUNT(*) FROM predictions "
        "WHERE model_id = ? AND queue IN ('uncertain', 'mixed', 'auto') AND done IN (0, 1) "
        "AND p1 < ? GROUP BY b, queue",
        [bins, bins, model_id, edges[0]],
    ):
        counts[(b, queue)] = counts.get((b, queue), 0) + n
    return [
        {"lo": b / bins, "hi": (b + 1) / bins, "mid": (b + 0.5) / bins, "queue": q, "count": n}
        for (b, q), n in sorted(counts.items())
    ]


def _bin_edges(bins: int) -> list[float]:
    """For k = 0 .. bins - 1 the smallest float x with ``int(x * bins) >= k`` (the product
    rounded as SQLite and Python both round it, IEEE double), so that ``x >= edges[k]`` holds
    exactly when ``CAST(x * bins AS INTEGER) >= k``."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins!r}")
    edges = []
    for k in range(bins):
        x = (k - 1) / bins if k == 0 else k / bins  # int() truncates: (-1/bins, 0) is bin 0 too
        while int(x * bins) >= k:
            x = math.nextafter(x, -math.inf)
        while int(x * bins) < k:
            x = math.nextafter(x, math.inf)
        edges.append(x)
    return edges


def confusion(db: Database, model_id: int) -> dict[str, Any]:
    """Human (and imported) labels against the model's top-1 prediction.

    ``matrix[i][j]`` = images labelled ``rows[i]`` by a person and predicted ``cols[j]``.
    Rows are the model's classes followed by any other labels people used (several, unusable, ...).
    """
    names = _class_names(db, model_id)
    counts = db.execute(  # kept by triggers (migration m006)
        "SELECT label, pred, n FROM confusion_counts WHERE model_id = ? AND n > 0", [model_id]
    ).fetchall()
    extra_rows = sorted({lab for lab, _, _ in counts if lab not in names})
    extra_cols = sorted({p for _, p, _ in counts if p not in names})
    rows, cols = names + extra_rows, names + extra_cols
    ri = {c: i for i, c in enumerate(rows)}
    ci = {c: i for i, c in enumerate(cols)}
    matrix = [[0] * len(cols) for _ in rows]
    for lab, p, n in counts:
        matrix[ri[lab]][ci[p]] += n
    total = sum(n for _, _, n in counts)
    agree = sum(n for lab, p, n in counts if lab == p)
    return {"rows": rows, "cols": cols, "matrix": matrix, "total": total, "agree": agree}


def labels_per_hour(db: Database, days: int = 7) -> list[dict[str, Any]]:
    """Human decisions (not undone; skips excluded) per hour and reviewer over the last ``days``
    (from ``hourly_counts``, kept by triggers: migration m006)."""
    since = (date.today() - timedelta(days=days)).isoformat()
    rows = db.execute(
        "SELECT hour, reviewer, n FROM hourly_counts WHERE hour >= ? AND n > 0 ORDER BY hour, reviewer",
        [since],
    ).fetchall()
    return [{"hour": h.replace("T", " ") + ":00", "reviewer": r, "labels": n} for h, r, n in rows]


def queue_left(db: Database, model_id: int, queue: str) -> int:
    """Images still to review in ``queue`` ('all' = every queue), from the trigger-kept counts."""
    sql = "SELECT COALESCE(SUM(n), 0) FROM pred_counts WHERE model_id = ? AND done = 0"
    params: list[Any] = [model_id]
    if queue != "all":
        sql += " AND queue = ?"
        params.append("auto" if queue == BLIND_QUEUE else queue)
    return int(db.execute(sql, params).fetchone()[0])


def decided_by(db: Database, reviewer: str, since: str | None = None) -> int:
    """Decisions (not undone, skips excluded) by ``reviewer``, optionally since an ISO time."""
    sql = (
        "SELECT COUNT(*) FROM label_events e WHERE e.reviewer = ? AND e.source = 'human' "
        "AND e.action IN ('accept', 'relabel', 'several', 'unusable') "
        "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id)"
    )
    params: list[Any] = [reviewer]
    if since:
        sql += " AND e.created_at >= ?"
        params.append(since)
    return int(db.execute(sql, params).fetchone()[0])


# ---------------------------------------------------------------- grid


def grid_candidates(
    db: Database,
    model_id: int,
    cls: str,
    reviewer: str,
    *,
    limit: int = 48,
    include_auto: bool = False,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Up to ``limit`` images predicted ``cls`` with no human label, lowest confidence first,
    with their stored thumbnail (JPEG bytes). Images claimed by another reviewer are left out;
    with ``include_auto`` the auto-accepted ones (spot check) are included."""
    now = time.time() if now is None else now
    queues = "" if include_auto else "AND p.queue != 'auto'"
    return list(
        db.query(
            "SELECT p.image_id, i.name, i.path, p.p1, p.second, p.p2, p.queue, i.thumb "
            "FROM predictions p JOIN images i ON i.id = p.image_id "
            f"WHERE p.model_id = ? AND p.pred = ? AND p.done = 0 {queues} "
            "AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.image_id = p.image_id "
            "AND c.reviewer != ? AND c.expires_at > ?) "
            "ORDER BY p.p1 ASC, p.image_id LIMIT ?",
            [model_id, cls, reviewer, now, limit],
        )
    )


def grid_rows(db: Database, model_id: int, image_ids: Sequence[int], reviewer: str, *,
              now: float | None = None) -> dict[int, dict[str, Any]]:
    """Of ``image_ids``, those Grid confirm can offer ``reviewer`` now — predicted by model
    ``model_id``, no human or imported label, not on another reviewer's screen — as
    :func:`grid_candidates` rows, by image id (e.g. an image's neighbourhood)."""
    now = time.time() if now is None else now
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    people = ",".join("?" * len(HUMAN_SOURCES))
    out: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        marks = ",".join("?" * len(chunk))
        out.update({r["image_id"]: r for r in db.query(
            "SELECT p.image_id, i.name, i.path, p.pred, p.p1, p.second, p.p2, p.queue, i.thumb "
            "FROM predictions p JOIN images i ON i.id = p.image_id "
            f"WHERE p.model_id = ? AND p.image_id IN ({marks}) "
            "AND NOT EXISTS (SELECT 1 FROM current_labels c WHERE c.image_id = p.image_id "
            f"AND c.source IN ({people})) "
            "AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.image_id = p.image_id "
            "AND c.reviewer != ? AND c.expires_at > ?)",
            [model_id, *chunk, *HUMAN_SOURCES, reviewer, now])})
    return out


def grid_class_counts(db: Database, model_id: int, *, include_auto: bool = False) -> dict[str, int]:
    """Images with no human label per predicted class (what Grid confirm could show)."""
    queues = "" if include_auto else "AND queue != 'auto'"
    return dict(
        db.execute(
            f"SELECT pred, SUM(n) FROM pred_counts WHERE model_id = ? AND done = 0 {queues} "
            "GROUP BY pred HAVING SUM(n) > 0",
            [model_id],
        ).fetchall()
    )


def grid_claimed_by_others(
    db: Database, model_id: int, reviewer: str, *, include_auto: bool = False, now: float | None = None
) -> dict[str, int]:
    """Per predicted class, the unreviewed images another reviewer has on screen now (unexpired
    claims): what Grid confirm cannot offer ``reviewer`` at the moment. The claims table holds
    a few images per reviewer, so this is cheap to ask on every page run."""
    now = time.time() if now is None else now
    queues = "" if include_auto else "AND p.queue != 'auto'"
    return dict(
        db.execute(
            "SELECT p.pred, COUNT(*) FROM claims c JOIN predictions p ON p.image_id = c.image_id "
            f"AND p.model_id = ? WHERE c.reviewer != ? AND c.expires_at > ? AND p.done = 0 {queues} "
            "GROUP BY p.pred",
            [model_id, reviewer, now],
        ).fetchall()
    )


def thumbnail(db: Database, image_id: int) -> bytes | None:
    row = db.execute("SELECT thumb FROM images WHERE id = ?", [image_id]).fetchone()
    return row[0] if row else None


def still_open(db: Database, image_ids: list[int]) -> set[int]:
    """The subset of ``image_ids`` that still has no human or imported label."""
    if not image_ids:
        return set()
    marks = ",".join("?" * len(image_ids))
    done = {
        r[0]
        for r in db.execute(
            f"SELECT image_id FROM current_labels WHERE source != 'auto' AND image_id IN ({marks})",
            list(image_ids),
        )
    }
    return {i for i in image_ids if i not in done}


# ---------------------------------------------------------------- auto-accept error estimate


def auto_error_estimate(db: Database, model_id: int, ts: ThresholdSet) -> dict[str, Any]:
    """How often auto-accepting under ``ts`` would be wrong, measured on the images people have
    labelled independently of the model (:data:`INDEPENDENT_SQL`: human or imported labels, not
    confirmations of an auto label made while seeing it): among those that ``ts`` routes to
    ``auto``, the share whose label differs from the model's top-1 class (several/unusable count
    as errors: the auto label would be wrong for them too). Returns n, errors, rate, Wilson 95 %
    (lo, hi), per class, ``blind`` (how many of n are blind spot-checks) and
    ``confirmed_unblind`` (auto labels confirmed while seeing them: left out)."""
    expr, params = queue_sql(ts)
    # from the (fewer) labels to their predictions by primary key: CROSS JOIN fixes that order
    # (SQLite would otherwise walk all of the model's predictions: 3x slower at 1M images)
    rows = db.execute(
        "SELECT p.pred, COUNT(*), SUM(c.label != p.pred), SUM(c.context IS 'blind') "
        "FROM current_labels c CROSS JOIN predictions p ON p.image_id = c.image_id AND p.model_id = ? "
        f"WHERE {INDEPENDENT_SQL} AND ({expr}) = 'auto' GROUP BY p.pred",
        [model_id, *params],
    ).fetchall()
    labelled, unblind = db.execute(
        f"SELECT SUM({INDEPENDENT_SQL}), SUM(c.source = 'human' AND c.context IS 'auto') "
        "FROM current_labels c CROSS JOIN predictions p "
        "ON p.image_id = c.image_id AND p.model_id = ?",
        [model_id],
    ).fetchone()
    n = sum(r[1] for r in rows)
    k = sum(r[2] or 0 for r in rows)
    lo, hi = wilson(k, n)
    per = {
        cls: {"n": cnt, "errors": err or 0, "rate": (err or 0) / cnt if cnt else None}
        for cls, cnt, err, _ in rows
    }
    return {
        "n": n,
        "errors": k,
        "rate": k / n if n else None,
        "lo": lo,
        "hi": hi,
        "labelled": int(labelled or 0),
        "blind": sum(r[3] or 0 for r in rows),
        "confirmed_unblind": int(unblind or 0),
        "per_class": per,
    }
