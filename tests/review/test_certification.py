"""Auto-accept only where it is earned: a model is provisional (no auto labels, confident
predictions wait unverified) until held-out human labels certify a threshold, or an
administrator forces one (recorded); unfamiliar images are never auto-accepted."""

import json

import numpy as np
import pytest

from core.access import User
from core.errors import Forbidden, InvalidValue
from core.intake import store_predictions
from core.review import (
    CERTIFIED,
    FORCED,
    PROVISIONAL,
    certification,
    certification_history,
    certify,
    decide,
    force_threshold,
    guard_counts,
    review_item,
    revoke,
)
from core.store import now_iso, open_db

CLASSES = ["fibres", "particles", "powder"]


def auto_labels(db) -> int:
    return db.execute("SELECT COUNT(*) FROM current_labels WHERE source = 'auto'").fetchone()[0]


@pytest.fixture
def db(tmp_path):
    """An active model and 120 images: 100 confident (p1 0.90–0.99), 20 unsure, 5 of the
    confident ones flagged unfamiliar; predictions through the one writer."""
    d = open_db(tmp_path / "c.db")
    mid = d.execute(
        "INSERT INTO models(version, path, sha256, class_names, added_at, active) VALUES (?, ?, ?, ?, ?, 1)",
        ["m1", "/none.onnx", "x" * 64, json.dumps(CLASSES), now_iso()]).lastrowid
    items, probs, ood, why = [], [], [], []
    rng = np.random.default_rng(0)
    for i in range(120):
        sha = f"{i:064x}"
        iid = d.execute(
            "INSERT INTO images(sha256, path, name, size_bytes, width, height, bit_depth, raw_dtype, "
            "added_at) VALUES (?, ?, ?, 1, 8, 8, 8, 'uint8', ?)",
            [sha, f"/img/{i:03d}.tif", f"{i:03d}.tif", now_iso()]).lastrowid
        p1 = rng.uniform(0.90, 0.99) if i < 100 else 0.5
        rest = (1 - p1) / 2 if i < 100 else 0.25
        p = np.full(3, rest)
        p[i % 3] = p1
        items.append((iid, sha))
        probs.append(p)
        unfamiliar = 95 <= i < 100
        ood.append(2.0 if unfamiliar else 0.4)
        why.append("unlike anything this model was trained on (unfamiliarity 2.0)" if unfamiliar else None)
    store_predictions(d, mid, CLASSES, items, np.stack(probs), ood=ood, unfamiliar=why)
    d.model_id = mid
    return d


def confirm(db, ids, reviewer="ana"):
    for i in ids:
        decide(db, i, "accept", reviewer=reviewer)


def test_a_new_model_is_provisional_and_writes_no_auto_label(db):
    from core.review import sync_auto_labels

    sync_auto_labels(db, db.model_id)
    c = certification(db)
    assert c.state == PROVISIONAL and c.n_labels == 0 and c.more_labels == 149
    assert auto_labels(db) == 0
    held = guard_counts(db)
    assert held == {"unfamiliar": 5, "confident_unverified": 95, "auto_labelled": 0}
    item = review_item(db, 1, db.model_id)
    assert item["queue"] == "auto" and "confident, unverified" in item["reason"]
    assert "PROVISIONAL" in c.summary() and "149 more" in c.summary()


def test_unfamiliar_images_go_to_uncertain_with_the_reason(db):
    q, reason = db.execute("SELECT queue, reason FROM predictions WHERE image_id = 96").fetchone()
    assert q == "uncertain" and reason.startswith("unlike anything this model was trained on")
    assert "unlike anything" in review_item(db, 96, db.model_id)["reason"]


def test_confirmations_certify_and_auto_labels_follow(db):
    confirm(db, range(1, 61))  # 60 confident images confirmed right: evidence
    c = certification(db, target=0.1)
    assert c.n_labels == 60 and c.more_labels == 0
    rep = certify(db, target=0.1, per_class=False)
    assert rep.applied and rep.certification.state == CERTIFIED
    t = rep.recommendations["*"].threshold
    assert t is not None
    # every unlabelled confident, familiar image at or above the certified threshold is auto-labelled
    expected = db.execute(
        "SELECT COUNT(*) FROM predictions WHERE done = 0 AND queue = 'auto' AND p1 >= ? "
        "AND unfamiliar IS NULL", [t]).fetchone()[0]
    assert expected > 0 and auto_labels(db) == expected
    assert db.execute("SELECT COUNT(*) FROM current_labels c JOIN predictions p USING (image_id) "
                      "WHERE c.source = 'auto' AND p.unfamiliar IS NOT NULL").fetchone()[0] == 0
    rec = certification_history(db)[-1]
    assert rec["state"] == CERTIFIED and rec["n_labels"] == 60 and rec["by"] == "cli"
    assert "CERTIFIED" in certification(db).summary()


def test_too_few_labels_certify_nothing(db):
    confirm(db, range(1, 11))
    rep = certify(db)  # 2 % needs ≥ 149
    assert rep.certification.state == PROVISIONAL and auto_labels(db) == 0
    assert certification_history(db)[-1]["state"] == "refused"


def test_wrong_confident_labels_refuse_certification(db):
    for i in range(1, 61):  # the model is wrong on a third of its confident images
        if i % 3 == 0:
            decide(db, i, "relabel", label="powder" if CLASSES[(i - 1) % 3] != "powder" else "fibres",
                   reviewer="ana")
        else:
            decide(db, i, "accept", reviewer="ana")
    assert certify(db, target=0.1).certification.state == PROVISIONAL
    assert auto_labels(db) == 0


def test_force_is_an_override_recorded_and_revocable(db):
    with pytest.raises(Forbidden):
        force_threshold(db, 0.9, by=User("bob", admin=False))
    with pytest.raises(InvalidValue):
        force_threshold(db, 1.5)
    c = force_threshold(db, 0.95, note="our own test set says so", by=User("ada", admin=True))
    assert c.state == FORCED and "FORCED by ada" in c.summary() and "our own test set" in c.summary()
    n = db.execute("SELECT COUNT(*) FROM predictions WHERE queue = 'auto' AND p1 >= 0.95").fetchone()[0]
    assert n > 0 and auto_labels(db) == n
    assert certification_history(db)[-1]["by"] == "ada"
    c = revoke(db, by=User("ada", admin=True))
    assert c.state == PROVISIONAL and auto_labels(db) == 0


def test_a_forced_class_only_labels_that_class(db):
    force_threshold(db, 0.9, "fibres")
    labelled = {r[0] for r in db.execute("SELECT label FROM current_labels WHERE source = 'auto'")}
    assert labelled == {"fibres"}
    assert certification(db).state == FORCED
