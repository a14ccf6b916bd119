"""core.stats: overview numbers, chart data, grid candidates, the reference-set search and the
auto-accept error estimate — on rows built in code."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

import pytest

from core import images, models, review
from core.review import GLOBAL, Thresholds
from core.store import now_iso, open_db

CLASSES = ["fibres", "particles", "powder"]


def add_model(db, version="m1", active=True) -> int:
    return db.execute(
        "INSERT INTO models(version, path, sha256, class_names, added_at, active) VALUES (?, ?, ?, ?, ?, ?)",
        [version, "/none.onnx", version * 8, json.dumps(CLASSES), now_iso(), int(active)],
    ).lastrowid


def add_image(db, model_id, i, pred, p1, second=None, p2=0.0, queue="uncertain", name=None) -> int:
    image_id = db.execute(
        "INSERT INTO images(sha256, path, name, size_bytes, width, height, bit_depth, raw_dtype, "
        "added_at, thumb) VALUES (?, ?, ?, 1, 8, 8, 8, 'uint8', ?, ?)",
        [f"{i:064x}", f"/img/{name or f'{i:04d}.tif'}", name or f"{i:04d}.tif", now_iso(), b"jpeg%d" % i],
    ).lastrowid
    probs = [0.0] * len(CLASSES)
    probs[CLASSES.index(pred)] = p1
    if second:
        probs[CLASSES.index(second)] = p2
    db.execute(
        "INSERT INTO predictions(image_id, model_id, pred, p1, second, p2, margin, entropy, probs, "
        "queue, reason, rnd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, '', ?, ?)",
        [image_id, model_id, pred, p1, second, p2, p1 - p2, json.dumps(probs), queue, i, now_iso()],
    )
    return image_id


@pytest.fixture
def db():
    return open_db(":memory:")


@pytest.fixture
def seeded(db):
    """12 images: p1 from 0.35 to 0.90 in steps of 0.05; class by i % 3; queue by p1."""
    m = add_model(db)
    ids = []
    for i in range(12):
        p1 = round(0.35 + 0.05 * i, 2)
        ids.append(add_image(db, m, i, CLASSES[i % 3], p1, CLASSES[(i + 1) % 3], round(1 - p1, 2) / 2,
                             queue="auto" if p1 >= 0.7 else "uncertain"))
    db.conn.commit()
    return db, m, ids


def test_empty_database_has_zero_everything(db):
    ov = review.overview(db)
    assert ov["images"] == 0 and ov["model_id"] is None
    assert ov["queues"] == {"uncertain": 0, "mixed": 0, "auto": 0}
    assert review.per_class(db) == []
    assert review.search_reference(db) == ([], 0)
    assert review.reference_facets(db) == {"labels": [], "reviewers": []}


def test_overview_counts_queues_and_label_sources(seeded):
    db, _m, ids = seeded
    review.decide(db, ids[0], "accept", reviewer="ann")
    review.import_labels(db, [(ids[1], "powder")])
    ov = review.overview(db)
    assert (ov["images"], ov["predicted"], ov["human"], ov["imported"]) == (12, 12, 1, 1)
    assert ov["queues"] == {"uncertain": 5, "mixed": 0, "auto": 5}


def test_per_class_puts_model_classes_first_then_other_labels(seeded):
    db, _m, ids = seeded
    review.decide(db, ids[0], "unusable", reviewer="ann")
    rows = review.per_class(db)
    assert [r["class"] for r in rows] == CLASSES + ["unusable"]
    assert sum(r["predicted"] for r in rows) == 12
    assert rows[-1]["human"] == 1


def test_confidence_histogram_bins_p1_by_queue(seeded):
    db, m, _ = seeded
    hist = review.confidence_histogram(db, m, bins=10)
    assert sum(h["count"] for h in hist) == 12
    assert {h["queue"] for h in hist if h["lo"] >= 0.7} == {"auto"}
    assert all(0 <= h["lo"] < h["hi"] <= 1 for h in hist)


def test_confidence_histogram_puts_p1_of_one_in_the_last_bin(db):
    m = add_model(db)
    add_image(db, m, 0, "fibres", 1.0, queue="auto")
    assert review.confidence_histogram(db, m, bins=20)[0]["hi"] == 1.0


def test_confusion_matrix_rows_people_columns_model(seeded):
    db, m, ids = seeded
    review.decide(db, ids[0], "accept", reviewer="ann")  # fibres/fibres
    review.decide(db, ids[1], "relabel", reviewer="ann", label="fibres")  # fibres/particles
    review.decide(db, ids[2], "several", reviewer="ann")
    cm = review.confusion(db, m)
    assert cm["rows"] == CLASSES + ["several"] and cm["cols"] == CLASSES
    assert cm["matrix"][0][0] == 1 and cm["matrix"][0][1] == 1
    assert cm["matrix"][3][2] == 1
    assert (cm["total"], cm["agree"]) == (3, 1)


def test_labels_per_hour_leaves_out_skips_and_undone(seeded):
    db, _m, ids = seeded
    review.decide(db, ids[0], "accept", reviewer="ann")
    review.decide(db, ids[1], "accept", reviewer="ann")
    review.decide(db, ids[2], "skip", reviewer="ann")
    review.decide(db, ids[3], "accept", reviewer="bob")
    review.undo_last(db, "bob")
    rows = review.labels_per_hour(db)
    assert {r["reviewer"]: r["labels"] for r in rows} == {"ann": 2}
    assert review.decided_by(db, "ann") == 2 and review.decided_by(db, "bob") == 0


@pytest.mark.parametrize("queue,expected", [("uncertain", 7), ("auto", 5), ("mixed", 0), ("all", 12)])
def test_queue_left(seeded, queue, expected):
    db, m, _ = seeded
    assert review.queue_left(db, m, queue) == expected


def test_grid_candidates_lowest_confidence_first_without_others_claims(seeded):
    db, m, _ids = seeded
    rows = review.grid_candidates(db, m, "fibres", "ann")
    assert [r["p1"] for r in rows] == sorted(r["p1"] for r in rows)
    assert all(r["queue"] != "auto" for r in rows)
    assert rows[0]["thumb"].startswith(b"jpeg")
    with_auto = review.grid_candidates(db, m, "fibres", "ann", include_auto=True)
    assert len(with_auto) > len(rows)
    review.next_images(db, "uncertain", "bob", n=12)  # bob holds every uncertain image
    assert review.grid_candidates(db, m, "fibres", "ann") == []
    assert review.grid_candidates(db, m, "fibres", "bob")
    assert review.grid_candidates(db, m, "fibres", "ann", now=time.time() + 10_000)


def test_still_open_drops_human_labelled(seeded):
    db, _m, ids = seeded
    review.decide(db, ids[0], "accept", reviewer="ann")
    assert review.still_open(db, ids[:3]) == set(ids[1:3])
    assert review.still_open(db, []) == set()


def test_thumbnail(seeded):
    db, _, ids = seeded
    assert review.thumbnail(db, ids[3]) == b"jpeg3"
    assert review.thumbnail(db, 99_999) is None


# ---------------------------------------------------------------- reference set


@pytest.fixture
def reference(db):
    """250 labelled images: imported, human (two reviewers), and auto."""
    m = add_model(db)
    ids = [add_image(db, m, i, CLASSES[i % 3], 0.9, name=f"run{i // 100}_{i:03d}.tif") for i in range(250)]
    db.conn.commit()
    review.import_labels(db, [(i, CLASSES[k % 3]) for k, i in enumerate(ids[:100])])
    for k, i in enumerate(ids[100:200]):
        review.decide(db, i, "relabel", reviewer="ann" if k % 2 else "bob", label=CLASSES[(k + 2) % 3])
    db.execute("UPDATE predictions SET queue = 'auto'")
    review.force_threshold(db, 0.7, model_id=m, note="tests: auto labels allowed")
    review.sync_auto_labels(db, m)
    return db, m, ids


def test_reference_pages_of_100_with_total(reference):
    db, _, _ = reference
    rows, total = review.search_reference(db)
    assert (len(rows), total) == (100, 250)
    last, total = review.search_reference(db, page=2)
    assert (len(last), total) == (50, 250)
    seen = {r["image_id"] for p in range(3) for r in review.search_reference(db, page=p)[0]}
    assert len(seen) == 250, "pages do not overlap"


@pytest.mark.parametrize(
    "f,expected",
    [
        (review.RefFilter(sources=["import"]), 100),
        (review.RefFilter(sources=["auto"]), 50),
        (review.RefFilter(reviewer="ann"), 50),
        (review.RefFilter(classes=["fibres"], sources=["human"]), 33),
        (review.RefFilter(disagree=True), 100),  # every human relabel picked another class
        (review.RefFilter(text="run0_"), 100),
        (review.RefFilter(text="RUN2"), 50),
        (review.RefFilter(text="%"), 0),  # LIKE wildcards are literal
        (review.RefFilter(date_from=date.today(), date_to=date.today()), 250),
        (review.RefFilter(date_to=date.today() - timedelta(days=1)), 0),
    ],
)
def test_reference_filters(reference, f, expected):
    db, _, _ = reference
    assert review.search_reference(db, f)[1] == expected


def test_reference_facets(reference):
    db, _, _ = reference
    fac = review.reference_facets(db)
    assert fac["labels"] == sorted(CLASSES)
    assert fac["reviewers"] == ["ann", "auto", "bob", "import"]


# ---------------------------------------------------------------- error estimate


@pytest.mark.parametrize(
    "k,n,lo,hi",
    [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (1, 100, 0.0018, 0.0545)],
)
def test_wilson_interval(k, n, lo, hi):
    a, b = models.wilson(k, n)
    assert a == pytest.approx(lo, abs=1e-4) and b == pytest.approx(hi, abs=1e-4)


def test_wilson_without_data_is_the_whole_range():
    assert models.wilson(0, 0) == (0.0, 1.0)


def test_auto_error_estimate_counts_only_images_that_would_be_auto(seeded):
    db, m, ids = seeded  # p1 = 0.35 + 0.05 i
    review.decide(db, ids[10], "accept", reviewer="ann")  # p1 0.85, right
    review.decide(db, ids[11], "relabel", reviewer="ann", label="fibres")  # p1 0.90, pred powder: wrong
    review.decide(db, ids[1], "relabel", reviewer="ann", label="fibres")  # p1 0.40: never auto
    est = review.auto_error_estimate(db, m, {GLOBAL: Thresholds(accept=0.8, cooccur=1.0, mixed_mass=1.1)})
    assert (est["n"], est["errors"], est["rate"], est["labelled"]) == (2, 1, 0.5, 3)
    assert est["lo"] < 0.5 < est["hi"]
    assert est["per_class"]["powder"] == {"n": 1, "errors": 1, "rate": 1.0}
    est = review.auto_error_estimate(db, m, {GLOBAL: Thresholds(accept=0.3, cooccur=1.0, mixed_mass=1.1)})
    assert (est["n"], est["errors"]) == (3, 2)
    none = review.auto_error_estimate(db, m, {GLOBAL: Thresholds(accept=0.95)})
    assert none["n"] == 0 and none["rate"] is None and (none["lo"], none["hi"]) == (0.0, 1.0)


def test_auto_error_estimate_honours_per_class_thresholds(seeded):
    db, m, ids = seeded
    review.decide(db, ids[11], "relabel", reviewer="ann", label="fibres")  # pred powder, p1 0.90
    ts = {GLOBAL: Thresholds(accept=0.5, cooccur=1.0, mixed_mass=1.1),
          "powder": Thresholds(accept=0.95, cooccur=1.0, mixed_mass=1.1)}
    assert review.auto_error_estimate(db, m, ts)["n"] == 0


# ---------------------------------------------------------------- formatting


@pytest.mark.parametrize(
    "m,text",
    [(2.35e-9, "2.35 nm"), (5.12e-6, "5.12 µm"), (4.1e-7, "410 nm"), (1.5e-3, "1.50 mm"),
     (12.5e-9, "12.5 nm"), (3e-12, "3.00 pm"), (None, "unknown"), (0.0, "unknown"), (float("nan"), "unknown")],
)
def test_format_length(m, text):
    assert images.format_length(m) == text


def test_scale_text():
    assert images.scale_text(2e-9, 1024) == "2.00 nm/px · field width 2.05 µm"
    assert images.scale_text(None, 1024) is None


def test_grid_class_counts(seeded):
    db, m, ids = seeded
    review.decide(db, ids[0], "accept", reviewer="ann")  # a fibres image
    counts = review.grid_class_counts(db, m)
    assert sum(counts.values()) == 6 and counts["fibres"] == 2
    assert sum(review.grid_class_counts(db, m, include_auto=True).values()) == 11
