"""A closer look on the Review page and the dark theme, in a real browser, on a demo database
(synthetic micrographs with their pixel sizes): zoom in, pan by keys and buttons, change the
levels, read the scale bar (the length core.images computes for that image and view), then
decide with the keyboard as before; and the sidebar's Dark choice turns the app dark (its
computed background), leaves the image as it is, turns the chart dark, and is remembered for
the reviewer's next session."""

from __future__ import annotations

import re

import pytest

from core.images import percentile_window, read_frame, scale_bar
from core.store import open_db
from core.workflows import build_demo
from tests.helpers import build_tiny_model
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
SCALE_BAR = '[data-testid="semtriage-scalebar"]'
APP_BG = "() => getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor"


def demo_db(root):
    model = build_tiny_model(root / "models" / "default.onnx", ("films", "fibres", "particles"))
    db_path = root / "demo.db"
    info = build_demo(db_path, n_images=8, demo_dir=root / "demo", model_path=model)
    assert info["status"] == "built" and not info["failed"], info
    return db_path


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def open_page(browser, url, path, wait_for):
    """A 1600×1000 page on ``url + path`` once ``wait_for`` shows (a fresh server's first
    session goes to the app's own page first: Streamlit's 'Page not found' otherwise)."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(url)
    page.wait_for_selector('[data-testid="stApp"]', timeout=30_000)
    settle(page)
    page.goto(url + path)
    page.wait_for_selector(wait_for, timeout=30_000)
    settle(page)
    return page


def on_screen(page, db_path):
    """(path, pixel size) of the image on screen, from the caption's file name."""
    caption = page.get_by_text("click the image to zoom").first.inner_text()
    name = caption.split(" · ")[0]
    return open_db(db_path).execute(
        "SELECT f.path, i.pixel_size_m FROM images i JOIN files f ON f.image_id = i.id "
        "WHERE f.path LIKE ? LIMIT 1", [f"%/{name}"]).fetchone()


def zoom_caption(page):
    """(zoom, x0, x1) from the 'Zoomed: 2:1 … (x 12–140, y …)' caption."""
    text = page.get_by_text("Zoomed:").first.inner_text()
    m = re.search(r"Zoomed: (\d+):1.*\(x (\d+)–(\d+), y", text)
    assert m, text
    return int(m[1]), int(m[2]), int(m[3])


def wait_src_change(page, old):
    page.wait_for_function(
        "(old) => { const i = document.querySelector('.st-key-review_image img');"
        " return i && i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0; }",
        arg=old, timeout=30_000)
    settle(page)


def src(page):
    return page.locator(REVIEW_IMAGE).first.get_attribute("src")


def test_zoom_pan_levels_and_scale_bar_then_decide_by_keyboard(browser, tmp_path):
    db_path = demo_db(tmp_path)
    proc, url = start_server(db_path, tmp_path, tmp_path / "streamlit.log")
    try:
        page = open_page(browser, url, "/review?reviewer=alice&queue=all", MAIN_IMAGE)
        path, ps = on_screen(page, db_path)
        assert ps, "demo images carry their pixel size"
        width = read_frame(path).width
        # the fitted view: a scale bar of a round length, as wide as that length on the image
        bar = page.locator(SCALE_BAR).first
        assert bar.inner_text().strip() == scale_bar(ps, width).label
        img_box, bar_box = page.locator(REVIEW_IMAGE).first.bounding_box(), bar.bounding_box()
        want = scale_bar(ps, width).fraction * img_box["width"]
        got = page.evaluate("() => document.querySelector('[data-testid=\"semtriage-scalebar\"] .bar')"
                            ".getBoundingClientRect().width")
        assert abs(got - want) <= 2, f"bar {got:.1f} px, expected {want:.1f} px"
        assert bar_box["y"] + bar_box["height"] <= img_box["y"] + img_box["height"], "drawn over the image"

        # a click zooms in there (a 256 px image fitted at about its size: 2:1)
        old = src(page)
        page.mouse.click(img_box["x"] + img_box["width"] * 0.3, img_box["y"] + img_box["height"] * 0.4)
        wait_src_change(page, old)
        page.get_by_text("Zoomed: 2:1").wait_for(timeout=10_000)
        zoom, x0, x1 = zoom_caption(page)
        assert page.locator(SCALE_BAR).first.inner_text().strip() == scale_bar(ps, x1 - x0, zoom).label
        # Shift + → pans by half a view; the → button again, up to the image's edge
        old = src(page)
        page.keyboard.press("Shift+ArrowRight")
        wait_src_change(page, old)
        px0 = zoom_caption(page)[1]
        assert px0 - x0 == (x1 - x0) // 2, (x0, px0)
        old = src(page)
        page.locator('[data-semtriage-pan="1,0"]').click()
        wait_src_change(page, old)
        _, qx0, qx1 = zoom_caption(page)
        assert qx0 > px0 and qx1 <= width, "panned right, stopping at the edge"
        # another zoom level from the zoom bar keeps the view centred
        old = src(page)
        page.locator('[data-semtriage-zoom="4"]').click()
        wait_src_change(page, old)
        assert zoom_caption(page)[0] == 4

        # levels: percentiles of the stored values, then back with Reset
        page.get_by_text("Levels", exact=True).click()
        page.get_by_text("Window by").wait_for(timeout=10_000)
        settle(page)
        assert "Black at 0, white at 255" in page.get_by_text("Black at").first.inner_text()
        old = src(page)
        page.get_by_role("radio", name="Percentiles").click()
        wait_src_change(page, old)
        lo, hi = percentile_window(read_frame(path).raw, 0.5, 99.5)
        page.get_by_text(f"Black at {lo:,.6g}, white at {hi:,.6g}").wait_for(timeout=10_000)
        old = src(page)
        page.get_by_role("button", name="Reset levels").click()
        wait_src_change(page, old)
        page.get_by_text("Black at 0, white at 255").wait_for(timeout=10_000)
        assert zoom_caption(page)[0] == 4, "still zoomed"

        # the keyboard review flow is as before: Enter accepts and the next image comes, fitted
        next_image_after(page, "Enter")
        assert page.get_by_text("Zoomed:").count() == 0
        got = open_db(db_path).execute(
            "SELECT action FROM current_labels WHERE source = 'human' AND reviewer = 'alice'").fetchall()
        assert [r[0] for r in got] == ["accept"], got
    finally:
        stop_server(proc)


def test_dark_theme_from_the_sidebar_is_applied_and_remembered(browser, tmp_path):
    db_path = demo_db(tmp_path)
    proc, url = start_server(db_path, tmp_path, tmp_path / "streamlit.log")
    try:
        page = open_page(browser, url, "/review?reviewer=alice&queue=all", MAIN_IMAGE)
        assert page.evaluate(APP_BG) == "rgb(255, 255, 255)", "System, in a light browser: light"
        image = src(page)
        page.locator('[data-testid="stSidebar"]').get_by_role("radio", name="Dark").click()
        page.wait_for_function(f"() => ({APP_BG})() === 'rgb(14, 17, 23)'", timeout=15_000)
        settle(page)
        rgb = [int(v) for v in re.findall(r"\d+", page.evaluate(APP_BG))[:3]]
        assert sum(rgb) / 3 < 40, f"the app background is dark: {rgb}"
        assert src(page) == image, "the same image"
        assert page.evaluate("() => getComputedStyle(document.querySelector('.st-key-review_image img')).filter")\
            == "none", "images are not recoloured"
        page.wait_for_function(  # the chart redrawn with plotly_dark's light text
            "() => { const t = document.querySelector('[data-testid=\"stPlotlyChart\"] .ytick text');"
            " return t && getComputedStyle(t).fill === 'rgb(242, 245, 250)'; }", timeout=15_000)
        next_image_after(page, "1")  # the keys still work after the click on the theme switch
        # the reviewer's next session starts dark
        again = open_page(browser, url, "/review?reviewer=alice&queue=all", MAIN_IMAGE)
        assert again.evaluate(APP_BG) == "rgb(14, 17, 23)"
        assert again.locator('[data-testid="stSidebar"] [role="radio"][aria-checked="true"]').inner_text() == "Dark"
    finally:
        stop_server(proc)
