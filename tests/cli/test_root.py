"""The semtriage CLI, driven through click's runner against a real database and real files."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.cli import cli


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "cli.db")

    def invoke(*args, ok=True):
        result = runner.invoke(cli, [*args, "--db", db], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def js(result):
    return json.loads(result.stdout)


def test_every_command_has_help():
    runner = CliRunner()
    for name, cmd in cli.commands.items():
        res = runner.invoke(cli, [name, "--help"])
        assert res.exit_code == 0, name
        assert (cmd.help or "").strip(), f"{name} has no help text"


def test_workflow_init_ingest_queue_label_undo_export(run, tiny_model, image_folder, tmp_path):
    model = tiny_model("cli-model")
    out = js(run("init", "--model", str(model), "--json"))
    assert out["active_model"] == "cli-model"

    rep = js(run("ingest", str(image_folder), "--json"))
    assert rep["added"] == 12 and rep["predicted"] == 12 and rep["failed"] == []

    q = js(run("queue", "uncertain", "-n", "3", "--reviewer", "ana", "--json"))
    assert q["counts"]["uncertain"] >= 3 and len(q["items"]) == 3
    margins = [i["margin"] for i in q["items"]]
    assert margins == sorted(margins)  # most informative first
    first, second = q["items"][0], q["items"][1]

    ev = js(run("label", str(first["image_id"]), "accept", "--reviewer", "ana", "--json"))
    assert ev["label"] == first["pred"] and ev["reviewer"] == "ana"
    js(run("label", str(second["image_id"]), "relabel", "powder", "--reviewer", "ana", "--json"))
    undone = js(run("label", "0", "undo", "--reviewer", "ana", "--json"))
    assert undone["undone"]["image_id"] == second["image_id"]

    stats = js(run("stats", "--json"))
    assert stats["images"] == 12 and stats["human"] == 1

    res = js(run("export", str(tmp_path / "ds"), "--format", "csv", "--json"))
    assert res["count"] == 1 and res["per_class"] == {first["pred"]: 1}

    res = js(run("export", str(tmp_path / "pr"), "--predictions", "--json"))
    lines = Path(res["path"]).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 13  # header + every image

    # a file name: that file, not a folder of that name
    res = js(run("export", str(tmp_path / "report.csv"), "--predictions", "--json"))
    assert res["path"] == str(tmp_path / "report.csv") and (tmp_path / "report.csv").is_file()
    assert len((tmp_path / "report.csv").read_text(encoding="utf-8").splitlines()) == 13
    res = js(run("export", str(tmp_path / "sub" / "report.jsonl"), "--predictions", "--json"))
    assert Path(res["path"]).is_file() and Path(res["path"]).suffix == ".jsonl"
    assert run("export", str(tmp_path / "x.jsonl"), "--predictions", "--format", "hf", ok=False).exit_code == 2


def test_claimed_image_refused_for_other_reviewer(run, tiny_model, image_folder):
    run("init", "--model", str(tiny_model()))
    run("ingest", str(image_folder))
    item = js(run("queue", "all", "-n", "1", "--reviewer", "ana", "--json"))["items"][0]
    res = run("label", str(item["image_id"]), "accept", "--reviewer", "ben", ok=False)
    assert res.exit_code == 1 and "being reviewed by 'ana'" in res.output


def test_bad_model_is_a_clean_error(run, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    res = run("model", "add", str(bad), ok=False)
    assert res.exit_code == 1
    assert "Cannot read ONNX model" in res.output and "Traceback" not in res.output


def test_ingest_exit_code_nonzero_only_when_nothing_ingested(run, tmp_path, image_folder):
    run("init")
    empty = tmp_path / "junk"
    empty.mkdir()
    (empty / "a.tif").write_bytes(b"")
    res = run("ingest", str(empty), ok=False)
    assert res.exit_code == 1 and "empty file" in res.output
    (image_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    res = run("ingest", str(image_folder), "--no-predict")
    assert "1 failed" in res.output and "12 added" in res.output


def test_ingest_on_a_fresh_database_predicts_with_the_shipped_default_model(run, image_folder):
    """The README's first CLI step, without `init`: the images are predicted and routed."""
    res = run("ingest", str(image_folder))
    assert "using the shipped default model default-synth-v1" in res.stderr
    assert "12 added" in res.stdout and "12 predicted" in res.stdout, res.stdout
    assert [m["version"] for m in js(run("model", "list", "--json"))] == ["default-synth-v1"]
    assert sum(js(run("stats", "--json"))["queues"].values()) == 12
    out = js(run("ingest", str(image_folder), "--json"))  # a second ingest registers nothing
    assert out["registered_default_model"] is None and out["unchanged"] == 12


def test_ingest_no_predict_registers_no_model(run, image_folder):
    run("ingest", str(image_folder), "--no-predict")
    assert js(run("model", "list", "--json")) == []


def test_thresholds_reroute(run, tiny_model, image_folder):
    run("init", "--model", str(tiny_model()))
    run("ingest", str(image_folder))
    before = js(run("stats", "--json"))["queues"]
    out = js(run("thresholds", "--accept", "0.99", "--json"))
    assert out["thresholds"]["*"]["accept"] == 0.99
    assert out["queues"].get("auto", 0) == 0 < before["auto"]
    res = run("thresholds", "--accept", "2", ok=False)
    assert res.exit_code == 1 and "outside [0, 1]" in res.output


def test_model_activate_predicts_and_reroutes(run, tiny_model, image_folder):
    run("init", "--model", str(tiny_model("first")))
    run("ingest", str(image_folder))
    run("model", "add", str(tiny_model("second", classes=("a", "b", "c", "d"))))
    models = js(run("model", "list", "--json"))
    assert [m["active"] for m in models] == [True, False]
    out = js(run("model", "activate", "second", "--json"))
    assert out["active"] == "second" and sum(out["queues"].values()) == 12


def test_backup(run, tiny_model, image_folder, tmp_path):
    run("init", "--model", str(tiny_model()))
    run("ingest", str(image_folder))
    out = js(run("backup", str(tmp_path / "b" / "copy.db"), "--json"))
    assert out["integrity"] is True
