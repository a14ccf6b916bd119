"""Fibre measurements on a real SQLite database through the CLI: measure (ids, --all,
--class), bad files reported while the batch goes on, re-runs resume without duplicates,
export of fibres.csv, folder comparison."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from core import fibres, synth
from core.cli import cli
from core.store import open_db

REQUIRED = ("image_sha256", "image_path", "dominant_deg", "order_parameter", "coherency",
            "aligned_fraction", "diameter_median_nm", "diameter_median_px", "method")


@pytest.fixture
def archive(tmp_path) -> Path:
    """archive/<class>/<image>: fibre mats (aligned and random) with their pixel size, a
    nanowire image, particles, a blank scan, a tiny image."""
    root = tmp_path / "archive"
    truth = {}
    for name, kind, spread in (("aligned", "fibres", 3.0), ("random", "fibres", float("inf")),
                               ("wires", "nanowires", 8.0)):
        img, t = synth.generate_wires(7, 192, kind=kind, databar=True, populations=[
            {"angle_deg": 120.0, "spread_deg": spread, "weight": 1.0}])
        cls = "fibres" if kind == "fibres" else "nanowires"
        (root / cls).mkdir(parents=True, exist_ok=True)
        synth.save_image(img, root / cls / f"{name}.tif", t["pixel_size_m"])
        truth[name] = fibres.truth_summary(t)["dominant_deg"]
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    (root / "particles").mkdir()
    img, t = synth.generate("particles", 1, 128)
    synth.save_image(img, root / "particles" / "p.tif", t["pixel_size_m"])
    Image.fromarray(np.full((128, 128), 90, np.uint8)).save(root / "fibres" / "blank.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20), dtype=np.uint8)).save(
        root / "fibres" / "tiny.png")
    return root


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "fib.db")

    def invoke(*args, ok=True):
        r = runner.invoke(cli, [*args, "--db", db], catch_exceptions=False)
        if ok:
            assert r.exit_code == 0, r.output
        return r

    invoke.db = db
    return invoke


def js(r):
    return json.loads(r.stdout)


def test_measure_all_reports_bad_images_and_goes_on(run, archive, tmp_path):
    run("ingest", str(archive), "--labels-from-folders", "--no-predict")
    out = js(run("fibres", "measure", "--all", "--json"))
    rep = out["reports"]["gradient"]
    assert rep["measured"] == 5 and len(rep["failed"]) == 1
    assert "tiny.png" in rep["failed"][0]["path"] and "too small" in rep["failed"][0]["reason"]
    by_name = {Path(r["image_path"]).name: r for r in out["results"]}
    assert by_name["blank.png"]["status"] == "no signal"
    assert by_name["tiny.png"]["status"] == "error"
    for name in ("aligned.tif", "random.tif", "wires.tif"):
        r = by_name[name]
        assert r["status"] == "ok" and 0 <= r["dominant_deg"] < 180
        assert r["diameter_unit"] == "nm"
        assert r["diameter_median_nm"] == pytest.approx(r["diameter_median_px"]
                                                        * r["pixel_size_nm"])
    assert by_name["aligned.tif"]["order_parameter"] > by_name["random.tif"]["order_parameter"]
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert fibres.angle_diff(by_name["aligned.tif"]["dominant_deg"], truth["aligned"]) < 5


def test_rerun_resumes_and_redo_replaces_without_duplicates(run, archive):
    run("ingest", str(archive), "--no-predict")
    run("fibres", "measure", "--all")
    again = js(run("fibres", "measure", "--all", "--json"))["reports"]["gradient"]
    assert again["skipped"] == 5 and again["measured"] == 0  # the failed one is tried again
    assert len(again["failed"]) == 1
    redo = js(run("fibres", "measure", "--all", "--redo", "--json"))["reports"]["gradient"]
    assert redo["measured"] == 5
    db = open_db(run.db)
    assert db.execute("SELECT COUNT(*) FROM fibre_measurements").fetchone()[0] == 6
    # other parameters are another measurement of the same image: it replaces the row
    run("fibres", "measure", "--all", "--tolerance", "5")
    assert db.execute("SELECT COUNT(*) FROM fibre_measurements").fetchone()[0] == 6
    assert {r[0] for r in db.execute("SELECT tolerance_deg FROM fibre_measurements")} == {5.0}


def test_a_deleted_file_is_reported_by_name(run, archive):
    run("ingest", str(archive), "--no-predict")
    (archive / "fibres" / "random.tif").unlink()
    rep = js(run("fibres", "measure", "--all", "--json"))["reports"]["gradient"]
    gone = [f for f in rep["failed"] if "random.tif" in f["path"]]
    assert gone and "gone" in gone[0]["reason"]


def test_class_and_ids_select_images_and_bad_ids_are_refused(run, archive):
    run("ingest", str(archive), "--labels-from-folders", "--no-predict")
    out = js(run("fibres", "measure", "--class", "nanowires", "--json"))
    assert [Path(r["image_path"]).name for r in out["results"]] == ["wires.tif"]
    first = out["results"][0]["image_id"]
    assert js(run("fibres", "measure", str(first), "--json"))["reports"]["gradient"]["skipped"] == 1
    r = run("fibres", "measure", "99999", ok=False)
    assert r.exit_code == 1 and "No image with id 99999" in r.output
    r = run("fibres", "measure", ok=False)
    assert r.exit_code == 1 and "--all" in r.output
    r = run("fibres", "measure", "--all", "--tolerance", "0", ok=False)
    assert r.exit_code == 1 and "tolerance" in r.output


def test_export_writes_one_row_per_image_with_the_documented_columns(run, archive, tmp_path):
    run("ingest", str(archive), "--no-predict")
    run("fibres", "measure", "--all")
    out = js(run("fibres", "export", str(tmp_path / "out"), "--json"))
    assert out["rows"] == 6
    with open(tmp_path / "out" / "fibres.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert set(REQUIRED) <= set(rows[0])
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 4 and all(len(r["image_sha256"]) == 64 for r in rows)
    assert all(0 <= float(r["dominant_deg"]) < 180 for r in ok)
    assert all(r["method"] == "gradient" for r in rows)
    r = run("fibres", "export", str(tmp_path / "out" / "fibres.csv"), ok=False)
    assert r.exit_code != 0 and "is a file" in r.output


def test_compare_folders(run, archive):
    run("ingest", str(archive), "--no-predict")
    run("fibres", "measure", "--all")
    groups = {Path(g["folder"]).name: g for g in js(run("fibres", "compare", "--json"))}
    assert set(groups) == {"fibres", "nanowires", "particles"}
    assert groups["fibres"]["images"] == 2  # aligned + random (blank: no signal, tiny: error)
    assert groups["fibres"]["diameter_unit"] == "nm"
    text = run("fibres", "compare").output
    assert "fibres" in text and "S " in text


@pytest.mark.skipif(not fibres.FIBRE_MODEL.is_file(), reason="orientation model not built")
def test_both_methods_are_stored_side_by_side(run, archive, tmp_path):
    run("ingest", str(archive), "--no-predict")
    out = js(run("fibres", "measure", "--all", "--method", "both", "--json"))
    assert out["reports"]["learned"]["measured"] == 5
    learned = {Path(r["image_path"]).name: r for r in out["results"] if r["method"] == "learned"}
    assert learned["aligned.tif"]["model_version"]
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert fibres.angle_diff(learned["aligned.tif"]["dominant_deg"], truth["aligned"]) < 10
    run("fibres", "export", str(tmp_path / "o"))
    with open(tmp_path / "o" / "fibres.csv", encoding="utf-8") as fh:
        methods = [r["method"] for r in csv.DictReader(fh)]
    assert methods.count("learned") == 6 and methods.count("gradient") == 6
