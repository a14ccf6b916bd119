"""The Agreement and Adjudicate pages through AppTest on a real database: they render empty and
populated; an administrator sets overlap and gold from the page; an overlap image decided on the
Review page by one reviewer reaches another blind, their disagreement is settled on the
Adjudicate page and the numbers appear on the Agreement page."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import agreement
from core.review import current_label
from core.store import open_db
from tests.helpers import app_db_copy, build_app_db, failures

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = ["pages/data/agreement.py", "pages/label/adjudicate.py"]


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    return build_app_db(tmp_path_factory.mktemp("agreement-template"))


@pytest.fixture
def app_db(template_db, tmp_path, monkeypatch) -> Path:
    return app_db_copy(template_db, tmp_path, monkeypatch)


def start(page: str, reviewer: str | None = "alice") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    if reviewer:
        at.text_input(key="reviewer").input(reviewer).run()
    at.switch_page(page).run()
    assert not failures(at), [e.value for e in failures(at)]
    return at


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "info", "success", "warning", "error", "caption")
                     for e in getattr(at, kind))


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_on_an_empty_db(tmp_path, monkeypatch, page):
    monkeypatch.setenv("SEMTRIAGE_DB", str(tmp_path / "data" / "empty.db"))
    monkeypatch.setenv("SEMTRIAGE_ROOTS", str(tmp_path))
    at = start(page, reviewer=None)
    assert not at.error, [e.value for e in at.error]


def test_admin_sets_overlap_and_gold_from_the_page(app_db):
    at = start("pages/data/agreement.py")
    assert "No overlap yet" in texts(at)
    at.selectbox(key="agr_rule_scope").set_value("queue:uncertain")
    at.slider(key="agr_rule_rate").set_value(25)
    at.number_input(key="agr_rule_reviewers").set_value(3)
    at.button(key="FormSubmitter:agr_rule_form-Save overlap rule").click().run()
    assert not failures(at) and not at.error, [e.value for e in at.error]
    db = open_db(app_db)
    assert {s: (r.rate, r.reviewers) for s, r in agreement.overlap_rules(db).items()} == {"queue:uncertain": (0.25, 3)}
    gold = db.execute("SELECT image_id, label FROM current_labels WHERE source = 'import' LIMIT 1").fetchone()
    at.number_input(key="agr_gold_image").set_value(gold[0])
    at.button(key="FormSubmitter:agr_gold_form-Mark as gold").click().run()
    assert [(g["image_id"], g["label"]) for g in agreement.gold_images(db)] == [tuple(gold)]
    at.number_input(key="agr_gold_rate").set_value(5.0)
    at.button(key="FormSubmitter:agr_gold_rate_form-Save gold rate").click().run()
    assert agreement.gold_rate(db) == pytest.approx(0.05)
    at.button(key=f"agr_unmark_{gold[0]}").click().run()
    assert agreement.gold_images(db) == []
    # an unknown image id: a message, nothing stored
    at.number_input(key="agr_gold_image").set_value(99999)
    at.button(key="FormSubmitter:agr_gold_form-Mark as gold").click().run()
    assert "No image with id 99999" in texts(at)


def test_non_admin_cannot_change_the_set_up(app_db, monkeypatch):
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", "boss")
    at = start("pages/data/agreement.py", reviewer="bob")
    assert at.button(key="FormSubmitter:agr_rule_form-Save overlap rule").disabled
    assert "may not adjudicate" in texts(start("pages/label/adjudicate.py", reviewer="bob"))


def review_decide(at: AppTest, key_prefix: str) -> int:
    """Press the first button whose key starts with ``key_prefix`` on the Review page; returns
    the image id it was for."""
    btn = next(b for b in at.button if (b.key or "").startswith(key_prefix))
    iid = int(btn.key.rsplit("_", 1)[1])
    btn.click().run()
    assert not failures(at), [e.value for e in failures(at)]
    return iid


def test_overlap_from_review_to_adjudication_to_the_numbers(app_db, monkeypatch):
    monkeypatch.setenv("SEMTRIAGE_ADJUDICATORS", "carol")
    monkeypatch.setenv("SEMTRIAGE_ADMIN_USERS", "boss")
    agreement.set_overlap(open_db(app_db), 1.0)
    alice = start("pages/label/review.py", reviewer="alice")
    x = review_decide(alice, "rv_cls0_")
    bob = start("pages/label/review.py", reviewer="bob")
    assert next(b for b in bob.button if (b.key or "").startswith("rv_cls1_")).key == f"rv_cls1_{x}", \
        "bob's first image is the one alice decided"
    assert review_decide(bob, "rv_cls1_") == x
    # bob may not adjudicate; carol may and sees both ratings
    carol = start("pages/label/adjudicate.py", reviewer="carol")
    shown = texts(carol)
    assert "alice" in shown and "bob" in shown
    carol.button(key=f"adj_cls2_{x}").click().run()
    assert not failures(carol)
    cur = current_label(open_db(app_db), x)
    assert (cur["reviewer"], cur["label"]) == ("carol", open_db(app_db).execute(
        "SELECT json_extract(class_names, '$[2]') FROM models WHERE active = 1").fetchone()[0])
    assert "No open disagreement" in texts(carol.run())
    page = start("pages/data/agreement.py", reviewer="carol")
    assert not page.error
    assert page.metric[0].value == "1"  # one image with two ratings
    assert page.metric[3].value == "0"  # nothing left to settle
