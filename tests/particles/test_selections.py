"""Saved selections on a real database: made from ids, a folder, a class or several together;
listed with their counts; used as sets of a distribution and of an export; deleted by their
maker or an administrator only; bad names and unknown ids refused before anything is written."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from core import particles as P
from core.access import User
from core.errors import Forbidden, InvalidValue, NotFound
from core.intake import ingest
from core.review import decide
from core.store import open_db


@pytest.fixture
def two_folders(particle_folder, tmp_path):
    """Four images in the folders ``a`` and ``b`` (two each), ingested and detected
    (classical); images 1 and 3 labelled ``powder``."""
    root = tmp_path / "lab"
    for k, f in enumerate(sorted(particle_folder.glob("*.tif"))):
        sub = root / ("a" if k < 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f.name).write_bytes(f.read_bytes())
    db = open_db(tmp_path / "s.db")
    assert ingest(db, [root]).added == 4
    P.detect_images(db, P.select_images(db, all_images=True), method="classical")
    for i in (1, 3):
        decide(db, i, "relabel", label="powder", reviewer="ann")
    return db


def folder_of(db, image_id: int) -> str:
    return db.execute("SELECT group_key FROM images WHERE id = ?", [image_id]).fetchone()[0]


def test_save_from_ids_list_and_use_as_a_distribution_set(two_folders):
    db = two_folders
    s = P.save_selection(db, "batch 7", [2, 1, 2], reviewer="ann")
    assert (s["name"], s["images"], s["with_particles"], s["created_by"]) == ("batch 7", 2, 2, "ann")
    assert s["how"] == "images 2, 1, 2"
    assert P.selection_images(db, "BATCH 7") == [1, 2]  # any case finds it
    assert [r["name"] for r in P.list_selections(db)] == ["batch 7"]
    sets = P.group_sets(db, "selection")
    assert sets == {"batch 7": [1, 2]}
    st = P.set_stats(db, sets["batch 7"])
    whole = P.size_set(db, [1, 2])
    assert st["count"] == len(whole.d) > 0 and st["images"] == 2


def test_save_from_a_folder_a_class_and_both(two_folders):
    db = two_folders
    fa = folder_of(db, 1)
    assert P.save_selection(db, "folder a", folder=fa, reviewer="ann")["images"] == 2
    assert P.selection_images(db, "folder a") == [1, 2]
    assert P.selection_images(db, P.save_selection(db, "powder", cls="powder", reviewer="ann")["name"]) == [1, 3]
    both = P.save_selection(db, "a powder", folder=fa, cls="powder", reviewer="ann")
    assert P.selection_images(db, "a powder") == [1]
    assert both["how"] == f"folder {fa!r} and class 'powder'"


def test_export_of_a_selection_has_only_its_images(two_folders, tmp_path):
    db = two_folders
    P.save_selection(db, "two", [2, 4], reviewer="ann")
    res = P.export_particles(db, tmp_path / "out", "csv", P.selection_images(db, "two"))
    with open(tmp_path / "out" / "particles.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    paths = {r["image_path"] for r in rows}
    want = {db.execute("SELECT path FROM images WHERE id = ?", [i]).fetchone()[0] for i in (2, 4)}
    assert paths == want and res["particles"] == len(rows) > 0


@pytest.mark.parametrize("name, why", [
    ("", "empty"),
    ("   ", "empty"),
    ("-x", "not valid"),
    ("a;b", "not valid"),
    ("<b>x</b>", "not valid"),
    ("x" * 65, "65 characters"),
])
def test_bad_names_are_refused_and_nothing_is_saved(two_folders, name, why):
    with pytest.raises(InvalidValue, match="Selection name") as e:
        P.save_selection(two_folders, name, [1], reviewer="ann")
    assert why in str(e.value)
    assert P.list_selections(two_folders) == []


def test_a_taken_name_no_criterion_and_no_match_are_refused(two_folders):
    db = two_folders
    P.save_selection(db, "mine", [1], reviewer="ann")
    with pytest.raises(InvalidValue, match=r"'MINE' is taken .*made by 'ann'"):
        P.save_selection(db, "MINE", [2], reviewer="bob")
    with pytest.raises(InvalidValue, match="image ids, a folder or a class"):
        P.save_selection(db, "none", [], reviewer="ann")
    with pytest.raises(InvalidValue, match="Folder 'nowhere' has no images; known folders"):
        P.save_selection(db, "f", folder="nowhere", reviewer="ann")
    with pytest.raises(InvalidValue, match="Class 'fibres' has no images"):
        P.save_selection(db, "c", cls="fibres", reviewer="ann")
    with pytest.raises(InvalidValue, match="No image is in all of"):
        P.save_selection(db, "x", [2], cls="powder", reviewer="ann")
    with pytest.raises(InvalidValue, match="Reviewer name"):
        P.save_selection(db, "anon", [1], reviewer="")
    assert [s["name"] for s in P.list_selections(db)] == ["mine"]


def test_unknown_image_ids_are_named_and_nothing_is_saved(two_folders):
    with pytest.raises(NotFound, match=r"No image with id 9, 77 \(2 of the 3 ids given\)"):
        P.save_selection(two_folders, "ghosts", [1, 77, 9], reviewer="ann")
    assert P.list_selections(two_folders) == []
    with pytest.raises(NotFound, match="No selection named 'ghosts'; known: none yet"):
        P.selection_images(two_folders, "ghosts")


def test_only_the_maker_or_an_administrator_deletes(two_folders):
    db = two_folders
    P.save_selection(db, "ann-1", [1, 2], reviewer="ann")
    with pytest.raises(Forbidden, match=r"'bob' may not delete the selection 'ann-1' \(made by 'ann'\)"):
        P.delete_selection(db, "ann-1", by=User("bob", admin=False))
    assert P.selection_images(db, "ann-1") == [1, 2]
    assert P.delete_selection(db, "ANN-1", by=User("Ann", admin=False)) == {"deleted": "ann-1", "images": 2}
    P.save_selection(db, "again", [3], reviewer="ann")
    P.delete_selection(db, "again", by=User("root", admin=True))
    P.save_selection(db, "cli", [3], reviewer="ann")
    P.delete_selection(db, "cli")  # the CLI (by=None) is trusted
    assert P.list_selections(db) == []
    assert db.execute("SELECT count(*) FROM particle_selection_images").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM particles").fetchone()[0] > 0  # particles stay


def test_selections_survive_reopening_the_file(two_folders, tmp_path):
    P.save_selection(two_folders, "kept", [4], reviewer="ann")
    two_folders.conn.close()
    again = open_db(Path(tmp_path / "s.db"))
    assert P.selection_images(again, "kept") == [4]


def test_reading_a_set_leaves_no_transaction_open(two_folders, tmp_path):
    """size_set / exports load ids into a temporary table; Python's sqlite3 would leave the
    transaction it began for that open, and the next write of the connection (a selection
    saved after a distribution was drawn) would never be committed."""
    db = two_folders
    P.set_stats(db, [1, 2])
    P.export_particles(db, tmp_path / "e", "csv", [1])
    assert not db.conn.in_transaction
    P.save_selection(db, "after", [1], reviewer="ann")
    assert P.selection_images(open_db(tmp_path / "s.db"), "after") == [1]  # another connection
