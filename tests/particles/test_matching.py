"""Matching detections to ground truth: one-to-one, merges, splits, size errors."""

from __future__ import annotations

import numpy as np

from core.particles import match, size_errors


def two_discs():
    lab = np.zeros((60, 100), np.int32)
    yy, xx = np.mgrid[:60, :100]
    lab[(xx - 30) ** 2 + (yy - 30) ** 2 <= 100] = 1
    lab[(xx - 49) ** 2 + (yy - 30) ** 2 <= 100] = 2
    return lab


def test_truth_against_itself_is_perfect():
    t = two_discs()
    r = match(t, t)
    assert (r.tp, r.fp, r.fn, r.f1) == (2, 0, 0, 1.0)


def test_a_merged_pair_counts_as_a_merge_and_one_miss():
    t = two_discs()
    merged = (t > 0).astype(np.int32)
    r = match(merged, t)
    assert r.merges == 1 and r.fn >= 1 and r.f1 < 1


def test_a_split_particle_counts_as_a_split():
    t = np.zeros((40, 40), np.int32)
    t[5:35, 5:35] = 1
    p = np.zeros_like(t)
    p[5:35, 5:15] = 1
    p[5:35, 15:25] = 2
    p[5:35, 25:35] = 3
    r = match(p, t)
    assert r.splits == 1 and r.tp == 0 and r.fp == 3 and r.fn == 1


def test_size_errors_are_relative():
    e = size_errors([11, 22, 33], [10, 20, 30])
    assert abs(e["d50_rel_err"] - 0.1) < 1e-9
    assert size_errors([], [1])["d50_rel_err"] is None
