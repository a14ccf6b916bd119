"""Click-to-zoom windows and the metadata table of the review screen."""

from __future__ import annotations

import numpy as np
import pytest

from core.images import crop_around, metadata_rows, read_image


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
