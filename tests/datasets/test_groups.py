"""core.groups: near-copies of one micrograph share a group, unrelated images do not; folder and
file-name pattern groups; held-out splits keep whole groups and stay stratified."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from core import synth
from core.datasets import (
    dhash,
    group_holdout,
    group_report,
    hamming,
    image_groups,
    image_hashes,
    near_duplicate_pairs,
)
from core.errors import InvalidValue, NotFound
from core.intake import ingest
from core.models import Classifier, register_model
from core.store import open_db


def _png(a: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(a, np.uint8)).save(path)
    return path


@pytest.fixture
def archive(tmp_path, tiny_model):
    """One micrograph and its near-copies, each in a folder of its own, plus unrelated images
    (other seeds of the same class and other classes) — ingested, so thumbnails exist."""
    base, _ = synth.generate("particles", 3, 288, databar=False)
    b = base.astype(np.float32)
    root = tmp_path / "archive"
    copies = [
        _png(base[16:272, 16:272], root / "run1" / "frame.png"),
        _png(base[18:274, 16:272], root / "run2" / "frame_shift2px.png"),   # 2 px shift
        _png(np.clip(b[16:272, 17:273] * 0.7 + 50, 0, 255), root / "run3" / "brighter.png"),
        _png(np.asarray(Image.fromarray(base[20:268, 20:268]).resize((200, 200))),
             root / "run4" / "crop_rescaled.png"),  # 3 % crop, rescaled
    ]
    p16 = root / "run5" / "frame16.tif"
    p16.parent.mkdir(parents=True)
    tifffile.imwrite(p16, (b[16:272, 16:272] * 180 + 4000).astype(np.uint16))  # 16-bit re-save
    copies.append(p16)
    unrelated = []
    for k, (cls, seed) in enumerate([("particles", 4), ("particles", 5), ("films", 3),
                                     ("fibres", 3), ("porous", 9), ("powder", 1)]):
        img, _ = synth.generate(cls, seed, 256, databar=False)
        unrelated.append(_png(img, root / f"run{1 + k % 5}" / f"other_{cls}_{seed}.png"))
    db = open_db(tmp_path / "g.db")
    model = register_model(db, tiny_model("m"), activate=True)
    rep = ingest(db, [root], classifier=Classifier(model["path"]), model_id=model["id"])
    assert rep.failed == [] and rep.added == len(copies) + len(unrelated)
    ids = {Path(p).name: i for i, p in db.execute("SELECT id, path FROM images")}
    return db, [ids[p.name] for p in copies], [ids[p.name] for p in unrelated]


def test_near_copies_share_a_group_and_unrelated_images_do_not(archive):
    db, copies, unrelated = archive
    groups = image_groups(db, copies + unrelated, use_folder=False)
    assert len({groups[i] for i in copies}) == 1, groups
    copy_group = groups[copies[0]]
    others = [groups[i] for i in unrelated]
    assert copy_group not in others
    assert len(set(others)) == len(unrelated), "unrelated images must stay apart"


def test_folder_groups_join_images_of_one_folder(archive):
    db, copies, unrelated = archive
    ids = copies + unrelated
    key = dict(db.execute("SELECT id, group_key FROM images").fetchall())
    by_folder = image_groups(db, ids, use_folder=True, max_distance=-1)
    for i in ids:
        for j in ids:
            assert (by_folder[i] == by_folder[j]) == (key[i] == key[j]), (key[i], key[j])
    assert by_folder[copies[0]] == f"folder:{key[copies[0]]}"
    # folder + hash: the copies chain their five folders (and the unrelated images there) into
    # one group
    both = image_groups(db, ids)
    assert len(set(both.values())) == 1


def test_hashes_are_cached_signed_and_reused(archive):
    db, copies, unrelated = archive
    h = image_hashes(db, copies + unrelated)
    assert set(h) == set(copies + unrelated)
    assert all(0 <= v < 2**64 for v in h.values())
    stored = dict(db.execute("SELECT image_id, dhash FROM image_hashes").fetchall())
    assert {i: v % 2**64 for i, v in stored.items()} == h
    assert all(-(2**63) <= v < 2**63 for v in stored.values())
    # a second call reads the cache instead of decoding thumbnails again
    db.execute("UPDATE image_hashes SET dhash = -1 WHERE image_id = ?", [copies[0]])
    db.conn.commit()
    assert image_hashes(db, [copies[0]])[copies[0]] == 2**64 - 1
    with pytest.raises(NotFound, match="999999"):
        image_hashes(db, [999_999])
    # an unreadable thumbnail: no hash (remembered), and the image is a group of its own
    junk = unrelated[0]
    db.execute("UPDATE images SET thumb = ? WHERE id = ?", [b"not a jpeg", junk])
    db.execute("DELETE FROM image_hashes WHERE image_id IN (?, ?)", [junk, copies[0]])
    db.conn.commit()
    assert junk not in image_hashes(db, [junk, copies[1]])
    assert db.execute("SELECT dhash FROM image_hashes WHERE image_id = ?",
                      [junk]).fetchone() == (None,)
    groups = image_groups(db, copies + [junk], use_folder=False)
    assert groups[junk] == f"image:{junk}" and len({groups[i] for i in copies}) == 1


def test_filename_pattern_groups_specimens(tmp_path, tiny_model):
    root = tmp_path / "flat"
    rng = np.random.default_rng(0)
    names = ["S01_a.png", "S01_b.png", "S02_a.png", "S02_b.png", "S03_a.png", "notes_x.png"]
    for n in names:
        _png(rng.integers(0, 255, (64, 64)), root / n)  # noise: no two hashes are close
    db = open_db(tmp_path / "p.db")
    model = register_model(db, tiny_model("m"), activate=True)
    ingest(db, [root], classifier=Classifier(model["path"]), model_id=model["id"])
    ids = {n: i for i, n in db.execute("SELECT id, name FROM images")}
    g = image_groups(db, list(ids.values()), pattern=r"^(S\d+)_", use_folder=False)
    assert g[ids["S01_a.png"]] == g[ids["S01_b.png"]] == "pattern:S01"
    assert g[ids["S02_a.png"]] == g[ids["S02_b.png"]] != g[ids["S01_a.png"]]
    assert g[ids["notes_x.png"]] == f"image:{ids['notes_x.png']}"
    assert len(set(g.values())) == 4
    # without the pattern and the folder, noise images are all on their own
    assert len(set(image_groups(db, list(ids.values()), use_folder=False).values())) == 6
    # the folder alone: one flat folder is one group
    assert len(set(image_groups(db, list(ids.values()), max_distance=-1).values())) == 1


@pytest.mark.parametrize("bad", [r"^(S\d+_", "[a-", "*x"])
def test_bad_pattern_is_a_clear_error(tmp_path, bad):
    db = open_db(tmp_path / "e.db")
    with pytest.raises(InvalidValue, match="not a valid regular expression") as e:
        image_groups(db, [], pattern=bad)
    assert repr(bad) in str(e.value)


def test_dhash_ignores_brightness_and_contrast_and_sees_different_images():
    img, _ = synth.generate("fibres", 1, 128, databar=False)
    a = img.astype(np.float64)
    h = dhash(img)
    assert dhash(a * 3.0 + 1000) == h  # any dtype, any linear window
    assert hamming(dhash((a / 255) ** 0.6), h) <= 6  # gamma: averaging first, a few bits
    other, _ = synth.generate("fibres", 2, 128, databar=False)
    assert hamming(h, dhash(other)) > 12
    assert hamming(h, h - 2**64) == 0  # a signed (stored) form of the same hash
    with pytest.raises(ValueError, match="2-D"):
        dhash(np.zeros((4, 4, 3)))


def test_near_duplicate_search_matches_brute_force():
    rng = np.random.default_rng(5)
    h = [int(x) for x in rng.integers(0, 2**63, 400, dtype=np.uint64) * 2]
    for _ in range(150):  # plant near-copies 0..9 bits away
        i, j = rng.integers(0, len(h), 2)
        v = h[i]
        for b in rng.choice(64, int(rng.integers(0, 10)), replace=False):
            v ^= 1 << int(b)
        h[j] = v
    h[10:20] = [h[10]] * 10  # identical hashes
    parent = list(range(len(h)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def partition(pairs) -> set[frozenset[int]]:
        parent[:] = range(len(h))
        for a, b in pairs:
            parent[find(a)] = find(b)
        comps: dict[int, set[int]] = {}
        for k in range(len(h)):
            comps.setdefault(find(k), set()).add(k)
        return {frozenset(c) for c in comps.values()}

    for d in (0, 3, 6, 10):
        brute = [(a, b) for a in range(len(h)) for b in range(a + 1, len(h))
                 if hamming(h[a], h[b]) <= d]
        assert partition(near_duplicate_pairs(h, d).tolist()) == partition(brute), d


def _split_case(seed: int) -> tuple[list[str], list[str]]:
    """3 classes over 40 groups of 1–12 images; some groups hold two classes; a rare class in
    only 2 groups."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for g in range(40):
        size = int(rng.integers(1, 13))
        main = ["fibres", "films"][g % 2]
        for k in range(size):
            labels.append(main if k % 5 else ("films" if g % 7 == 0 else main))
            groups.append(f"g{g}")
    for g in (3, 17):
        labels += ["tips"] * 2
        groups += [f"g{g}"] * 2
    return labels, groups


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_group_holdout_keeps_groups_whole_and_is_stratified(seed):
    labels, groups = _split_case(seed)
    tr, ho = group_holdout(labels, groups, 0.25, seed)
    assert sorted(tr + ho) == list(range(len(labels)))
    rep = group_report(groups, tr, ho, strict=True)
    assert rep["leak_free"] and rep["shared_groups"] == [] and rep["unassigned_items"] == 0
    for c in sorted(set(labels)):
        n = labels.count(c)
        held = sum(labels[i] == c for i in ho)
        assert held >= 1 and n - held >= 1, c  # every class with >= 2 groups on both sides
        if c != "tips":
            assert abs(held / n - 0.25) < 0.1, (c, held, n)
    assert abs(len(ho) / len(labels) - 0.25) < 0.08
    assert (tr, ho) == group_holdout(labels, groups, 0.25, seed)  # deterministic


def test_group_holdout_varies_with_seed_and_keeps_single_group_classes_in_training():
    labels, groups = _split_case(0)
    labels += ["mems"] * 3
    groups += ["only-mems"] * 3
    splits = {tuple(group_holdout(labels, groups, 0.25, s)[1]) for s in range(5)}
    assert len(splits) > 1
    for s in range(5):
        _, ho = group_holdout(labels, groups, 0.25, s)
        assert not any(labels[i] == "mems" for i in ho)


def test_group_report_flags_a_leaking_split():
    groups = ["a", "a", "b", "c"]
    rep = group_report(groups, [0, 2], [1, 3])
    assert rep["leak_free"] is False and rep["shared_groups"] == ["a"]
    assert rep["n_groups"] == 3 and rep["group_sizes"]["max"] == 2
    with pytest.raises(ValueError, match="1 group"):
        group_report(groups, [0, 2], [1, 3], strict=True)
    with pytest.raises(ValueError, match="fraction"):
        group_holdout(["x"], ["a"], 1.5, 0)
