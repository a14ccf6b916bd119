"""The Particles page through AppTest: every view renders on an empty and a populated
database, the edit buttons change the database, the pixel size is set from the page, the images
shown in Distribution are saved as a selection and shown as a set, and the Train view trains a
candidate detector in the background (progress, cancel), compares it with the active one and
promotes or discards it — for administrators only."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core import particles as P
from core.intake import ingest
from core.review import decide
from core.store import open_db
from core.synth import write_particle_dataset
from tests.helpers import failures

APP = str(Path(__file__).resolve().parents[2] / "app.py")
VIEWS = ["Review", "Distribution", "Detect & export", "Train"]


@pytest.fixture
def pdb(tmp_path, monkeypatch) -> Path:
    imgs = tmp_path / "imgs"
    write_particle_dataset(imgs, 2, seed=5, size=(192, 256), masks=False)
    path = tmp_path / "data" / "p.db"
    db = open_db(path)
    ingest(db, [imgs])
    P.detect_images(db, P.select_images(db, all_images=True), method="classical")
    monkeypatch.setenv("SEMTRIAGE_DB", str(path))
    monkeypatch.setenv("SEMTRIAGE_ROOTS", str(tmp_path))
    yield path
    job = jobs.get_job(train_key(path))
    if job is not None:  # never leave a training thread behind for the next test
        job.cancel()
        job.wait(120)
        jobs.forget_job(train_key(path))


def train_key(path: Path) -> str:
    return "particles-train:" + str(path.resolve())


def texts(at: AppTest) -> str:
    """Every text on the page, without the Markdown escapes of ui.esc."""
    return "\n".join(str(e.value) for kind in ("markdown", "info", "success", "warning", "error", "caption")
                     for e in getattr(at, kind)).replace("\\", "")


def start(reviewer: str | None = "alice") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    if reviewer:
        at.text_input(key="reviewer").input(reviewer).run()
    at.switch_page("pages/data/particles.py").run()
    assert not failures(at), [e.value for e in failures(at)]
    return at


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_renders_on_an_empty_database(tmp_path, monkeypatch, view):
    monkeypatch.setenv("SEMTRIAGE_DB", str(tmp_path / "e.db"))
    at = start()
    at.segmented_control(key="pt_view").set_value(view).run()
    assert not failures(at), [e.value for e in failures(at)]


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_renders_with_particles(pdb, view):
    at = start()
    at.segmented_control(key="pt_view").set_value(view).run()
    assert not failures(at), [e.value for e in failures(at)]


def test_verify_and_undo_buttons_change_the_database(pdb):
    at = start()
    iid = at.selectbox(key="pt_image").value
    at.button(key="pt_verify").click().run()
    db = open_db(pdb)
    assert P.image_state(db, iid)["state"] == "verified"
    assert P.image_state(db, iid)["verified_by"] == "alice"
    at.button(key="pt_undo").click().run()
    assert P.image_state(open_db(pdb), iid)["state"] == "detected"


def test_without_a_name_edits_are_refused(pdb):
    at = start(reviewer=None)
    iid = at.selectbox(key="pt_image").value
    at.button(key="pt_verify").click().run()
    assert P.image_state(open_db(pdb), iid)["state"] == "detected"
    assert any("name" in w.value for w in at.warning)


def test_pixel_size_typed_for_an_image(pdb):
    at = start()
    iid = at.selectbox(key="pt_image").value
    at.number_input(key="pt_nm").set_value(2.5).run()
    at.button(key="pt_set_img").click().run()
    assert P.pixel_size(open_db(pdb), iid)[0] == pytest.approx(2.5e-9)


def distribution(at: AppTest) -> AppTest:
    at.segmented_control(key="pt_view").set_value("Distribution").run()
    return at


def test_save_the_images_shown_as_a_selection_then_delete_it(pdb):
    at = distribution(start())
    at.radio(key="pt_by").set_value("selection").run()
    assert "No saved selection yet" in texts(at)
    at.radio(key="pt_by").set_value("image").run()
    first = at.selectbox(key="pt_set_a").value  # one image's set: "name (id)"
    iid = int(first.rsplit("(", 1)[1].rstrip(")"))
    at.text_input(key="pt_sel_name").input("one image")  # held by the form until it is submitted
    at.button(key="pt_sel_save").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    db = open_db(pdb)
    assert P.selection_images(db, "one image") == [iid]
    assert P.find_selection(db, "one image")["created_by"] == "alice"
    assert "Saved 1 image(s) as the selection 'one image'" in texts(at)
    assert at.radio(key="pt_by").value == "selection" and at.selectbox(key="pt_set_a").value == "one image"
    want = P.set_stats(db, [iid])["count"]
    assert f"**{want:,} particles**" in texts(at)
    assert "made by alice: shown in the app: image" in texts(at)
    at.button(key="pt_sel_delete").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    assert P.list_selections(open_db(pdb)) == []
    assert "No saved selection yet" in texts(at)


def test_a_bad_selection_name_is_refused_on_the_page(pdb):
    at = distribution(start())
    at.text_input(key="pt_sel_name").input("<b>bold</b>")
    at.button(key="pt_sel_save").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    assert any("Selection name '<b>bold</b>' is not valid" in e.value for e in at.error)
    assert P.list_selections(open_db(pdb)) == []


def test_only_the_maker_or_an_administrator_may_delete_a_selection(pdb, monkeypatch):
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", "bob")
    P.save_selection(open_db(pdb), "carols", [1, 2], reviewer="carol")
    at = distribution(start("alice"))
    at.radio(key="pt_by").set_value("selection").run()
    assert at.button(key="pt_sel_delete").disabled
    at = distribution(start("bob"))
    at.radio(key="pt_by").set_value("selection").run()
    assert not at.button(key="pt_sel_delete").disabled


def train_view(reviewer: str = "alice") -> AppTest:
    at = start(reviewer)
    at.segmented_control(key="pt_view").set_value("Train").run()
    assert not failures(at), [e.value for e in failures(at)]
    return at


def verify_all(path: Path) -> None:
    db = open_db(path)
    for r in P.particle_images(db):
        P.verify_image(db, r["id"], reviewer="alice")


def test_train_says_what_is_needed_with_fewer_than_two_verified_images(pdb):
    P.verify_image(open_db(pdb), 1, reviewer="alice")
    at = train_view()
    assert "1 verified image(s). Training needs at least 2" in texts(at)
    assert at.button(key="pt_train").disabled


def test_non_admin_sees_no_training_or_promotion_controls(pdb, monkeypatch):
    verify_all(pdb)
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", "bob")
    P.register_detector(open_db(pdb), version="cand-x", metrics=METRICS)
    at = train_view("alice")
    keys = {b.key for b in at.button}
    assert "pt_train" not in keys and not any(k and k.startswith(("pt_promote", "pt_discard")) for k in keys)
    assert "not an administrator" in texts(at)
    assert any(m.label == "F1" for m in at.metric), "the comparison is shown to everyone"


def test_train_in_the_background_then_compare_and_promote(pdb):
    verify_all(pdb)
    at = train_view()
    at.number_input(key="pt_train_seconds").set_value(5)
    at.number_input(key="pt_train_synthetic").set_value(2)
    at.button(key="pt_train").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    job = jobs.get_job(train_key(pdb))
    assert job is not None and job.kind == "particle-train"
    if job.running:
        assert any(e.proto.text.startswith("Training a candidate detector") for e in at.get("progress"))
        assert "pt_train" not in {b.key for b in at.button}, "no second start while it runs"
    assert job.wait(120), "training finished"
    assert job.status == "done", job.error
    at.run()
    assert not failures(at), [e.value for e in failures(at)]
    version = job.result["version"]
    assert f"Trained {version} on 1 verified image(s)" in texts(at)
    assert at.selectbox(key="pt_candidate").value == version
    assert {m.label for m in at.metric} >= {"F1", "D50 error"}
    assert "On 1 held-out verified image(s)" in texts(at)
    assert jobs.get_job(train_key(pdb)) is None, "shown once, then dropped"
    cand = P.find_detector(open_db(pdb), version)
    assert not cand["active"]
    at.button(key=f"pt_promote_{cand['id']}").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    assert P.active_detector(open_db(pdb))["version"] == version
    assert f"{version} is now the active particle detector" in texts(at)


def test_cancel_registers_nothing(pdb):
    verify_all(pdb)
    before = [d["version"] for d in P.list_detectors(open_db(pdb))]
    at = train_view()
    at.number_input(key="pt_train_seconds").set_value(600)
    at.button(key="pt_train").click().run()
    job = jobs.get_job(train_key(pdb))
    assert job is not None and job.running
    at.button(key="pt_train_cancel").click().run()
    assert job.wait(60) and job.status == "cancelled", (job.status, job.error)
    at.run()
    assert not failures(at), [e.value for e in failures(at)]
    assert "Training was cancelled; no detector was registered" in texts(at)
    assert [d["version"] for d in P.list_detectors(open_db(pdb))] == before
    assert not list((pdb.parent / "models" / "particles").glob("*.onnx"))


METRICS = {"held_out_images": [2],
           "candidate": {"f1": 0.8, "precision": 0.9, "recall": 0.7, "d50_rel_err": 0.05,
                         "merges": 1, "splits": 0},
           "active_at_training": {"version": "particles-default-v3", "f1": 0.6, "precision": 0.7,
                                  "recall": 0.5, "d50_rel_err": -0.1, "merges": 3, "splits": 2}}


def test_discard_a_candidate(pdb):
    db = open_db(pdb)
    P.ensure_defaults(db)
    cand = P.register_detector(db, version="cand-x", metrics=METRICS)
    at = train_view()
    assert at.selectbox(key="pt_candidate").value == "cand-x"
    f1 = next(m for m in at.metric if m.label == "F1")
    assert f1.value == "0.800" and "+0.200" in str(f1.proto.delta)
    at.button(key=f"pt_discard_{cand['id']}").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    assert "cand-x" not in {d["version"] for d in P.list_detectors(open_db(pdb))}
    assert "Discarded cand-x" in texts(at)


def test_the_export_page_includes_the_particles_when_asked(pdb):
    db = open_db(pdb)
    for r in P.particle_images(db):
        decide(db, r["id"], "relabel", label="particles", reviewer="alice")
    at = start()
    at.switch_page("pages/data/export.py").run()
    at.selectbox(key="exp_fmt").set_value("imagefolder").run()
    at.text_input(key="exp_name").input("with-particles").run()
    at.toggle(key="exp_particles").set_value(True).run()
    at.button(key="exp_go").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    out = pdb.parent / "exports" / "with-particles"
    live = db.execute("SELECT count(*) FROM particles WHERE removed_event IS NULL").fetchone()[0]
    with open(out / "particles.csv", encoding="utf-8") as f:
        assert sum(1 for _ in csv.DictReader(f)) == live > 0
    coco = json.loads((out / "particles-coco.json").read_text(encoding="utf-8"))
    assert len(coco["annotations"]) == live
    assert all((out / im["file_name"]).is_file() for im in coco["images"])
    assert f"particles: 2 images, {live} particles" in texts(at)


def test_zoom_and_pan_show_a_window_of_the_image(pdb):
    """The 256 × 192 image is fitted at 3:1; 4:1 shows a 192 × 144 window from its middle, the
    pan buttons move it by half a view and stop at the edge, Fit shows the whole image again."""
    at = start()

    def view():
        return [c.value for c in at.caption if "showing" in c.value]

    assert view() == [] and at.button(key="pt_pan_right").disabled
    assert at.segmented_control(key="pt_zoom").options == ["Fit", "4:1", "8:1"]
    at.segmented_control(key="pt_zoom").set_value(4).run()
    assert not failures(at), [e.value for e in failures(at)]
    assert view() == ["4:1 · showing x 32–224, y 24–168 of 256 × 192 px"]
    at.button(key="pt_pan_right").click().run()
    assert view() == ["4:1 · showing x 64–256, y 24–168 of 256 × 192 px"], "half a view, then the edge"
    at.button(key="pt_pan_up").click().run()
    assert view() == ["4:1 · showing x 64–256, y 0–144 of 256 × 192 px"]
    at.segmented_control(key="pt_zoom").set_value(8).run()
    assert view() == ["8:1 · showing x 112–208, y 36–108 of 256 × 192 px"], "a zoom level keeps the centre"
    at.segmented_control(key="pt_zoom").set_value(0).run()
    assert view() == [] and at.button(key="pt_pan_right").disabled
