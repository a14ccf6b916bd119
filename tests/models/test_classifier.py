"""Any ONNX classifier: metadata/sidecar, validation at load, calibrated probabilities."""

import json

import numpy as np
import pytest

from core.errors import ModelError
from core.models import MAX_RUN_BATCH, Classifier, list_models, register_model
from core.store import open_db
from tests.helpers import build_tiny_model

# grey scans with some texture (a perfectly flat image counts as blank: see the test below)
_RNG = np.random.default_rng(0)
GREYS = [np.clip(v + _RNG.uniform(-0.03, 0.03, (40, 50)), 0, 1).astype(np.float32)
         for v in (0.05, 0.3, 0.5, 0.7, 0.95)]


def test_logits_and_probabilities_models_agree(tiny_model):
    a = Classifier(tiny_model("logits", kind="logits"))
    b = Classifier(tiny_model("probs", kind="probabilities"))
    pa, pb = a.predict(GREYS), b.predict(GREYS)
    assert pa.shape == (5, 3)
    np.testing.assert_allclose(pa.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(pa, pb, atol=1e-4)
    assert list(pa.argmax(axis=1)) == [0, 1, 1, 1, 2]


def test_temperature_softens_probabilities(tiny_model):
    sharp = Classifier(tiny_model("t1")).predict(GREYS)
    soft = Classifier(tiny_model("t3", temperature=3.0)).predict(GREYS)
    assert (soft.max(axis=1) < sharp.max(axis=1)).all()
    assert (soft.argmax(axis=1) == sharp.argmax(axis=1)).all()


def test_batching_and_fixed_batch_models(tiny_model):
    dyn = Classifier(tiny_model("dyn"))
    fixed = Classifier(tiny_model("fixed", batch=1))
    four = Classifier(tiny_model("four", batch=4))  # a static batch of 4: a last chunk of 3 is padded
    assert fixed.info.batch_fixed == 1 and four.info.batch_fixed == 4
    many = GREYS * 20
    ref = dyn.predict(many, batch_size=7)
    np.testing.assert_allclose(ref, fixed.predict(many), atol=1e-5)
    for n in (1, 3, 4, 5, len(many) - 1):
        np.testing.assert_allclose(four.predict(many[:n], batch_size=7), ref[:n], atol=1e-5)
    # prepared inputs beyond one run's batch are run in chunks, with the same answers
    x = np.stack([dyn.prepare(s) for s in many * 6])
    assert len(x) > MAX_RUN_BATCH
    np.testing.assert_allclose(dyn.run(x), np.concatenate([ref] * 6), atol=1e-5)


def test_three_channel_model(tiny_model):
    c = Classifier(tiny_model("rgb", channels=3))
    assert c.info.channels == 3 and c.prepare(GREYS[0]).shape == (3, 32, 32)
    assert c.predict(GREYS).argmax(axis=1).tolist() == [0, 1, 1, 1, 2]


def test_sidecar_supplies_class_names(tiny_model):
    path = tiny_model("bare", with_class_names=False)
    with pytest.raises(ModelError, match="no class names"):
        Classifier(path)
    path.with_suffix(".json").write_text(json.dumps({"class_names": ["a", "b", "c"], "temperature": 2}))
    c = Classifier(path)
    assert c.class_names == ["a", "b", "c"] and c.info.temperature == 2


@pytest.mark.parametrize(
    ("kwargs", "meta", "match"),
    [
        ({"classes": ("a", "b")}, None, None),  # fits: sanity check of the parametrisation
        ({"classes": ("a", "b", "c"), "out_dim": 4}, None, "4 outputs but 3 class names"),
        ({}, {"input_size": [64, 64]}, "does not match the input shape"),
        ({}, {"temperature": -1}, "temperature must be > 0"),
        ({}, {"channels": 3}, "metadata says 3 channels"),
        ({}, {"output": "scores"}, "expected logits or probabilities"),
        ({}, {"std": [1e300]}, "do not fit"),
        ({}, {"mean": "NaN"}, "do not fit"),
        ({"classes": ("a", "a", "b")}, None, "duplicates"),
    ],
)
def test_misfit_models_are_refused_with_reason(tiny_model, kwargs, meta, match):
    path = tiny_model("m", metadata=meta, **kwargs)
    if match is None:
        Classifier(path)
        return
    with pytest.raises(ModelError, match=match):
        Classifier(path)


def test_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(ModelError, match="bad.onnx"):
        Classifier(bad)
    with pytest.raises(ModelError, match="does not exist"):
        Classifier(tmp_path / "missing.onnx")


def test_rank_and_input_count_checked(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    m.metadata_props.append(onnx.StringStringEntryProto(key="class_names", value=json.dumps(list("abcdefghij"))))
    onnx.save(m, tmp_path / "flat.onnx")
    with pytest.raises(ModelError, match="rank 2"):
        Classifier(tmp_path / "flat.onnx")


def test_bad_model_changes_nothing_in_db(tmp_path, tiny_model):
    db = open_db(tmp_path / "t.db")
    good = register_model(db, tiny_model("good"))
    assert good["active"]
    with pytest.raises(ModelError):
        register_model(db, tiny_model("bad", out_dim=5), activate=True)
    assert [m["version"] for m in list_models(db)] == ["good"]
    assert list_models(db)[0]["active"]
    # the same file registers once
    assert register_model(db, tiny_model("good"))["id"] == good["id"]


def test_blank_scans_get_no_opinion(tiny_model, sem_fixtures):
    """A scan with no signal (the FEI fixtures' beam-blanked black scan area, a flat grey) gets
    a uniform distribution — it lands in the uncertain queue instead of a confident guess."""
    from core.images import read_image
    from core.review import route

    clf = Classifier(tiny_model("blank"))
    flat = [np.zeros((40, 50), np.float32), np.full((40, 50), 0.6, np.float32),
            np.full((40, 50), 0.6, np.float32) + np.float32(0.001) * (np.arange(50) % 2)]
    probs = clf.predict(flat + GREYS)
    np.testing.assert_allclose(probs[:3], 1 / 3, atol=1e-6)
    assert all(route(p, clf.class_names)[0] == "uncertain" for p in probs[:3])
    assert (probs[3:].max(axis=1) > 0.5).all()  # textured images keep the model's opinion
    black = read_image(sem_fixtures / "FEI-Helios-Ebeam-8bits.tif").scan
    zeiss = read_image(sem_fixtures / "test_tiff_Zeiss_SEM_1k.tif").scan
    assert clf.blank_rows(np.stack([clf.prepare(black), clf.prepare(zeiss)])).tolist() == [True, False]


def test_a_registered_model_whose_file_changed_is_refused_not_used(tmp_path, tiny_model, image_folder):
    """Predictions and label history name the model version that made them: when the file behind
    a version is overwritten (a rebuilt default model, a `git pull`), the new weights must not
    predict under the old name."""
    from core.intake import ingest, predict_pending
    from core.models import load_active, model_classifier

    db = open_db(tmp_path / "t.db")
    path = tiny_model("lab")
    old = register_model(db, path)
    ingest(db, [image_folder], classifier=model_classifier(old), model_id=old["id"])
    before = db.execute("SELECT image_id, probs FROM predictions ORDER BY image_id").fetchall()

    build_tiny_model(path, temperature=2.0)  # other weights, same path, same version name
    for load in (lambda: model_classifier(old), lambda: load_active(db)):
        with pytest.raises(ModelError, match="changed after it was registered as model 'lab'") as e:
            load()
        assert str(path) in str(e.value) and "semtriage model add" in str(e.value)
    assert db.execute("SELECT image_id, probs FROM predictions ORDER BY image_id").fetchall() == before

    new = register_model(db, path)  # the new file is a new version beside the old one
    assert new["id"] != old["id"] and new["version"].startswith("lab-")
    rep = predict_pending(db, model_classifier(new), new["id"])
    assert rep.predicted == len(before)

    path.unlink()
    with pytest.raises(ModelError, match="is missing"):
        model_classifier(new)


def test_the_demo_follows_an_updated_default_model(tmp_path, tiny_model):
    """`semtriage demo` (the README's run command calls it every start) registers a rebuilt
    default model as a new version and re-predicts with it, keeping the old version's history."""
    from core.models import active_model
    from core.workflows import build_demo

    model_path, db_path = tiny_model("default", classes=("films", "fibres", "particles")), tmp_path / "d.db"
    kw = {"n_images": 12, "demo_dir": tmp_path / "demo", "model_path": model_path}
    assert build_demo(db_path, **kw)["status"] == "built"
    assert build_demo(db_path, **kw)["status"] == "already built"
    db = open_db(db_path)
    old = active_model(db)

    build_tiny_model(model_path, ("films", "fibres", "particles"), temperature=3.0)
    info = build_demo(db_path, **kw)
    assert info["status"] == "default model updated" and info["predicted"] == 12
    new = active_model(db)
    assert new["id"] != old["id"] and info["model"] == new["version"]
    for m in (old, new):
        assert db.execute("SELECT COUNT(*) FROM predictions WHERE model_id = ?", [m["id"]]).fetchone()[0] == 12
    assert build_demo(db_path, **kw)["status"] == "already built"


def test_the_demo_never_touches_a_lab_database(tmp_path, tiny_model, image_folder):
    """A database holding the lab's own images is refused (force or not): no demo images are
    poured into it and its model never switches."""
    from core.errors import InvalidValue
    from core.intake import ingest
    from core.models import active_model, model_classifier
    from core.workflows import build_demo

    model_path, db_path = tiny_model("default", classes=("films", "fibres", "particles")), tmp_path / "lab.db"
    kw = {"n_images": 12, "demo_dir": tmp_path / "demo", "model_path": model_path}
    build_demo(db_path, **kw)
    db = open_db(db_path)
    old = active_model(db)
    ingest(db, [image_folder], classifier=model_classifier(old), model_id=old["id"])  # the lab's own
    n = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    build_tiny_model(model_path, ("films", "fibres", "particles"), temperature=3.0)
    for force in (False, True):
        with pytest.raises(InvalidValue, match="not the demo's"):
            build_demo(db_path, force=force, **kw)
    assert active_model(db)["id"] == old["id"] and len(list_models(db)) == 1
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == n

    lab = open_db(tmp_path / "fresh-lab.db")  # a lab's database with only its own images
    ingest(lab, [image_folder])
    with pytest.raises(InvalidValue, match="not the demo's"):
        build_demo(tmp_path / "fresh-lab.db", **kw)
    assert lab.execute("SELECT COUNT(*) FROM images").fetchone()[0] == n - 12


def test_the_shipped_default_model_with_its_card_in_one_call(tmp_path):
    """A fresh lab database gets the shipped default model (and its card) without the demo."""
    from core.config import DEFAULT_MODEL
    from core.models import active_model, read_card
    from core.workflows import use_default_model

    db = open_db(tmp_path / "lab.db")
    m = use_default_model(db)
    assert active_model(db)["id"] == m["id"]
    assert read_card(m["path"])["class_names"] == m["class_names"]
    assert m["path"] == str(DEFAULT_MODEL) or m["path"] == str(DEFAULT_MODEL.resolve())
    assert use_default_model(db)["id"] == m["id"], "registered once"
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0, "no demo images"
