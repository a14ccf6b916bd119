"""Per-queue default review order (active-learning strategies): stored in the settings table,
it decides which image comes next — in core, in `semtriage queue`, and on the Review page."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from core.cli import cli
from core.errors import InvalidValue
from core.review import DEFAULT_ORDER, next_images, queue_order, release_claims, set_queue_order
from core.store import open_db
from tests.review.test_labels import CLASSES, seed


def first(db, model_id, order):
    row = db.execute(
        {"margin": "SELECT image_id FROM predictions WHERE model_id = ? AND queue = 'uncertain' "
                   "AND done = 0 ORDER BY margin, image_id LIMIT 1",
         "confidence": "SELECT image_id FROM predictions WHERE model_id = ? AND queue = 'uncertain' "
                       "AND done = 0 ORDER BY p1, image_id LIMIT 1",
         "entropy": "SELECT image_id FROM predictions WHERE model_id = ? AND queue = 'uncertain' "
                    "AND done = 0 ORDER BY entropy DESC, image_id LIMIT 1"}[order],
        [model_id]).fetchone()
    return row[0]


def set_probs(db, image_id, probs):
    o = sorted(range(len(probs)), key=lambda k: -probs[k])
    db.execute(
        "UPDATE predictions SET probs = ?, pred = ?, p1 = ?, second = ?, p2 = ?, margin = ?, "
        "entropy = ? WHERE image_id = ?",
        [json.dumps(probs), CLASSES[o[0]], probs[o[0]], CLASSES[o[1]], probs[o[1]],
         probs[o[0]] - probs[o[1]], -sum(x * math.log(x) for x in probs if x > 0), image_id])


@pytest.fixture
def db(tmp_path):
    """Uncertain images all at (0.6, 0.3, 0.1) but two: one with the smallest margin, another
    with the least confidence (and, with three classes, the highest entropy)."""
    d = open_db(tmp_path / "q.db")
    mid = seed(d, n=40)
    ids = [r[0] for r in d.execute(
        "SELECT image_id FROM predictions WHERE queue = 'uncertain' ORDER BY image_id")]
    assert len(ids) >= 4
    for i in ids:
        set_probs(d, i, [0.6, 0.3, 0.1])
    set_probs(d, ids[1], [0.48, 0.47, 0.05])  # margin 0.01
    set_probs(d, ids[2], [0.38, 0.31, 0.31])  # p1 0.38
    d.conn.commit()
    d.model_id = mid  # type: ignore[attr-defined]
    return d


def test_stored_order_changes_which_image_comes_next(db):
    mid = db.model_id
    assert queue_order(db, "uncertain") == DEFAULT_ORDER == "margin"
    firsts = {o: first(db, mid, o) for o in ("margin", "confidence", "entropy")}
    assert len(set(firsts.values())) >= 2, "the fixture must tell the orders apart"
    for order, expected in firsts.items():
        set_queue_order(db, "uncertain", order)
        release_claims(db, "ann")
        got = next_images(db, "uncertain", "ann", n=1)[0]["image_id"]  # no order: the stored one
        assert got == expected, order
    assert queue_order(db, "mixed") == "margin", "per queue: the others keep theirs"
    with pytest.raises(InvalidValue):
        set_queue_order(db, "uncertain", "loudest")
    with pytest.raises(InvalidValue):
        set_queue_order(db, "nope", "margin")


def test_cli_queue_honours_and_saves_the_stored_order(db, tmp_path):
    mid = db.model_id
    path = str(tmp_path / "q.db")
    run = CliRunner()
    out = run.invoke(cli, ["queue", "uncertain", "-n", "1", "--order", "confidence", "--save-order",
                           "--db", path, "--json"])
    assert out.exit_code == 0, out.output
    assert queue_order(db, "uncertain") == "confidence"
    out = run.invoke(cli, ["queue", "uncertain", "-n", "1", "--db", path, "--json"])
    res = json.loads(out.stdout)
    assert res["order"] == "confidence" and res["items"][0]["image_id"] == first(db, mid, "confidence")
    out = run.invoke(cli, ["queue", "uncertain", "--save-order", "--db", path])
    assert out.exit_code != 0 and "--order" in out.output
