"""The Streamlit pages through AppTest: every page renders on an empty and on a populated
database, and the review, grid, undo, threshold, ingest and export flows change the database
as they should. Widgets are driven by their keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core import review as core_review
from core.review import current_label, history, queue_counts
from core.store import open_db
from tests.helpers import app_db_copy, build_app_db, build_tiny_model, failures, write_images

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = [
    "pages/data/overview.py", "pages/label/review.py", "pages/label/grid.py", "pages/data/reference.py",
    "pages/data/ingest.py", "pages/data/export.py", "pages/setup/models.py",
]
CLASSES = ("fibres", "particles", "powder")




@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    return build_app_db(tmp_path_factory.mktemp("template"))


@pytest.fixture
def app_db(template_db, tmp_path, monkeypatch) -> Path:
    """A private copy of the populated database, named by SEMTRIAGE_DB."""
    return app_db_copy(template_db, tmp_path, monkeypatch)


@pytest.fixture
def empty_db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data" / "empty.db"
    monkeypatch.setenv("SEMTRIAGE_DB", str(path))
    monkeypatch.setenv("SEMTRIAGE_ROOTS", str(tmp_path))
    return path


def start(page: str | None = None, reviewer: str | None = "alice") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    assert not failures(at), failures(at)
    if reviewer:
        at.text_input(key="reviewer").input(reviewer).run()
    if page:
        at.switch_page(page).run()
    assert not failures(at), [e.value for e in failures(at)]
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "info", "success", "warning", "error", "caption")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


# ---------------------------------------------------------------- every page renders


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_empty_db(empty_db, page):
    at = start(page, reviewer=None)
    assert not failures(at)
    assert not at.error, [e.value for e in at.error]


def test_empty_db_pages_say_what_to_do(empty_db):
    assert "No images yet" in texts(start("pages/data/overview.py"))
    assert "No model is active" in texts(start("pages/label/review.py"))
    assert "No labelled images yet" in texts(start("pages/data/reference.py"))


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_populated_db(app_db, page):
    at = start(page)
    assert not failures(at)
    assert not at.error, [e.value for e in at.error]


def test_review_needs_a_reviewer_name(app_db):
    at = start("pages/label/review.py", reviewer=None)
    assert "Type your name" in texts(at)
    assert not [b for b in at.button if b.key and b.key.startswith("rv_accept")]


# ---------------------------------------------------------------- review


def review(at_page: str = "pages/label/review.py", queue: str | None = None) -> AppTest:
    at = start(at_page)
    if queue:
        at.button_group(key="review_queue").set_value(queue).run()
    return at


def test_accept_records_the_prediction_with_the_reviewer(app_db):
    at = review()
    iid = at.session_state["review_current"]
    pred = core_review.review_item(open_db(app_db), iid)["pred"]
    at.button(key=f"rv_accept_{iid}").click().run()
    assert not failures(at)
    cur = current_label(open_db(app_db), iid)
    assert cur is not None and (cur["label"], cur["reviewer"], cur["action"]) == (pred, "alice", "accept")
    nxt = at.session_state["review_current"]
    assert nxt is not None and nxt != iid, "the next image is on screen at once"
    assert "**1** decided this session" in texts(at)


def test_class_button_relabels(app_db):
    at = review()
    iid = at.session_state["review_current"]
    pred = core_review.review_item(open_db(app_db), iid)["pred"]
    other = next(i for i, c in enumerate(CLASSES) if c != pred)
    at.button(key=f"rv_cls{other}_{iid}").click().run()
    cur = current_label(open_db(app_db), iid)
    assert (cur["label"], cur["action"], cur["source"]) == (CLASSES[other], "relabel", "human")


def test_unusable(app_db):
    at = review()
    iid = at.session_state["review_current"]
    at.button(key=f"rv_unusable_{iid}").click().run()
    assert current_label(open_db(app_db), iid)["label"] == "unusable"


def test_several_records_the_classes_chosen(app_db):
    """M, then the class keys toggle the classes present, Enter saves them with the label."""
    at = review()
    iid = at.session_state["review_current"]
    at.button(key=f"rv_several_{iid}").click().run()
    assert current_label(open_db(app_db), iid) is None, "nothing saved until the classes are chosen"
    at.button(key=f"rv_sv_save_{iid}").click().run()  # fewer than two: refused, still choosing
    assert current_label(open_db(app_db), iid) is None
    for i in (0, 2, 1):
        at.button(key=f"rv_sv{i}_{iid}").click().run()
    at.button(key=f"rv_sv1_{iid}").click().run()  # toggled off again
    at.button(key=f"rv_sv_save_{iid}").click().run()
    cur = current_label(open_db(app_db), iid)
    assert cur["label"] == "several" and json.loads(cur["classes"]) == [CLASSES[0], CLASSES[2]]
    assert at.session_state["review_current"] != iid, "the next image is on screen"


def test_several_can_be_cancelled(app_db):
    at = review()
    iid = at.session_state["review_current"]
    at.button(key=f"rv_several_{iid}").click().run()
    at.button(key=f"rv_sv0_{iid}").click().run()
    at.button(key=f"rv_sv_cancel_{iid}").click().run()
    assert current_label(open_db(app_db), iid) is None
    assert at.button(key=f"rv_accept_{iid}"), "back to the normal keys on the same image"


def test_undo_removes_the_label_and_shows_the_image_again(app_db):
    at = review()
    iid = at.session_state["review_current"]
    at.button(key=f"rv_accept_{iid}").click().run()
    assert current_label(open_db(app_db), iid) is not None
    at.button(key="rv_undo").click().run()
    assert not failures(at)
    db = open_db(app_db)
    assert current_label(db, iid) is None
    events = history(db, iid)
    assert [e["action"] for e in events][-2:] == ["accept", "undo"]
    assert events[-2]["undone"] == 1
    assert at.session_state["review_current"] == iid, "the undone image is back on screen"
    assert "**0** decided this session" in texts(at)


def test_back_shows_the_previous_image_and_a_class_key_changes_it(app_db):
    at = review()
    first = at.session_state["review_current"]
    at.button(key=f"rv_accept_{first}").click().run()
    at.button(key="rv_back").click().run()
    assert at.session_state["review_current"] == first
    assert "Looking back" in texts(at)
    pred = current_label(open_db(app_db), first)["label"]
    other = next(i for i, c in enumerate(CLASSES) if c != pred)
    at.button(key=f"rv_cls{other}_{first}").click().run()
    assert current_label(open_db(app_db), first)["label"] == CLASSES[other]
    assert at.session_state["review_back"] is None, "after the last decision it is back to the queue"
    assert at.session_state["review_current"] != first


def test_two_reviewers_never_get_the_same_image(app_db):
    a, b = review(), start("pages/label/review.py", reviewer="bob")
    assert a.session_state["review_current"] != b.session_state["review_current"]


def test_empty_queue_offers_the_other_queues(app_db):
    db = open_db(app_db)
    at = review(queue="auto")
    for _ in range(queue_counts(db)["auto"]):
        iid = at.session_state["review_current"]
        at.button(key=f"rv_accept_{iid}").click().run()
    assert "queue is empty" in texts(at)
    switch = [b for b in at.button if b.key and b.key.startswith("rv_switch_")]
    assert switch
    switch[0].click().run()
    assert at.session_state["review_current"] is not None


def test_overview_queue_button_opens_review_on_that_queue(app_db):
    at = start("pages/data/overview.py")
    at.button(key="ov_go_mixed").click().run()
    assert not failures(at)
    assert at.session_state["review_queue"] == "mixed"
    iid = at.session_state["review_current"]
    assert core_review.review_item(open_db(app_db), iid)["queue"] == "mixed"


# ---------------------------------------------------------------- grid, thresholds, export, ingest


def test_grid_confirms_the_rest_and_relabels_the_ticked(app_db):
    db = open_db(app_db)
    cls = db.execute(
        "SELECT pred FROM predictions WHERE done = 0 AND queue != 'auto' GROUP BY pred "
        "ORDER BY COUNT(*) DESC LIMIT 1").fetchone()[0]
    at = start("pages/label/grid.py")
    at.selectbox(key="grid_class_box").set_value(cls).run()
    boxes = [c for c in at.checkbox if c.key and c.key.startswith("grid_odd_")]
    assert len(boxes) >= 2
    odd = int(boxes[0].key.rsplit("_", 1)[1])
    boxes[0].check().run()
    other = next(c for c in CLASSES if c != cls)
    at.selectbox(key=f"grid_cls_{odd}").set_value(other).run()
    at.button(key="grid_confirm").click().run()
    assert not failures(at)
    assert current_label(db, odd)["label"] == other
    rest = [int(b.key.rsplit("_", 1)[1]) for b in boxes[1:]]
    assert all(current_label(db, i)["label"] == cls for i in rest)
    assert all(current_label(db, i)["reviewer"] == "alice" for i in rest)


def grid_ids(at):
    return sorted(int(c.key.rsplit("_", 1)[1]) for c in at.checkbox if c.key and c.key.startswith("grid_odd_"))


def test_grid_reserves_nothing_until_confirmed_and_counts_others_claims(app_db):
    db = open_db(app_db)
    cls = db.execute(
        "SELECT pred FROM predictions WHERE done = 0 AND queue != 'auto' GROUP BY pred "
        "ORDER BY COUNT(*) DESC LIMIT 1").fetchone()[0]
    alice = start("pages/label/grid.py")
    alice.selectbox(key="grid_class_box").set_value(cls).run()
    shown = grid_ids(alice)
    assert len(shown) >= 2
    assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0, "opening the grid claims nothing"
    bob = start("pages/label/grid.py", reviewer="bob")
    bob.selectbox(key="grid_class_box").set_value(cls).run()
    assert grid_ids(bob) == shown, "a second reviewer sees the same images"
    # carol has one of them on the Review page: the counts and the grid leave it out
    taken = shown[0]
    core_review.claim(db, [taken], "carol")
    bob.run()
    assert taken not in grid_ids(bob)
    label = next(o for o in bob.selectbox(key="grid_class_box").options if o.startswith(cls))
    assert f"({len(shown) - 1:,} to confirm)" in label, label
    # alice confirms: carol's image is left to carol, the rest is labelled by alice
    alice.button(key="grid_confirm").click().run()
    assert not failures(alice)
    assert current_label(db, taken) is None
    assert all(current_label(db, i)["reviewer"] == "alice" for i in shown[1:])
    assert "1 left to other reviewers" in texts(alice)
    # bob's page, confirmed on top of alice's work, writes nothing twice
    events = db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0]
    bob.button(key="grid_confirm").click().run()
    assert db.execute("SELECT COUNT(*) FROM label_events").fetchone()[0] == events


def test_grid_include_auto_keeps_the_class_and_sizes_change_the_columns(app_db):
    db = open_db(app_db)
    classes = [r[0] for r in db.execute(
        "SELECT pred FROM predictions WHERE done = 0 GROUP BY pred ORDER BY COUNT(*) ASC")]
    at = start("pages/label/grid.py")
    at.selectbox(key="grid_class_box").set_value(classes[0]).run()
    at.toggle(key="grid_auto").set_value(True).run()
    assert at.selectbox(key="grid_class_box").value == classes[0], "the toggle never switches the class"
    at.toggle(key="grid_auto").set_value(False).run()
    assert at.selectbox(key="grid_class_box").value == classes[0]
    at.button_group(key="grid_size").set_value("Extra large").run()
    assert not failures(at)
    assert at.session_state["grid_size"] == "Extra large"


def test_threshold_change_reroutes_the_queues(app_db):
    db = open_db(app_db)
    before = queue_counts(db)
    at = start("pages/setup/models.py")
    at.slider(key="thr_accept").set_value(0.0).run()
    assert "Estimated error" in texts(at) or "no error estimate" in texts(at)
    at.button(key="thr_save").click().run()
    assert not failures(at)
    after = queue_counts(db)
    assert after["uncertain"] == 0 < before["uncertain"]
    assert after["auto"] > before["auto"]


def test_export_writes_files_and_offers_the_zip(app_db, tmp_path):
    at = start("pages/data/export.py")
    at.selectbox(key="exp_fmt").set_value("csv").run()
    at.text_input(key="exp_name").input("ref").run()
    at.button(key="exp_go").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    out = tmp_path / "data" / "exports" / "ref"
    assert (out / "manifest.csv").is_file()
    assert (tmp_path / "data" / "exports" / "ref.zip").is_file()
    assert "4 images exported" in texts(at)
    at.button(key="exp_report").click().run()
    assert list((tmp_path / "data" / "exports").glob("predictions-*.csv"))


def test_an_export_of_someone_else_is_not_replaced(app_db, tmp_path, monkeypatch):
    """Issue 18 (15): bob may not export under the name of alice's export (the button is
    disabled and says why; core refuses it too) and her files stay; her own second export
    under that name replaces it."""
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", "boss")
    out = tmp_path / "data" / "exports" / "ref"
    for who in ("alice", "bob", "alice"):
        at = start("pages/data/export.py", reviewer=who)
        at.text_input(key="exp_name").input("ref").run()
        assert at.button(key="exp_go").disabled is (who == "bob"), who  # hers: bob may not
        assert ("only an administrator may replace it" in texts(at)) is (who == "bob")
        if who != "bob":  # core's refusal of bob itself: tests/datasets/test_exports.py
            at.button(key="exp_go").click().run()
            assert not failures(at) and not at.error, [e.value for e in at.error]
        assert json.loads((out / ".semtriage-export.json").read_text())["by"] == "alice"


def finish_ingest(at, app_db) -> None:
    """The ingest runs in the background (closing the tab does not stop it): wait, then rerun
    the page to see how it ended."""
    job = jobs.get_job("ingest:" + str(app_db.resolve()))
    assert job is not None and job.kind == "ingest"
    assert job.wait(120) and job.status == "done", (job.status, job.error)
    at.run()
    assert not failures(at), [e.value for e in failures(at)]


def test_ingest_a_server_folder_with_a_failure_table(app_db, tmp_path):
    folder = tmp_path / "new"
    write_images(folder, n=3, size=40, seed=9)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    at = start("pages/data/ingest.py")
    at.text_input(key="ing_folder").input(str(folder)).run()
    at.button(key="ing_go_folder").click().run()
    assert not failures(at)
    finish_ingest(at, app_db)
    db = open_db(app_db)
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 23
    assert "3 added" in texts(at) and "1 failed" in texts(at)
    assert any("broken.png" in str(v) for v in at.dataframe[0].value["file"])
    new = db.execute("SELECT p.queue, COUNT(*) FROM predictions p JOIN files f ON f.image_id = p.image_id "
                     "WHERE f.path LIKE ? GROUP BY p.queue", [f"{folder}%"]).fetchall()
    shown = {m.label: m.value for m in at.metric}
    assert sum(int(v) for v in shown.values() if str(v).isdigit()) == 3 == sum(n for _, n in new)
    assert shown["Confident"] == str(dict(new).get("auto", 0))


def test_ingest_on_the_page_embeds_the_new_images_where_a_similarity_view_exists(app_db, tmp_path):
    from core import similarity

    db = open_db(app_db)
    similarity.embed_archive(db)
    folder = tmp_path / "more"
    write_images(folder, n=2, size=40, seed=21)
    at = start("pages/data/ingest.py")
    at.text_input(key="ing_folder").input(str(folder)).run()
    at.button(key="ing_go_folder").click().run()
    finish_ingest(at, app_db)
    new = [r[0] for r in db.execute("SELECT image_id FROM files WHERE path LIKE ?", [f"{folder}%"])]
    assert len(new) == 2
    assert db.execute("SELECT COUNT(*) FROM embeddings WHERE vec IS NOT NULL AND image_id IN (?, ?)",
                      new).fetchone()[0] == 2
    similarity.neighbours(db, new[0], 3)  # found at once, no build
    similarity.forget_index(db)


def test_ingest_refuses_a_folder_outside_the_roots(app_db):
    at = start("pages/data/ingest.py")
    at.text_input(key="ing_folder").input("/etc").run()
    at.button(key="ing_go_folder").click().run()
    assert not failures(at)
    assert any("outside the allowed roots" in e.value for e in at.error)


def test_reference_search_filters_in_sql(app_db):
    at = start("pages/data/reference.py")
    db = open_db(app_db)
    n_labels = db.execute("SELECT COUNT(*) FROM current_labels").fetchone()[0]
    n_people = db.execute("SELECT COUNT(*) FROM current_labels WHERE source != 'auto'").fetchone()[0]
    table = next(d for d in at.dataframe if str(d.key or "").startswith("ref_table"))
    assert len(table.value) == n_people < n_labels, "the reference set: no auto labels unless asked"
    at.multiselect(key="ref_sources").set_value(["human", "import", "auto"]).run()
    table = next(d for d in at.dataframe if str(d.key or "").startswith("ref_table"))
    assert len(table.value) == n_labels, "auto-accepted labels on request"
    at.multiselect(key="ref_sources").set_value(["import"]).run()
    table = next(d for d in at.dataframe if str(d.key or "").startswith("ref_table"))
    assert len(table.value) == 4
    at.text_input(key="ref_text").input("deep_").run()
    table = next(d for d in at.dataframe if str(d.key or "").startswith("ref_table"))
    assert all("deep_" in n for n in table.value["name"])


def test_user_text_is_not_rendered_as_markup(app_db):
    at = start("pages/label/review.py", reviewer="<b>eve</b>")
    assert not failures(at)
    assert at.session_state["reviewer_name"] == "<b>eve</b>"
    iid = at.session_state["review_current"]
    at.button(key=f"rv_accept_{iid}").click().run()
    assert current_label(open_db(app_db), iid)["reviewer"] == "<b>eve</b>"


def test_ingest_uploads_files_and_a_zip_with_class_folders(app_db, tmp_path):
    import io
    import zipfile

    src = write_images(tmp_path / "up", n=3, size=40, seed=11)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(src[0], "powder/a.png")
        z.writestr("../evil.png", src[1].read_bytes())
    at = start("pages/data/ingest.py")
    at.file_uploader(key="ing_files").set_value([
        ("one.png", src[1].read_bytes(), "image/png"),
        ("two.png", src[2].read_bytes(), "image/png"),
        ("set.zip", buf.getvalue(), "application/zip"),
        ("fake.png", b"GIF89a not really a png", "image/png"),
    ]).run()
    at.checkbox(key="ing_up_labels").check().run()
    at.button(key="ing_go_upload").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    finish_ingest(at, app_db)
    db = open_db(app_db)
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 23
    refused = " ".join(str(v) for v in at.dataframe[0].value["upload"])
    assert "evil.png" in refused and "fake.png" in refused
    row = db.execute("SELECT c.label, c.source FROM current_labels c JOIN images i ON i.id = c.image_id "
                     "WHERE i.name = 'a.png'").fetchone()
    assert tuple(row) == ("powder", "import"), "the zip's class folder became the label"
    assert list((tmp_path / "data" / "uploads").iterdir()), "uploads are kept beside the database"


def test_register_a_model_upload_with_class_names_and_activate_it(app_db, tmp_path):
    path = build_tiny_model(tmp_path / "m2.onnx", ("a", "b", "c", "d"), with_class_names=False)
    at = start("pages/setup/models.py")
    at.file_uploader(key="mdl_file").set_value(("m2.onnx", path.read_bytes(), "application/octet-stream")).run()
    at.button(key="mdl_register").click().run()
    assert any("no class names" in e.value for e in at.error), "the model's own problem, in words"
    at.text_area(key="mdl_classes").input("a\nb\nc\nd").run()
    at.toggle(key="mdl_make_active").set_value(True).run()
    at.button(key="mdl_register").click().run()
    assert not failures(at), [e.value for e in failures(at)]
    job = jobs.get_job("retrain:" + str(app_db.resolve()))  # activating predicts in the background
    assert job is not None and job.kind == "promote"
    assert job.wait(60) and job.status == "done", (job.status, job.error)
    at.run()
    assert any("is now active" in s.value and "20 images predicted" in s.value for s in at.success), \
        [s.value for s in at.success]
    db = open_db(app_db)
    active = db.execute("SELECT id, class_names FROM models WHERE active = 1").fetchone()
    assert active[1] == '["a", "b", "c", "d"]'
    assert db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ?", [active[0]]).fetchone()[0] == 20
    assert list((tmp_path / "data" / "models" / "uploads").glob("*.onnx"))


def test_a_file_that_is_not_a_model_is_refused_cleanly(app_db):
    at = start("pages/setup/models.py")
    at.file_uploader(key="mdl_file").set_value(("junk.onnx", b"not a model", "application/octet-stream")).run()
    at.button(key="mdl_register").click().run()
    assert not failures(at)
    assert any("Cannot read ONNX model" in e.value for e in at.error)


def test_order_by_file_name_and_skip(app_db):
    db = open_db(app_db)
    at = review(queue="all")
    at.button_group(key="review_order").set_value("file").run()
    first = db.execute(
        "SELECT i.id FROM predictions p JOIN images i ON i.id = p.image_id WHERE p.done = 0 "
        "ORDER BY i.path LIMIT 1").fetchone()[0]
    assert at.session_state["review_current"] == first
    at.button(key=f"rv_skip_{first}").click().run()
    assert at.session_state["review_current"] != first
    assert current_label(db, first) is None, "a skip is not a label"
    assert history(db, first)[-1]["action"] == "skip"
