"""`semtriage agreement …` through click's runner on a real database with real images and a
real ONNX model: overlap, blind second review, disagreement, adjudication, gold, the report."""

from __future__ import annotations

import json

from click.testing import CliRunner

from core.cli import cli
from tests.helpers import CLASSES, build_app_db


def test_overlap_adjudication_gold_and_report_from_the_cli(tmp_path):
    db = str(build_app_db(tmp_path))
    runner = CliRunner()

    def run(*args, ok=True):
        res = runner.invoke(cli, [*args, "--db", db], catch_exceptions=False)
        assert (res.exit_code == 0) == ok, res.output
        return res

    assert "No overlap rule" in run("agreement", "overlap").output
    out = json.loads(run("agreement", "overlap", "--rate", "1", "--reviewers", "2", "--json").stdout)
    assert out["rules"] == [{"scope": "*", "rate": 1.0, "reviewers": 2}]
    run("agreement", "overlap", "--rate", "2", ok=False)

    first = json.loads(run("queue", "uncertain", "-n", "1", "--reviewer", "alice", "--json").stdout)
    x = first["items"][0]["image_id"]
    run("label", str(x), "relabel", CLASSES[0], "--reviewer", "alice")
    second = json.loads(run("queue", "uncertain", "-n", "1", "--reviewer", "bob", "--json").stdout)
    assert second["items"][0]["image_id"] == x, "bob gets alice's image for a second opinion"
    run("label", str(x), "relabel", CLASSES[1], "--reviewer", "bob")

    disputes = json.loads(run("agreement", "disputes", "--json").stdout)
    assert disputes == [{"image_id": x, "ratings": {"alice": CLASSES[0], "bob": CLASSES[1]}}]
    res = run("agreement", "adjudicate", str(x), CLASSES[2], "--reviewer", "alice", ok=False)
    assert "rated image" in res.output
    run("agreement", "adjudicate", str(x), CLASSES[1], "--reviewer", "carol")
    assert json.loads(run("agreement", "disputes", "--json").stdout) == []

    res = run("agreement", "gold", str(x), "--rate", "0.1")
    assert "Gold rate 10%; 1 gold images" in res.output
    rep = json.loads(run("agreement", "--json", "--bootstrap", "50").stdout)
    assert rep["overall"]["items"] == 1 and rep["adjudication"] == {"open": 0, "settled": 1}
    assert [(p["a"], p["b"], p["items"]) for p in rep["pairs"]] == [("alice", "bob", 1)]
    text = run("agreement").output
    assert "Krippendorff's alpha" in text and "alice / bob" in text
    run("agreement", "gold", str(x), "--remove")
    run("agreement", "gold", str(x), "--remove", ok=False)
