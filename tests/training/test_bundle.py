"""A training bundle: the labelled images of a database written once, trained on elsewhere
(no database), registered with `semtriage model add` as usual."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from core.cli import cli
from core.models import list_models
from core.store import open_db
from tests.helpers.labelled import build_labelled_db


def test_export_bundle_then_train_anywhere_then_model_add(tmp_path):
    db_path = build_labelled_db(tmp_path)
    bundle = tmp_path / "out" / "labels.npz"
    runner = CliRunner()
    r = runner.invoke(cli, ["train", "--from-db", "--db", str(db_path), "--export-bundle",
                            str(bundle), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    with np.load(bundle) as z:
        assert len(z["y"]) == info["images"] and z["train"].sum() == info["train"]
        held = set(z["groups"][~z["train"]])
        assert held and not held & set(z["groups"][z["train"]]), "a group on both sides"
    moved = tmp_path / "gpu-node" / "labels.npz"  # no database where it trains
    moved.parent.mkdir()
    bundle.rename(moved)
    out = tmp_path / "gpu-node" / "cand.onnx"
    r = runner.invoke(cli, ["train", "--from-bundle", str(moved), "--family", "texture",
                            "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    card = json.loads(r.output)
    assert card["bundle"]["family"] == "texture" and 0 <= card["accuracy"] <= 1
    assert not list((tmp_path / "gpu-node").glob("*.db"))
    r = runner.invoke(cli, ["model", "add", str(out), "--db", str(db_path)])
    assert r.exit_code == 0, r.output
    assert "cand" in [m["version"] for m in list_models(open_db(db_path))]
