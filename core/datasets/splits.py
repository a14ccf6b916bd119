"""Train / validation / test splits of a labelled set.

Stratified per class with a seeded RNG (same seed and same labels → same split). Integer targets
per split come from the fractions by largest remainder; a class with ≥ 3 images gets at least
one image in every split with a non-zero fraction. Images sharing ``images.group_key`` (their
source folder: one specimen / session, where near-copies live) are kept in the same split:
within a class, groups are placed whole, largest first, into the split furthest below its
target, preferring the split the same group went to in another class. Only when that leaves a
required split empty is a group broken up — the smallest group of several images first, and
its images still fill one split before spilling into the next — so leakage is as small as the
class counts allow. (With ``--labels-from-folders`` the group is the class folder itself: one
group per class, which is then split image by image.)
"""


from __future__ import annotations

import random
from collections.abc import Sequence

from core.errors import ExportError

SPLIT_NAMES = ("train", "validation", "test")


def _check_fractions(split: Sequence[float]) -> tuple[float, float, float]:
    try:
        fr = tuple(float(x) for x in split)
    except (TypeError, ValueError):
        raise ExportError(
            f"Split {split!r} must be three numbers (train, validation, test)"
        ) from None
    if len(fr) != 3 or any(not (x >= 0) or x == float("inf") for x in fr) or sum(fr) <= 0:
        raise ExportError(
            f"Split {split!r} must be three non-negative numbers with a positive sum, "
            "e.g. (0.8, 0.1, 0.1)"
        )
    total = sum(fr)
    return (fr[0] / total, fr[1] / total, fr[2] / total)


def split_targets(n: int, fractions: Sequence[float]) -> list[int]:
    """Integer images per split for a class of ``n`` (largest remainder); with ``n`` ≥ 3 every
    split with a non-zero fraction gets at least one where the count allows."""
    raw = [f * n for f in fractions]
    t = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda k: (-(raw[k] - t[k]), k))
    for k in order[: n - sum(t)]:
        t[k] += 1
    nonzero = [k for k, f in enumerate(fractions) if f > 0]
    if n >= 3 and n >= len(nonzero):
        for k in nonzero:
            if t[k] == 0:
                donor = max(range(len(t)), key=lambda j: (t[j], -j))
                t[donor] -= 1
                t[k] += 1
    return t


def assign_splits(
    labels: Sequence[str],
    groups: Sequence[str | None],
    fractions: Sequence[float],
    seed: int = 0,
) -> list[int]:
    """Split index (into ``fractions``) for each item, stratified per label, with items of the
    same group kept together where the counts allow (see the module doc). ``None`` groups are
    items on their own. Deterministic for a given seed and input."""
    by_class: dict[str, dict[str, list[int]]] = {}
    for i, (lab, g) in enumerate(zip(labels, groups)):
        key = f"\x00{i}" if g is None else str(g)
        by_class.setdefault(lab, {}).setdefault(key, []).append(i)
    out = [0] * len(labels)
    group_split: dict[str, int] = {}  # first split each group went to (kept across classes)
    for lab in sorted(by_class):
        rng = random.Random(f"{seed}\x00{lab}")
        grouped = by_class[lab]
        n = sum(len(v) for v in grouped.values())
        targets = split_targets(n, fractions)
        required = [k for k, t in enumerate(targets) if t >= 1]
        keys = sorted(grouped)
        rng.shuffle(keys)
        units: list[tuple[str, list[int]]] = [(k, grouped[k]) for k in keys]
        while True:
            units.sort(key=lambda u: -len(u[1]))  # stable: ties keep the seeded order
            placed = _greedy(units, targets, group_split)
            counts = [0] * len(targets)
            for (_, items), k in zip(units, placed):
                counts[k] += len(items)
            if all(counts[k] >= 1 for k in required):
                break
            multi = [u for u in units if len(u[1]) > 1]
            if not multi:
                break
            victim = min(multi, key=lambda u: len(u[1]))  # smallest group of several first
            units.remove(victim)
            items = list(victim[1])
            rng.shuffle(items)
            units += [(victim[0], [i]) for i in items]
        for (gkey, items), k in zip(units, placed):
            group_split.setdefault(gkey, k)
            for i in items:
                out[i] = k
    return out


def _greedy(
    units: list[tuple[str, list[int]]], targets: list[int], prefer: dict[str, int]
) -> list[int]:
    deficit = list(targets)
    local: dict[str, int] = {}
    placed = []
    for gkey, items in units:
        size = len(items)
        want = local.get(gkey, prefer.get(gkey))
        if want is not None and deficit[want] >= size and targets[want] > 0:
            k = want
        else:
            k = max(range(len(deficit)), key=lambda j: (targets[j] > 0, deficit[j], -j))
        local[gkey] = k  # pieces of a broken group fill this split before spilling over
        deficit[k] -= size
        placed.append(k)
    return placed
