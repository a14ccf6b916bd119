"""The synthetic particle micrographs: deterministic, exact instance masks, edge / data-bar
flags, distractors not in the masks."""

from __future__ import annotations

import numpy as np
import pytest

from core.synth import particle_micrograph


def test_same_seed_same_pixels_and_labels():
    a, ta = particle_micrograph(3, (128, 160))
    b, tb = particle_micrograph(3, (128, 160))
    assert np.array_equal(a, b) and np.array_equal(ta["labels"], tb["labels"])
    c, _ = particle_micrograph(4, (128, 160))
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("seed", range(6))
def test_labels_are_exact_and_records_match(seed):
    img, t = particle_micrograph(seed, (192, 256))
    lab = t["labels"]
    assert img.dtype == np.uint8 and img.shape == lab.shape
    n = len(t["particles"])
    assert lab.max() == n and set(np.unique(lab)) == set(range(n + 1))
    areas = np.bincount(lab.ravel(), minlength=n + 1)
    for p in t["particles"]:
        assert p["area_px"] == areas[p["id"]]
    # a particle in the border rows / columns is flagged edge (or data bar)
    h = lab.shape[0] - t["databar_px"]
    border = set(np.unique(np.concatenate([lab[0], lab[h - 1], lab[:h, 0], lab[:h, -1]]))) - {0}
    flagged = {p["id"] for p in t["particles"] if p["excluded"]}
    assert border <= flagged


def test_data_bar_hides_particles_and_flags_those_it_cuts():
    _img, t = particle_micrograph(5, (256, 320), databar=True, coverage=0.4, look="sem")
    bar = t["databar_px"]
    assert bar > 0 and not t["labels"][-bar:].any()
    assert any(p["excluded"] == "databar" for p in t["particles"])


def test_gold_look_has_dark_particles_of_the_gold_sizes():
    img, t = particle_micrograph(2, (256, 320), look="gold", databar=False)
    lab = t["labels"]
    assert img[lab > 0].mean() < img[lab == 0].mean() - 20  # dark on bright
    sizes_nm = {p["d_nm"] for p in t["populations"]}
    assert sizes_nm <= {6.0, 12.0, 18.0}


def test_dense_clumps_touch():
    _, t = particle_micrograph(7, (256, 320), look="sem", coverage=0.45, clumpiness=0.9)
    lab = t["labels"]
    touching = (lab[:, 1:] != lab[:, :-1]) & (lab[:, 1:] > 0) & (lab[:, :-1] > 0)
    assert touching.sum() > 50  # particles share borders, not only background gaps


def test_a_packed_pile_covers_the_field_with_partly_hidden_particles():
    _, t = particle_micrograph(4, (256, 320), look="sem", packed=True, databar=False,
                               annotation=False)
    lab = t["labels"]
    assert t["packed"] and (lab > 0).mean() > 0.7  # little substrate in sight
    visible = np.bincount(lab.ravel())[1:]
    full = np.array([np.pi * (p["d_nominal_px"] / 2) ** 2 for p in t["particles"]])
    assert (visible < 0.6 * full).mean() > 0.2  # many are partly under others
    assert not particle_micrograph(4, (256, 320), look="gold", packed=True)[1]["packed"]


def test_an_annotation_box_in_the_frame_hides_particles_and_flags_those_it_cuts():
    img, t = particle_micrograph(3, (256, 320), look="sem", packed=True, annotation=True,
                                 databar=False)
    y0, y1, x0, x1 = t["annotation_box"]
    assert y1 - y0 >= 10 and x1 - x0 >= 0.3 * img.shape[1]
    assert np.median(img[y0:y1, x0:x1]) < 30 and img[y0:y1, x0:x1].max() > 190  # black, white text
    assert not t["labels"][y0:y1, x0:x1].any()
    assert any(p["excluded"] == "databar" for p in t["particles"])
