"""Properties that must hold on real micrographs (shared/real-sem, skipped when absent):
rotating an image by θ shifts the dominant direction by θ and leaves the order parameter and
aligned fraction unchanged; upsampling 2× with the pixel size halved leaves the diameters in
nm unchanged. Also on synthetic images, which always exist."""

from pathlib import Path

import numpy as np
import pytest
from skimage.transform import rescale, rotate

from core import fibres, synth
from core.images import read_image

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real-sem"
ALIGNED = [  # images with a clear direction (S > 0.7): rotation has a direction to shift
    "nanowires/compass-stc__StructuralGT__StructuralGT_pytest_data_AgNWN_slice0001.tif",
    ("fibres/DReGuerra__morpholoPy__test_cases_experimental_surface_images_cnc-poegma_"
    "electrospun_mats_images_poegma-cnc_1.65wtpct_elecspun_aligned_400x.png"),
]
WITH_PIXEL_SIZE = [
    "fibres/dvtxc__fibresem__sampledata_sample.01_img08.tif",
    "fibres/dvtxc__fibresem__sampledata_sample.02_img20.tif",
]
ANY = [*ALIGNED, "fibres/psobolewskiPhD__SEM_fiber_analysis__fiber_data_K1.jpg",
       ("fibres/DReGuerra__morpholoPy__test_cases_experimental_surface_images_cnc-poegma_"
       "electrospun_mats_images_poegma-cnc_1.65wtpct_elecspun_unaligned_400x.png")]


def real(name):
    p = REAL / name
    if not p.is_file():
        pytest.skip(f"real micrograph absent: {p}")
    return read_image(p)


def centre(a, side):
    h, w = a.shape
    y0, x0 = (h - side) // 2, (w - side) // 2
    return a[y0:y0 + side, x0:x0 + side]


@pytest.mark.parametrize("name", ANY)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_quarter_turns_shift_the_direction_by_90_degrees(name, k):
    scan = real(name).scan
    a = fibres.measure_gradient(scan)
    b = fibres.measure_gradient(np.rot90(scan, k))  # counter-clockwise as displayed
    assert a.status == b.status == "ok"
    if a.order_parameter > 0.3:  # an isotropic mat has no direction to shift
        assert fibres.angle_diff(b.dominant_deg, a.dominant_deg + 90 * k) < 1.0
    assert b.order_parameter == pytest.approx(a.order_parameter, abs=0.02)
    assert b.aligned_fraction == pytest.approx(a.aligned_fraction, abs=0.02)
    assert b.diameters.px["d50"] == pytest.approx(a.diameters.px["d50"], rel=0.05)


@pytest.mark.parametrize("name", ALIGNED)
@pytest.mark.parametrize("theta", [30.0, -50.0])
def test_rotation_by_any_angle_shifts_the_direction_by_that_angle(name, theta):
    scan = real(name).scan
    side = min(scan.shape)
    inner = int(side / (abs(np.cos(np.radians(theta))) + abs(np.sin(np.radians(theta))))) - 4
    a = fibres.measure_gradient(centre(scan, inner))
    turned = rotate(centre(scan, side), theta, order=1, preserve_range=True)  # counter-clockwise
    b = fibres.measure_gradient(centre(turned.astype(np.float32), inner))
    assert fibres.angle_diff(b.dominant_deg, a.dominant_deg + theta) < 4.0
    assert b.order_parameter == pytest.approx(a.order_parameter, abs=0.08)
    assert b.aligned_fraction == pytest.approx(a.aligned_fraction, abs=0.08)


def test_rotation_of_synthetic_images_shifts_the_true_and_measured_direction():
    img, _t = synth.generate_wires(5, 256, kind="nanowires", databar=False, populations=[
        {"angle_deg": 20.0, "spread_deg": 3.0, "weight": 1.0}])
    a = fibres.measure_gradient(img / 255.0)
    b = fibres.measure_gradient(np.rot90(img, 1) / 255.0)
    assert fibres.angle_diff(a.dominant_deg, 20) < 3
    assert fibres.angle_diff(b.dominant_deg, 110) < 3


@pytest.mark.parametrize("name", WITH_PIXEL_SIZE)
def test_upsampling_2x_with_half_the_pixel_size_keeps_diameters_in_nm(name):
    im = real(name)
    assert im.pixel_size_m, "these Zeiss images carry their pixel size"
    crop = centre(im.scan, 640)
    a = fibres.measure_gradient(crop, im.pixel_size_m)
    big = rescale(crop, 2, order=1, anti_aliasing=False, preserve_range=True).astype(np.float32)
    b = fibres.measure_gradient(big, im.pixel_size_m / 2)
    assert a.diameter_unit == b.diameter_unit == "nm"
    assert b.diameters.nm["d50"] == pytest.approx(a.diameters.nm["d50"], rel=0.12)
    assert b.diameters.nm["mean"] == pytest.approx(a.diameters.nm["mean"], rel=0.12)
    assert b.order_parameter == pytest.approx(a.order_parameter, abs=0.08)


def test_upsampling_a_synthetic_image_keeps_its_diameters_in_nm():
    img, t = synth.generate_wires(2, 256, kind="nanowires", diameter_px=7.0, databar=False)
    a = fibres.measure_gradient(img / 255.0, t["pixel_size_m"])
    big = rescale(img / 255.0, 2, order=1, preserve_range=True).astype(np.float32)
    b = fibres.measure_gradient(big, t["pixel_size_m"] / 2)
    assert b.diameters.nm["d50"] == pytest.approx(a.diameters.nm["d50"], rel=0.12)
