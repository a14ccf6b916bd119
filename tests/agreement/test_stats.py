"""The agreement statistics against scikit-learn's cohen_kappa_score, the `krippendorff`
package and Krippendorff's published worked example, on the same data."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from core.agreement import cohen_kappa, coincidence_matrix, krippendorff_alpha, percent_agreement

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1-5, missing values; published nominal alpha = 0.743.
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def units_of(matrix: list[list]) -> list[dict[str, object]]:
    return [{f"r{o}": row[u] for o, row in enumerate(matrix) if row[u] is not None}
            for u in range(len(matrix[0]))]


def reliability(matrix: list[list]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)


def test_alpha_matches_krippendorffs_published_example():
    est = krippendorff_alpha(units_of(K2011))
    assert round(est.value, 3) == 0.743
    assert est.n == 11  # unit 12 has one value: not pairable
    assert est.low < est.value < est.high


def test_alpha_binary_two_coders_published_example():
    # Krippendorff (2011), section A: two coders, ten units, binary; alpha = 0.095
    a = [0, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    assert round(krippendorff_alpha(units_of([a, b])).value, 3) == 0.095


@pytest.mark.parametrize("seed", range(8))
def test_alpha_equals_the_krippendorff_package_on_random_data_with_gaps(seed):
    rng = np.random.default_rng(seed)
    raters, items, k = int(rng.integers(2, 6)), int(rng.integers(10, 80)), int(rng.integers(2, 6))
    truth = rng.integers(0, k, items)
    m = np.where(rng.random((raters, items)) < 0.7, truth, rng.integers(0, k, (raters, items))).astype(object)
    m[rng.random((raters, items)) < 0.3] = None
    ours = krippendorff_alpha(units_of(m.tolist()), n_boot=50).value
    theirs = krippendorff.alpha(reliability_data=reliability(m.tolist()), level_of_measurement="nominal")
    assert ours == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_kappa_equals_scikit_learn(seed):
    rng = np.random.default_rng(100 + seed)
    n, k = int(rng.integers(5, 200)), int(rng.integers(2, 8))
    a = rng.integers(0, k, n)
    b = np.where(rng.random(n) < rng.random(), a, rng.integers(0, k, n))
    names = np.array([f"class{i}" for i in range(k)])
    est = cohen_kappa(list(names[a]), list(names[b]), n_boot=200)
    if len(set(a) | set(b)) < 2:
        assert est.value is None
        return
    assert est.value == pytest.approx(cohen_kappa_score(names[a], names[b]), abs=1e-12)
    assert est.low <= est.value + 1e-9 and est.value - 1e-9 <= est.high


def test_intervals_narrow_with_more_items_and_cover_the_truth():
    rng = np.random.default_rng(7)

    def width(n: int) -> float:
        a = rng.integers(0, 3, n)
        b = np.where(rng.random(n) < 0.8, a, rng.integers(0, 3, n))
        e = cohen_kappa(list(a), list(b))
        return e.high - e.low

    assert width(2000) < width(100) / 2


def test_no_variation_is_undefined_not_perfect():
    same = [{"a": "fibres", "b": "fibres"}] * 5
    assert krippendorff_alpha(same).value is None
    assert cohen_kappa(["x"] * 5, ["x"] * 5).value is None
    assert percent_agreement(same) == 1.0


def test_perfect_agreement_and_coincidences():
    units = [{"a": "x", "b": "x"}, {"a": "y", "b": "y"}, {"a": "x", "b": "y", "c": "x"}]
    m = coincidence_matrix(units, ["x", "y"])
    assert m.tolist() == [[3.0, 1.0], [1.0, 2.0]]  # symmetric, sums to the pairable values (7)
    assert krippendorff_alpha(units[:2] * 3).value == pytest.approx(1.0)
    assert percent_agreement(units) == pytest.approx(3 / 5)
