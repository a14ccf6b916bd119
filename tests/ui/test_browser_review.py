"""The review screen in a real browser, as a microscopist meets it in the first hour: the keys
keep working after any click, ``?`` lists them, M lets the reviewer choose the classes present,
a 1536×1024 micrograph fills most of a 1600×1000 screen and a click zooms to 1:1 there, the
queue survives a reload, and the blind spot-check hides the model's answer until a choice."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from core.intake import ingest
from core.models import Classifier, register_model
from core.store import open_db
from tests.helpers import CLASSES, build_app_db, build_tiny_model
from tests.helpers.browser import (
    MAIN_IMAGE,
    chromium,
    next_image_after,
    settle,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.browser
REVIEW_IMAGE = ".st-key-review_image img"


def big_db(root):
    """Four real 1536×1024 micrograph-like PNGs (grains on a gradient, noise), predicted."""
    rng = np.random.default_rng(5)
    folder = root / "big"
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:1024, 0:1536]
    for i in range(4):
        a = 0.25 + 0.3 * xx / 1536 + rng.normal(0, 0.04, xx.shape)
        for cx, cy, r in zip(rng.uniform(0, 1536, 60), rng.uniform(0, 1024, 60), rng.uniform(8, 40, 60)):
            a[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] += 0.35
        Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).save(folder / f"grains_{i}.png")
    db_path = root / "big.db"
    db = open_db(db_path)
    model = register_model(db, build_tiny_model(root / "models" / "tiny.onnx", CLASSES), activate=True)
    rep = ingest(db, [folder], classifier=Classifier(model["path"]), model_id=model["id"])
    assert rep.added == 4 and not rep.failed
    db.conn.close()
    return db_path


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def serve(db_path, tmp_path):
    return start_server(db_path, tmp_path, tmp_path / "streamlit.log")


def open_page(browser, url, path, wait_for, on_request=None):
    """A 1600×1000 page on ``url + path`` once ``wait_for`` shows (a fresh server's first
    session goes to the app's own page first: Streamlit's 'Page not found' otherwise)."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    if on_request is not None:
        page.on("request", on_request)
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]', timeout=30_000)
    settle(page)
    page.goto(url + path)
    page.wait_for_selector(wait_for, timeout=30_000)
    settle(page)
    return page


def open_review(browser, url, query=""):
    return open_page(browser, url, f"/review?reviewer=alice{query}", MAIN_IMAGE)


def labels(db_path):
    return open_db(db_path).execute(
        "SELECT image_id, label, action, classes, context FROM current_labels WHERE source = 'human' "
        "ORDER BY updated_at").fetchall()


def test_keys_work_after_clicks_help_overlay_and_several(browser, tmp_path):
    db_path = build_app_db(tmp_path)
    proc, url = serve(db_path, tmp_path)
    try:
        page = open_review(browser, url)
        # click a queue button, then Enter: the decision is taken (not the button pressed again)
        page.get_by_role("radio", name="All unreviewed").click()
        page.wait_for_selector('[role="radio"][aria-checked="true"]:has-text("All unreviewed")', timeout=15_000)
        settle(page)
        page.wait_for_timeout(800)  # the new queue brings another image: let that rerun end
        settle(page)
        next_image_after(page, "Enter")
        assert [r[2] for r in labels(db_path)] == ["accept"]
        # click an order button, then S: the image is skipped
        page.get_by_role("radio", name="Entropy").click()
        page.wait_for_selector('[role="radio"][aria-checked="true"]:has-text("Entropy")', timeout=15_000)
        settle(page)
        page.wait_for_timeout(800)  # the new order may bring another image: let that rerun end
        settle(page)
        next_image_after(page, "s")
        db = open_db(db_path)
        for _ in range(50):  # the skip is written by the callback of the key press
            if db.execute("SELECT COUNT(*) FROM skips WHERE reviewer = 'alice'").fetchone()[0] == 1:
                break
            page.wait_for_timeout(200)
        assert db.execute("SELECT COUNT(*) FROM skips WHERE reviewer = 'alice'").fetchone()[0] == 1
        # ? lists the keys; Esc closes the list
        page.keyboard.press("?")
        help_box = page.locator('[data-testid="semtriage-keys-help"]')
        help_box.wait_for(timeout=10_000)
        assert "undo your last decision" in help_box.inner_text()
        page.keyboard.press("Escape")
        help_box.wait_for(state="detached", timeout=10_000)
        # M, then two class keys, then Enter: 'several' with those classes
        page.keyboard.press("m")
        page.get_by_text("choose the classes present, then Enter").wait_for(timeout=10_000)
        settle(page)
        for n, key in enumerate(("1", "3"), 1):  # each toggle shows on the Save button
            page.keyboard.press(key)
            page.get_by_role("button", name=f"Save {n} classes").wait_for(timeout=10_000)
            settle(page)
        next_image_after(page, "Enter")
        last = labels(db_path)[-1]
        assert last[1] == "several" and json.loads(last[3]) == [CLASSES[0], CLASSES[2]]
    finally:
        stop_server(proc)


def test_large_image_and_click_to_zoom_at_1to1(browser, tmp_path):
    db_path = big_db(tmp_path)
    proc, url = serve(db_path, tmp_path)
    try:
        page = open_review(browser, url, "&queue=all")
        img = page.locator(REVIEW_IMAGE).first
        box = img.bounding_box()
        assert box["width"] >= 900, f"the review image is only {box['width']:.0f} px wide"
        assert box["y"] + box["height"] <= 1000, "the whole image is on screen"
        fitted = img.get_attribute("src")
        # a click at the right-hand third: the 1:1 view of that spot replaces the fitted image
        page.mouse.click(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.4)
        page.wait_for_function(
            "(old) => { const i = document.querySelector('.st-key-review_image img');"
            " return i && i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0; }",
            arg=fitted, timeout=30_000)
        settle(page)
        page.get_by_text("Zoomed: 1:1").wait_for(timeout=10_000)
        z = page.evaluate("() => { const i = document.querySelector('.st-key-review_image img');"
                          " const r = i.getBoundingClientRect(); return [i.naturalWidth, r.width]; }")
        assert abs(z[0] - z[1]) <= 2 and z[0] < 1536, f"not 1:1: {z}"
        # a second click: the whole image again; the keys still work after the clicks
        zoomed = page.locator(REVIEW_IMAGE).first.get_attribute("src")
        page.locator(REVIEW_IMAGE).first.click()
        page.wait_for_function(
            "(old) => { const i = document.querySelector('.st-key-review_image img');"
            " return i && i.getAttribute('src') !== old && i.complete; }", arg=zoomed, timeout=30_000)
        settle(page)
        assert page.get_by_text("Zoomed:").count() == 0
        next_image_after(page, "Enter")
        assert len(labels(db_path)) == 1
    finally:
        stop_server(proc)


def test_reload_keeps_the_queue_and_blind_check_hides_the_answer(browser, tmp_path):
    db_path = build_app_db(tmp_path)
    proc, url = serve(db_path, tmp_path)
    try:
        page = open_review(browser, url)
        page.get_by_role("radio", name="Blind spot-check").click()
        settle(page)
        page.get_by_text("Which class is this?").wait_for(timeout=10_000)
        # the previous queue's elements leave once the rerun has finished removing stale ones
        page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stPlotlyChart\"]').length === 0",
                               timeout=15_000)
        assert page.get_by_role("button", name="Accept").count() == 0, "no answer to accept"
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 0, "no probabilities"
        page.reload()
        page.wait_for_selector(MAIN_IMAGE, timeout=30_000)
        settle(page)
        page.get_by_text("Which class is this?").wait_for(timeout=10_000)  # still the blind queue
        next_image_after(page, "1")
        page.get_by_text("The model said").wait_for(timeout=10_000)  # told once the choice is made
        last = labels(db_path)[-1]
        assert last[1] == CLASSES[0] and last[4] == "blind"
    finally:
        stop_server(proc)


def test_grid_enter_confirms_after_ticking_a_thumbnail(browser, tmp_path):
    db_path = build_app_db(tmp_path)
    proc, url = serve(db_path, tmp_path)
    try:
        page = open_page(browser, url, "/grid?reviewer=alice", '[data-testid="stMain"] [data-testid="stCheckbox"]')
        assert open_db(db_path).execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
        page.locator('[data-testid="stMain"] [data-testid="stCheckbox"]').first.click()
        settle(page)
        page.keyboard.press("Enter")
        page.get_by_text("left to other reviewers").wait_for(timeout=30_000)
        got = labels(db_path)
        assert len(got) >= 2 and {r[2] for r in got} >= {"accept"}
    finally:
        stop_server(proc)


def test_the_app_asks_nothing_of_outside_hosts(browser, tmp_path):
    """An offline lab gets the whole page, the favicon included: every request goes to the app."""
    db_path = build_app_db(tmp_path)
    proc, url = serve(db_path, tmp_path)
    try:
        asked: list[str] = []
        page = open_page(browser, url, "/review?reviewer=alice", MAIN_IMAGE, lambda r: asked.append(r.url))
        icon = page.evaluate("() => [...document.querySelectorAll('link[rel~=icon]')].map(l => l.href)")
        assert icon and all(h.startswith(url) for h in icon), icon
        outside = [u for u in asked if not u.startswith((url, "data:", "blob:"))]
        assert not outside, outside
    finally:
        stop_server(proc)
