"""The core flow in a real browser: name, Review by keyboard only, undo, export — then the
database and the exported files are checked. Needs /usr/bin/chromium (CI installs it)."""

from __future__ import annotations

import re

import pytest

from core.review import history
from core.store import open_db
from tests.helpers.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    MAIN_IMAGE,
    app_server,
    need_chromium,
    next_image_after,
    settle,
)

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    need_chromium()
    from tests.helpers import build_app_db

    db_path = build_app_db(tmp_path)
    with app_server(db_path, tmp_path) as url:
        yield url, db_path


def test_review_by_keyboard_undo_and_export(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, db_path = server
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(url)
            settle(page)
            name = page.get_by_role("textbox", name="Reviewer")
            name.fill("alice")
            name.press("Tab")  # commits the value; keys then go to the page, not the box
            settle(page)
            page.get_by_role("link", name="Review").first.click()
            page.wait_for_selector(MAIN_IMAGE, timeout=30_000)
            settle(page)
            page.evaluate("document.activeElement && document.activeElement.blur()")

            seen = [page.locator(MAIN_IMAGE).first.get_attribute("src")]
            for key in ["Enter", "2", "m", "u", "Enter"]:  # accept, class 2, several, unusable, accept
                if key == "m":  # several: then the classes present, then Enter
                    page.keyboard.press("m")
                    page.get_by_text("choose the classes present, then Enter").wait_for(timeout=10_000)
                    settle(page)  # the class keys belong to the 'several' buttons only once the rerun ends
                    for n, k in enumerate(("1", "2"), 1):  # each toggle shows on the Save button
                        page.keyboard.press(k)
                        page.get_by_role("button", name=f"Save {n} classes").wait_for(timeout=10_000)
                        settle(page)
                    key = "Enter"
                seen.append(next_image_after(page, key))
                if len(seen) == 3:
                    page.screenshot(path=str(ARTIFACTS / "review.png"))
            assert len(set(seen)) == 6, "every key press brought a new image"
            back = next_image_after(page, "z")  # undo the last decision: that image comes back
            assert back == seen[4]
            status = page.get_by_text("decided this session").inner_text()
            assert re.search(r"\b4\s+decided this session", status), status

            page.get_by_role("link", name="Export").first.click()
            settle(page)
            page.get_by_role("button", name="Export", exact=True).click()
            page.get_by_text("images exported").wait_for(timeout=30_000)
            settle(page)
            page.screenshot(path=str(ARTIFACTS / "export.png"))
        finally:
            browser.close()

    db = open_db(db_path)
    human = db.execute(
        "SELECT label, action, reviewer FROM current_labels WHERE source = 'human'").fetchall()
    assert len(human) == 4 and {r[2] for r in human} == {"alice"}
    assert {r[1] for r in human} >= {"accept", "several", "unusable"}
    undone = db.execute("SELECT image_id FROM label_events WHERE action = 'undo'").fetchall()
    assert len(undone) == 1
    events = history(db, undone[0][0])
    assert [e["action"] for e in events][-2:] == ["accept", "undo"] and events[-2]["undone"]
    exports = [d for d in (tmp_path / "exports").iterdir() if d.is_dir()]
    assert len(exports) == 1
    manifest = exports[0] / "manifest.csv"
    assert manifest.is_file(), sorted(p.name for p in exports[0].iterdir())
    # 4 imported reference labels + the 2 class labels from the review (several/unusable left out)
    assert len(manifest.read_text().splitlines()) == 1 + 4 + 2
    assert exports[0].with_suffix(".zip").is_file()
