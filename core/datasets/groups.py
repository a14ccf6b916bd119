"""Leak-free grouping of near-copies, and held-out splits that keep whole groups apart.

SEM archives are full of near-copies: the same frame saved twice or rescaled, slightly shifted
frames, many images of one specimen in one folder. A model evaluated on images that share a
source with its training set looks better than it is, so held-out splits hold out whole groups.

Images are joined into one group (union–find, as connected components) when they

* sit in the same source folder (``images.group_key``: the folder relative to the ingest root,
  see :func:`core.intake.group_key`; ``NULL`` — class folders directly under the root with
  ``--labels-from-folders`` — joins nothing),
* share the key a user-set regular expression finds in the file name (its first capture group,
  or the whole match; e.g. ``r"^(S\\d+)_"`` for specimen S12), or
* have difference hashes (:func:`dhash`, from the stored thumbnail) within ``max_distance``
  bits: re-saved, rescaled or re-windowed copies and small shifts / crops.

How far the hash reaches (measured on ``core.synth`` micrographs, 320 px fields, distance ≤ 6):
brightness / contrast changes keep the hash, gamma and rescaling change a few bits; a shift of 2 px (0.6 % of
the field) stays within 6 bits for ~98 % of images, 4 px (1.25 %) for ~80 %, 8 px for ~45 %,
and a 3 % crop for most. Unrelated images lie 12–40 bits apart (≥ 21 for 99 % of pairs).
Tiles and overlapping crops of one micrograph are therefore *not* reliably caught by the hash:
they are caught by their folder or a file-name pattern.

    groups = image_groups(db, ids, pattern=r"^(S\\d+)_")      # image id -> group id
    tr, ho = group_holdout(labels, [groups[i] for i in ids], 0.2, seed=0)
    group_report([groups[i] for i in ids], tr, ho)["leak_free"]   # True
"""


from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlite_utils import Database

from core.errors import InvalidValue, NotFound
from core.progress import Progress
from core.store import write_tx

CHUNK = 500  # ids per SQL statement / hashes per write transaction
MAX_DISTANCE_LIMIT = 32  # beyond this every textured image matches every other one
_U64 = np.uint64


# ---------------------------------------------------------------- hashing


def dhash(gray: np.ndarray, size: int = 8) -> int:
    """The difference hash of a 2-D image: shrink to ``size`` rows × ``size + 1`` columns
    (antialiased, bilinear) and set one bit per horizontally adjacent pair, 1 where the right
    pixel is brighter; ``size²`` bits (64 for ``size=8``), the first row in the top bits.

    Any dtype; NaN counts as 0. Brightness / contrast changes keep the hash (only the order of
    neighbouring values matters); gamma, small shifts and crops change a few bits.
    """
    a = np.asarray(gray)
    if a.ndim != 2 or min(a.shape) < 1:
        raise ValueError(f"dhash expects a non-empty 2-D image, got shape {a.shape}")
    if not 1 <= size <= 8:
        raise ValueError(f"size must be 1..8 (at most 64 bits), got {size!r}")
    f = np.nan_to_num(a.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    small = np.asarray(Image.fromarray(np.ascontiguousarray(f), mode="F")
                       .resize((size + 1, size), Image.Resampling.BILINEAR))
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two hashes (signed int64 storage forms are fine)."""
    return ((int(a) ^ int(b)) & 0xFFFF_FFFF_FFFF_FFFF).bit_count()


def _to_signed(h: int) -> int:
    return h - (1 << 64) if h >= 1 << 63 else h


def _to_unsigned(h: int) -> int:
    return h & 0xFFFF_FFFF_FFFF_FFFF


def _hash_thumb(blob: bytes) -> int | None:
    try:
        with Image.open(io.BytesIO(blob)) as im:
            gray = np.asarray(im.convert("L"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return dhash(gray)


def _chunks(seq: Sequence[int], n: int = CHUNK) -> list[list[int]]:
    return [list(seq[i : i + n]) for i in range(0, len(seq), n)]


def _check_known(db: Database, ids: Sequence[int]) -> None:
    missing: list[int] = []
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        found = {r[0] for r in db.execute(f"SELECT id FROM images WHERE id IN ({marks})", chunk)}
        missing += [i for i in chunk if i not in found]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise NotFound(f"{len(missing)} image id(s) not in the database: {shown}")


def image_hashes(db: Database, image_ids: Sequence[int] | None = None,
                 progress: Progress | None = None) -> dict[int, int]:
    """The difference hash (unsigned 64-bit int) of each image, from its stored thumbnail.

    Hashes are cached in ``image_hashes`` (as signed int64) and computed only once per image.
    ``image_ids``: None for every image. Images without a readable thumbnail are left out of
    the result (cached as NULL, not tried again). Unknown ids raise :class:`NotFound`.
    """
    if image_ids is None:
        ids = [r[0] for r in db.execute("SELECT id FROM images ORDER BY id")]
    else:
        ids = list(dict.fromkeys(int(i) for i in image_ids))
        _check_known(db, ids)
    out: dict[int, int] = {}
    tried: set[int] = set()  # cached as NULL: no readable thumbnail
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for i, h in db.execute(
            f"SELECT image_id, dhash FROM image_hashes WHERE image_id IN ({marks})", chunk
        ):
            if h is None:
                tried.add(i)
            else:
                out[i] = _to_unsigned(h)
    todo = [i for i in ids if i not in out and i not in tried]
    done = 0
    for chunk in _chunks(todo):
        marks = ",".join("?" * len(chunk))
        rows = db.execute(f"SELECT id, thumb FROM images WHERE id IN ({marks})", chunk).fetchall()
        new: list[tuple[int, int | None]] = []
        for i, blob in rows:
            h = _hash_thumb(blob) if blob else None
            if h is not None:
                out[i] = h
            new.append((i, None if h is None else _to_signed(h)))
        if new:
            with write_tx(db, "storing image hashes"):
                db.conn.executemany(
                    "INSERT INTO image_hashes(image_id, dhash) VALUES (?, ?) "
                    "ON CONFLICT(image_id) DO UPDATE SET dhash = excluded.dhash", new)
        done += len(chunk)
        if progress is not None:
            progress(done / len(todo), f"hashed {done}/{len(todo)} thumbnails")
    return out


# ---------------------------------------------------------------- near-duplicate search


def _popcount(a: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(a).astype(np.int64)
    table = np.array([i.bit_count() for i in range(256)], np.int64)  # numpy < 2
    return table[a.view(np.uint8).reshape(-1, 8)].sum(axis=1)


def near_duplicate_pairs(hashes: Sequence[int] | np.ndarray, max_distance: int) -> np.ndarray:
    """Index pairs (E, 2) joining hashes at most ``max_distance`` bits apart: their connected
    components are the near-duplicate clusters (identical hashes are chained to the first
    one rather than paired with each other, so a thousand blank frames cost a thousand edges).

    Multi-index hashing: the 64 bits are cut into ``max_distance + 1`` chunks; two hashes within
    the distance agree exactly on at least one chunk (pigeonhole), so only distinct hashes
    sharing a chunk value are compared — sorted by the chunk, neighbours at gap 1, 2, ... —
    instead of all pairs.
    """
    h_all = np.asarray([_to_unsigned(int(x)) for x in hashes], dtype=_U64)
    if len(h_all) < 2 or max_distance < 0:
        return np.zeros((0, 2), np.int64)
    h, first, inv = np.unique(h_all, return_index=True, return_inverse=True)
    found: list[np.ndarray] = [np.stack([first[inv], np.arange(len(h_all))], axis=1)]
    n = len(h)
    parts = max_distance + 1
    widths = [64 // parts + (1 if k < 64 % parts else 0) for k in range(parts)]
    shift = 64
    for w in widths if n > 1 else []:
        shift -= w
        key = (h >> _U64(shift)) & _U64((1 << w) - 1)
        order = np.argsort(key, kind="stable")
        ks, hs = key[order], h[order]
        gap = 1
        while gap < n:
            eq = ks[:-gap] == ks[gap:]
            if not eq.any():
                break  # sorted: no equal keys at this gap means none at larger gaps either
            a = np.flatnonzero(eq)
            near = _popcount(hs[a] ^ hs[a + gap]) <= max_distance
            if near.any():
                found.append(np.stack([first[order[a[near]]], first[order[a[near] + gap]]],
                                      axis=1))
            gap += 1
    e = np.concatenate(found).astype(np.int64)
    return e[e[:, 0] != e[:, 1]]


# ---------------------------------------------------------------- groups


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise InvalidValue(
            f"Group pattern {pattern!r} is not a valid regular expression: {e}. Hint: a pattern "
            r"such as '^(S\d+)_' groups files by the specimen code at the start of the name"
        ) from None


def pattern_key(rx: re.Pattern[str], name: str) -> str | None:
    """What ``rx`` finds in a file name: the first capture group, else the whole match
    (None when there is no match or it is empty)."""
    m = rx.search(name)
    if m is None:
        return None
    key = m.group(1) if rx.groups and m.group(1) is not None else m.group(0)
    return key or None


def _edges_by_key(keys: Sequence[str | None]) -> np.ndarray:
    """Edges joining every item to the first item with the same (non-None) key."""
    first: dict[str, int] = {}
    edges = []
    for i, k in enumerate(keys):
        if k is None:
            continue
        j = first.setdefault(k, i)
        if j != i:
            edges.append((j, i))
    return np.array(edges, np.int64).reshape(-1, 2)


def image_groups(db: Database, image_ids: Sequence[int], *, pattern: str | None = None,
                 use_folder: bool = True, max_distance: int = 6) -> dict[int, str]:
    """image id → group id, joining images by folder, file-name ``pattern`` and near-identical
    difference hash (see the module doc). ``max_distance < 0`` turns hash matching off.

    Group ids name the group: ``folder:<group_key>`` (the smallest folder key in the group),
    else ``pattern:<key>``, else ``image:<smallest image id>``; unique per group.
    Raises :class:`InvalidValue` for an invalid ``pattern`` or ``max_distance`` and
    :class:`NotFound` for unknown image ids.
    """
    rx = _compile(pattern) if pattern else None
    if max_distance > MAX_DISTANCE_LIMIT:
        raise InvalidValue(f"max_distance must be at most {MAX_DISTANCE_LIMIT} bits (of 64), got "
                         f"{max_distance!r}; 6 catches near-copies, a negative value turns it off")
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    if not ids:
        return {}
    rows: dict[int, tuple[str, str | None]] = {}
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for i, name, key in db.execute(
            f"SELECT id, name, group_key FROM images WHERE id IN ({marks})", chunk
        ):
            rows[i] = (name, key)
    missing = [i for i in ids if i not in rows]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise NotFound(f"{len(missing)} image id(s) not in the database: {shown}")
    n = len(ids)
    folder = [rows[i][1] if use_folder else None for i in ids]
    pat = [pattern_key(rx, rows[i][0]) if rx else None for i in ids]
    edges = [_edges_by_key(folder), _edges_by_key(pat)]
    if max_distance >= 0:
        hashes = image_hashes(db, ids)
        have = [k for k, i in enumerate(ids) if i in hashes]
        pairs = near_duplicate_pairs([hashes[ids[k]] for k in have], max_distance)
        edges.append(np.asarray(have, np.int64)[pairs].reshape(-1, 2))
    e = np.concatenate(edges)
    graph = coo_matrix((np.ones(len(e), np.int8), (e[:, 0], e[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    first_folder: dict[int, str] = {}
    first_pattern: dict[int, str] = {}
    first_id: dict[int, int] = {}
    for k, c in enumerate(comp.tolist()):
        f, p = folder[k], pat[k]
        if f is not None and (c not in first_folder or f < first_folder[c]):
            first_folder[c] = f
        if p is not None and (c not in first_pattern or p < first_pattern[c]):
            first_pattern[c] = p
        first_id[c] = min(first_id.get(c, ids[k]), ids[k])
    names = {c: (f"folder:{first_folder[c]}" if c in first_folder else
                 f"pattern:{first_pattern[c]}" if c in first_pattern else f"image:{i}")
             for c, i in first_id.items()}
    return {i: names[int(comp[k])] for k, i in enumerate(ids)}


# ---------------------------------------------------------------- held-out splits


def group_holdout(labels: Sequence[str], groups: Sequence[str], fraction: float, seed: int
                  ) -> tuple[list[int], list[int]]:
    """Indices (train, holdout): about ``fraction`` of the items held out, whole groups only.

    Stratified by class as far as the groups allow: groups are visited in a seeded random order
    and held out when that brings every class's held-out count closer to ``fraction`` of the
    class (total relative deviation over classes); then every class found in ≥ 2 groups that
    still has no held-out group gets its best-fitting one. A group is never held out when that
    would leave a class it contains with no training group. Deterministic for a seed.

    (``core.datasets.assign_splits`` splits per class and breaks groups up when a split would
    otherwise be empty; a held-out evaluation must never do that, hence this function.)
    """
    if len(labels) != len(groups):
        raise ValueError(f"labels and groups differ in length: {len(labels)} vs {len(groups)}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    if not labels:
        return [], []
    gnames = sorted({str(g) for g in groups})
    cnames = sorted({str(c) for c in labels})
    gi = {g: k for k, g in enumerate(gnames)}
    ci = {c: k for k, c in enumerate(cnames)}
    item_g = np.array([gi[str(g)] for g in groups])
    counts = np.zeros((len(gnames), len(cnames)), np.float64)
    item_c = np.array([ci[str(c)] for c in labels])
    np.add.at(counts, (item_g, item_c), 1.0)
    n_c = counts.sum(axis=0)
    target = fraction * n_c
    present = counts > 0
    train_groups = present.sum(axis=0)  # groups per class still on the training side
    multi = train_groups >= 2
    held = np.zeros(len(gnames), bool)
    got = np.zeros(len(cnames))

    def cost(h: np.ndarray) -> np.ndarray:
        return (np.abs(target - h) / n_c).sum(axis=-1)

    def allowed(g: int) -> bool:
        return not held[g] and bool(np.all(train_groups[present[g]] >= 2))

    def hold(g: int) -> None:
        nonlocal got
        held[g] = True
        got = got + counts[g]
        train_groups[present[g]] -= 1

    order = np.random.default_rng(seed).permutation(len(gnames))
    for g in order:
        if allowed(g) and cost(got + counts[g]) < cost(got) - 1e-12:
            hold(int(g))
    rank = np.empty(len(gnames), np.int64)
    rank[order] = np.arange(len(gnames))
    for c in sorted(range(len(cnames)), key=lambda c: (present[:, c].sum(), cnames[c])):
        if not multi[c] or got[c] > 0:
            continue
        cands = [g for g in np.flatnonzero(present[:, c]) if allowed(int(g))]
        if cands:
            hold(int(min(cands, key=lambda g: (cost(got + counts[g]), rank[g]))))
    is_held = held[item_g]
    return np.flatnonzero(~is_held).tolist(), np.flatnonzero(is_held).tolist()


def group_report(groups: Sequence[str], train_idx: Sequence[int], holdout_idx: Sequence[int],
                 *, strict: bool = False) -> dict[str, Any]:
    """Numbers on a split: groups on each side, group sizes, the largest groups, and the leak
    check — ``leak_free`` is False when a group (or an item) is on both sides; ``strict``
    raises ``ValueError`` then instead."""
    tr, ho = [int(i) for i in train_idx], [int(i) for i in holdout_idx]
    g_tr = {str(groups[i]) for i in tr}
    g_ho = {str(groups[i]) for i in ho}
    shared = sorted(g_tr & g_ho)
    both = sorted(set(tr) & set(ho))
    sizes = Counter(str(g) for g in groups)
    vals = sorted(sizes.values())
    report: dict[str, Any] = {
        "n_items": len(groups),
        "n_groups": len(sizes),
        "train_items": len(tr),
        "holdout_items": len(ho),
        "train_groups": len(g_tr),
        "holdout_groups": len(g_ho),
        "unassigned_items": len(set(range(len(groups))) - set(tr) - set(ho)),
        "group_sizes": {"min": vals[0] if vals else 0, "median": float(np.median(vals)) if vals
                        else 0.0, "max": vals[-1] if vals else 0,
                        "singletons": sum(1 for v in vals if v == 1)},
        "largest_groups": [[g, k] for g, k in sizes.most_common(5)],
        "largest_group_share": round(vals[-1] / len(groups), 4) if vals else 0.0,
        "shared_groups": shared,
        "items_on_both_sides": both,
        "leak_free": not shared and not both,
    }
    if strict and not report["leak_free"]:
        raise ValueError(f"Split leaks: {len(shared)} group(s) on both sides "
                         f"({', '.join(shared[:5])}), {len(both)} item(s) on both sides")
    return report
