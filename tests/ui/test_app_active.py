"""AppTest for the active-learning parts of the app: the Review page's order is stored per queue
and reviewer (an administrator sets the default for everyone),
and the Reference set page's "Likely mislabelled" view finds flipped labels in a background job
(progress, Cancel that keeps nothing) and resolves them."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import jobs, review
from core.intake import ingest
from core.store import open_db
from core.training import issue_counts, last_run
from tests.helpers import build_app_db, failures
from tests.training.test_label_issues import build_reference, flip

APP = str(Path(__file__).resolve().parents[2] / "app.py")




def start(page: str, db_path: Path, monkeypatch, reviewer: str = "alice") -> AppTest:
    monkeypatch.setenv("SEMTRIAGE_DB", str(db_path))
    monkeypatch.setenv("SEMTRIAGE_ROOTS", str(db_path.parent))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.text_input(key="reviewer").input(reviewer).run()
    at.switch_page(page).run()
    assert not failures(at), [e.value for e in failures(at)]
    return at


def test_review_order_is_stored_per_queue_and_reviewer(tmp_path, monkeypatch):
    path = build_app_db(tmp_path)
    at = start("pages/label/review.py", path, monkeypatch)
    assert at.button_group(key="review_order").value == "margin"
    at.button_group(key="review_queue").set_value("all").run()
    at.button_group(key="review_order").set_value("confidence").run()
    assert not failures(at)
    db = open_db(path)
    assert review.queue_order(db, "all", "alice") == "confidence"
    assert review.queue_order(db, "all", "bob") == "margin", "alice's click is hers only"
    assert review.queue_order(db, "uncertain", "alice") == "margin"
    first = db.execute("SELECT image_id FROM predictions WHERE done = 0 ORDER BY p1, image_id").fetchone()[0]
    assert at.session_state["review_current"] == first
    at.button_group(key="review_queue").set_value("uncertain").run()
    assert at.button_group(key="review_order").value == "margin", "each queue opens in its own order"
    at.button_group(key="review_queue").set_value("all").run()
    assert at.button_group(key="review_order").value == "confidence"

    again = start("pages/label/review.py", path, monkeypatch)  # alice again, a new session
    again.button_group(key="review_queue").set_value("all").run()
    assert again.button_group(key="review_order").value == "confidence"
    bob = start("pages/label/review.py", path, monkeypatch, reviewer="bob")
    bob.button_group(key="review_queue").set_value("all").run()
    assert bob.button_group(key="review_order").value == "margin"

    # an administrator (everyone, with sign-in off) makes alice's order the default for everyone
    at.button(key="rv_order_all").click().run()
    assert review.queue_order(db, "all", "carol") == "confidence"
    carol = start("pages/label/review.py", path, monkeypatch, reviewer="carol")
    carol.button_group(key="review_queue").set_value("all").run()
    assert carol.button_group(key="review_order").value == "confidence"


def test_likely_mislabelled_view_finds_and_resolves(tmp_path, monkeypatch):
    path = tmp_path / "data" / "ref.db"
    db = open_db(path)
    ingest(db, [build_reference(tmp_path / "ref")], labels_from_folders=True)
    truth = flip(db, 4)
    at = start("pages/data/reference.py", path, monkeypatch)
    at.button_group(key="ref_view").set_value("issues").run()
    assert not failures(at)
    key = "label_issues:" + str(path.resolve())

    lock = open_db(path)  # hold the write lock: the finder waits on it (storing near-copy hashes)
    assert lock.execute("SELECT COUNT(*) FROM image_hashes").fetchone()[0] == 0, "nothing cached yet"
    lock.conn.execute("BEGIN IMMEDIATE")
    try:
        at.button(key="li_run").click().run()
        assert not failures(at), [e.value for e in failures(at)]
        job = jobs.get_job(key)
        assert job is not None and job.running
        assert any(e.proto.text.startswith("Finding label issues") for e in at.get("progress"))
        assert not [b for b in at.button if b.key == "li_run"], "no second run while one runs"
        at.button(key="li_cancel").click().run()
    finally:
        lock.conn.execute("ROLLBACK")
        lock.conn.close()
    assert job.wait(60) and job.status == "cancelled", (job.status, job.error)
    at.run()
    assert any("cancelled" in s.value for s in at.info)
    assert last_run(db) is None and sum(issue_counts(db).values()) == 0, "a cancelled run stores nothing"

    at.button(key="li_run").click().run()
    job = jobs.get_job(key)
    assert job is not None and job.wait(120) and job.status == "done", (job.status, job.error)
    at.run()
    assert not failures(at), [e.value for e in failures(at)]
    assert any("likely mislabelled of 48" in s.value for s in at.success), [e.value for e in at.error]
    assert jobs.get_job(key) is None, "the outcome is shown once, then dropped"
    shown = {int(b.key.rsplit("_", 1)[1]) for b in at.button if b.key and b.key.startswith("li_keep_")}
    wrong = sorted(shown & set(truth))
    assert len(wrong) >= 3
    iid = wrong[0]
    at.button(key=f"li_relabel_{iid}").click().run()
    assert not failures(at)
    cur = review.current_label(db, iid)
    assert cur["label"] == truth[iid] and cur["reviewer"] == "alice" and cur["action"] == "relabel"
    assert not [b for b in at.button if b.key == f"li_relabel_{iid}"], "a resolved issue leaves the list"
    other = wrong[1]
    at.button(key=f"li_keep_{other}").click().run()
    counts = issue_counts(db)
    assert counts["kept"] == 1 and counts["relabelled"] == 1
    assert review.current_label(db, other)["label"] != truth[other], "keep leaves the label alone"


def test_the_finder_is_for_administrators(tmp_path, monkeypatch):
    """Issue 18 (15): a non-admin sees Find issues disabled (core refuses them anyway:
    tests/training/test_label_issues.py); an administrator may press it."""
    path = build_app_db(tmp_path)
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", "boss")
    for who, disabled in (("alice", True), ("boss", False)):
        at = start("pages/data/reference.py", path, monkeypatch, reviewer=who)
        at.button_group(key="ref_view").set_value("issues").run()
        assert not failures(at), [e.value for e in failures(at)]
        assert at.button(key="li_run").disabled is disabled, who
