"""Overlap and adjudication in real browsers: two reviewers (each their own browser context,
their name typed in the sidebar) review the same queues at once with every image set for a
second opinion, so each gets the other's images blind; an adjudicator then settles every
disagreement on the Adjudicate page. Afterwards the database holds every decision once, no
image rated twice by one reviewer nor by more than two, and the adjudicated labels are the
current ones. Needs /usr/bin/chromium."""

from __future__ import annotations

import pytest

from core import agreement
from core.review import current_label
from core.store import open_db
from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MAIN_IMAGE,
    app_server,
    need_chromium,
    press,
    settle,
    wait_new_image,
)

pytestmark = pytest.mark.browser

ALICE, BOB, CAROL = "alice@lab.example.org", "bob@lab.example.org", "carol@lab.example.org"
ROUNDS = 4


@pytest.fixture
def server(tmp_path):
    need_chromium()
    from tests.helpers import build_app_db

    db_path = build_app_db(tmp_path)
    agreement.set_overlap(open_db(db_path), 1.0, reviewers=2)
    env = {"SEMTRIAGE_ADMIN_USERS": "boss@lab.example.org", "SEMTRIAGE_ADJUDICATORS": CAROL}
    with app_server(db_path, tmp_path, env=env) as url:
        yield url, db_path


def open_page(browser, url: str, user: str, link: str, ready: str = MAIN_IMAGE):
    page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
    page.goto(url)
    settle(page)
    name = page.get_by_role("textbox", name="Reviewer")
    name.fill(user)
    name.press("Tab")  # commits the value; keys then go to the page, not the box
    settle(page)
    page.get_by_role("link", name=link, exact=True).first.click()
    page.wait_for_selector(ready, timeout=30_000)
    settle(page)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    return page


def test_two_reviewers_overlap_at_once_then_an_adjudicator_settles(server):
    from playwright.sync_api import sync_playwright

    url, db_path = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = [open_page(browser, url, u, "Review") for u in (ALICE, BOB)]
            for _ in range(ROUNDS):
                # alice always says the first class, bob the second; both press before either waits
                olds = [press(pages[0], "1"), press(pages[1], "2")]
                for pg, old in zip(pages, olds):
                    wait_new_image(pg, old)
            # bob is no adjudicator
            bob_adj = open_page(browser, url, BOB, "Adjudicate", ready='[data-testid="stAlert"]')
            assert "may not adjudicate" in bob_adj.inner_text("body")

            db = open_db(db_path)
            open_disputes = agreement.disputes(db)
            assert open_disputes, "the reviewers rated some of each other's images"
            carol = open_page(browser, url, CAROL, "Adjudicate")
            settled = []
            for _ in range(len(open_disputes)):
                body = carol.inner_text('[data-testid="stMain"]')
                assert ALICE in body and BOB in body, body  # every rating is shown to the adjudicator
                old = press(carol, "3")
                last = len(settled) == len(open_disputes) - 1
                if last:
                    carol.get_by_text("No open disagreement waits for you").wait_for(timeout=30_000)
                else:
                    wait_new_image(carol, old)
                settled.append(old)
            assert len(set(settled)) == len(open_disputes)
        finally:
            browser.close()

    db = open_db(db_path)
    rows = db.execute("SELECT image_id, reviewer, note FROM label_events WHERE source = 'human' "
                      "ORDER BY id").fetchall()
    decisions = [(i, r) for i, r, note in rows if note is None]
    assert len(decisions) == 2 * ROUNDS, rows
    assert len(set(decisions)) == len(decisions), "nobody decided an image twice"
    raters: dict[int, set[str]] = {}
    for image_id, r in decisions:
        raters.setdefault(image_id, set()).add(r)
    assert max(len(v) for v in raters.values()) <= 2
    shared = [i for i, v in raters.items() if len(v) == 2]
    assert shared, "overlap images reached the other reviewer"
    assert agreement.disputes(db) == []
    classes = db.execute("SELECT class_names FROM models WHERE active = 1").fetchone()[0]
    third = __import__("json").loads(classes)[2]
    for image_id in shared:  # alice and bob always disagree, carol settled each with the third class
        cur = current_label(db, image_id)
        assert (cur["reviewer"], cur["label"]) == (CAROL, third), cur
    rep = agreement.agreement_report(db, n_boot=50)
    assert rep["overall"]["items"] == len(shared)
    assert rep["adjudication"] == {"open": 0, "settled": len(shared)}
