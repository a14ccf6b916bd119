"""Calibrated thresholds: the recommended auto-accept threshold meets its error target on a
synthetic case with a known error rate, says so honestly when labels are too few, differs per
class where classes behave differently; the temperature refit and the held-out set."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import review
from core.errors import NotFound
from core.intake import random_key
from core.models import (
    apply_temperature,
    cp_upper,
    min_clean_accepted,
    recommend_accept,
    recommend_per_class,
    refit_temperature,
    risk_coverage,
    thin_curve,
)
from core.review import heldout_predictions
from core.store import now_iso, open_db

# A confident, over-confident model: 1 - c = 0.2 V^3 with V uniform on [0, 1] (most images near
# p = 1), wrong with probability 1.5 (1 - c). Among images with c >= t the error rate is then
# E[1.5 (1 - c) | c >= t] = 0.375 (1 - t), and a share ((1 - t) / 0.2)^(1/3) of them is accepted:
# the true risk and coverage of every threshold are known exactly.
SLOPE = 1.5


def true_risk(t: float, slope: float = SLOPE) -> float:
    return slope / 4 * (1 - t)


def coverage(t: float) -> float:
    return float(((1 - t) / 0.2) ** (1 / 3))


def draw(n: int, rng: np.random.Generator, slope: float = SLOPE) -> tuple[np.ndarray, np.ndarray]:
    u = 0.2 * rng.random(n) ** 3
    wrong = rng.random(n) < slope * u
    return 1 - u, ~wrong


def test_clean_record_needed_matches_the_bound():
    n = min_clean_accepted(0.02, 0.95)
    assert n == 149  # ln(0.05) / ln(0.98) = 148.3
    assert cp_upper(0, n, 0.95) <= 0.02 < cp_upper(0, n - 1, 0.95)


def test_recommended_threshold_keeps_true_error_under_target_in_95_percent_of_repetitions():
    target, reps, n = 0.02, 400, 1500
    t_star = 1 - target / (SLOPE / 4)  # lowest threshold whose true risk is ≤ target
    held, thresholds = 0, []
    for r in range(reps):
        c, ok = draw(n, np.random.default_rng(10_000 + r))
        rec = recommend_accept(c, ok, target=target, level=0.95)
        if rec.threshold is None:
            held += 1  # recommending nothing never breaks the guarantee
            continue
        thresholds.append(rec.threshold)
        held += true_risk(rec.threshold) <= target
        assert rec.risk_upper <= target and rec.n_accepted >= rec.min_accepted
    assert held / reps >= 0.93, f"guarantee held in only {held}/{reps} repetitions"
    # ... and it is useful: a threshold almost always, not far above the oracle's
    assert len(thresholds) >= 0.9 * reps
    cov = np.mean([coverage(t) for t in thresholds])
    assert cov >= 0.6 * coverage(t_star), (cov, coverage(t_star))


def test_picking_the_lowest_crossing_is_not_what_it_does():
    """The walk from the most confident stops at the first bound above target."""
    c = np.linspace(1.0, 0.5, 400)
    ok = np.ones(400, bool)
    ok[200] = ok[201] = ok[202] = ok[203] = ok[204] = ok[205] = False  # a bad stretch …
    rec = recommend_accept(c, ok, target=0.02)
    assert rec.threshold is not None and rec.threshold > c[200]
    curve = risk_coverage(c, ok)
    later_ok = [r for r in curve if r["threshold"] < c[205] and r["risk_upper"] <= 0.02]
    assert not later_ok or rec.threshold > max(r["threshold"] for r in later_ok)


def test_too_few_labels_gives_no_threshold_and_says_why():
    rng = np.random.default_rng(0)
    c, ok = rng.uniform(0.9, 1.0, 40), np.ones(40, bool)
    rec = recommend_accept(c, ok, target=0.02, level=0.95)
    assert rec.threshold is None
    assert "40 held-out labels" in rec.reason and "149" in rec.reason
    assert rec.n == 40


def test_too_many_confident_errors_gives_no_threshold():
    c = np.linspace(1.0, 0.5, 600)
    ok = np.arange(600) % 10 != 0  # 10 % wrong everywhere
    rec = recommend_accept(c, ok, target=0.02)
    assert rec.threshold is None and "errors" in rec.reason
    assert rec.risk_upper > 0.02


def test_risk_coverage_curve_counts():
    c = np.array([0.9, 0.8, 0.8, 0.6])
    ok = np.array([True, False, True, True])
    curve = risk_coverage(c, ok)
    assert [r["threshold"] for r in curve] == [0.9, 0.8, 0.6]
    assert [r["n_accepted"] for r in curve] == [1, 3, 4]
    assert [r["errors"] for r in curve] == [0, 1, 1]
    assert curve[1]["coverage"] == pytest.approx(0.75) and curve[1]["risk"] == pytest.approx(1 / 3)
    assert all(r["risk_upper"] >= r["risk"] for r in curve)


def test_per_class_thresholds_differ_where_classes_behave_differently():
    rng = np.random.default_rng(5)
    rows, y = [], []
    for k, slope, n in ((0, 0.5, 1500), (1, 5.0, 1500), (2, 1.0, 60)):  # 2: too few to stand alone
        c, ok = draw(n, rng, slope)
        for ci, good in zip(c, ok, strict=True):
            p = np.full(3, (1 - ci) / 2)
            p[k] = ci
            rows.append(p)
            y.append(k if good else (k + 1) % 3)
    recs = recommend_per_class(np.array(rows), np.array(y), ["good", "bad", "rare"], 0.02, 0.95)
    good, bad, rare = recs["good"], recs["bad"], recs["rare"]
    assert good.threshold is not None and not good.fallback
    assert bad.threshold is None or bad.threshold > good.threshold + 0.02
    assert rare.fallback and "global" in rare.reason and rare.threshold == recs["*"].threshold
    assert good.coverage > (bad.coverage if bad.threshold is not None else 0)


def test_refit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    n, k = 4000, 4
    y = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y] += 2.0
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=p) for p in true_p])  # labels drawn from the true model
    overconfident = apply_temperature(true_p, 0.5)  # the model says softmax(z / 0.5)
    t = refit_temperature(overconfident, y)
    assert t == pytest.approx(2.0, rel=0.1)
    assert refit_temperature(np.zeros((0, 3)), np.zeros(0)) == 1.0


# ---------------------------------------------------------------- from the store

CLASSES = ["fibres", "particles", "powder"]


def _seed(db, n=12):
    mid = db.execute(
        "INSERT INTO models(version, path, sha256, class_names, added_at, active) VALUES (?, ?, ?, ?, ?, 1)",
        ["m1", "/none.onnx", "x" * 64, json.dumps(CLASSES), now_iso()],
    ).lastrowid
    for i in range(n):
        sha = f"{i:064x}"
        iid = db.execute(
            "INSERT INTO images(sha256, path, name, size_bytes, width, height, bit_depth, raw_dtype, "
            "added_at) VALUES (?, ?, ?, 1, 8, 8, 8, 'uint8', ?)",
            [sha, f"/img/{i:03d}.tif", f"{i:03d}.tif", now_iso()]).lastrowid
        p = [0.1, 0.1, 0.1]
        p[i % 3] = 0.8
        db.execute(
            "INSERT INTO predictions(image_id, model_id, pred, p1, second, p2, margin, entropy, probs, "
            "queue, reason, rnd, created_at) VALUES (?, ?, ?, 0.8, ?, 0.1, 0.7, 0, ?, 'uncertain', '', ?, ?)",
            [iid, mid, CLASSES[i % 3], CLASSES[(i + 1) % 3], json.dumps(p), random_key(sha), now_iso()])
    db.conn.commit()
    return mid


def test_heldout_predictions_excludes_training_images_and_foreign_labels(tmp_path):
    db = open_db(tmp_path / "t.db")
    mid = _seed(db)
    for i in range(1, 9):
        review.decide(db, i, "relabel", reviewer="ann", label=CLASSES[i % 3])
    review.decide(db, 9, "unusable", reviewer="ann")
    review.import_labels(db, [(10, "particles")])
    h = heldout_predictions(db, mid)
    assert h.image_ids == list(range(1, 9)) + [10]
    assert h.skipped == {"unusable": 1}
    probs, y, ids = h  # unpacks as a triple
    assert ids == h.image_ids
    assert probs.shape == (9, 3) and list(y[:3]) == [1, 2, 0]
    assert np.allclose(probs[0], [0.8, 0.1, 0.1])  # image 1

    db.execute("CREATE TABLE IF NOT EXISTS model_images (model_id INTEGER, image_id INTEGER, role TEXT)")
    cols = {r[1]: r for r in db.execute("PRAGMA table_info(model_images)")}
    extra = [c for c, r in cols.items() if r[3] and r[4] is None and c not in ("model_id", "image_id", "role")]
    assert not extra, f"model_images needs more columns than this test fills: {extra}"
    db.conn.executemany("INSERT INTO model_images(model_id, image_id, role) VALUES (?, ?, ?)",
                        [(mid, 2, "train"), (mid, 3, "train"), (mid, 4, "holdout")])
    db.conn.commit()
    h = heldout_predictions(db, mid)
    assert 2 not in h.image_ids and 3 not in h.image_ids and 4 in h.image_ids
    assert h.excluded_train == 2 and len(h) == 7
    with pytest.raises(NotFound):
        heldout_predictions(db, 999)


def test_thinned_curve_keeps_its_ends_and_order():
    """The page draws at most 400 points of a curve with one point per distinct confidence."""
    rng = np.random.default_rng(3)
    conf = rng.uniform(0, 1, 5000)
    curve = risk_coverage(conf, rng.uniform(0, 1, 5000) < conf)
    thin = thin_curve(curve, 400)
    assert len(curve) > 400 and len(thin) <= 400
    assert thin[0] == curve[0] and thin[-1] == curve[-1]
    assert [r["coverage"] for r in thin] == sorted(r["coverage"] for r in thin)
    assert thin_curve(curve[:10], 400) == curve[:10]
