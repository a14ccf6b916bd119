"""The classical detector: finds isolated and touching particles on a clean image, splits
touching ones, refuses bad parameters, copes with blank, 16-bit and float images."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import InvalidValue
from core.particles import ClassicalParams, detect_classical, match
from core.synth import particle_micrograph


def scene(dark=False):
    rng = np.random.default_rng(0)
    lab = np.zeros((200, 240), np.int32)
    yy, xx = np.mgrid[:200, :240]
    k = 0
    for cy in range(30, 200, 50):
        for cx in range(30, 240, 50):
            k += 1
            lab[(xx - cx) ** 2 + (yy - cy) ** 2 <= 12 ** 2] = k
    # a touching pair
    k += 1
    lab[((xx - 215) ** 2 + (yy - 185) ** 2 <= 8 ** 2)] = k
    img = np.where(lab > 0, 0.75, 0.25) + rng.normal(0, 0.03, lab.shape)
    if dark:
        img = 1 - img
    return np.clip(img, 0, 1).astype(np.float32), lab


@pytest.mark.parametrize("dark", [False, True])
def test_finds_particles_either_polarity(dark):
    img, lab = scene(dark)
    pred, scores = detect_classical(img)
    r = match(pred, lab)
    assert r.f1 > 0.95, r.summary()
    assert len(scores) == pred.max() + 1 and scores[1:].min() > 0.5


def test_touching_discs_are_split():
    lab = np.zeros((80, 120), np.int32)
    yy, xx = np.mgrid[:80, :120]
    lab[(xx - 45) ** 2 + (yy - 40) ** 2 <= 15 ** 2] = 1
    lab[((xx - 72) ** 2 + (yy - 40) ** 2 <= 15 ** 2) & (lab == 0)] = 2
    img = np.where(lab > 0, 0.8, 0.2).astype(np.float32)
    pred, _ = detect_classical(img)
    assert pred.max() == 2 and match(pred, lab).f1 == 1.0


def test_blank_image_has_no_particles():
    pred, _ = detect_classical(np.full((64, 64), 0.5, np.float32))
    assert pred.max() == 0


@pytest.mark.parametrize("bad", [{"polarity": "up"}, {"threshold": "magic"}, {"min_area": 0},
                                 {"h": -1}, {"nonsense": 1}])
def test_bad_parameters_are_refused_by_name(bad):
    with pytest.raises(InvalidValue) as e:
        ClassicalParams.from_dict(bad)
    assert next(iter(bad)) in str(e.value) or "Unknown" in str(e.value)


@pytest.mark.parametrize("method", ["model", "classical"])
def test_nothing_is_detected_under_an_overlay_box_and_particles_it_cuts_are_left_out(method, tmp_path):
    """Real micrographs carry the instrument's text box inside the frame; its letters are not
    particles, and a particle half under it has no size."""
    from core.images import annotation_boxes
    from core.particles import active_detector, detect_array
    from core.store import open_db

    img, t = particle_micrograph(3, (256, 320), look="sem", packed=True, annotation=True,
                                 databar=False)
    y0, y1, x0, x1 = t["annotation_box"]
    scan = img.astype(np.float32) / 255
    assert annotation_boxes(scan) and annotation_boxes(scan)[0][0] <= y0 + 1
    parts = detect_array(scan, active_detector(open_db(tmp_path / "d.db"), method))
    assert parts
    for p in parts:
        px0, py0, px1, py1 = p.bbox
        inside = np.zeros(scan.shape, bool)
        inside[py0:py1, px0:px1] = p.mask
        assert not inside[y0:y1, x0:x1].any(), "no particle pixel under the box"
    near = [p for p in parts if p.bbox[1] <= y1 + 1 and p.bbox[3] >= y0 - 1
            and p.bbox[0] <= x1 + 1 and p.bbox[2] >= x0 - 1]
    assert any(p.excluded == "databar" for p in near)
