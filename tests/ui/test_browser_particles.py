"""The particle correction flow in a real browser: click a particle on the image to select
it, D deletes it, a click in add mode segments a new one there, V verifies the image — then
the database is checked (events with the reviewer, sources, state)."""

from __future__ import annotations

import time

import pytest

from core import particles as P
from core.intake import ingest
from core.store import open_db
from core.synth import write_particle_dataset
from tests.helpers.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    app_server,
    need_chromium,
    settle,
)

pytestmark = pytest.mark.browser
FRAME = 'iframe[title="streamlit_image_coordinates.streamlit_image_coordinates"]'


@pytest.fixture
def server(tmp_path):
    need_chromium()
    imgs = tmp_path / "imgs"
    write_particle_dataset(imgs, 1, seed=8, size=(256, 320), masks=False, look="sem", databar=False)
    db_path = tmp_path / "data" / "b.db"
    db = open_db(db_path)
    ingest(db, [imgs])
    P.detect_images(db, [1], method="classical")
    with app_server(db_path, tmp_path) as url:
        yield url, db_path


def wait_for(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False


def test_select_delete_add_verify(server):
    from playwright.sync_api import sync_playwright

    url, db_path = server
    db = open_db(db_path)
    rows = [r for r in P.particle_rows(db, 1) if not r["excluded"]]
    target = sorted(rows, key=lambda r: r["area_px"])[len(rows) // 2]
    n0 = len(P.live_ids(db, 1))
    ARTIFACTS.mkdir(exist_ok=True)
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
            page.get_by_role("link", name="Particles").first.click()
            settle(page)
            img = page.frame_locator(FRAME).locator("img")
            img.wait_for(timeout=30_000)
            box = img.bounding_box()
            f = box["width"] / 320  # the page draws it enlarged (and may shrink it to fit)
            pos = {"x": target["centroid_x_px"] * f, "y": target["centroid_y_px"] * f}
            img.click(position=pos)
            settle(page)
            page.get_by_text("selected: 1").wait_for(timeout=20_000)
            page.evaluate("document.activeElement && document.activeElement.blur()")
            page.keyboard.press("d")
            settle(page)
            assert wait_for(lambda: target["id"] not in P.live_ids(open_db(db_path), 1))
            page.get_by_text("Add by clicking").click()
            settle(page)
            img = page.frame_locator(FRAME).locator("img")
            img.click(position=pos)
            settle(page)
            assert wait_for(lambda: any(r["source"] == "human" for r in P.particle_rows(open_db(db_path), 1)))
            page.evaluate("document.activeElement && document.activeElement.blur()")
            page.keyboard.press("v")
            settle(page)
            assert wait_for(lambda: P.image_state(open_db(db_path), 1)["state"] == "verified")
            page.screenshot(path=str(ARTIFACTS / "particles.png"))
        finally:
            browser.close()
    db = open_db(db_path)
    hist = P.history(db, 1)
    assert [h["action"] for h in hist] == ["detect", "delete", "add", "verify"]
    assert {h["reviewer"] for h in hist[1:]} == {"alice"}
    added = [r for r in P.particle_rows(db, 1) if r["source"] == "human"]
    assert len(added) == 1
    assert abs(added[0]["centroid_x_px"] - target["centroid_x_px"]) < target["ecd_px"] / 2
    assert len(P.live_ids(db, 1)) == n0
