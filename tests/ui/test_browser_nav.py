"""Every navigation control in a real browser with a reviewer name set (the normal state): the
Overview's "Review …" buttons, the sidebar's page links and the in-page links. Streamlit binds
the name box to the URL (``?reviewer=``); a page switch that clears the URL used to crash the
app ("Cannot clear query parameters … bound to widgets"), which AppTest cannot see because it
binds no widget to a URL. Needs /usr/bin/chromium."""

from __future__ import annotations

import pytest

from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MAIN_IMAGE,
    app_server,
    need_chromium,
    settle,
)

pytestmark = pytest.mark.browser

PAGES = ["Review", "Grid confirm", "Overview", "Reference set", "Ingest", "Export", "Models & thresholds"]


@pytest.fixture
def server(tmp_path):
    need_chromium()
    from tests.helpers import build_app_db

    db_path = build_app_db(tmp_path)
    with app_server(db_path, tmp_path) as url:
        yield url, tmp_path / "streamlit.log"


def no_exception(page, where: str, log) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, f"{where}: {shown.first.inner_text()}\n{log.read_text()[-2000:]}"


def name_kept(page, where: str) -> None:
    box = page.get_by_role("textbox", name="Reviewer")
    assert box.input_value() == "alice", f"{where}: the reviewer name was lost"
    assert "reviewer=alice" in page.url, f"{where}: the URL lost the name: {page.url}"


def test_every_navigation_control_with_a_name_set(server):
    from playwright.sync_api import sync_playwright

    url, log = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            settle(page)
            name = page.get_by_role("textbox", name="Reviewer")
            name.fill("alice")
            name.press("Tab")
            settle(page)

            clicked = 0
            from ui.common import QUEUE_LABELS

            for key in ("uncertain", "mixed", "auto", "blind"):  # every queue button of the Overview
                q = QUEUE_LABELS[key].lower()
                page.get_by_role("link", name="Overview").first.click()
                settle(page)
                button = page.get_by_role("button", name=f"Review {q}")
                if button.is_disabled():
                    continue
                button.click()
                page.wait_for_selector(MAIN_IMAGE, timeout=30_000)
                settle(page)
                no_exception(page, f"Review {q}", log)
                name_kept(page, f"Review {q}")
                assert "/review" in page.url and f"queue={key}" in page.url, page.url
                clicked += 1
            assert clicked >= 2, "the demo database has at least two non-empty queues"

            for title in PAGES:  # the sidebar's page links
                page.get_by_role("link", name=title, exact=True).first.click()
                shown = MAIN_IMAGE if title == "Review" else f'h1:has-text("{title}")'
                page.wait_for_selector(shown, timeout=30_000)
                settle(page)
                no_exception(page, title, log)
                name_kept(page, title)
        finally:
            browser.close()


def test_first_request_of_a_fresh_server_to_a_page_url_runs_the_app(server):
    """A tab reconnecting to /review after a restart (the server's first request ever) gets the
    whole app: the sidebar app.py draws (title, reviewer box, page menu) and the review image.
    The page files live in sub-folders of pages/, where Streamlit's legacy pages/ discovery
    does not look, so no run can execute a page file on its own."""
    from playwright.sync_api import sync_playwright

    url, log = server
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{url}/review?reviewer=alice")  # nothing has run on this server yet
            page.wait_for_selector(MAIN_IMAGE, timeout=30_000)
            settle(page)
            no_exception(page, "/review", log)
            sidebar = page.locator('[data-testid="stSidebar"]')
            assert sidebar.is_visible()
            assert "SEM Triage" in sidebar.inner_text()
            name_kept(page, "/review")
            for title in PAGES:  # the navigation app.py defines, not a pages/ listing
                assert sidebar.get_by_role("link", name=title, exact=True).count() == 1, title
            assert page.locator(MAIN_IMAGE).first.evaluate("i => i.complete && i.naturalWidth > 0")
            assert "/review" in page.url
        finally:
            browser.close()
