"""The reviewer's window / level on stored values (core/images/levels.py): the chosen low value
shows black and the high one white, for 8-bit, 16-bit and float samples of real files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from core.images import (
    apply_window,
    percentile_window,
    read_frame,
    read_image,
    to_uint8,
    value_range,
)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_window_maps_low_to_black_and_high_to_white(dtype):
    a = np.array([[0, 100, 200, 250]], dtype=dtype)
    out = to_uint8(apply_window(a, 100, 200))
    assert out.tolist() == [[0, 0, 255, 255]], "below low is black, above high is white"
    mid = to_uint8(apply_window(np.array([[150]], dtype=dtype), 100, 200))
    assert mid[0, 0] in (127, 128), "linear between"


def test_window_on_a_real_micrograph_stored_as_16_bit(sem_fixtures, tmp_path):
    """The Zeiss micrograph written as 16-bit samples (the FEI 16-bit file's scan area is
    black): the window acts on the 16-bit values read back, not on an 8-bit copy."""
    zeiss = read_frame(sem_fixtures / "test_tiff_Zeiss_SEM_1k.tif").raw
    path = tmp_path / "zeiss16.tif"
    tifffile.imwrite(path, zeiss.astype(np.uint16) * 257 + 3)
    frame = read_frame(path)
    assert frame.raw.dtype == np.uint16 and frame.bit_depth == 16
    assert value_range(frame.raw)[1] > 255, "16-bit values, not already squeezed into 8 bits"
    a, b = (float(v) for v in np.percentile(frame.raw, [20, 80]))
    out = to_uint8(apply_window(frame.raw, a, b))
    assert (out[frame.raw <= a] == 0).all() and (out[frame.raw >= b] == 255).all()
    inside = (frame.raw > a + 200) & (frame.raw < b - 200)
    assert inside.any() and ((out[inside] > 0) & (out[inside] < 255)).all()
    assert frame.lo < frame.hi and frame.hi > 255, "the default window is in 16-bit values too"


def test_real_16_bit_fei_frame_keeps_its_samples(sem_fixtures):
    frame = read_frame(sem_fixtures / "FEI-Helios-Ebeam-16bits.tif")
    assert frame.raw.dtype == np.uint16 and frame.raw.shape == (442, 512), "data bar cut (metadata)"
    assert frame.pixel_size_m == pytest.approx(3.3724e-06, rel=1e-4)


@pytest.mark.parametrize("name", ["FEI-Helios-Ebeam-8bits.tif", "FEI-Helios-Ebeam-16bits.tif",
                                  "test_tiff_Zeiss_SEM_1k.tif", "test_loading_image_saved_with_imageJ.tif"])
def test_default_window_of_the_frame_is_what_read_image_shows(sem_fixtures, name):
    img, frame = read_image(sem_fixtures / name), read_frame(sem_fixtures / name)
    assert frame.raw.shape == img.scan.shape, "the data bar is cut off the same way"
    assert frame.pixel_size_m == img.pixel_size_m
    assert np.allclose(apply_window(frame.raw, frame.lo, frame.hi), img.scan, atol=1e-6)


def test_8_bit_default_window_is_the_full_scale(sem_fixtures):
    frame = read_frame(sem_fixtures / "FEI-Helios-Ebeam-8bits.tif")
    assert frame.raw.dtype == np.uint8 and (frame.lo, frame.hi) == (0.0, 255.0)


def test_percentile_window_exact_on_16_bit_and_ordered():
    a = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
    assert percentile_window(a, 1, 99) == (99.0, 9899.0)
    assert percentile_window(a, 99, 1) == (99.0, 9899.0), "swapped bounds are put in order"
    assert percentile_window(a, -5, 150) == (0.0, 9999.0), "clipped to 0-100 %"


def test_value_range_skips_nan_and_inf():
    assert value_range(np.array([np.nan, -1.5, np.inf, 3.0], dtype=np.float32)) == (-1.5, 3.0)
    assert value_range(np.array([np.nan], dtype=np.float32)) == (0.0, 0.0)
    assert value_range(np.zeros((0, 3))) == (0.0, 0.0)
    assert value_range(np.array([[7, 300]], dtype=np.uint16)) == (7.0, 300.0)


def test_empty_or_reversed_window_gives_black():
    assert not apply_window(np.arange(4, dtype=np.uint8), 5, 5).any()
    assert not apply_window(np.arange(4, dtype=np.uint8), 9, 2).any()
