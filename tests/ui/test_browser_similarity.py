"""The Similarity page in a real browser: build the view (background job with progress), see
the map, pick an image, see more like it, and label its whole neighbourhood on Grid confirm
with one key — then the label history in SQLite is checked (who, how, which class)."""

from __future__ import annotations

import re
import time

import pytest

from core.store import open_db
from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    app_server,
    need_chromium,
    settle,
)
from tests.helpers.labelled import build_labelled_db

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    need_chromium()
    db_path = build_labelled_db(tmp_path)
    with app_server(db_path, tmp_path) as url:
        yield url, db_path, tmp_path / "streamlit.log"


def no_exception(page, log) -> None:
    shown = page.locator('[data-testid="stException"]')
    assert shown.count() == 0, f"{shown.first.inner_text()}\n{log.read_text()[-2000:]}"


def test_build_map_more_like_this_and_label_the_neighbourhood(server):
    from playwright.sync_api import sync_playwright

    url, db_path, log = server
    db = open_db(db_path)
    anchor = db.execute("SELECT id FROM images WHERE name = 'new_00.png'").fetchone()[0]
    open_before = {r[0] for r in db.execute(
        "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM current_labels)")}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1100})
            page.goto(f"{url}/?reviewer=alice")
            page.wait_for_selector('[data-testid="stApp"]', timeout=30_000)
            settle(page)
            page.get_by_role("link", name="Similarity").click()
            page.get_by_text("Not built yet").wait_for(timeout=20_000)
            settle(page)
            page.get_by_role("button", name="Build").click()
            # the job runs in the background: its progress, then the map and the counts
            page.wait_for_selector(".js-plotly-plot", timeout=90_000)
            page.get_by_text(f"{len(list(db.execute('SELECT id FROM images')))} of").first.wait_for(timeout=30_000)
            settle(page)
            no_exception(page, log)
            box = page.get_by_label("Image id")
            box.fill(str(anchor))
            box.press("Enter")
            settle(page)
            page.get_by_text(f"#{anchor} new\\_00.png").or_(page.get_by_text(f"#{anchor} new_00.png")).first.wait_for(
                timeout=20_000)
            assert page.get_by_text("· 0.", exact=False).count() >= 5  # neighbours with similarities
            page.get_by_role("button", name="Label this neighbourhood on Grid confirm").click()
            page.get_by_text("neighbourhood:").first.wait_for(timeout=20_000)
            settle(page)
            no_exception(page, log)
            page.get_by_role("combobox", name="Class for the neighbourhood").click()
            page.get_by_role("option", name="powder").click()
            settle(page)
            confirm = page.get_by_role("button", name="Confirm")
            n = int(re.search(r"Confirm (\d+) as", confirm.inner_text()).group(1))
            assert n >= 2
            confirm.click()
            page.get_by_text("confirmed as powder").wait_for(timeout=20_000)
            no_exception(page, log)
        finally:
            browser.close()
    deadline = time.monotonic() + 10
    rows = []
    while time.monotonic() < deadline and len(rows) < n:
        rows = db.execute(
            "SELECT e.image_id, e.label, e.action, e.reviewer, p.pred FROM label_events e "
            "JOIN predictions p ON p.image_id = e.image_id WHERE e.reviewer = 'alice' AND e.label = 'powder' "
            f"AND e.image_id IN ({','.join(map(str, open_before))})").fetchall()
        time.sleep(0.2)
    assert len(rows) == n and anchor in {r[0] for r in rows}
    for image_id, lab, action, who, pred in rows:  # accept where the model said powder, else relabel
        assert action == ("accept" if pred == "powder" else "relabel"), (image_id, action, pred)
