"""Label issues: a few flipped labels in a clean reference set of clearly different images are
found (and few clean ones), stored, listed and resolved through ordinary label events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import review
from core.errors import InvalidValue, NotFound, TrainingError
from core.intake import ingest
from core.store import open_db
from core.training import find_issues, issue_counts, issue_queue, last_run, resolve_issue

CLASSES = ("blobs", "smooth", "stripes")
SIZE = 64


def texture(cls: str, rng: np.random.Generator) -> np.ndarray:
    """A 64×64 image in [0, 1]: bright dots, a smooth haze, or stripes of random direction."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    if cls == "blobs":
        a = np.zeros((SIZE, SIZE))
        for cy, cx in rng.uniform(0, SIZE, (12, 2)):
            a += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(1.5, 2.5) ** 2))
    elif cls == "smooth":
        a = sum(np.sin(2 * np.pi * (fy * yy + fx * xx) / SIZE + ph)
                for fy, fx, ph in zip(rng.uniform(-1.5, 1.5, 3), rng.uniform(-1.5, 1.5, 3),
                                      rng.uniform(0, 6.3, 3), strict=True))
    else:
        th = rng.uniform(0, np.pi)
        a = np.sin(2 * np.pi * (np.cos(th) * xx + np.sin(th) * yy) / rng.uniform(5, 7))
    a = a + rng.normal(0, 0.05 * (a.std() + 1e-3), a.shape)
    return (a - a.min()) / (a.max() - a.min() + 1e-9)


def build_reference(root: Path, per_class: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray((texture(cls, rng) * 255).astype(np.uint8)).save(root / cls / f"{cls}_{i:02d}.png")
    return root


@pytest.fixture
def ref_db(tmp_path):
    db = open_db(tmp_path / "t.db")
    rep = ingest(db, [build_reference(tmp_path / "ref")], labels_from_folders=True)
    assert not rep.failed
    return db


def flip(db, n: int, seed: int = 1) -> dict[int, str]:
    """Relabel n images (spread over classes) to another class; returns id -> true class."""
    rows = db.execute("SELECT image_id, label FROM current_labels ORDER BY image_id").fetchall()
    pick = np.random.default_rng(seed).choice(len(rows), n, replace=False)
    truth = {}
    for j, k in enumerate(pick):
        iid, lab = rows[k]
        wrong = CLASSES[(CLASSES.index(lab) + 1 + j % 2) % 3]
        review.decide(db, iid, "relabel", reviewer="sloppy", label=wrong)
        truth[iid] = lab
    return truth


def test_flipped_labels_are_found_and_clean_ones_mostly_not(ref_db):
    db = ref_db
    truth = flip(db, 4)
    rep = find_issues(db, folds=4, input_size=(SIZE, SIZE))
    assert rep.labels == 48 and rep.classes == list(CLASSES) and rep.folds == 4
    queue = issue_queue(db, limit=100)
    flagged = {r["image_id"]: r for r in queue}
    found = set(flagged) & set(truth)
    assert len(found) >= 3, f"only {len(found)} of 4 flipped labels flagged: {rep.summary()}"
    assert len(set(flagged) - set(truth)) <= 3, f"too many clean images flagged: {rep.summary()}"
    for iid in found:
        assert flagged[iid]["suggested"] == truth[iid], "the suggestion is the true class"
        assert flagged[iid]["given"] != truth[iid]
    scores = [r["score"] for r in queue]
    assert scores == sorted(scores), "most likely wrong first"
    assert last_run(db)["flagged"] == rep.flagged == len(queue)


def test_relabel_and_keep_are_recorded_and_survive_a_new_run(ref_db):
    db = ref_db
    truth = flip(db, 3, seed=2)
    find_issues(db, folds=3, input_size=(SIZE, SIZE))
    queue = issue_queue(db, limit=100)
    wrong = [r for r in queue if r["image_id"] in truth]
    clean = [r for r in queue if r["image_id"] not in truth]
    assert wrong
    fix = wrong[0]
    resolve_issue(db, fix["image_id"], "ann", "relabel")
    assert review.current_label(db, fix["image_id"])["label"] == fix["suggested"]
    hist = review.history(db, fix["image_id"])
    assert [h["action"] for h in hist][-2:] == ["relabel", "relabel"] and hist[-1]["reviewer"] == "ann"
    assert fix["image_id"] not in {r["image_id"] for r in issue_queue(db, 100)}
    counts = issue_counts(db)
    assert counts["relabelled"] == 1 and counts["open"] == len(queue) - 1

    # keep one (a flipped one if nothing clean was flagged): not flagged again on the next run
    keep = clean[0] if clean else wrong[-1]
    resolve_issue(db, keep["image_id"], "ann", "keep")
    assert review.current_label(db, keep["image_id"])["label"] == keep["given"]
    rep = find_issues(db, folds=3, input_size=(SIZE, SIZE))
    again = {r["image_id"] for r in issue_queue(db, 100)}
    assert keep["image_id"] not in again
    assert fix["image_id"] not in again, "the corrected label is no longer an issue"
    assert issue_counts(db)["kept"] == 1 and rep.flagged == len(again)

    with pytest.raises(InvalidValue):
        resolve_issue(db, keep["image_id"], "ann", "delete")
    with pytest.raises(NotFound):
        resolve_issue(db, 10_000, "ann", "keep")


def test_too_few_labels_or_classes_are_refused_clearly(tmp_path):
    db = open_db(tmp_path / "t.db")
    root = tmp_path / "ref"
    rng = np.random.default_rng(0)
    (root / "stripes").mkdir(parents=True)
    for i in range(12):
        Image.fromarray((texture("stripes", rng) * 255).astype(np.uint8)).save(root / "stripes" / f"{i}.png")
    ingest(db, [root], labels_from_folders=True)
    with pytest.raises(TrainingError, match="at least 2 classes"):
        find_issues(db, input_size=(SIZE, SIZE))
    empty = open_db(tmp_path / "e.db")
    with pytest.raises(TrainingError, match="none"):
        find_issues(empty)


def test_cancel_stops_between_folds_and_stores_nothing(ref_db):
    """Cancel (a threading.Event, as the app's background job sets it) stops the run at the next
    progress report; the findings are only written at the end, so nothing is stored."""
    import threading

    from core.errors import Cancelled

    db, stop, seen = ref_db, threading.Event(), []
    flip(db, 4)

    def progress(f: float, msg: str) -> None:
        seen.append(msg)
        if msg.startswith("fold 1/"):
            stop.set()

    with pytest.raises(Cancelled):
        find_issues(db, folds=3, input_size=(SIZE, SIZE), progress=progress, cancel=stop)
    assert not any(m.startswith("fold 2/") for m in seen), "stopped after the fold it was cancelled in"
    assert last_run(db) is None and issue_queue(db, 100) == []
    assert db.execute("SELECT COUNT(*) FROM label_issues").fetchone()[0] == 0
    rep = find_issues(db, folds=3, input_size=(SIZE, SIZE), cancel=threading.Event())
    assert rep.flagged == len(issue_queue(db, 100)) > 0, "an unset event changes nothing"


def test_one_flat_folder_is_grouped_by_near_copies_and_says_what_that_costs(ref_db, tmp_path):
    """The demo's case: every reference image in one folder. 'folders' cannot make folds and
    says what to do; 'auto' (the default) groups by near-copies only, finds the flips, and the
    report says what that grouping costs."""
    ref_db.execute("UPDATE images SET group_key = 'one-flat-folder'")
    ref_db.conn.commit()
    truth = flip(ref_db, 4)
    with pytest.raises(TrainingError, match="near-copies only"):
        find_issues(ref_db, input_size=(SIZE, SIZE), grouping="folders")
    rep = find_issues(ref_db, input_size=(SIZE, SIZE))
    assert rep.grouping == "near-copies" and rep.groups > 2
    assert "vouch for each other's labels" in rep.summary()
    found = {r["image_id"] for r in issue_queue(ref_db, limit=50)}
    assert len(found & set(truth)) >= 3, (found, truth)
    assert last_run(ref_db)["grouping"] == "near-copies"
    with pytest.raises(InvalidValue, match="grouping"):
        find_issues(ref_db, grouping="by-moon-phase")


def test_cli_group_by(ref_db, tmp_path):
    from click.testing import CliRunner

    from core.cli import cli

    ref_db.execute("UPDATE images SET group_key = 'one-flat-folder'")
    ref_db.conn.commit()
    path = str(tmp_path / "t.db")
    r = CliRunner().invoke(cli, ["issues", "find", "--db", path, "--group-by", "folders"])
    assert r.exit_code == 1 and "near-copies only" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["issues", "find", "--db", path, "--group-by", "near-copies", "--json"])
    assert r.exit_code == 0, r.output
    assert '"grouping": "near-copies"' in r.output


def test_only_an_administrator_runs_the_finder(ref_db):
    """Issue 18 (15): the finder's findings replace everyone's Likely mislabelled list; a
    non-admin is refused by name before anything is read or stored, an administrator runs it."""
    from core.access import User
    from core.errors import Forbidden

    with pytest.raises(Forbidden, match="'bob' may not run the label-issue finder"):
        find_issues(ref_db, folds=3, input_size=(SIZE, SIZE), by=User("bob", False))
    assert last_run(ref_db) is None and issue_counts(ref_db)["open"] == 0
    rep = find_issues(ref_db, folds=3, input_size=(SIZE, SIZE), by=User("boss", True))
    assert last_run(ref_db)["labels"] == rep.labels == 48
