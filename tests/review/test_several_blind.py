"""'Several' keeps the classes present; the blind spot-check hides the model's answer and alone
(with other independent labels) measures how often auto-accepting is wrong; review orders are
per reviewer, with an administrator's default for everyone."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from core import review
from core.access import User
from core.cli import cli
from core.errors import Forbidden, InvalidValue
from core.review import GLOBAL, Thresholds
from core.store import open_db
from tests.review.test_labels import CLASSES, seed


@pytest.fixture
def db(tmp_path):
    d = open_db(tmp_path / "t.db")
    d.model_id = seed(d, n=60)
    return d


def auto_ids(db):
    return [r[0] for r in db.execute(
        "SELECT image_id FROM predictions WHERE queue = 'auto' ORDER BY image_id")]


def test_several_stores_the_classes_present_and_undo_keeps_history(db):
    img = auto_ids(db)[0]
    ev = review.decide(db, img, "several", reviewer="ann", classes=[CLASSES[0], CLASSES[2], CLASSES[0]])
    assert json.loads(ev["classes"]) == [CLASSES[0], CLASSES[2]]
    cur = review.current_label(db, img)
    assert cur["label"] == "several" and json.loads(cur["classes"]) == [CLASSES[0], CLASSES[2]]
    assert review.several_labels(db) == [
        {"image_id": img, "classes": [CLASSES[0], CLASSES[2]], "source": "human", "reviewer": "ann"}]
    review.undo_last(db, "ann")
    assert review.several_labels(db) == []


@pytest.mark.parametrize("classes", [[], [CLASSES[0]], [CLASSES[1], CLASSES[1]], ["several", CLASSES[0]],
                                     ["<b>x</b>", CLASSES[0]]])
def test_several_refuses_fewer_than_two_real_classes(db, classes):
    img = auto_ids(db)[0]
    with pytest.raises(InvalidValue):
        review.decide(db, img, "several", reviewer="ann", classes=classes)
    assert review.current_label(db, img)["source"] == "auto", "nothing stored"


def test_classes_only_with_several(db):
    with pytest.raises(InvalidValue, match="several"):
        review.decide(db, auto_ids(db)[0], "relabel", reviewer="ann", label=CLASSES[1],
                      classes=CLASSES[:2])


def test_blind_queue_is_a_random_sample_of_the_auto_queue(db):
    autos = set(auto_ids(db))
    assert len(autos) >= 6
    got = review.next_images(db, review.BLIND_QUEUE, "ann", n=len(autos) + 5, claim_seconds=0)
    assert {g["image_id"] for g in got} == autos, "every auto image, nothing else"
    rnd = [r[0] for r in db.execute(
        "SELECT image_id FROM predictions WHERE queue = 'auto' ORDER BY rnd, image_id")]
    assert [g["image_id"] for g in got] == rnd, "always random order"
    assert review.queue_order(db, review.BLIND_QUEUE, "ann") == "random"
    with pytest.raises(InvalidValue):
        review.set_queue_order(db, review.BLIND_QUEUE, "margin", reviewer="ann")


def test_only_independent_labels_feed_the_auto_error_estimate(db):
    m = db.model_id
    ts = review.get_thresholds(db)
    ids = auto_ids(db)
    preds = dict(db.execute("SELECT image_id, pred FROM predictions WHERE model_id = ?", [m]).fetchall())
    # ten hurried one-key confirmations of auto labels, seen: not evidence
    for i in ids[:10]:
        ev = review.decide(db, i, "accept", reviewer="ann")
        assert ev["context"] == "auto"
    est = review.auto_error_estimate(db, m, ts)
    assert est["n"] == 0 and est["confirmed_unblind"] == 10
    # three blind checks, one of them disagreeing with the hidden answer
    other = {c: next(x for x in CLASSES if x != c) for c in CLASSES}
    for k, i in enumerate(ids[10:13]):
        lab = other[preds[i]] if k == 0 else preds[i]
        ev = review.decide(db, i, "accept" if lab == preds[i] else "relabel", label=lab,
                           reviewer="bob", blind=True)
        assert ev["context"] == "blind"
    est = review.auto_error_estimate(db, m, ts)
    assert (est["n"], est["errors"], est["blind"]) == (3, 1, 3)
    # a blind check cannot 'accept' the answer it did not see
    with pytest.raises(InvalidValue, match="blind"):
        review.decide(db, ids[14], "accept", reviewer="bob", blind=True)
    # held-out labels that certify thresholds leave the seen confirmations out too
    assert len(review.heldout_predictions(db, m)) == 3


def test_uncertain_queue_decisions_stay_independent(db):
    img = db.execute("SELECT image_id FROM predictions WHERE queue = 'uncertain' LIMIT 1").fetchone()[0]
    ev = review.decide(db, img, "relabel", label=CLASSES[1], reviewer="ann")
    assert ev["context"] is None
    est = review.auto_error_estimate(db, db.model_id, {GLOBAL: Thresholds(accept=0.0, cooccur=1.0,
                                                                            mixed_mass=1.1)})
    assert est["n"] == 1


def test_review_order_is_per_reviewer_with_an_admin_default(db):
    review.set_queue_order(db, "uncertain", "entropy", reviewer="ann")
    assert review.queue_order(db, "uncertain", "ann") == "entropy"
    assert review.queue_order(db, "uncertain", "bob") == "margin", "ann's click is ann's only"
    with pytest.raises(Forbidden, match="administrators"):
        review.set_queue_order(db, "uncertain", "confidence", by=User("bob", admin=False))
    review.set_queue_order(db, "uncertain", "confidence", by=User("boss", admin=True))
    assert review.queue_order(db, "uncertain", "bob") == "confidence"
    assert review.queue_order(db, "uncertain", "ann") == "entropy", "her own choice still wins"


def test_cli_several_blind_and_per_reviewer_order(db, tmp_path):
    path = str(tmp_path / "t.db")
    ids = auto_ids(db)
    run = CliRunner().invoke
    r = run(cli, ["label", str(ids[0]), "several", "--classes", f"{CLASSES[0]},{CLASSES[1]}",
                  "--reviewer", "ann", "--db", path])
    assert r.exit_code == 0, r.output
    assert review.several_labels(db)[0]["classes"] == CLASSES[:2]
    r = run(cli, ["label", str(ids[1]), "several", "--classes", CLASSES[0], "--reviewer", "ann", "--db", path])
    assert r.exit_code != 0 and "at least two" in r.output
    r = run(cli, ["queue", "blind", "--db", path, "--json"])
    assert r.exit_code == 0, r.output
    items = json.loads(r.output)["items"]
    assert items and all(set(it) == {"image_id", "path"} for it in items), "answer hidden"
    r = run(cli, ["queue", "mixed", "--order", "entropy", "--save-order", "--reviewer", "ann",
                  "--db", path, "--json"])
    assert r.exit_code == 0, r.output
    assert review.queue_order(db, "mixed", "ann") == "entropy"
    assert review.queue_order(db, "mixed", "bob") == "margin"
