"""A fresh lab database (SEMTRIAGE_DB names a new file): the app never offers to pour the demo
into it, and the shipped default model (with its card) is one click away on Models."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import jobs
from core.models import active_model, read_card
from core.store import open_db
from tests.helpers import failures
from ui import retrain

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def start(tmp_path, monkeypatch, page=None):
    monkeypatch.setenv("SEMTRIAGE_DB", str(tmp_path / "lab" / "lab.db"))
    monkeypatch.setenv("SEMTRIAGE_ROOTS", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.text_input(key="reviewer").input("alice").run()
    if page:
        at.switch_page(page).run()
    assert not failures(at), [e.value for e in failures(at)]
    return at


def test_a_lab_database_is_never_offered_the_demo(tmp_path, monkeypatch):
    at = start(tmp_path, monkeypatch)
    keys = [b.key for b in at.button]
    assert "ov_demo" not in keys
    assert any("Ingest" in m.value for m in at.info)


def test_use_the_shipped_default_model_with_its_card(tmp_path, monkeypatch):
    at = start(tmp_path, monkeypatch, "pages/setup/models.py")
    at.button(key="mdl_use_default").click().run()
    db = open_db(tmp_path / "lab" / "lab.db")
    job = jobs.get_job(retrain.job_key())
    assert job is not None and job.wait(60), "the background prediction of what is stored ends"
    m = active_model(db)
    assert m is not None and read_card(m["path"])["class_names"] == m["class_names"]
    at.run()
    assert not failures(at)
    assert not [b for b in at.button if b.key == "mdl_use_default"], "offered only while no model exists"
    assert any(x.label == "Accuracy on synthetic images" for x in at.metric), "the card says where it was measured"
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0


def test_the_overview_says_the_default_model_is_provisional(tmp_path, monkeypatch):
    """Real micrographs ingested into a fresh lab database with the shipped model: the Overview
    says plainly that nothing was auto-labelled and why, and how many labels certification needs."""
    from core.intake import ingest
    from core.models import Classifier, register_model
    from tests.helpers import write_images

    db = open_db(tmp_path / "lab" / "lab.db")
    m = register_model(db, Path(APP).parent / "data" / "models" / "default.onnx", activate=True)
    ingest(db, [write_images(tmp_path / "imgs", n=6, size=64)[0].parent],
           classifier=Classifier(m["path"]), model_id=m["id"])
    db.conn.close()
    at = start(tmp_path, monkeypatch)
    text = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "PROVISIONAL" in text and "149 more" in text and "confident (unverified)" in text
