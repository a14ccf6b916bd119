"""The particle correction flow in a real browser: click a particle on the image to select
it, D deletes it, a click in add mode segments a new one there, V verifies the image — then
the database is checked (events with the reviewer, sources, state). Zoomed in on a clump of
small particles (8:1, panned with Shift + arrow), a click selects the particle under it, a
click in add mode lands where it was clicked and two scale-bar clicks measure their distance
in image pixels; the window shown is read from the page's own caption."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from scipy import ndimage

from core import particles as P
from core.intake import ingest
from core.store import open_db
from core.synth import write_particle_dataset
from tests.helpers.browser import (
    ARTIFACTS,
    app_server,
    chromium,
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


def open_particles(browser, url, reviewer):
    """A page signed in as ``reviewer`` on the Particles page, its image loaded."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(url)
    settle(page)
    name = page.get_by_role("textbox", name="Reviewer")
    name.fill(reviewer)
    name.press("Tab")
    settle(page)
    page.get_by_role("link", name="Particles").first.click()
    settle(page)
    img = page.frame_locator(FRAME).locator("img")
    img.wait_for(timeout=30_000)
    return page, img


def test_select_delete_add_verify(server):
    url, db_path = server
    db = open_db(db_path)
    rows = [r for r in P.particle_rows(db, 1) if not r["excluded"]]
    target = sorted(rows, key=lambda r: r["area_px"])[len(rows) // 2]
    n0 = len(P.live_ids(db, 1))
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page, img = open_particles(browser, url, "alice")
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
    db = open_db(db_path)
    hist = P.history(db, 1)
    assert [h["action"] for h in hist] == ["detect", "delete", "add", "verify"]
    assert {h["reviewer"] for h in hist[1:]} == {"alice"}
    added = [r for r in P.particle_rows(db, 1) if r["source"] == "human"]
    assert len(added) == 1
    assert abs(added[0]["centroid_x_px"] - target["centroid_x_px"]) < target["ecd_px"] / 2
    assert len(P.live_ids(db, 1)) == n0


def inner_points(db, shape):
    """Per live particle id: its most interior pixel's centre (x, y) in image pixels."""
    labels, ids = P.label_image(db, 1, shape)
    dist = ndimage.distance_transform_edt(labels > 0)
    out = {}
    for k, sl in enumerate(ndimage.find_objects(labels), 1):
        if sl is None:
            continue
        d = np.where(labels[sl] == k, dist[sl], 0)
        r, c = np.unravel_index(int(np.argmax(d)), d.shape)
        out[ids[k - 1]] = (c + sl[1].start + 0.5, r + sl[0].start + 0.5)
    return out


def shown_window(page, other_than=None):
    """(zoom, x0, x1, y0, y1) of the zoomed view, from the page's caption (once it differs
    from ``other_than``: the rerun may not have started when the last one settled)."""
    end = time.monotonic() + 20
    while True:
        cap = page.get_by_text(re.compile(r"^\d+:1 · showing x")).inner_text()
        m = re.match(r"(\d+):1 · showing x (\d+)–(\d+), y (\d+)–(\d+)", cap)
        assert m, cap
        win = tuple(int(v) for v in m.groups())
        if win != other_than or time.monotonic() > end:
            settle(page)
            return win
        time.sleep(0.2)


def test_zoomed_clicks_select_add_and_pick_scale_points(server):
    url, db_path = server
    db = open_db(db_path)
    shape = (256, 320)
    rows = {r["id"]: r for r in P.particle_rows(db, 1) if not r["excluded"]}
    pts = {i: p for i, p in inner_points(db, shape).items() if i in rows}
    n0 = len(P.live_ids(db, 1))

    def crowd(i):
        x, y = pts[i]
        return sum(np.hypot(x - a, y - b) < 15 for a, b in pts.values())

    t_id = max(pts, key=crowd)  # a particle in the densest clump
    assert crowd(t_id) >= 4, "the test image has a clump"
    ARTIFACTS.mkdir(exist_ok=True)
    with chromium() as browser:
        page, img = open_particles(browser, url, "bob")

        def click_at(x, y, win=None):
            """Click image pixel (x, y) on the picture, fitted or showing ``win`` (once the
            component has loaded its picture and stopped moving)."""
            end, box = time.monotonic() + 20, None
            while time.monotonic() < end:
                ready = img.evaluate("i => i.complete && i.naturalWidth > 0")
                now = img.bounding_box()
                if ready and now and now == box and now["width"] > 0:
                    break
                box = now
                time.sleep(0.2)
            if win is None:
                f = box["width"] / shape[1]
                img.click(position={"x": x * f, "y": y * f})
            else:
                _, x0, x1, y0, _ = win
                f = box["width"] / (x1 - x0)
                img.click(position={"x": (x - x0) * f, "y": (y - y0) * f})
            settle(page)

        def keys(k):
            page.evaluate("document.activeElement && document.activeElement.blur()")
            page.keyboard.press(k)
            settle(page)

        click_at(*pts[t_id])  # fitted: the clump is where the zoom will go
        page.get_by_text("selected: 1").wait_for(timeout=20_000)
        keys("Escape")
        page.get_by_text("selected: 0").wait_for(timeout=20_000)
        page.locator(".st-key-pt_zoom").get_by_text("8:1", exact=True).click()
        settle(page)
        win = shown_window(page)
        assert win[0] == 8 and win[2] - win[1] == 80 and win[4] - win[3] == 64, win
        tx, ty = pts[t_id]
        assert win[1] <= tx <= win[2] and win[3] <= ty <= win[4], "zoomed in on the last click"
        # Shift + → pans half a view (or ← at the image's right edge)
        right = win[2] < shape[1]
        keys("Shift+ArrowRight" if right else "Shift+ArrowLeft")
        panned = shown_window(page, other_than=win)
        assert panned[1] == (min(win[1] + 40, shape[1] - 80) if right else max(0, win[1] - 40))
        # a neighbour in the clump, inside the part of the view both windows show
        lo, hi = max(win[1], panned[1]) + 4, min(win[2], panned[2]) - 4
        near = [i for i, (x, y) in pts.items()
                if i != t_id and lo <= x <= hi and panned[3] + 4 <= y <= panned[4] - 4]
        assert near, "a particle to click in the zoomed view"
        n_id = min(near, key=lambda i: np.hypot(pts[i][0] - tx, pts[i][1] - ty))
        click_at(*pts[n_id], panned)
        page.get_by_text("selected: 1").wait_for(timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "particles-zoomed.png"))
        keys("d")
        assert wait_for(lambda: n_id not in P.live_ids(open_db(db_path), 1))
        live = set(P.live_ids(open_db(db_path), 1))
        assert t_id in live and len(live) == n0 - 1, "only the clicked one went"
        page.get_by_text("Add by clicking").click()
        settle(page)
        click_at(*pts[n_id], panned)
        assert wait_for(lambda: any(r["source"] == "human" for r in P.particle_rows(open_db(db_path), 1)))
        (added,) = [r for r in P.particle_rows(open_db(db_path), 1) if r["source"] == "human"]
        gone = rows[n_id]
        assert np.hypot(added["centroid_x_px"] - gone["centroid_x_px"],
                        added["centroid_y_px"] - gone["centroid_y_px"]) < max(2.0, gone["ecd_px"] / 2), (
            added, gone, pts[n_id], panned)
        page.get_by_text("Scale bar (2 clicks)").click()
        settle(page)
        a, b = (panned[1] + 10, panned[3] + 20), (panned[1] + 60, panned[3] + 20)
        # the file has a pixel size, so its expander is closed: the scale-bar steps show anyway
        page.get_by_text("Click both ends of the scale bar (0/2).").wait_for(timeout=20_000)
        click_at(*a, panned)
        page.get_by_text("Click both ends of the scale bar (1/2).").wait_for(timeout=20_000)
        click_at(*b, panned)
        use = page.get_by_text(re.compile(r"^Use [\d.]+ nm.px for this image"))
        use.wait_for(timeout=20_000)
        nm = float(re.search(r"Use ([\d.]+) nm/px", use.text_content()).group(1))
        assert nm == pytest.approx(1000 / 50, rel=0.01), "1000 nm over 50 image pixels"
        use.click()

        def stored_nm() -> float:
            return 1e9 * (P.pixel_size(open_db(db_path), 1)[0] or 0)
        assert wait_for(lambda: stored_nm() == pytest.approx(nm, rel=1e-3)), stored_nm()
        assert "scale bar" in P.pixel_size(open_db(db_path), 1)[1]
