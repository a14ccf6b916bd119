"""Candidate detectors: listed with their held-out metrics, promoted or discarded — by an
administrator when the app asks (``by=``), never the active one nor one whose particles are
stored; a discarded retraining candidate takes its ONNX file and card with it. Retraining
refuses a non-administrator before it reads anything."""

from __future__ import annotations

import onnx
import pytest

from core import particles as P
from core import training
from core.access import User
from core.errors import Forbidden, StoreError
from core.models import card_path, write_card
from core.training.particle_net import _new_version

METRICS = {"held_out_images": [1], "candidate": {"f1": 0.5}, "active_at_training": {"f1": 0.4}}
ANN = User("ann", admin=False)


def candidate_file(tmp_path, version: str):
    """A copy of the shipped detector under another version (another hash), with a card."""
    proto = onnx.load(str(P.DEFAULT_DETECTOR))
    for e in proto.metadata_props:
        if e.key == "version":
            e.value = version
    out = tmp_path / f"{version}.onnx"
    onnx.save_model(proto, str(out))
    write_card(out, {"version": version})
    return out


def test_a_discarded_candidate_takes_its_file_and_card(db, tmp_path):
    P.ensure_defaults(db)
    path = candidate_file(tmp_path, "cand-file")
    cand = P.register_detector(db, path=path, metrics=METRICS)
    assert [d["version"] for d in P.detector_candidates(db)] == ["cand-file"]
    with pytest.raises(Forbidden, match="'ann' may not discard a particle detector"):
        P.discard_detector(db, "cand-file", by=ANN)
    res = P.discard_detector(db, "cand-file", by=User("root", admin=True))
    assert res["discarded"] == "cand-file" and len(res["files_removed"]) == 2
    assert not path.exists() and not card_path(path).exists()
    assert cand["version"] not in {d["version"] for d in P.list_detectors(db)}


def test_the_active_detector_and_one_with_particles_are_kept(ingested):
    db = ingested
    P.ensure_defaults(db)
    with pytest.raises(StoreError, match="is the active one"):
        P.discard_detector(db, "particles-default-v3")
    P.detect_images(db, [1], method="classical")
    with pytest.raises(StoreError, match=r"classical-default' made \d+ stored particles"):
        P.discard_detector(db, "classical-default")


def test_promote_is_for_administrators_when_the_app_asks(db):
    P.ensure_defaults(db)
    P.register_detector(db, version="cand-x", metrics=METRICS)
    with pytest.raises(Forbidden, match="may not change the active particle detector"):
        P.promote_detector(db, "cand-x", by=ANN)
    assert P.active_detector(db)["version"] == "particles-default-v3"
    assert P.promote_detector(db, "cand-x", by=User("root", admin=True))["active"]
    assert P.detector_candidates(db) == []  # the active one is no candidate


def test_retraining_refuses_a_non_administrator_before_anything(db, tmp_path):
    with pytest.raises(Forbidden, match="may not train a particle detector"):
        training.retrain_particles(db, tmp_path / "m", by=ANN)
    assert not (tmp_path / "m").exists()


def test_a_candidate_trained_in_the_same_second_gets_its_own_name(db, tmp_path):
    P.ensure_defaults(db)
    P.register_detector(db, path=candidate_file(tmp_path, "particles-ft-20261204-101500"))
    (tmp_path / "particles-ft-20261204-101500-2.onnx").write_bytes(b"")  # a file left there
    assert _new_version(db, tmp_path, "particles-ft-20261204-101500") == "particles-ft-20261204-101500-3"
    assert _new_version(db, tmp_path, "particles-ft-20261204-101501") == "particles-ft-20261204-101501"
