"""Size distributions: D-values with bootstrap intervals, log-normal fit, populations from a
mixture on log size, histograms by number and volume, KS test between two sets."""

from __future__ import annotations

import numpy as np
import pytest

from core.particles import compare_sets, describe, histogram, populations


def test_describe_lognormal_sample():
    rng = np.random.default_rng(0)
    d = np.exp(rng.normal(np.log(20), 0.15, 5000))
    s = describe(d)
    assert s["count"] == 5000
    assert s["d50"] == pytest.approx(20, rel=0.02)
    lo, hi = s["d50_ci"]
    assert lo < s["d50"] < hi and hi - lo < 1.0
    assert s["lognormal"]["median"] == pytest.approx(20, rel=0.02)
    assert s["lognormal"]["sigma_log"] == pytest.approx(0.15, rel=0.1)


def test_bootstrap_interval_covers_the_true_median_most_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(100):
        d = np.exp(rng.normal(np.log(10), 0.3, 200))
        lo, hi = describe(d)["d50_ci"]
        hits += lo <= 10 <= hi
    assert 85 <= hits <= 100


def test_three_gold_populations_are_found():
    rng = np.random.default_rng(2)
    d = np.concatenate([rng.normal(m, m * 0.07, n) for m, n in ((6, 300), (12, 200), (18, 100))])
    p = populations(d)
    assert p["k"] == 3
    assert [round(x["median"]) for x in p["populations"]] == [6, 12, 18]
    assert [x["count"] for x in p["populations"]] == pytest.approx([300, 200, 100], abs=15)


def test_one_population_stays_one():
    d = np.exp(np.random.default_rng(3).normal(np.log(25), 0.12, 2000))
    assert populations(d)["k"] == 1


def test_volume_weighting_shifts_to_large_particles():
    d = np.array([10.0] * 99 + [100.0])
    n = histogram(d, bins=10, weight="number")
    v = histogram(d, bins=10, weight="volume")
    assert n["fraction"][0] == pytest.approx(0.99)
    assert v["fraction"][-1] > 0.9
    lg = histogram(d, bins=10, log=True)
    assert np.allclose(np.diff(np.log(lg["edges"])), np.diff(np.log(lg["edges"]))[0])


def test_ks_tells_two_sets_apart():
    rng = np.random.default_rng(4)
    same = compare_sets(rng.normal(20, 2, 500), rng.normal(20, 2, 500))
    diff = compare_sets(rng.normal(20, 2, 500), rng.normal(22, 2, 500))
    assert same["ks"]["p_value"] > 0.01 and diff["ks"]["p_value"] < 1e-6
