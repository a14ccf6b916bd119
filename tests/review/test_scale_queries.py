"""The queries rewritten for scale (bench/scale.py) give exactly what the original SQL gave, and
use the indexes of migration m002 (plans checked on a small database: without ANALYZE, SQLite
chooses the same plan at any size).

The originals are kept here, verbatim, as the oracle. The data is built to be hard on them:
many ties in every sort key, duplicate and unicode paths, claims, skips, p1 exactly on bin
edges and one ulp either side, queues large and small (both plans of the 'file' order).
"""

from __future__ import annotations

import json
import math
import random
import time
from datetime import date, timedelta

import pytest

from core import review
from core.review import QUEUES, next_images
from core.store import now_iso, open_db, write_tx

CLASSES = ["fibres", "films", "particles", "powder", "tips"]
ORDER_SQL = {  # core.labels before the rewrite
    "margin": "p.margin ASC, p.image_id",
    "confidence": "p.p1 ASC, p.image_id",
    "entropy": "p.entropy DESC, p.image_id",
    "file": "i.path, p.image_id",
    "random": "p.rnd, p.image_id",
}


def old_next_ids(db, queue: str, reviewer: str, n: int, order: str, model_id: int) -> list[int]:
    qfilter = "" if queue == "all" else "AND p.queue = ?"
    qparams = [] if queue == "all" else [queue]
    base = (
        "SELECT p.image_id FROM predictions p JOIN images i ON i.id = p.image_id "
        f"WHERE p.model_id = ? {qfilter} AND p.done = 0 "
        "AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.image_id = p.image_id AND c.reviewer != ?) "
    )
    ids = [r[0] for r in db.execute(
        base + "AND NOT EXISTS (SELECT 1 FROM skips s WHERE s.image_id = p.image_id "
        f"AND s.reviewer = ?) ORDER BY {ORDER_SQL[order]} LIMIT ?",
        [model_id, *qparams, reviewer, reviewer, n])]
    if len(ids) < n:
        ids += [r[0] for r in db.execute(
            base + "AND EXISTS (SELECT 1 FROM skips s WHERE s.image_id = p.image_id "
            "AND s.reviewer = ?) ORDER BY (SELECT at FROM skips s WHERE s.image_id = "
            "p.image_id AND s.reviewer = ?) LIMIT ?",
            [model_id, *qparams, reviewer, reviewer, reviewer, n - len(ids)])]
    return ids


def old_histogram(db, model_id: int, bins: int) -> list[dict]:
    rows = db.execute(
        "SELECT MIN(CAST(p1 * ? AS INTEGER), ? - 1) AS b, queue, COUNT(*) FROM predictions "
        "WHERE model_id = ? GROUP BY b, queue ORDER BY b, queue",
        [bins, bins, model_id]).fetchall()
    return [{"lo": b / bins, "hi": (b + 1) / bins, "mid": (b + 0.5) / bins, "queue": q, "count": n}
            for b, q, n in rows]


def old_confusion_counts(db, model_id: int) -> list[tuple]:
    return sorted(db.execute(
        "SELECT c.label, p.pred, COUNT(*) FROM current_labels c "
        "JOIN predictions p ON p.image_id = c.image_id AND p.model_id = ? "
        "WHERE c.source IN ('human', 'import') GROUP BY c.label, p.pred", [model_id]).fetchall())


def old_search(db, f: review.RefFilter, page: int, model_id: int) -> tuple[list[dict], int]:
    where, params = [], []
    if f.classes:
        where.append(f"c.label IN ({','.join('?' * len(f.classes))})")
        params += list(f.classes)
    if f.reviewer:
        where.append("c.reviewer = ?")
        params.append(f.reviewer)
    if f.sources:
        where.append(f"c.source IN ({','.join('?' * len(f.sources))})")
        params += list(f.sources)
    if f.date_from:
        where.append("c.updated_at >= ?")
        params.append(f.date_from.isoformat())
    if f.date_to:
        where.append("c.updated_at < ?")
        params.append((f.date_to + timedelta(days=1)).isoformat())
    if f.disagree:
        where.append("p.pred IS NOT NULL AND p.pred != c.label")
    if f.text.strip():
        esc = f.text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("i.name LIKE ? ESCAPE '\\'")
        params.append(f"%{esc}%")
    base = (
        "FROM current_labels c JOIN images i ON i.id = c.image_id "
        "LEFT JOIN predictions p ON p.image_id = c.image_id AND p.model_id = ? "
        f"WHERE {' AND '.join(where) or '1'}"
    )
    total = db.execute(f"SELECT COUNT(*) {base}", [model_id, *params]).fetchone()[0]
    rows = list(db.query(
        "SELECT c.image_id, i.name, c.label, c.source, c.reviewer, c.updated_at, "
        "p.pred AS model_pred, p.p1 AS model_p, i.path "
        f"{base} ORDER BY c.updated_at DESC, c.image_id DESC LIMIT ? OFFSET ?",
        [model_id, *params, 100, page * 100]))
    return rows, total


def _p1_values(rng: random.Random) -> float:
    """Probabilities that sit on bin edges, one ulp off them, at 0 and 1, or anywhere."""
    u = rng.random()
    if u < 0.3:
        bins = rng.choice([3, 7, 10, 20, 33])
        x = rng.randint(0, bins) / bins
        return min(1.0, max(0.0, rng.choice([x, math.nextafter(x, 2), math.nextafter(x, -1)])))
    if u < 0.4:
        return rng.choice([0.0, 1.0, 0.5, 0.7, 0.15, 0.35])
    return round(rng.random(), rng.choice([1, 2, 6]))


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """3,000 images, two models, labels of every source, claims and skips."""
    db = open_db(tmp_path_factory.mktemp("scale") / "s.db")
    rng = random.Random(42)
    stamp = now_iso()
    with write_tx(db):
        for mid, active in ((1, 1), (2, 0)):
            db.execute("INSERT INTO models(id, version, path, sha256, class_names, added_at, active) "
                       "VALUES (?, ?, '/m.onnx', ?, ?, ?, ?)",
                       [mid, f"m{mid}", f"{mid:064x}", json.dumps(CLASSES), stamp, active])
        for i in range(1, 3001):
            folder = rng.choice(["run1", "run2", "Run1", "ébauche", "zz"])
            name = rng.choice([f"img_{i % 700:04d}.tif", f"img_{i:05d}.tif", "same.tif", "Ω.tif"])
            db.execute("INSERT INTO images(id, sha256, path, name, size_bytes, width, height, "
                       "bit_depth, raw_dtype, added_at) VALUES (?, ?, ?, ?, 1, 8, 8, 8, 'uint8', ?)",
                       [i, f"{i:064x}", f"/data/{folder}/{name}", name, stamp])
            for mid in (1, 2):
                if mid == 2 and i % 3 == 0:
                    continue
                p1 = _p1_values(rng)
                p2 = round(rng.uniform(0, min(p1, 1 - p1)), rng.choice([1, 2]))
                k = rng.randrange(len(CLASSES))
                queue = rng.choices(QUEUES, weights=[6, 3, 1] if i % 2 else [1, 1, 8])[0]
                db.execute(
                    "INSERT INTO predictions(image_id, model_id, pred, p1, second, p2, margin, entropy, "
                    "probs, queue, reason, done, rnd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '[]', ?, "
                    "'', ?, ?, ?)",
                    [i, mid, CLASSES[k], p1, CLASSES[(k + 1) % 5] if rng.random() < 0.9 else None, p2,
                     round(p1 - p2, 1), round(rng.random(), 1), queue, int(rng.random() < 0.2),
                     rng.randrange(50), stamp])
        t0 = time.time()
        for i in rng.sample(range(1, 3001), 900):  # labels of every source, over two weeks
            src = rng.choice(["human", "human", "import", "auto"])
            day = (date.today() - timedelta(days=rng.randrange(14))).isoformat()
            ev = db.execute(
                "INSERT INTO label_events(image_id, label, action, source, reviewer, created_at) "
                "VALUES (?, ?, 'accept', ?, ?, ?)",
                [i, rng.choice(CLASSES + ["several"]), src, rng.choice(["ann", "bob", "auto"]),
                 f"{day}T{rng.randrange(24):02d}:00:00.000Z"]).lastrowid
            db.execute("INSERT INTO current_labels(image_id, label, action, source, reviewer, event_id, "
                       "updated_at) SELECT image_id, label, action, source, reviewer, id, created_at "
                       "FROM label_events WHERE id = ?", [ev])
        for i in rng.sample(range(1, 3001), 300):
            db.execute("INSERT INTO claims(image_id, reviewer, expires_at) VALUES (?, ?, ?)",
                       [i, rng.choice(["ann", "bob", "cy"]), t0 + 3600])
        for i in rng.sample(range(1, 3001), 200):
            db.execute("INSERT INTO skips(image_id, reviewer, at) VALUES (?, ?, ?)",
                       [i, rng.choice(["ann", "bob"]), f"2026-01-{rng.randrange(1, 28):02d}"])
    return db


@pytest.mark.parametrize("order", list(ORDER_SQL))
@pytest.mark.parametrize("queue", ["uncertain", "mixed", "auto", "all"])
def test_next_images_same_rows_as_the_single_query(big, queue, order):
    for reviewer in ("ann", "bob", "dee"):
        for n in (1, 7, 50, 500, 3000):
            with write_tx(big):  # next_images' first step, before its query (claims it made expire)
                big.execute("DELETE FROM claims WHERE expires_at <= ?", [time.time()])
            want = old_next_ids(big, queue, reviewer, n, order, 1)
            got = [r["image_id"] for r in next_images(big, queue, reviewer, n=n, order=order,
                                                      claim_seconds=0)]
            assert got == want, (queue, order, reviewer, n)


@pytest.mark.parametrize("bins", [1, 3, 7, 10, 20, 33])
@pytest.mark.parametrize("model_id", [1, 2])
def test_histogram_same_as_grouping_by_the_formula(big, bins, model_id):
    assert review.confidence_histogram(big, model_id, bins=bins) == old_histogram(big, model_id, bins)


def test_histogram_values_outside_zero_one(tmp_path):
    db = open_db(tmp_path / "h.db")
    with write_tx(db):
        db.execute("INSERT INTO models(id, version, path, sha256, class_names, added_at, active) "
                   "VALUES (1, 'm', '/m', 'x', '[\"a\"]', 'now', 1)")
        for i, p1 in enumerate([-2.0, -0.3, -1e-12, 0.0, 1.0, 1.5, 1e300], start=1):
            db.execute("INSERT INTO images(id, sha256, path, name, size_bytes, width, height, bit_depth, "
                       "raw_dtype, added_at) VALUES (?, ?, '/x', 'x', 1, 1, 1, 8, 'u', 'now')", [i, str(i)])
            db.execute("INSERT INTO predictions(image_id, model_id, pred, p1, p2, margin, entropy, probs, "
                       "queue, reason, rnd, created_at) VALUES (?, 1, 'a', ?, 0, 0, 0, '[]', 'uncertain', "
                       "'', 0, 'now')", [i, p1])
    for bins in (1, 4, 20):
        assert review.confidence_histogram(db, 1, bins=bins) == old_histogram(db, 1, bins)


@pytest.mark.parametrize("model_id", [1, 2])
def test_confusion_same_counts(big, model_id):
    cm = review.confusion(big, model_id)
    got = sorted((r, c, n) for i, r in enumerate(cm["rows"]) for j, c in enumerate(cm["cols"])
                 if (n := cm["matrix"][i][j]))
    assert got == old_confusion_counts(big, model_id)


@pytest.mark.parametrize(
    "f",
    [
        review.RefFilter(),
        review.RefFilter(disagree=True),
        review.RefFilter(classes=["fibres", "several"], disagree=True),
        review.RefFilter(sources=["human"], reviewer="ann"),
        review.RefFilter(text="img_00"),
        review.RefFilter(text="%_", disagree=True),
        review.RefFilter(date_from=date.today() - timedelta(days=3), date_to=date.today()),
        review.RefFilter(sources=["auto", "import"], text="Ω", classes=["tips"]),
    ],
    ids=lambda f: repr(f)[9:60],
)
@pytest.mark.parametrize("model_id", [1, 2])
def test_reference_search_same_page_and_total(big, f, model_id):
    for page in (0, 2):
        assert review.search_reference(big, f, page=page, model_id=model_id) == old_search(big, f, page, model_id)


# ---------------------------------------------------------------- plans


def plan(db, sql: str, params=()) -> list[str]:
    return [r[3] for r in db.execute("EXPLAIN QUERY PLAN " + sql, params)]


def traced_plans(db, fn) -> list[str]:
    seen: list[str] = []
    db.conn.set_trace_callback(seen.append)
    try:
        fn()
    finally:
        db.conn.set_trace_callback(None)
    return [line for sql in seen if sql.lstrip().upper().startswith("SELECT") for line in plan(db, sql)]


@pytest.mark.parametrize("order", ["margin", "confidence", "entropy", "random"])
def test_queue_orders_walk_an_index(big, order):
    lines = traced_plans(big, lambda: next_images(big, "uncertain", "zed", n=50, order=order,
                                                  claim_seconds=0))
    assert any("USING INDEX idx_pred_" in line and "queue=? AND done=?" in line for line in lines), lines
    assert not any(line == "USE TEMP B-TREE FOR ORDER BY" for line in lines), lines


def test_file_order_walks_images_by_path_when_the_queue_is_large(big):
    lines = traced_plans(big, lambda: next_images(big, "uncertain", "zed", n=5, order="file",
                                                  claim_seconds=0))
    assert "SCAN i USING COVERING INDEX idx_images_path" in lines, lines
    assert not any(line == "USE TEMP B-TREE FOR ORDER BY" for line in lines), lines


@pytest.mark.parametrize("fn", [
    lambda db: review.overview(db),
    lambda db: review.per_class(db),
    lambda db: review.confidence_histogram(db, 1),
    lambda db: review.labels_per_hour(db),
    lambda db: review.search_reference(db, review.RefFilter()),
], ids=["overview", "per_class", "histogram", "labels_per_hour", "reference"])
def test_overview_statistics_never_read_the_predictions_table(big, fn):
    """Whole-model passes over predictions (and the label history) use covering indexes only;
    reading table rows is for single images (a page of 100 looks up its 100 predictions)."""
    lines = traced_plans(big, lambda: fn(big))
    for line in lines:
        table = line.split()[1] if line.startswith(("SCAN", "SEARCH")) else ""
        if table in ("predictions", "p", "d", "label_events", "e") and "image_id=?" not in line:
            assert "COVERING INDEX" in line, line


def test_export_pages_walk_the_labels_by_id(big, tmp_path):
    """Keyset pages of an export read their own rows only (no re-sort of every label per page)."""
    from core.datasets import export_labels

    seen: list[str] = []
    big.conn.set_trace_callback(seen.append)
    try:
        export_labels(big, tmp_path / "out", fmt="csv", include_auto=True)
    finally:
        big.conn.set_trace_callback(None)
    pages = [sql for sql in seen if "FROM current_labels c" in sql and "image_id >" in sql]
    assert len(pages) >= 2
    for sql in pages:
        lines = plan(big, sql)
        assert lines[0] == "SEARCH c USING INTEGER PRIMARY KEY (rowid>?)", lines
        assert not any("TEMP B-TREE" in line for line in lines), lines
