"""Label history, undo, auto-labels, claims and queues — through the core calls the app uses."""

import json
import threading

import numpy as np
import pytest

from core.errors import ClaimConflict, InvalidValue, NotFound
from core.intake import random_key
from core.review import (
    Thresholds,
    claim,
    current_label,
    decide,
    force_threshold,
    history,
    import_labels,
    next_images,
    queue_counts,
    reroute,
    set_thresholds,
    sync_auto_labels,
    undo_last,
)
from core.store import integrity_ok, now_iso, open_db

CLASSES = ["fibres", "particles", "powder"]


def seed(db, n=30, model_version="m1", active=True):
    """n images with predictions spread over the three queues (rows built in code)."""
    rng = np.random.default_rng(1)
    cur = db.execute(
        "INSERT INTO models(version, path, sha256, class_names, added_at, active) VALUES (?, ?, ?, ?, ?, ?)",
        [model_version, "/none.onnx", model_version * 8, json.dumps(CLASSES), now_iso(), int(active)],
    )
    model_id = cur.lastrowid
    for i in range(n):
        sha = f"{i:064x}"
        exists = db.execute("SELECT id FROM images WHERE sha256 = ?", [sha]).fetchone()
        if exists:
            image_id = exists[0]
        else:
            image_id = db.execute(
                "INSERT INTO images(sha256, path, name, size_bytes, width, height, bit_depth, raw_dtype, "
                "added_at) VALUES (?, ?, ?, 1, 8, 8, 8, 'uint8', ?)",
                [sha, f"/img/{i:03d}.tif", f"{i:03d}.tif", now_iso()],
            ).lastrowid
        probs = rng.dirichlet([0.5, 0.5, 0.5])
        o = np.argsort(-probs)
        p1, p2 = float(probs[o[0]]), float(probs[o[1]])
        db.execute(
            "INSERT INTO predictions(image_id, model_id, pred, p1, second, p2, margin, entropy, probs, queue, "
            "reason, rnd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, 'uncertain', '', ?, ?)",
            [image_id, model_id, CLASSES[o[0]], p1, CLASSES[o[1]], p2, p1 - p2,
             json.dumps(probs.tolist()), random_key(sha), now_iso()],
        )
    db.conn.commit()
    # these tests are about auto labels: the model may write them (as if certified)
    force_threshold(db, Thresholds().accept, model_id=model_id, note="tests: auto labels allowed")
    reroute(db, model_id)
    return model_id


@pytest.fixture
def db(tmp_path):
    d = open_db(tmp_path / "t.db")
    d.model_id = seed(d)
    return d


def test_every_prediction_in_exactly_one_queue_and_auto_labelled(db):
    counts = queue_counts(db)
    assert sum(counts.values()) == 30
    assert counts["auto"] > 0 and counts["uncertain"] + counts["mixed"] > 0
    autos = db.execute("SELECT COUNT(*) FROM current_labels WHERE source = 'auto'").fetchone()[0]
    assert autos == counts["auto"]


def test_accept_relabel_and_history(db):
    item = next_images(db, "uncertain", "ana")[0]
    ev = decide(db, item["image_id"], "accept", reviewer="ana")
    assert ev["label"] == item["pred"] and ev["source"] == "human" and ev["model_version"] == "m1"
    assert ev["prob"] == pytest.approx(item["p1"], abs=1e-6)
    decide(db, item["image_id"], "relabel", label="powder", reviewer="ana")
    assert current_label(db, item["image_id"])["label"] == "powder"
    assert [e["action"] for e in history(db, item["image_id"])] == ["accept", "relabel"]
    # a human-labelled image leaves the queue
    assert item["image_id"] not in [r["image_id"] for r in next_images(db, "uncertain", "ana", n=50)]


def test_undo_is_an_event_and_steps_back(db):
    a, b = (r["image_id"] for r in next_images(db, "all", "bo", n=2))
    decide(db, a, "several", reviewer="bo")
    decide(db, b, "unusable", reviewer="bo")
    assert undo_last(db, "bo")["image_id"] == b
    assert undo_last(db, "bo")["image_id"] == a
    for img in (a, b):
        cur = current_label(db, img)
        assert cur is None or cur["source"] == "auto"
        hist = history(db, img)
        assert hist[0]["undone"] == 1 and hist[-1]["action"] == "undo"
    assert undo_last(db, "bo") is None
    assert db.execute("SELECT COUNT(*) FROM label_events WHERE reviewer = 'bo'").fetchone()[0] == 4


def test_auto_never_overwrites_human(db):
    auto_img = db.execute("SELECT image_id, label FROM current_labels WHERE source = 'auto'").fetchone()
    decide(db, auto_img[0], "relabel", label="fibres" if auto_img[1] != "fibres" else "powder", reviewer="cy")
    set_thresholds(db, Thresholds(accept=0.0, mixed_margin=0.0, cooccur=1.0))  # everything auto
    reroute(db, db.model_id)
    cur = current_label(db, auto_img[0])
    assert cur["source"] == "human" and cur["reviewer"] == "cy"


def test_auto_labels_revoked_when_thresholds_tighten(db):
    assert db.execute("SELECT COUNT(*) FROM current_labels WHERE source='auto'").fetchone()[0] > 0
    set_thresholds(db, Thresholds(accept=1.0))
    reroute(db, db.model_id)
    assert db.execute("SELECT COUNT(*) FROM current_labels WHERE source='auto'").fetchone()[0] == 0
    revoked = db.execute("SELECT COUNT(*) FROM label_events WHERE action='undo' AND source='auto'").fetchone()[0]
    assert revoked > 0
    assert sync_auto_labels(db, db.model_id) == {"added": 0, "revoked": 0}  # idempotent


def test_import_does_not_override_human(db):
    img = next_images(db, "all", "di")[0]["image_id"]
    decide(db, img, "relabel", label="fibres", reviewer="di")
    assert import_labels(db, [(img, "powder")]) == 0
    assert current_label(db, img)["label"] == "fibres"


def test_skip_defers_to_end_of_queue(db):
    first = next_images(db, "all", "ed")[0]["image_id"]
    decide(db, first, "skip", reviewer="ed")
    ids = [r["image_id"] for r in next_images(db, "all", "ed", n=100)]
    assert ids[-1] == first and len(ids) == len(set(ids))


def test_claims_keep_reviewers_apart(db):
    a = [r["image_id"] for r in next_images(db, "all", "ann", n=5)]
    b = [r["image_id"] for r in next_images(db, "all", "ben", n=5)]
    assert not set(a) & set(b)
    with pytest.raises(ClaimConflict, match="ann"):
        decide(db, a[0], "accept", reviewer="ben")
    # the same reviewer sees their own claims again (page refresh)
    assert [r["image_id"] for r in next_images(db, "all", "ann", n=5)] == a


def test_expired_claims_are_taken_over(db):
    a = [r["image_id"] for r in next_images(db, "all", "ann", n=3, claim_seconds=-1)]
    b = [r["image_id"] for r in next_images(db, "all", "ben", n=3)]
    assert a == b


def test_bad_input_is_refused(db):
    with pytest.raises(NotFound):
        decide(db, 10_000, "accept", reviewer="x")
    with pytest.raises(InvalidValue, match="Reviewer"):
        decide(db, 1, "accept", reviewer="  ")
    with pytest.raises(InvalidValue, match="not a valid class"):
        decide(db, 1, "relabel", label="<script>", reviewer="x")
    with pytest.raises(InvalidValue, match="Unknown action"):
        decide(db, 1, "delete", reviewer="x")
    with pytest.raises(InvalidValue, match="Unknown queue"):
        next_images(db, "nope", "x")


def test_orders(db):
    by_margin = next_images(db, "all", "o1", n=30, claim_seconds=0)
    assert [r["margin"] for r in by_margin] == sorted(r["margin"] for r in by_margin)
    by_conf = next_images(db, "all", "o2", n=30, order="confidence", claim_seconds=0)
    assert [r["p1"] for r in by_conf] == sorted(r["p1"] for r in by_conf)
    by_file = next_images(db, "all", "o3", n=30, order="file", claim_seconds=0)
    assert [r["path"] for r in by_file] == sorted(r["path"] for r in by_file)
    rnd = next_images(db, "all", "o4", n=30, order="random", claim_seconds=0)
    assert sorted(r["image_id"] for r in rnd) == sorted(r["image_id"] for r in by_margin)


def test_concurrent_reviewers_never_collide(tmp_path):
    """8 reviewers, each with their own connection, label until the queues are empty: no image
    is decided twice, no decision is lost, the history holds every one."""
    path = tmp_path / "c.db"
    setup = open_db(path)
    seed(setup, n=200)
    decided: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        db = open_db(path)
        mine = decided.setdefault(name, [])
        try:
            while True:
                items = next_images(db, "all", name, n=2)
                if not items:
                    return
                for it in items:
                    decide(db, it["image_id"], "accept", reviewer=name)
                    mine.append(it["image_id"])
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(f"rev{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    all_ids = [i for ids in decided.values() for i in ids]
    assert len(all_ids) == len(set(all_ids)) == 200
    assert sum(1 for ids in decided.values() if ids) >= 2
    n_events = setup.execute("SELECT COUNT(*) FROM label_events WHERE source = 'human'").fetchone()[0]
    assert n_events == 200
    assert setup.execute("SELECT COUNT(*) FROM current_labels WHERE source = 'human'").fetchone()[0] == 200
    assert integrity_ok(setup)


def test_claim_specific_images_for_a_grid(db):
    ids = [r[0] for r in db.execute("SELECT image_id FROM predictions ORDER BY image_id LIMIT 6")]
    assert claim(db, ids[:4], "ann") == ids[:4]
    assert claim(db, ids, "ben") == ids[4:]  # ann's four stay hers
    assert claim(db, ids[:2], "ann") == ids[:2]  # re-claiming one's own extends it
    with pytest.raises(ClaimConflict):
        decide(db, ids[0], "accept", reviewer="ben")
