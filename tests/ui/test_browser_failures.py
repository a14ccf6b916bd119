"""Issue 18 (10) and (15, caches) in a real browser: the database damaged while the server runs.
A non-administrator opening the Overview and the Export page gets, on each, the named failure
in words — no exception box, no "Traceback", no server path — and the traceback lands in the
server's log. Streamlit's own "Clear caches" (main menu, key C) is not offered: it would clear
every user's cached models and queries. Needs /usr/bin/chromium."""

from __future__ import annotations

import pytest

from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    need_chromium,
    settle,
    start_server,
    stop_server,
)
from tests.ui.test_failures import damage

pytestmark = pytest.mark.browser


def test_a_damaged_database_is_said_in_words_on_two_pages(tmp_path):
    need_chromium()
    from playwright.sync_api import sync_playwright

    from tests.helpers import build_app_db

    db_path = build_app_db(tmp_path)
    log = tmp_path / "streamlit.log"
    proc, url = start_server(db_path, tmp_path, log, env={"SEMTRIAGE_ADMIN_USERS": "boss"})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for _ in range(2):  # the server opens (and checks) the file; a fresh server's
                    # first request shows Streamlit's "Page not found" notice: the second tab is clean
                    page = browser.new_page(viewport={"width": 1400, "height": 900})
                    page.goto(f"{url}/ingest?reviewer=alice")
                    page.wait_for_selector('h1:has-text("Ingest")', timeout=30_000)
                    settle(page)
                page.locator("body").press("c")  # Streamlit's clear-caches key: not offered
                page.wait_for_timeout(500)
                dialogs = page.get_by_role("dialog")
                assert dialogs.count() == 0, dialogs.first.inner_text()
                assert page.get_by_text("Clear cache").count() == 0
                assert page.locator('[data-testid="stMainMenu"]').count() == 0

                damage(db_path)
                for path, title in (("", "Overview"), ("export", "Export")):
                    tab = browser.new_page(viewport={"width": 1400, "height": 900})  # a new session
                    tab.goto(f"{url}/{path}?reviewer=alice")
                    alert = tab.locator('[data-testid="stAlert"]', has_text=f"The {title} page failed")
                    alert.wait_for(timeout=30_000)
                    settle(tab)
                    text = alert.inner_text()
                    assert "the database could not be read or written" in text, text
                    assert "malformed" in text and "semtriage backup" in text, text
                    assert tab.locator('[data-testid="stException"]').count() == 0
                    body = tab.locator("body").inner_text()
                    assert "Traceback" not in body and str(tmp_path) not in body, body
                    assert "site-packages" not in body and ".py" not in body, body
                    tab.close()
            finally:
                browser.close()
    finally:
        stop_server(proc)
    server_log = log.read_text()
    assert "The Overview page failed" in server_log and "The Export page failed" in server_log
    assert "Traceback" in server_log and "database disk image is malformed" in server_log
