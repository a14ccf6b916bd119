"""Instrument text boxes drawn inside the frame (core.images.annotation_boxes): found on the real
micrographs that have one, never on those that do not, nor on noise or flat-topped images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.images import annotation_boxes, read_image
from core.synth import particle_micrograph

REAL = Path(__file__).resolve().parents[3] / "shared" / "real-sem"


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-sem is not present")
def test_the_real_overlay_boxes_are_found_and_nothing_else():
    with_box, false = [], []
    for f in sorted(p for p in REAL.rglob("*") if p.is_file() and p.suffix.lower() in
                    {".tif", ".tiff", ".png", ".jpg", ".bmp"}):
        boxes = annotation_boxes(read_image(f).scan)
        (with_box if "particles" in f.parts else false).append((f.name, boxes))
    assert with_box and all(b for _, b in with_box), with_box  # the SiO2 "E Beam" box
    for _, b in with_box:
        y0, y1, x0, x1 = b[0]
        assert 410 <= y0 < y1 <= 470 and x0 < 60 and 560 < x1 < 712
    assert not [n for n, b in false if b], "no box on the other real micrographs"


def test_synthetic_boxes_are_found_where_drawn_and_only_there():
    for seed in range(40):
        img, t = particle_micrograph(seed, (256, 320))
        boxes = annotation_boxes(img[: img.shape[0] - t["databar_px"]])
        assert bool(boxes) == bool(t["annotation_box"]), seed
        if boxes:
            got, drawn = boxes[0], t["annotation_box"]
            assert all(abs(a - b) <= 2 for a, b in zip(got, drawn)), (got, drawn)


def test_noise_flat_images_and_a_saturated_patch_are_not_boxes():
    rng = np.random.default_rng(0)
    assert annotation_boxes(rng.integers(0, 256, (300, 400)).astype(np.uint8)) == []
    assert annotation_boxes(np.zeros((300, 400), np.uint8)) == []
    img = (rng.random((300, 400)) * 0.5).astype(np.float32)
    img[220:280, 20:200] = 1.0  # a blown-out region: solid, no text on it
    assert annotation_boxes(img) == []
    assert annotation_boxes(np.zeros((10, 10))) == [] and annotation_boxes(np.zeros(5)) == []
