"""Mask import (Cellpose style) and the exports: particles.csv columns, COCO RLE that decodes
to the stored masks, instance masks that import back, the HTML report; bad masks named."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from core import particles as P
from core.errors import InvalidValue
from core.particles import CSV_COLUMNS

REQUIRED = ("image_sha256", "image_path", "particle_id", "source", "detector_version",
            "centroid_x_px", "centroid_y_px", "area_px", "ecd_px", "ecd_nm", "feret_max_nm",
            "feret_min_nm", "aspect_ratio", "circularity", "solidity", "score", "population",
            "excluded")


def test_import_masks_stores_verified_particles(db, particle_folder):
    rep = P.import_masks(db, particle_folder)
    assert rep.images == 4 and rep.ingested == 4 and not rep.failed, rep.summary()
    truth = [json.loads(line) for line in (particle_folder / "truth.jsonl").read_text().splitlines()]
    assert rep.particles == sum(len(t["particles"]) for t in truth)
    states = {r["state"] for r in P.particle_images(db)}
    assert states == {"verified"}
    # detect --all never overwrites them
    again = P.detect_images(db, P.select_images(db, all_images=True), method="classical", redo=True)
    assert again.skipped_verified == 4 and again.detected == 0
    # re-import is idempotent: same particles, no duplicates
    P.import_masks(db, particle_folder)
    n = db.execute("SELECT count(*) FROM particles WHERE removed_event IS NULL").fetchone()[0]
    assert n == rep.particles


def test_bad_masks_are_named_and_the_rest_goes_on(db, particle_folder, tmp_path):
    src = sorted(particle_folder.glob("*.tif"))
    good = tmp_path / "in"
    good.mkdir()
    for f in src[:4]:
        (good / f.name).write_bytes(f.read_bytes())
    stems = [f.stem for f in src]
    Image.open(particle_folder / f"{stems[0]}_masks.png").save(good / f"{stems[0]}_masks.png")
    Image.new("I;16", (17, 9)).save(good / f"{stems[1]}_masks.png")  # wrong shape
    tifffile.imwrite(good / f"{stems[2]}_masks.tif", np.full((256, 320), 0.5, np.float32))
    Image.new("RGB", (320, 256)).save(good / f"{stems[3]}_masks.png")
    Image.new("I;16", (320, 256)).save(good / "orphan_masks.png")
    rep = P.import_masks(db, good)
    reasons = {p.split("/")[-1]: r for p, r in rep.failed}
    assert rep.images == 1
    assert "differs from its image" in reasons[f"{stems[1]}_masks.png"]
    assert "non-integer" in reasons[f"{stems[2]}_masks.tif"]
    assert "RGB" in reasons[f"{stems[3]}_masks.png"]
    assert "without an image" in reasons["orphan_masks.png"]
    # nothing half stored: only the good image has particles
    assert len(P.particle_images(db)) == 1


def test_exports(db, particle_folder, tmp_path):
    P.import_masks(db, particle_folder)
    out = tmp_path / "out"
    res = P.export_particles(db, out, "csv")
    with open(out / "particles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(REQUIRED) <= set(rows[0]) and list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == res["particles"]
    assert {r["source"] for r in rows} == {"import"}
    assert {r["excluded"] for r in rows} <= {"", "edge", "databar"}
    assert all(r["ecd_nm"] for r in rows)  # the TIFFs carry their pixel size
    # COCO RLE decodes to the stored mask
    P.export_particles(db, out, "coco")
    doc = json.loads((out / "coco.json").read_text())
    ann = doc["annotations"][0]
    h, w = ann["segmentation"]["size"]
    flat = np.zeros(h * w, bool)
    pos, val = 0, False
    for c in ann["segmentation"]["counts"]:
        flat[pos:pos + c] = val
        pos, val = pos + c, not val
    mask = flat.reshape((w, h)).T
    lab, ids = P.label_image(db, ann["image_id"])
    assert np.array_equal(mask, lab == ids.index(ann["id"]) + 1)
    # masks import back as the same particles
    P.export_particles(db, out, "masks")
    pngs = sorted((out / "masks").glob("*_masks.png"))
    assert len(pngs) == 4
    a = np.asarray(Image.open(pngs[0]))
    assert a.max() == len(P.live_ids(db, db.execute("SELECT id FROM images ORDER BY id").fetchone()[0]))
    P.export_particles(db, out, "report")
    html = (out / "report.html").read_text()
    assert "D50" in html and "<svg" in html


def test_report_escapes_user_text(db, particle_folder, tmp_path):
    P.import_masks(db, particle_folder)
    P.export_report(db, tmp_path, title="<script>alert(1)</script>")
    assert "<script>" not in (tmp_path / "report.html").read_text()


def test_unknown_export_format_is_refused(db, tmp_path):
    with pytest.raises(InvalidValue, match="xlsx"):
        P.export_particles(db, tmp_path, "xlsx")
