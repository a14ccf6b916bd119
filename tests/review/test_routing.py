"""Routing: each prediction in exactly one queue, with its reason; SQL and Python agree."""

import numpy as np
import pytest

from core.errors import InvalidValue
from core.review import Thresholds, get_thresholds, preview_counts, queue_sql, route, set_thresholds
from core.store import open_db

NAMES = ["fibres", "particles", "powder", "films"]


@pytest.mark.parametrize(
    ("probs", "queue", "reason_part"),
    [
        ([0.02, 0.95, 0.02, 0.01], "auto", "p = 0.95 ≥ 0.70"),
        ([0.10, 0.54, 0.20, 0.16], "uncertain", "p = 0.54 < 0.70"),
        ([0.05, 0.48, 0.44, 0.03], "mixed", "margin 0.04 between particles and powder"),
        ([0.60, 0.35, 0.03, 0.02], "mixed", "fibres 0.60 and particles 0.35 both ≥ 0.30"),
        ([0.30, 0.28, 0.22, 0.20], "uncertain", "p = 0.30 < 0.70"),  # close but diffuse: unsure, not mixed
    ],
)
def test_route_default_thresholds(probs, queue, reason_part):
    q, reason = route(np.array(probs), NAMES)
    assert q == queue
    assert reason_part in reason


def test_per_class_threshold_overrides_global():
    probs = np.array([0.05, 0.80, 0.10, 0.05])
    assert route(probs, NAMES)[0] == "auto"
    ts = {"*": Thresholds(), "particles": Thresholds(accept=0.9)}
    assert route(probs, NAMES, ts) == ("uncertain", "p = 0.80 < 0.90")
    # the override only applies when particles is the top-1 class
    assert route(np.array([0.80, 0.05, 0.10, 0.05]), NAMES, ts)[0] == "auto"


def test_thresholds_validated_and_stored(tmp_path):
    db = open_db(tmp_path / "t.db")
    with pytest.raises(InvalidValue, match="accept"):
        set_thresholds(db, Thresholds(accept=1.5))
    set_thresholds(db, Thresholds(accept=0.8), "particles")
    set_thresholds(db, Thresholds(accept=0.6))
    ts = get_thresholds(open_db(tmp_path / "t.db"))
    assert ts["*"].accept == 0.6 and ts["particles"].accept == 0.8


def test_sql_rule_agrees_with_python(tmp_path):
    """The SQL form (previews, re-routing at scale) must give the same queue as route()."""
    db = open_db(tmp_path / "t.db")
    rng = np.random.default_rng(0)
    ts = {"*": Thresholds(), "powder": Thresholds(accept=0.85, mixed_margin=0.2, cooccur=0.25)}
    expr, params = queue_sql(ts, alias="p")
    db.execute("CREATE TEMP TABLE p (pred TEXT, second TEXT, p1 REAL, p2 REAL, unfamiliar TEXT)")
    expected = []
    for k in range(2000):
        probs = rng.dirichlet(np.full(len(NAMES), rng.uniform(0.1, 3)))
        order = np.argsort(-probs)
        unfamiliar = "unlike anything this model was trained on" if k % 7 == 0 else None
        db.execute("INSERT INTO p VALUES (?, ?, ?, ?, ?)",
                   [NAMES[order[0]], NAMES[order[1]], float(probs[order[0]]), float(probs[order[1]]),
                    unfamiliar])
        expected.append(route(probs, NAMES, ts, unfamiliar)[0])
    got = [r[0] for r in db.execute(f"SELECT {expr} FROM p ORDER BY rowid", params)]
    assert got == expected
    assert set(expected) == {"auto", "uncertain", "mixed"}


def test_preview_counts_empty_model(tmp_path):
    db = open_db(tmp_path / "t.db")
    assert preview_counts(db, 1, get_thresholds(db)) == {"uncertain": 0, "mixed": 0, "auto": 0}


def test_reroute_writes_only_moved_predictions_and_reasons_follow_the_thresholds(tmp_path, tiny_model):
    """A threshold change re-routes exactly the predictions whose queue changes (the rest are
    not rewritten: at a million images that is the difference between seconds and minutes),
    and the reason a reviewer or a report reads is worded from the thresholds now in force."""
    from core.datasets import predictions_report
    from core.intake import ingest
    from core.models import Classifier, register_model
    from core.review import decide_queue, for_class, reroute, review_item
    from tests.helpers import write_images

    db = open_db(tmp_path / "r.db")
    m = register_model(db, tiny_model("r"), activate=True)
    write_images(tmp_path / "imgs", 40, seed=3)
    ingest(db, [tmp_path / "imgs"], classifier=Classifier(m["path"]), model_id=m["id"])
    rows = lambda: {r[0]: r[1:] for r in db.execute(
        "SELECT image_id, queue, reason, pred, p1, second, p2 FROM predictions")}
    before = rows()
    set_thresholds(db, Thresholds(accept=0.5))
    reroute(db, m["id"])
    after = rows()
    ts = get_thresholds(db)
    moved = {i for i in before if before[i][0] != after[i][0]}
    assert moved, "lowering accept moves some uncertain images to auto"
    for i, (q, reason, pred, p1, second, p2) in after.items():
        assert q == decide_queue(pred, p1, second, p2, for_class(ts, pred))[0]
        if i not in moved:
            assert reason == before[i][1], "an image that kept its queue was rewritten"
        item = review_item(db, i, m["id"])
        assert item["queue"] == q
        if q != "mixed":
            assert "0.50" in item["reason"], item["reason"]
    out = tmp_path / "report.jsonl"
    predictions_report(db, out, fmt="jsonl")
    import json

    reasons = [json.loads(line)["reason"] for line in out.read_text().splitlines()]
    assert sum("0.50" in r for r in reasons) == sum(q != "mixed" for q, *_ in after.values())
