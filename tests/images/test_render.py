"""Click-to-zoom windows and the metadata table of the review screen; the closer look's zoom
levels, panning and scale bar."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.images import (
    click_zoom,
    crop_around,
    fit_png,
    length_label,
    magnify,
    metadata_rows,
    nice_length,
    pan,
    read_image,
    scale_bar,
    zoom_png,
    zoom_window,
)


def ramp(h=300, w=400):
    return (np.arange(h)[:, None] * 1000 + np.arange(w)[None, :]).astype(np.float32)


def test_crop_is_1to1_and_centred_on_the_click():
    a = ramp()
    c = crop_around(a, 0.5, 0.5, 100, 60)
    assert c.shape == (60, 100)
    assert c[30, 50] == a[150, 200], "the clicked pixel is at the window's centre"
    assert np.array_equal(np.diff(c[0]), np.ones(99)), "no resampling: neighbours stay neighbours"


@pytest.mark.parametrize("fx, fy, corner", [(0.0, 0.0, (0, 0)), (1.0, 1.0, (240, 300)),
                                            (-3, 7, (240, 0)), (float("nan"), 0.0, (0, 150))])
def test_crop_stays_inside_the_image(fx, fy, corner):
    a = ramp()
    c = crop_around(a, fx, fy, 100, 60)
    assert c.shape == (60, 100)
    assert c[0, 0] == a[corner]


def test_crop_never_larger_than_the_image():
    assert crop_around(ramp(50, 40), 0.9, 0.1, 1000, 1000).shape == (50, 40)
    with pytest.raises(ValueError, match="2-D"):
        crop_around(np.zeros((3, 4, 5)), 0.5, 0.5, 2, 2)


def test_metadata_rows_in_words_and_units():
    rows = dict(metadata_rows({"hv_kV": 5.0, "wd_mm": 4.03466, "hfw_m": 0.00172667, "beam_current_A": 6.25e-12,
                               "dwell_s": 1e-05, "custom": {"a": 1, "b": ""}, "empty": None},
                              pixel_size_m=3.37e-9, pixel_size_source="FEI [Scan] PixelWidth"))
    assert rows["Pixel size"] == "3.37 nm (from FEI [Scan] PixelWidth)"
    assert rows["Accelerating voltage"] == "5 kV"
    assert rows["Working distance"] == "4.03 mm"
    assert rows["Horizontal field width"] == "1.73 mm"
    assert rows["Beam current"] == "6.25 pA"
    assert rows["Dwell time"] == "10 µs"
    assert rows["custom.a"] == "1" and "custom.b" not in rows and "empty" not in rows


def test_metadata_rows_cut_long_values_and_keep_odd_ones_as_text():
    rows = dict(metadata_rows({"user_text": "x" * 500, "hv_kV": "five"}))
    assert len(rows["User text"]) == 200 and rows["User text"].endswith("…")
    assert rows["Accelerating voltage"] == "five"


def test_metadata_rows_of_real_instrument_files(sem_fixtures):
    for name in ("FEI-Helios-Ebeam-8bits.tif", "ZEISS_SEM_multipage.tif"):
        img = read_image(sem_fixtures / name)
        rows = dict(metadata_rows(img.metadata, pixel_size_m=img.pixel_size_m))
        assert "Detector" in rows and "Horizontal field width" in rows, name
        assert rows.get("Pixel size", "").endswith("m"), name


# --- the Review page's closer look: zoom levels, panning, scale bar -------------------------


def test_zoom_window_fills_the_box_at_each_level():
    for z in (1, 2, 4):
        win = zoom_window(2048, 1536, 0.5, 0.5, 1000, 700, z)
        assert (win.width, win.height) == (1000 // z, 700 // z)
        assert win.display_size == (1000 // z * z, 700 // z * z)
        assert abs(win.centre[0] - 0.5) < 2 / 2048 and abs(win.centre[1] - 0.5) < 2 / 1536


def test_zoom_png_is_magnified_with_sharp_pixels():
    a = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    assert magnify(a, 3).shape == (9, 12) and (magnify(a, 3)[:3, :3] == a[0, 0]).all()
    win = zoom_window(4, 3, 0.5, 0.5, 8, 6, 2)
    im = Image.open(io.BytesIO(zoom_png(a, win, 0, 11000)))
    assert im.size == (8, 6), "2:1: each image pixel two screen pixels wide"
    px = np.asarray(im)
    assert px[0, 0] == 0 and px[-1, -1] == 255 and px[0, 0] == px[1, 1]


def test_pan_moves_half_a_view_and_stops_at_the_edges():
    win = zoom_window(1000, 800, 0.5, 0.5, 200, 100, 1)
    right = pan(win, 1, 0)
    assert (right.x0 - win.x0, right.y0) == (100, win.y0), "half a view to the right"
    down = pan(win, 0, 1)
    assert down.y0 - win.y0 == 50
    far = win
    for _ in range(50):
        far = pan(far, 1, 1)
    assert (far.x0, far.y0) == (800, 700), "clamped at the right and bottom edges"
    for _ in range(50):
        far = pan(far, -1, -1)
    assert (far.x0, far.y0) == (0, 0), "clamped at the left and top edges"
    back = pan(pan(far, -1, 0), 1, 0)
    assert back.x0 == 100, "no hidden overshoot: one step back moves at once"


def test_clicked_zoom_is_1to1_on_large_images_else_at_least_twice_the_fit():
    assert click_zoom(0.7) == 1
    assert click_zoom(1.0) == 2
    assert click_zoom(1.5) == 4
    assert click_zoom(30.0) == 8, "capped at the largest level"


@pytest.mark.parametrize("max_m, nice", [(7.3e-7, 5e-7), (2.0e-6, 2e-6), (1.99e-6, 1e-6),
                                         (0.00042, 2e-4), (9.99e-9, 5e-9), (1.0, 1.0)])
def test_nice_lengths_are_1_2_5_times_a_power_of_ten(max_m, nice):
    assert nice_length(max_m) == nice


def test_scale_bar_length_in_pixels_follows_pixel_size_and_zoom(sem_fixtures):
    img = read_image(sem_fixtures / "test_tiff_Zeiss_SEM_512pix.tif")
    ps = img.pixel_size_m
    assert ps == pytest.approx(11.65e-9, rel=1e-3)
    fit = scale_bar(ps, img.width, zoom=0.5)
    assert fit.label == "1 µm" and fit.length_m == pytest.approx(1e-6)
    assert fit.image_px == pytest.approx(fit.length_m / ps)
    assert fit.screen_px == pytest.approx(fit.length_m / ps * 0.5)
    assert 0.1 <= fit.fraction <= 0.25
    z2 = scale_bar(ps, 200, zoom=2)  # a 2:1 view 200 image pixels wide
    assert z2.screen_px == pytest.approx(z2.length_m / ps * 2)
    assert z2.label == "500 nm" and z2.fraction == pytest.approx(z2.length_m / ps / 200)


@pytest.mark.parametrize("m, text", [(5e-7, "500 nm"), (2e-6, "2 µm"), (1e-3, "1 mm"), (5e-12, "5 pm"),
                                     (1e-9, "1 nm"), (20.0, "20 m")])
def test_length_labels(m, text):
    assert length_label(m) == text


def test_no_scale_bar_without_a_pixel_size():
    assert scale_bar(None, 500) is None and scale_bar(0.0, 500) is None and scale_bar(1e-9, 0) is None


def test_fit_png_reduces_by_a_whole_factor_and_windows():
    a = np.tile(np.array([0, 4000], dtype=np.uint16), (300, 500))
    im = Image.open(io.BytesIO(fit_png(a, 0, 4000, 400)))
    assert max(im.size) <= 400 and im.size == (334, 100)
    assert 120 <= np.asarray(im).mean() <= 135, "block means of black and white: mid grey"
