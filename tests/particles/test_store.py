"""Particles in SQLite: batch detection, verified images never overwritten, the edit events
(add from a click, delete, merge, split, relabel, verify) with undo, pixel sizes and nm."""

from __future__ import annotations

import numpy as np
import pytest

from core import particles as P
from core.errors import InvalidValue
from core.store import write_tx


def first(db):
    return db.execute("SELECT id FROM images ORDER BY id").fetchone()[0]


def test_detect_all_then_never_overwrite_verified(ingested):
    db = ingested
    ids = P.select_images(db, all_images=True)
    rep = P.detect_images(db, ids, method="classical")
    assert rep.detected == 4 and not rep.failed and rep.particles > 20
    iid = ids[0]
    n0 = len(P.particle_rows(db, iid))
    P.verify_image(db, iid, reviewer="alice")
    again = P.detect_images(db, ids, method="model", redo=True)
    assert again.skipped_verified == 1 and again.detected == 3
    rows = P.particle_rows(db, iid)
    assert len(rows) == n0 and {r["source"] for r in rows} == {"classical"}
    plain = P.detect_images(db, ids, method="model")
    assert plain.skipped_done == 3 and plain.detected == 0


def test_edit_events_and_undo(ingested):
    db = ingested
    iid = first(db)
    P.detect_images(db, [iid], method="classical")
    scan = P.load_scan(db, iid).scan
    ids0 = P.live_ids(db, iid)
    a, b = ids0[:2]
    P.delete_particles(db, iid, [a], reviewer="bob")
    assert a not in P.live_ids(db, iid)
    m = P.merge_particles(db, iid, [b, ids0[2]], scan, reviewer="bob")
    assert m in P.live_ids(db, iid) and b not in P.live_ids(db, iid)
    parts = P.split_particle(db, iid, m, scan, reviewer="bob")
    assert len(parts) == 2
    P.relabel_particles(db, iid, [parts[0]], "shadow", reviewer="bob")
    live = P.live_ids(db, iid)
    rows = {r["id"]: r for r in P.particle_rows(db, iid)}
    assert rows[parts[0]]["label"] == "shadow"
    # undo four times: back to the detection
    for expect in ("relabel", "split", "merge", "delete"):
        ev = P.undo_last(db, iid, reviewer="bob")
        assert ev["action"] == expect
    assert sorted(P.live_ids(db, iid)) == sorted(ids0)
    assert P.undo_last(db, iid, reviewer="bob") is None
    actions = [h["action"] for h in P.history(db, iid)]
    assert actions[:6] == ["detect", "delete", "merge", "split", "relabel", "undo"]
    assert len(live) == len(ids0) - 3 + 2


def test_add_from_a_click_segments_the_particle_there(ingested):
    db = ingested
    iid = first(db)
    P.detect_images(db, [iid], method="classical")
    rows = P.particle_rows(db, iid)
    inner = sorted((r for r in rows if not r["excluded"]), key=lambda r: r["area_px"])
    target = inner[len(inner) // 2]
    P.delete_particles(db, iid, [target["id"]], reviewer="carol")
    scan = P.load_scan(db, iid).scan
    new = P.add_particle(db, iid, scan, target["centroid_x_px"], target["centroid_y_px"], reviewer="carol")
    got = {r["id"]: r for r in P.particle_rows(db, iid)}[new]
    assert got["source"] == "human"
    assert got["area_px"] == pytest.approx(target["area_px"], rel=0.6)
    with pytest.raises(InvalidValue, match="outside"):
        P.add_particle(db, iid, scan, -5, 3, reviewer="carol")


def test_pixel_size_set_by_user_gives_nm(ingested):
    db = ingested
    iid = first(db)
    P.detect_images(db, [iid], method="classical")
    r0 = P.particle_rows(db, iid)[0]
    assert r0["ecd_nm"] is not None  # the TIFF carries ImageJ pixel size
    P.set_pixel_size(db, [iid], 2e-9, reviewer="dave")
    r1 = P.particle_rows(db, iid)[0]
    assert r1["ecd_nm"] == pytest.approx(r1["ecd_px"] * 2)
    assert P.pixel_size(db, iid)[1].startswith("set by dave")
    assert P.scale_bar_pixel_size(10, 10, 110, 10, 500) == pytest.approx(5e-9)
    with pytest.raises(InvalidValue):
        P.set_pixel_size(db, [iid], 5.0, reviewer="dave")


def test_review_queue_puts_images_without_particles_or_low_scores_first(ingested):
    db = ingested
    ids = P.select_images(db, all_images=True)
    P.detect_images(db, ids, method="classical")
    for pid in P.live_ids(db, ids[2]):
        P.delete_particles(db, ids[2], [pid], reviewer="eve")
    q = P.review_queue(db)
    assert q[0]["image_id"] == ids[2]
    P.verify_image(db, ids[0], reviewer="eve")
    assert ids[0] not in [r["image_id"] for r in P.review_queue(db)]


def test_label_image_round_trips_masks(ingested):
    db = ingested
    iid = first(db)
    P.detect_images(db, [iid], method="classical")
    lab, ids = P.label_image(db, iid)
    rows = {r["id"]: r for r in P.particle_rows(db, iid)}
    areas = np.bincount(lab.ravel())
    assert all(areas[k] == rows[pid]["area_px"] for k, pid in enumerate(ids, 1))


def test_an_upgrade_that_ships_a_new_default_detector_activates_it(db):
    """A database whose active detector was the previously shipped file (same path, other
    hash) gets the new shipped one, active; a lab's own active detector stays active."""
    first = P.active_detector(db)
    assert first["kind"] == "model"
    with write_tx(db):  # as if the row had been made by the previous release's file
        db.execute("UPDATE particle_detectors SET sha256 = 'old', version = 'particles-default-v0' "
                   "WHERE id = ?", [first["id"]])
    now = P.active_detector(db)
    assert now["version"] == first["version"] and now["id"] != first["id"]
    assert {d["version"] for d in P.list_detectors(db)} >= {"particles-default-v0", first["version"]}

    P.set_active_detector(db, "classical-default")  # a lab's choice survives the next upgrade
    with write_tx(db):
        db.execute("UPDATE particle_detectors SET sha256 = 'older', version = 'particles-default-v1b' "
                   "WHERE id = ?", [now["id"]])
    assert P.active_detector(db)["version"] == "classical-default"
    assert first["version"] in {d["version"] for d in P.list_detectors(db)}
