"""Two real browser sessions reviewing the same queue at once, signed in by a (simulated)
reverse proxy: each reviewer's browser goes through its own relay that adds the proxy's
``X-Forwarded-User`` header to every request, the websocket's opening one included, which the
app reads (st.context.headers; browsers put no extra headers on websocket handshakes). Afterwards the database
shows no image decided twice, every decision in the history under the right reviewer, and
counts that add up. Needs /usr/bin/chromium."""

from __future__ import annotations

import contextlib

import pytest

from core.review import queue_counts
from core.store import open_db
from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MAIN_IMAGE,
    need_chromium,
    press,
    settle,
    start_server,
    stop_server,
    wait_new_image,
)
from tests.helpers.proxy import header_proxy

pytestmark = pytest.mark.browser

ADMIN = "boss@lab.example.org"
REVIEWERS = ("alice@lab.example.org", ADMIN)
ROUNDS = 3  # decisions per reviewer; the uncertain queue of build_app_db holds 8 images
KEYS = ["Enter", "2", "u"]  # accept, class 2, unusable


@pytest.fixture
def proxy_server(tmp_path):
    need_chromium()
    from tests.helpers import build_app_db

    db_path = build_app_db(tmp_path)
    env = {"SEMTRIAGE_AUTH": "proxy", "SEMTRIAGE_ADMIN_USERS": ADMIN, "SEMTRIAGE_TRUSTED_PROXIES": "127.0.0.1"}
    proc, url = start_server(db_path, tmp_path, tmp_path / "streamlit.log", env=env)
    try:
        yield url, db_path
    finally:
        stop_server(proc)


def open_review(browser, url: str):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.goto(url)  # the app's own page first (a fresh server), then the review page
    page.wait_for_selector('[data-testid="stApp"]', timeout=30_000)
    settle(page)
    page.goto(url + "/review")
    page.wait_for_selector(MAIN_IMAGE, timeout=30_000)
    settle(page)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    return page


def test_two_signed_in_reviewers_decide_the_same_queue_at_once(proxy_server):
    from playwright.sync_api import sync_playwright

    url, db_path = proxy_server
    before = queue_counts(open_db(db_path))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # without the proxy's header: a sign-in message and no data
            anon = browser.new_page()
            anon.goto(url)
            anon.get_by_text("Sign-in required").wait_for(timeout=30_000)
            settle(anon)
            assert anon.locator('[data-testid="stMetric"], [data-testid="stImage"]').count() == 0
            assert "Database" not in anon.inner_text("body")

            relays = contextlib.ExitStack()
            port = int(url.rsplit(":", 1)[1])
            vias = [relays.enter_context(header_proxy(port, {"X-Forwarded-User": u})) for u in REVIEWERS]
            pages = [open_review(browser, via) for via in vias]
            for page, user in zip(pages, REVIEWERS):  # the name came through the websocket
                assert user in page.locator('[data-testid="stSidebar"]').inner_text()
                assert page.get_by_role("textbox", name="Reviewer").count() == 0
            shown = [[pg.locator(MAIN_IMAGE).first.get_attribute("src")] for pg in pages]
            assert shown[0][0] != shown[1][0], "two reviewers never get the same image"
            for key in KEYS[:ROUNDS]:
                # both press before either waits: the two decisions run in the server together
                olds = [press(pg, key) for pg in pages]
                for pg, old, seen in zip(pages, olds, shown):
                    seen.append(wait_new_image(pg, old))

            # roles by identity: the admin has the save button, the other reviewer does not
            for page, user in zip(pages, REVIEWERS):
                page.get_by_role("link", name="Models & thresholds").first.click()
                settle(page)
                page.get_by_role("tab", name="Thresholds").click()
                page.get_by_text("Queues with these thresholds").wait_for(timeout=30_000)
                save = page.get_by_role("button", name="Save thresholds and re-route")
                assert save.count() == (1 if user == ADMIN else 0), user
            relays.close()
        finally:
            browser.close()

    db = open_db(db_path)
    events = db.execute(
        "SELECT image_id, reviewer, action FROM label_events WHERE source = 'human' ORDER BY id").fetchall()
    assert len(events) == 2 * ROUNDS, events
    assert {r: sum(1 for e in events if e[1] == r) for r in REVIEWERS} == {r: ROUNDS for r in REVIEWERS}
    decided = [e[0] for e in events]
    assert len(set(decided)) == len(decided), "no image decided twice"
    for reviewer in REVIEWERS:
        actions = [e[2] for e in events if e[1] == reviewer]
        assert actions == ["accept", "relabel", "unusable"][:ROUNDS] or \
            actions == ["accept", "accept", "unusable"][:ROUNDS], actions  # class 2 may be the prediction
    human = dict(db.execute(
        "SELECT image_id, reviewer FROM current_labels WHERE source = 'human'").fetchall())
    assert human == {e[0]: e[1] for e in events}, "every decision is the image's current label"
    after = queue_counts(db)
    assert after["uncertain"] == before["uncertain"] - 2 * ROUNDS
    assert sum(after.values()) == sum(before.values()) - 2 * ROUNDS
    # each browser saw a new image after every decision, and never one the other had on screen
    assert [len(set(seen)) for seen in shown] == [ROUNDS + 1, ROUNDS + 1]
    assert not set(shown[0]) & set(shown[1])
