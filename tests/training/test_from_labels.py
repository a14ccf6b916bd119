"""Retraining from the labels (core/retrain.py, `semtriage train --from-db`, `semtriage model
compare | promote | discard`): a candidate learns a distribution the active model has never
seen, is judged on whole held-out groups it never trained on, and promoting it re-predicts and
re-routes; cancel and failures leave nothing behind."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from core import models, review, training, workflows
from core.cli import cli
from core.errors import Cancelled, ModelError, StoreError, TrainingError
from core.models import active_model, get_model, list_models, register_model
from core.store import backup, open_db
from tests.helpers import build_tiny_model
from tests.helpers.labelled import CLASSES, INPUT, build_labelled_db

torch.set_num_threads(1)
EPOCHS = 12


def opts(**kw) -> training.RetrainOptions:
    base = {"family": "cnn", "epochs": EPOCHS, "texture_epochs": 60, "input_size": INPUT,
            "holdout": 0.3, "seed": 0}
    return training.RetrainOptions(**(base | kw))


def copy_db(src: Path, dest: Path) -> Path:
    s = open_db(src)
    out = backup(s, dest)
    s.conn.close()
    return out


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    return build_labelled_db(tmp_path_factory.mktemp("labelled"))


@pytest.fixture(scope="module")
def trained(labelled, tmp_path_factory) -> tuple[Path, int]:
    """A copy of the labelled database with one candidate trained on it (both families; the
    CNN must win or tie for the init-from-active test below to start from it)."""
    root = tmp_path_factory.mktemp("trained")
    path = copy_db(labelled, root / "rt.db")
    res = training.retrain(open_db(path), opts(family="best"), root / "models")
    assert res.card["retrain"]["family"] == "cnn"
    return path, res.model["id"]


def roles(db, model_id: int) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {"train": set(), "holdout": set()}
    for image_id, role in db.execute("SELECT image_id, role FROM model_images WHERE model_id = ?",
                                     [model_id]):
        out[role].add(image_id)
    return out


def folders(db, ids: set[int]) -> set[str]:
    return {db.execute("SELECT group_key FROM images WHERE id = ?", [i]).fetchone()[0] for i in ids}


# ---------------------------------------------------------------- the candidate


def test_candidate_beats_a_model_that_never_saw_the_distribution(trained):
    path, cid = trained
    db = open_db(path)
    cand = get_model(db, cid)
    assert not cand["active"], "a candidate stays inactive until promoted"
    c = training.compare(db, cid)
    assert c["active"]["version"] == "tiny"
    assert c["images"] == len(roles(db, cid)["holdout"]) > 0
    # the tiny model sorts by brightness; these classes differ only in texture
    assert c["active"]["accuracy"] < 0.5
    assert c["candidate"]["accuracy"] >= 0.75
    assert c["candidate"]["accuracy"] >= c["active"]["accuracy"] + 0.3
    head = cand["card"]["retrain"]["headline"]
    assert head["accuracy"] == pytest.approx(c["candidate"]["accuracy"], abs=1e-3)
    assert head["images"] == c["images"]
    lo, hi = c["candidate"]["interval"]
    assert lo <= c["candidate"]["accuracy"] <= hi
    cm = c["candidate"]["confusion_matrix"]
    assert sum(map(sum, cm["matrix"])) == c["images"]
    assert set(c["candidate"]["per_class"]) <= set(CLASSES)
    assert "cross-fitted" in cand["card"]["retrain"]["calibration"]
    fams = cand["card"]["retrain"]["families"]
    assert set(fams) == {"cnn", "texture"}, "'best' reports both families"
    assert all(f["images"] == c["images"] and f["accuracy"] > 0.5 for f in fams.values())


def test_no_held_out_image_or_group_is_trained_on(trained):
    path, cid = trained
    db = open_db(path)
    r = roles(db, cid)
    assert r["train"] and r["holdout"] and not (r["train"] & r["holdout"])
    assert not folders(db, r["train"]) & folders(db, r["holdout"]), "a folder on both sides"
    # the near-copy joins specimen 0 and 1 of fibres into one group: both on one side
    near = {i for (i,) in db.execute("SELECT id FROM images WHERE group_key IN "
                                     "('images/fibres_spec0', 'images/fibres_spec1')")}
    assert near <= r["train"] or near <= r["holdout"]
    # only human labels trained it: the unlabelled inbox images are on neither side
    inbox = {i for (i,) in db.execute("SELECT id FROM images WHERE name LIKE 'new_%'")}
    assert not inbox & (r["train"] | r["holdout"])
    split = get_model(db, cid)["card"]["retrain"]["split"]
    assert split["leak_free"] and split["holdout_groups"] >= len(CLASSES)


def test_promote_switches_the_active_model_and_rebuilds_the_queues(trained, tmp_path):
    path = copy_db(trained[0], tmp_path / "p.db")
    db = open_db(path)
    cid = trained[1]
    before = review.queue_counts(db)
    res = workflows.promote(db, cid)
    assert active_model(db)["id"] == cid
    n_images = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    assert db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ?", [cid]).fetchone()[0] == n_images
    after = review.queue_counts(db)
    assert after == res["queues"] and after != before
    # done = 1 exactly where a human label exists
    bad = db.execute(
        "SELECT COUNT(*) FROM predictions p LEFT JOIN current_labels c ON c.image_id = p.image_id "
        "WHERE p.model_id = ? AND p.done != (c.source IS NOT NULL AND c.source != 'auto')",
        [cid]).fetchone()[0]
    assert bad == 0
    # a new model starts provisional: no auto labels until its threshold is certified (or forced)
    assert review.certification(db, cid).state == review.PROVISIONAL
    auto = db.execute("SELECT COUNT(*) FROM current_labels WHERE source = 'auto'").fetchone()[0]
    assert auto == 0
    review.force_threshold(db, 0.7, model_id=cid, note="test")
    # then auto labels follow the new model's confident queue
    auto = db.execute("SELECT COUNT(*) FROM current_labels WHERE source = 'auto'").fetchone()[0]
    assert auto == db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ? AND queue = 'auto' "
                              "AND done = 0 AND p1 >= 0.7", [cid]).fetchone()[0]
    with pytest.raises(StoreError, match="active"):
        models.discard(db, cid)


def test_compare_leaves_out_images_the_active_model_trained_on(trained, tmp_path):
    path = copy_db(trained[0], tmp_path / "c.db")
    db = open_db(path)
    first = trained[1]
    workflows.promote(db, first)
    res = training.retrain(db, opts(seed=7, init_from_active=True, epochs=1), tmp_path / "models")
    second = res.model["id"]
    assert res.card["retrain"]["init_from"] == get_model(db, first)["version"]
    held = roles(db, second)["holdout"]
    overlap = held & roles(db, first)["train"]
    c = training.compare(db, second)
    assert c["active"]["id"] == first
    assert c["excluded_trained_on_by_active"] == len(overlap)
    assert c["images"] == len(held - overlap)


def test_synthetic_images_keep_classes_that_have_no_labels(labelled, tmp_path):
    db = open_db(copy_db(labelled, tmp_path / "s.db"))
    four = register_model(db, build_tiny_model(tmp_path / "four.onnx", ("films", *CLASSES)),
                          activate=True)
    mixed = training.retrain(db, opts(family="texture", synthetic_per_class=3), tmp_path / "models")
    assert mixed.model["class_names"] == sorted(("films", *CLASSES))
    rt = mixed.card["retrain"]
    assert rt["classes"]["synthetic_only"] == ["films"] and not rt["classes"]["of_the_active_model_not_learnt"]
    assert rt["synthetic"]["images"] == 3 * 4
    # synthetic images only train: every held-out image is a labelled image of the database
    held = roles(db, mixed.model["id"])["holdout"]
    assert held and all(review.current_label(db, i)["source"] == "human" for i in held)
    assert mixed.card["data_counts"]["train"]["films"] == 3
    assert rt["headline"]["images"] == len(held)
    assert four["id"] == active_model(db)["id"]


# ---------------------------------------------------------------- cancel, errors, discard


def test_cancel_leaves_no_model_and_no_file(labelled, tmp_path):
    db = open_db(copy_db(labelled, tmp_path / "x.db"))
    cancel = threading.Event()
    seen: list[str] = []

    def progress(f: float, m: str) -> None:
        seen.append(m)
        if "epoch 2/" in m:
            cancel.set()

    n_models = len(list_models(db))
    with pytest.raises(Cancelled):
        training.retrain(db, opts(epochs=50), tmp_path / "models", progress=progress, cancel=cancel)
    assert not any("epoch 4/" in m for m in seen), "stops within an epoch of the cancel"
    assert len(list_models(db)) == n_models
    assert db.execute("SELECT COUNT(*) FROM model_images").fetchone()[0] == 0
    out = tmp_path / "models"
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))


def test_clear_errors_when_labels_cannot_support_a_held_out_test(labelled, tmp_path):
    db = open_db(copy_db(labelled, tmp_path / "e.db"))
    out = tmp_path / "models"
    # a class seen in one folder only
    powder = [i for (i,) in db.execute("SELECT id FROM images WHERE group_key != 'images/powder_spec0' "
                                       "AND name LIKE 'powder%'")]
    for i in powder:
        review.decide(db, i, "unusable", reviewer="alice")
    with pytest.raises(TrainingError, match="'powder' .*single group"):
        training.retrain(db, opts(), out)
    with pytest.raises(TrainingError, match="regular expression"):
        training.retrain(db, opts(group_pattern="(unclosed"), out)
    with pytest.raises(TrainingError, match="family"):
        training.retrain(db, opts(family="forest"), out)
    for i in powder:
        review.decide(db, i, "relabel", reviewer="alice", label="powder")
    with pytest.raises(ModelError, match="SemNet"):  # the tiny model is no SemNet to start from
        training.retrain(db, opts(init_from_active=True), out)
    for (i,) in db.execute("SELECT image_id FROM current_labels LIMIT 100 OFFSET 6").fetchall():
        review.decide(db, i, "unusable", reviewer="alice")
    with pytest.raises(TrainingError, match="at least 10"):
        training.retrain(db, opts(), out)
    assert len(list_models(db)) == 1 and not any(out.rglob("*.onnx"))


# ---------------------------------------------------------------- CLI


def test_cli_train_from_db_compare_promote_discard(labelled, tmp_path):
    path = copy_db(labelled, tmp_path / "cli.db")
    db = open_db(path)
    register_model(db, build_tiny_model(tmp_path / "four.onnx", ("films", *CLASSES)), activate=True)
    db.conn.close()
    run = CliRunner().invoke
    r = run(cli, ["train", "--from-db", "--db", str(path), "--family", "texture", "--holdout", "0.3",
                  "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    version, model_file = out["model"]["version"], Path(out["model"]["path"])
    assert model_file.is_file() and model_file.parent == tmp_path / "models" / "retrained"
    assert model_file.with_name(model_file.stem + ".card.json").is_file()
    assert 0.0 <= out["headline"]["accuracy"] <= 1.0 and out["model"]["active"] is False
    assert out["retrain"]["classes"]["of_the_active_model_not_learnt"] == ["films"]

    r = run(cli, ["model", "compare", version, "--db", str(path)])
    assert r.exit_code == 0, r.output
    assert "candidate" in r.output and "active" in r.output and "four" in r.output

    r = run(cli, ["model", "promote", version, "--db", str(path), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["active"] == version
    assert active_model(open_db(path))["version"] == version

    r = run(cli, ["model", "discard", version, "--db", str(path)])
    assert r.exit_code == 1 and "active model" in r.output
    r = run(cli, ["model", "discard", "tiny", "--db", str(path)])  # it auto-labelled images
    assert r.exit_code == 1 and "label history" in r.output
    r = run(cli, ["model", "discard", "four", "--db", str(path)])  # never used: goes, file stays
    assert r.exit_code == 0, r.output
    assert (tmp_path / "four.onnx").is_file(), "only files that retraining wrote are deleted"

    r = run(cli, ["train", "--from-db", "--db", str(path), "--epochs", "1", "--version", "spare"])
    assert r.exit_code == 0, r.output
    assert "held-out accuracy on unseen groups" in r.output
    # the first candidate (now active) had no 'films': no labels, no synthetic images
    assert "no labels for films" not in r.output
    spare = tmp_path / "models" / "retrained" / "spare.onnx"
    assert spare.is_file()
    r = run(cli, ["model", "discard", "spare", "--db", str(path)])
    assert r.exit_code == 0, r.output
    assert not spare.exists() and "spare" not in [m["version"] for m in list_models(open_db(path))]


def test_cli_from_db_errors_are_clear(labelled, tmp_path):
    run = CliRunner().invoke
    r = run(cli, ["train", "--from-db", "--db", str(tmp_path / "none.db")])
    assert r.exit_code == 1 and "No database" in r.output
    r = run(cli, ["train", "--synthetic", "5", "--out", str(tmp_path / "m.onnx"), "--family", "texture"])
    assert r.exit_code == 2 and "--family" in r.output and "--from-db" in r.output
    empty = tmp_path / "empty.db"
    open_db(empty).conn.close()
    r = run(cli, ["train", "--from-db", "--db", str(empty)])
    assert r.exit_code == 1 and "Only 0 labelled images" in r.output
