"""A dataset export with the particles of its images (core.workflows.export_dataset and
`semtriage export --particles`): the per-particle CSV and the COCO JSON are written beside the
manifest for the exported images that have particles, read back here, and listed in the
report and the export's marker."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from core import particles as P
from core.cli.root import cli
from core.datasets import MARKER
from core.intake import ingest
from core.review import decide
from core.store import open_db
from core.workflows import export_dataset
from tests.helpers.images import write_images


@pytest.fixture
def labelled(particle_folder, tmp_path) -> Path:
    """Four particle images with verified masks (imported) and one plain image without
    particles; images 1, 2 and 5 labelled, 3 and 4 not (not exported)."""
    path = tmp_path / "x.db"
    db = open_db(path)
    assert P.import_masks(db, particle_folder).images == 4
    plain = tmp_path / "plain"
    write_images(plain, 1, size=64)
    assert ingest(db, [plain]).added == 1
    for i, lab in ((1, "particles"), (2, "particles"), (5, "powder")):
        decide(db, i, "relabel", label=lab, reviewer="ann")
    db.conn.close()
    return path


def read_csv(p: Path) -> list[dict[str, str]]:
    with open(p, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def shas(db, ids) -> set[str]:
    return {db.execute("SELECT sha256 FROM images WHERE id = ?", [i]).fetchone()[0] for i in ids}


def test_imagefolder_export_with_particles_reads_back(labelled, tmp_path):
    db = open_db(labelled)
    out = tmp_path / "ds"
    rep = export_dataset(db, out, particles=True, fmt="imagefolder", zip_output=True)
    assert rep.count == 3
    part = rep.extras["particles"]
    assert part["images"] == 2 and part["files"] == list(P.DATASET_FILES)
    assert [out / f for f in P.DATASET_FILES] == [f for f in rep.files if f.name.startswith("particles")]

    rows = read_csv(out / "particles.csv")
    assert list(rows[0]) == list(P.CSV_COLUMNS)
    assert {r["image_sha256"] for r in rows} == shas(db, [1, 2])  # not 3, 4 (unlabelled), nor 5
    live = db.execute("SELECT count(*) FROM particles WHERE removed_event IS NULL AND image_id IN (1, 2)"
                      ).fetchone()[0]
    assert len(rows) == part["particles"] == live > 0
    assert all(r["source"] == "import" and float(r["ecd_nm"]) > 0 for r in rows)
    manifest = {r["sha256"]: r for r in read_csv(out / "manifest.csv")}
    assert {r["image_sha256"] for r in rows} <= set(manifest)  # joins on the sha
    assert [int(r["image_id"]) for r in read_csv(out / "particles-images.csv")] == [1, 2]

    coco = json.loads((out / "particles-coco.json").read_text(encoding="utf-8"))
    assert sorted(im["id"] for im in coco["images"]) == [1, 2]
    for im in coco["images"]:  # the copy inside the export, not the source
        assert (out / im["file_name"]).is_file(), im["file_name"]
        assert im["file_name"].startswith("particles/")  # the class folder
    assert len(coco["annotations"]) == part["annotations"] == live
    assert {a["image_id"] for a in coco["annotations"]} == {1, 2}
    ann = coco["annotations"][0]
    assert sum(ann["segmentation"]["counts"][1::2]) == ann["area"]  # the RLE covers the mask

    marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    assert marker["extras"]["particles"]["files"] == list(P.DATASET_FILES)
    with zipfile.ZipFile(rep.zip_path) as zf:
        assert {f"ds/{f}" for f in P.DATASET_FILES} <= set(zf.namelist())
    assert "particles: 2 images" in rep.summary()


def test_manifest_export_points_coco_at_the_sources_and_without_the_flag_writes_none(labelled, tmp_path):
    db = open_db(labelled)
    rep = export_dataset(db, tmp_path / "m", particles=True, fmt="csv")
    coco = json.loads((tmp_path / "m" / "particles-coco.json").read_text(encoding="utf-8"))
    src = {db.execute("SELECT path FROM images WHERE id = ?", [i]).fetchone()[0] for i in (1, 2)}
    assert {im["file_name"] for im in coco["images"]} == src
    assert rep.extras["particles"]["images"] == 2
    plain = export_dataset(db, tmp_path / "n", fmt="csv")
    assert not plain.extras and not any((tmp_path / "n" / f).exists() for f in P.DATASET_FILES)
    assert "extras" not in json.loads((tmp_path / "n" / MARKER).read_text()) or not json.loads(
        (tmp_path / "n" / MARKER).read_text())["extras"]


def test_no_exported_image_with_particles_still_writes_the_files(labelled, tmp_path):
    db = open_db(labelled)
    rep = export_dataset(db, tmp_path / "p", particles=True, fmt="csv", classes=["powder"])
    assert rep.count == 1 and rep.extras["particles"]["particles"] == 0
    assert read_csv(tmp_path / "p" / "particles.csv") == []
    assert json.loads((tmp_path / "p" / "particles-coco.json").read_text())["images"] == []


def test_cli_export_particles(labelled, tmp_path):
    out = tmp_path / "cli"
    r = CliRunner().invoke(cli, ["export", str(out), "--format", "hf", "--particles", "--db",
                                 str(labelled), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["count"] == 3 and res["particles"]["images"] == 2
    coco = json.loads((out / "particles-coco.json").read_text(encoding="utf-8"))
    assert all((out / im["file_name"]).is_file() for im in coco["images"])
    assert len(read_csv(out / "particles.csv")) == res["particles"]["particles"]
    r = CliRunner().invoke(cli, ["export", str(out), "--db", str(labelled)], catch_exceptions=False)
    assert r.exit_code == 0 and "Particles:" not in r.output
    r = CliRunner().invoke(cli, ["export", str(tmp_path / "r.csv"), "--predictions", "--particles",
                                 "--db", str(labelled)])
    assert r.exit_code == 2 and "--particles goes with a dataset export" in r.output
