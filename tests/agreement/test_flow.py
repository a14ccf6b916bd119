"""Overlap, gold probes and adjudication on a real SQLite file with real images and a real ONNX
model (tests.helpers.build_app_db): several reviewers, each on their own connection."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from core import agreement, review
from core.config import Settings
from core.errors import Forbidden, InvalidValue
from core.store import backup, open_db
from tests.helpers import CLASSES, build_app_db


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    return build_app_db(tmp_path_factory.mktemp("agreement"))


@pytest.fixture
def db_path(template, tmp_path) -> Path:
    src = open_db(template)
    path = backup(src, tmp_path / "t.db")
    src.conn.close()
    return path


def other(label: str) -> str:
    return next(c for c in CLASSES if c != label)


def first(db, queue: str, reviewer: str) -> dict:
    items = agreement.next_images(db, queue, reviewer, n=2)
    assert items, f"{reviewer} got nothing from {queue}"
    return items[0]


def human_events(db, image_id: int) -> list[tuple]:
    return db.execute("SELECT reviewer, action, label, note FROM label_events WHERE image_id = ? "
                      "AND source = 'human' ORDER BY id", [image_id]).fetchall()


def test_overlap_image_goes_blind_to_a_second_reviewer_then_to_adjudication(db_path):
    db = open_db(db_path)
    agreement.set_overlap(db, 1.0, reviewers=2)
    x = first(db, "uncertain", "alice")
    agreement.decide(db, x["image_id"], "relabel", reviewer="alice", label=CLASSES[0])
    # bob's next image is alice's, without her label; alice never gets it back
    y = first(db, "uncertain", "bob")
    assert y["image_id"] == x["image_id"]
    assert y["current_label"] is None and y["current_source"] is None
    assert x["image_id"] not in [i["image_id"] for i in agreement.next_images(db, "uncertain", "alice", n=20)]
    # a third reviewer does not get it while bob holds it (it needs two reviewers in all)
    assert x["image_id"] not in [i["image_id"] for i in agreement.next_images(db, "uncertain", "carol", n=20)]
    agreement.decide(db, x["image_id"], "relabel", reviewer="bob", label=CLASSES[1])
    assert agreement.ratings(db)[x["image_id"]] == {"alice": CLASSES[0], "bob": CLASSES[1]}
    assert x["image_id"] not in [i["image_id"] for i in agreement.next_images(db, "uncertain", "carol", n=20)]
    # the disagreement waits for an adjudicator who did not rate it
    assert [d["image_id"] for d in agreement.disputes(db)] == [x["image_id"]]
    assert agreement.adjudication_queue(db, "alice") == []
    with pytest.raises(Forbidden, match="rated image"):
        agreement.adjudicate(db, x["image_id"], CLASSES[2], reviewer="bob")
    [item] = agreement.adjudication_queue(db, "carol")
    assert item["ratings"] == {"alice": CLASSES[0], "bob": CLASSES[1]}
    agreement.adjudicate(db, x["image_id"], CLASSES[1], reviewer="carol")
    cur = review.current_label(db, x["image_id"])
    assert (cur["label"], cur["reviewer"]) == (CLASSES[1], "carol")
    assert agreement.disputes(db) == [] and agreement.adjudication_queue(db, "dave") == []
    # the whole history is kept, append-only; the adjudication is not a rating
    assert human_events(db, x["image_id"]) == [
        ("alice", "relabel", CLASSES[0], None), ("bob", "relabel", CLASSES[1], None),
        ("carol", "relabel", CLASSES[1], "adjudication")]
    assert agreement.ratings(db)[x["image_id"]] == {"alice": CLASSES[0], "bob": CLASSES[1]}
    rep = agreement.agreement_report(db, n_boot=50)
    scores = {r["reviewer"]: r["vs_adjudicated"] for r in rep["reviewers"]}
    assert (scores["alice"]["right"], scores["alice"]["n"]) == (0, 1)
    assert (scores["bob"]["right"], scores["bob"]["n"]) == (1, 1)
    assert rep["adjudication"] == {"open": 0, "settled": 1}
    with pytest.raises(InvalidValue, match="no open disagreement"):
        agreement.adjudicate(db, x["image_id"], CLASSES[0], reviewer="dave")


def test_agreeing_reviewers_need_no_adjudication_and_undo_brings_the_probe_back(db_path):
    db = open_db(db_path)
    agreement.set_overlap(db, 1.0)
    x = first(db, "uncertain", "alice")
    agreement.decide(db, x["image_id"], "accept", reviewer="alice")
    assert first(db, "uncertain", "bob")["image_id"] == x["image_id"]
    agreement.decide(db, x["image_id"], "relabel", reviewer="bob", label=other(x["pred"]))
    assert len(agreement.disputes(db)) == 1
    undone = agreement.undo_last(db, "bob")
    assert undone["image_id"] == x["image_id"]
    assert agreement.disputes(db) == []
    again = first(db, "uncertain", "bob")  # the probe bob took back comes first again
    assert again["image_id"] == x["image_id"]
    agreement.decide(db, x["image_id"], "accept", reviewer="bob")
    assert agreement.disputes(db) == []
    assert agreement.ratings(db)[x["image_id"]] == {"alice": x["pred"], "bob": x["pred"]}


def test_three_reviewers_each_get_it_once(db_path):
    db = open_db(db_path)
    agreement.set_overlap(db, 1.0, reviewers=3, queue="uncertain")
    x = first(db, "uncertain", "alice")
    agreement.decide(db, x["image_id"], "accept", reviewer="alice")
    for r in ("bob", "carol"):
        got = first(db, "uncertain", r)
        assert got["image_id"] == x["image_id"], r
        agreement.decide(db, x["image_id"], "accept", reviewer=r)
    assert set(agreement.ratings(db)[x["image_id"]]) == {"alice", "bob", "carol"}
    assert x["image_id"] not in [i["image_id"] for i in agreement.next_images(db, "uncertain", "dave", n=20)]


def test_rate_scope_and_draw_choose_exactly_the_images_below_the_rate(db_path):
    db = open_db(db_path)
    agreement.set_overlap(db, 0.5, queue="uncertain")
    agreement.set_overlap(db, 0.0, cls=CLASSES[2])
    items = review.next_images(db, "uncertain", "alice", n=8)
    for it in items:
        review.decide(db, it["image_id"], "relabel", reviewer="alice", label=CLASSES[it["image_id"] % 3])
    agreement.sync_overlap(db)
    chosen = {r[0] for r in db.execute("SELECT image_id FROM overlap_items")}
    sha = dict(db.execute("SELECT id, sha256 FROM images").fetchall())
    expect = {it["image_id"] for it in items
              if CLASSES[it["image_id"] % 3] != CLASSES[2] and agreement.draw(sha[it["image_id"]]) < 0.5}
    assert chosen == expect
    # mixed-queue decisions fall under no rule
    m = review.next_images(db, "mixed", "alice", n=1)[0]
    review.decide(db, m["image_id"], "accept", reviewer="alice")
    agreement.sync_overlap(db)
    assert m["image_id"] not in {r[0] for r in db.execute("SELECT image_id FROM overlap_items")}


@pytest.mark.parametrize("bad", [{"rate": 1.5}, {"rate": 0.1, "reviewers": 1}, {"rate": 0.1, "queue": "nope"}])
def test_bad_rules_are_refused(db_path, bad):
    with pytest.raises(InvalidValue):
        agreement.set_overlap(open_db(db_path), **bad)


def test_gold_probe_scores_the_reviewer_and_never_changes_the_label(db_path):
    db = open_db(db_path)
    gold_id = db.execute("SELECT image_id FROM current_labels WHERE source = 'import' LIMIT 1").fetchone()[0]
    known = review.current_label(db, gold_id)["label"]
    agreement.mark_gold(db, gold_id, marked_by="admin")
    agreement.set_gold_rate(db, 0.5)
    assert agreement.gold_rate(db) == 0.5
    before = db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0]
    # bob reviews until the gold image shows up (a draw fixed by his number of decisions)
    for _ in range(12):
        it = first(db, "all", "bob")
        if it["image_id"] == gold_id:
            break
        agreement.decide(db, it["image_id"], "accept", reviewer="bob")
    else:
        pytest.fail("no gold probe in 12 images at a rate of 0.5")
    assert it["current_label"] is None
    n_events = db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0]
    agreement.decide(db, gold_id, "relabel", reviewer="bob", label=other(known))
    assert db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0] == n_events
    assert review.current_label(db, gold_id)["label"] == known
    assert agreement.gold_scores(db) == {"bob": (0, 1)}
    # undo takes the answer back and the probe returns; a right answer scores
    assert agreement.undo_last(db, "bob")["image_id"] == gold_id
    assert agreement.gold_scores(db) == {}
    assert first(db, "all", "bob")["image_id"] == gold_id
    agreement.decide(db, gold_id, "relabel", reviewer="bob", label=known)
    assert agreement.gold_scores(db) == {"bob": (1, 1)}
    # never again for bob; never for the one who marked it
    for _ in range(6):
        ids = [i["image_id"] for i in agreement.next_images(db, "all", "bob", n=2)]
        assert gold_id not in ids
        agreement.decide(db, ids[0], "accept", reviewer="bob")
    assert before < db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0]
    assert agreement.gold_images(db)[0]["answers"] == 1


def test_marking_gold_is_for_administrators_and_needs_a_human_answer(db_path):
    from core.access import User

    db = open_db(db_path)
    unlabelled = db.execute("SELECT image_id FROM predictions WHERE done = 0 AND queue = 'uncertain' "
                            "LIMIT 1").fetchone()[0]
    with pytest.raises(Forbidden):
        agreement.mark_gold(db, unlabelled, CLASSES[0], marked_by="eve", by=User("eve", False))
    with pytest.raises(InvalidValue, match="no label given by a person"):
        agreement.mark_gold(db, unlabelled, marked_by="boss")
    agreement.mark_gold(db, unlabelled, CLASSES[0], marked_by="boss", by=User("boss", True))
    cur = review.current_label(db, unlabelled)
    assert (cur["label"], cur["reviewer"], cur["source"]) == (CLASSES[0], "boss", "human")
    assert agreement.unmark_gold(db, unlabelled) and agreement.gold_images(db) == []


def test_adjudicators_by_role(db_path):
    s = Settings(auth="proxy", admin_users=["boss"], adjudicators=["carol"])
    assert agreement.may_adjudicate("carol", s) and agreement.may_adjudicate("BOSS", s)
    assert not agreement.may_adjudicate("bob", s)
    with pytest.raises(Forbidden, match="may not adjudicate"):
        agreement.adjudication_queue(open_db(db_path), "bob", settings=s)


def test_report_numbers_equal_the_libraries_on_the_stored_ratings(db_path):
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score

    db = open_db(db_path)
    agreement.set_overlap(db, 1.0)
    pairs = []
    for i in range(6):
        x = first(db, "all", "alice")
        a = CLASSES[i % 3]
        agreement.decide(db, x["image_id"], "relabel", reviewer="alice", label=a)
        y = first(db, "all", "bob")
        assert y["image_id"] == x["image_id"]
        b = a if i % 2 == 0 else CLASSES[(i + 1) % 3]
        agreement.decide(db, y["image_id"], "relabel", reviewer="bob", label=b)
        pairs.append((a, b))
    rep = agreement.agreement_report(db, n_boot=200)
    [pair] = rep["pairs"]
    la, lb = zip(*pairs)
    assert pair["items"] == 6
    assert pair["kappa"]["value"] == pytest.approx(cohen_kappa_score(la, lb))
    codes = {c: i for i, c in enumerate(CLASSES)}
    data = np.array([[codes[v] for v in la], [codes[v] for v in lb]], dtype=float)
    assert rep["overall"]["alpha"]["value"] == pytest.approx(
        krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    assert rep["adjudication"]["open"] == 3
    assert "Krippendorff's alpha" in agreement.report_text(rep)


def test_two_reviewers_at_once_no_lost_or_double_decisions(db_path):
    """Two threads, each its own connection, reviewing the same queue with every image
    overlapped: every decision is stored once, nobody rates an image twice, no image gets more
    than the two reviewers it needs."""
    open_db(db_path)
    agreement.set_overlap(open_db(db_path), 1.0)
    errors: list[BaseException] = []
    done: dict[str, list[int]] = {"alice": [], "bob": []}
    barrier = threading.Barrier(2)

    def work(name: str) -> None:
        db = open_db(db_path)
        try:
            barrier.wait()
            for _ in range(7):
                items = agreement.next_images(db, "all", name, n=2)
                if not items:
                    break
                agreement.decide(db, items[0]["image_id"], "accept", reviewer=name)
                done[name].append(items[0]["image_id"])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in done]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    db = open_db(db_path)
    rows = db.execute("SELECT image_id, reviewer FROM label_events WHERE source = 'human'").fetchall()
    assert len(rows) == sum(len(v) for v in done.values()) == 14
    assert len(set(rows)) == len(rows), "nobody decided an image twice"
    per_image: dict[int, set[str]] = {}
    for image_id, r in rows:
        per_image.setdefault(image_id, set()).add(r)
    assert max(len(v) for v in per_image.values()) <= 2
    assert any(len(v) == 2 for v in per_image.values()), "overlap images reached the second reviewer"
