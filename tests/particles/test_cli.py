"""`semtriage particles …` through click's runner on a real database file."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from core.cli.root import cli


def run(*args):
    r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return r


def test_import_detect_stats_export(tmp_path, particle_folder, images_only):
    db = str(tmp_path / "c.db")
    r = run("particles", "import-masks", str(particle_folder), "--db", db, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["images"] == 4
    r = run("ingest", str(images_only), "--db", db)
    assert r.exit_code == 0, r.output
    r = run("particles", "detect", "--all", "--method", "classical", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["skipped_verified"] == 4 and rep["detected"] == 0  # same files: verified by import
    r = run("particles", "stats", "--by", "folder", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    (only,) = st.values()
    assert only["unit"] == "nm" and only["count"] > 0 and only["d50_ci"][0] <= only["d50"]
    out = tmp_path / "out"
    for fmt in ("csv", "coco", "masks", "report"):
        r = run("particles", "export", str(out), "--format", fmt, "--db", db)
        assert r.exit_code == 0, r.output
    assert (out / "particles.csv").is_file() and (out / "report.html").is_file()


def test_detector_list_promote_and_errors(tmp_path):
    db = str(tmp_path / "d.db")
    r = run("particles", "detector", "list", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    ds = json.loads(r.output)
    assert {d["version"] for d in ds} == {"classical-default", "particles-default-v3"}
    assert [d["version"] for d in ds if d["active"]] == ["particles-default-v3"]
    r = run("particles", "detector", "promote", "classical-default", "--db", db)
    assert r.exit_code == 0 and "active" in r.output
    r = run("particles", "detector", "promote", "nope", "--db", db)
    assert r.exit_code == 1 and "No particle detector 'nope'" in r.output
    r = run("particles", "detect", "--db", db)
    assert r.exit_code == 1 and "--all" in r.output
    r = run("particles", "train", "--from-db", "--db", db)
    assert r.exit_code == 1 and "verified image" in r.output


def test_pixel_size_verify_undo_queue(tmp_path, images_only):
    db = str(tmp_path / "e.db")
    assert run("ingest", str(images_only), "--db", db).exit_code == 0
    assert run("particles", "detect", "1", "2", "--method", "classical", "--db", db).exit_code == 0
    r = run("particles", "pixel-size", "3.5", "1", "--db", db)
    assert r.exit_code == 0, r.output
    r = run("particles", "queue", "--db", db, "--json")
    assert {q["image_id"] for q in json.loads(r.output)} == {1, 2}
    assert run("particles", "verify", "1", "--reviewer", "ann", "--db", db).exit_code == 0
    r = run("particles", "queue", "--db", db, "--json")
    assert {q["image_id"] for q in json.loads(r.output)} == {2}
    r = run("particles", "verify", "1", "--reviewer", "ann", "--undo", "--db", db)
    assert "Undid verify" in r.output


@pytest.mark.slow
def test_train_from_db_registers_an_inactive_candidate(tmp_path, particle_folder):
    db = str(tmp_path / "t.db")
    assert run("particles", "import-masks", str(particle_folder), "--db", db).exit_code == 0
    r = run("particles", "train", "--from-db", "--synthetic", "2", "--seconds", "6",
            "--out-dir", str(tmp_path / "m"), "--db", db, "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["held_out"] >= 1 and res["trained_on"] >= 1
    assert 0 <= res["candidate_metrics"]["f1"] <= 1
    assert list((tmp_path / "m").glob("particles-ft-*.onnx"))
    r = run("particles", "detector", "compare", res["version"], "--db", db, "--json")
    assert r.exit_code == 0, r.output
    cmp_ = json.loads(r.output)
    assert cmp_["held_out"] and cmp_["active"] == "particles-default-v3"
    r = run("particles", "detector", "list", "--db", db, "--json")
    act = [d["version"] for d in json.loads(r.output) if d["active"]]
    assert act == ["particles-default-v3"]
    assert run("particles", "detector", "promote", res["version"], "--db", db).exit_code == 0


def test_selection_save_list_stats_export_delete(tmp_path, images_only):
    db = str(tmp_path / "s.db")
    assert run("ingest", str(images_only), "--db", db).exit_code == 0
    assert run("particles", "detect", "--all", "--method", "classical", "--db", db).exit_code == 0
    r = run("particles", "selection", "save", "first two", "1", "2", "--reviewer", "ann", "--db", db)
    assert r.exit_code == 0, r.output
    assert "Saved selection 'first two': 2 image(s) (images 1, 2), 2 with particles" in r.output
    r = run("particles", "selection", "list", "--db", db, "--json")
    (only,) = json.loads(r.output)
    assert (only["name"], only["images"], only["created_by"]) == ("first two", 2, "ann")
    assert "first two" in run("particles", "selection", "list", "--db", db).output

    r = run("particles", "stats", "--selection", "first two", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    st = json.loads(r.output)
    r = run("particles", "stats", "--db", db, "--json")
    assert list(st) == ["first two"] and st["first two"]["images"] == 2
    assert 0 < st["first two"]["count"] < json.loads(r.output)["all"]["count"]
    r = run("particles", "stats", "--by", "selection", "--db", db, "--json")
    assert json.loads(r.output)["first two"]["count"] == st["first two"]["count"]
    r = run("particles", "stats", "--by", "image", "--selection", "first two", "--db", db, "--json")
    assert len(json.loads(r.output)) == 2

    out = tmp_path / "sel"
    r = run("particles", "export", str(out), "--selection", "first two", "--db", db, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["particles"] == st["first two"]["count"] + sum(
        st["first two"][k] for k in ("excluded_edge", "excluded_databar", "not_particles"))
    with open(out / "images.csv", encoding="utf-8") as f:
        assert [int(row["image_id"]) for row in csv.DictReader(f)] == [1, 2]

    r = run("particles", "selection", "delete", "FIRST TWO", "--db", db)
    assert r.exit_code == 0 and "Deleted selection 'first two' (2 image(s))" in r.output
    assert "No saved selections" in run("particles", "selection", "list", "--db", db).output


def test_selection_errors_are_one_line(tmp_path, images_only):
    db = str(tmp_path / "s.db")
    assert run("ingest", str(images_only), "--db", db).exit_code == 0
    r = run("particles", "selection", "save", "ghosts", "1", "99", "--db", db)
    assert r.exit_code == 1 and "No image with id 99" in r.output, r.output
    r = run("particles", "selection", "save", "none", "--db", db)
    assert r.exit_code == 1 and "image ids, a folder or a class" in r.output
    r = run("particles", "selection", "save", "bad;name", "1", "--db", db)
    assert r.exit_code == 1 and "Selection name 'bad;name' is not valid" in r.output
    r = run("particles", "stats", "--selection", "nope", "--db", db)
    assert r.exit_code == 1 and "No selection named 'nope'" in r.output
    r = run("particles", "export", str(tmp_path / "o"), "--selection", "nope", "--db", db)
    assert r.exit_code == 1 and "No selection named 'nope'" in r.output
    r = run("particles", "selection", "delete", "nope", "--db", db)
    assert r.exit_code == 1 and "No selection named 'nope'" in r.output
    assert "Traceback" not in r.output
