"""Familiarity: the unfamiliarity score stored with every prediction — fitted statistics, the
card round trip, the shipped extractor and default card, and real micrographs."""

import json
from pathlib import Path

import numpy as np
import pytest

from core.config import DEFAULT_MODEL
from core.errors import ModelError
from core.images import read_image
from core.models import Classifier, Familiarity, auroc, fit_familiarity, ledoit_wolf

REAL = Path(__file__).resolve().parents[3] / "shared" / "real-sem"


def test_ledoit_wolf_shrinks_towards_a_scaled_identity():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 20))
    cov, shrink = ledoit_wolf(x)
    assert 0.0 < shrink <= 1.0
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0  # invertible with n < 2d


def test_score_is_about_one_at_the_limit_and_large_far_away():
    rng = np.random.default_rng(1)
    train = rng.normal(size=(400, 12))
    fam = fit_familiarity(train, quantile=0.95)
    inside = fam.score(rng.normal(size=(2000, 12)))
    assert 0.02 < (inside >= 1).mean() < 0.10  # ~5 % of images like the training ones are flagged
    far = fam.score(rng.normal(size=(50, 12)) + 6.0)
    assert (far >= 1).all()
    assert auroc(far, inside) > 0.99


def test_reason_names_texture_pixel_size_and_instrument():
    rng = np.random.default_rng(2)
    fam = fit_familiarity(rng.normal(size=(100, 5)), pixel_sizes=[1e-9, 5e-9] * 50,
                          instruments=["FEI Helios"] * 100)
    assert fam.reason(0.5, pixel_size_m=2e-9, instrument="FEI Helios") is None
    assert "unlike anything this model was trained on" in fam.reason(1.7)
    assert "pixel size 2.6 µm outside the trained range" in fam.reason(0.5, pixel_size_m=2.6e-6)
    assert "instrument 'Zeiss'" in fam.reason(0.5, instrument="Zeiss")


def test_pixel_range_unknown_when_some_training_images_have_none():
    rng = np.random.default_rng(3)
    fam = fit_familiarity(rng.normal(size=(40, 4)), pixel_sizes=[1e-9] * 39 + [None])
    assert fam.pixel_size_m is None and fam.reason(0.5, pixel_size_m=1.0) is None


def test_card_block_round_trips_and_broken_blocks_are_refused():
    rng = np.random.default_rng(4)
    fam = fit_familiarity(rng.normal(size=(60, 6)))
    fam.energy_median, fam.energy_limit = -8.0, -5.0
    back = Familiarity.from_json(fam.to_json())
    f = rng.normal(size=(10, 6))
    logits = rng.normal(size=(10, 3))
    assert np.allclose(back.score(f, logits), fam.score(f, logits), rtol=1e-5)
    bad = fam.to_json() | {"whiten_f32_b64": "AAAA"}
    with pytest.raises(ModelError, match="familiarity"):
        Familiarity.from_json(bad)
    with pytest.raises(ValueError, match="needs ≥ 20"):
        fit_familiarity(rng.normal(size=(5, 6)))


def test_auroc_counts_ties_half():
    assert auroc([1, 2], [0, 0]) == 1.0
    assert auroc([1], [1]) == 0.5
    assert np.isnan(auroc([], [1]))


def test_the_default_model_ships_familiarity_statistics():
    clf = Classifier(DEFAULT_MODEL)
    assert clf.familiarity is not None, clf.familiarity_note
    fam = clf.familiarity.familiarity
    assert fam.n >= 1000 and fam.energy_limit is not None and "synthetic" in fam.fitted_on


def test_a_model_without_statistics_scores_nothing(tmp_path):
    from tests.helpers import build_tiny_model

    clf = Classifier(build_tiny_model(tmp_path / "tiny.onnx"))
    probs, scores = clf.assess(np.zeros((2, 1, 32, 32), np.float32))
    assert scores is None and probs.shape == (2, len(clf.class_names))
    assert "no familiarity statistics" in clf.familiarity_note


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-sem is not present")
def test_real_micrographs_score_higher_than_synthetic_ones(tmp_path):
    """Real labelled micrographs are less familiar to the synthetic default model than held-out
    synthetic micrographs (a weak but real separation: bench/ood.py has the numbers)."""
    from core.synth import write_dataset

    clf = Classifier(DEFAULT_MODEL)
    real = [p for p in sorted(REAL.rglob("*")) if p.suffix.lower() in (".png", ".tif", ".jpg", ".bmp")]
    xr = np.stack([clf.prepare(read_image(p).scan) for p in real])
    # held-out synthetic micrographs written and read back as the training images were
    gt = write_dataset(tmp_path / "s", 60, seed=4_040_404, size=256, fmt="tif", layout="flat")
    files = [json.loads(line)["file"] for line in gt.read_text().splitlines()]
    xs = np.stack([clf.prepare(read_image(tmp_path / "s" / f).scan) for f in files])
    _, sr = clf.assess(xr)
    _, ss = clf.assess(xs)
    assert sr is not None and ss is not None
    assert auroc(sr, ss) > 0.65, (np.median(sr), np.median(ss))
    assert (sr >= 1).mean() > (ss >= 1).mean()
