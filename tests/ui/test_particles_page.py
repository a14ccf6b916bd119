"""The Particles page through AppTest: every view renders on an empty and a populated
database, the edit buttons change the database, the pixel size is set from the page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import particles as P
from core.intake import ingest
from core.store import open_db
from core.synth import write_particle_dataset
from tests.helpers import failures

APP = str(Path(__file__).resolve().parents[2] / "app.py")
VIEWS = ["Review", "Distribution", "Detect & export"]


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
    return path


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
