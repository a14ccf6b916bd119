"""Shared fixtures: tiny real ONNX classifiers built in code, real image files, real SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "sem-tiff"
CLASSES = ("fibres", "particles", "powder")


def build_tiny_model(
    path: Path,
    classes: tuple[str, ...] | list[str] = CLASSES,
    *,
    kind: str = "logits",
    size: int = 32,
    channels: int = 1,
    batch: int | str = "N",
    metadata: dict | None = None,
    with_class_names: bool = True,
    out_dim: int | None = None,
    temperature: float | None = None,
) -> Path:
    """A real ONNX classifier: mean brightness → linear → logits (or softmax probabilities).

    Dark images favour the first class, bright ones the last, mid-grey ones sit between two
    classes — so one folder of images of varied brightness fills every queue.
    """
    k = out_dim or len(classes)
    centres = np.linspace(0.0, 1.0, k, dtype=np.float32)
    # logit_i = -a (x - c_i)^2 = -a x^2 + 2 a c_i x - a c_i^2, with x the mean intensity
    a = 6.0
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, channels, size, size])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, k])
    inits = [
        helper.make_tensor("w1", TensorProto.FLOAT, [1, k], (2 * a * centres).tolist()),
        helper.make_tensor("w2", TensorProto.FLOAT, [1, k], [-a] * k),
        helper.make_tensor("b", TensorProto.FLOAT, [k], (-a * centres**2).tolist()),
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("quarter", TensorProto.FLOAT, [], [0.25]),
    ]
    nodes = [
        # undo the default normalisation (x - 0.5) / 0.25 to get back to [0, 1]
        helper.make_node("Mul", ["image", "quarter"], ["s"]),
        helper.make_node("Add", ["s", "half"], ["u"]),
        helper.make_node("GlobalAveragePool", ["u"], ["g"]),  # [N, C, 1, 1]
        helper.make_node("Flatten", ["g"], ["fc"]),  # [N, C]
        helper.make_node("ReduceMean", ["fc", "axis1"], ["f"], keepdims=1),  # [N, 1]
        helper.make_node("Mul", ["f", "f"], ["f2"]),
        helper.make_node("MatMul", ["f", "w1"], ["l1"]),
        helper.make_node("MatMul", ["f2", "w2"], ["l2"]),
        helper.make_node("Add", ["l1", "l2"], ["l12"]),
        helper.make_node("Add", ["l12", "b"], ["logits"]),
    ]
    inits.append(helper.make_tensor("axis1", TensorProto.INT64, [1], [1]))
    if kind == "probabilities":
        nodes.append(helper.make_node("Softmax", ["logits"], ["out"], axis=1))
    else:
        nodes.append(helper.make_node("Identity", ["logits"], ["out"]))
    graph = helper.make_graph(nodes, "tiny", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    meta = {}
    if with_class_names:
        meta["class_names"] = json.dumps(list(classes))
    meta["version"] = path.stem
    if temperature is not None:
        meta["temperature"] = str(temperature)
    meta.update({kk: (vv if isinstance(vv, str) else json.dumps(vv)) for kk, vv in (metadata or {}).items()})
    for kk, vv in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=kk, value=vv))
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny_model(tmp_path):
    """Factory: ``tiny_model(name="m", classes=..., kind="logits"|"probabilities", ...)`` → path."""

    def make(name: str = "tiny", **kw) -> Path:
        return build_tiny_model(tmp_path / "models" / f"{name}.onnx", **kw)

    return make


def write_images(folder: Path, n: int = 12, *, size: int = 48, seed: int = 0, fmt: str = "png") -> list[Path]:
    """n real grey image files of varied brightness (so the tiny model spreads them over queues)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        level = (i + 0.5) / n
        a = np.clip(rng.normal(level, 0.05, (size, size)), 0, 1)
        p = folder / f"img_{i:03d}.{fmt}"
        Image.fromarray((a * 255).astype(np.uint8)).save(p)
        out.append(p)
    return out


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    write_images(folder)
    return folder


@pytest.fixture
def sem_fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"real SEM fixtures absent: {FIXTURES} (shared/fixtures/sem-tiff)")
    return FIXTURES


# ---------------------------------------------------------------- AppTest


@pytest.fixture
def navigation_v2(monkeypatch):
    """AppTest resets ``PagesManager.uses_pages_directory`` before every run, so with a
    ``pages/`` folder next to app.py its reruns execute the page file alone (the v1 multipage
    mode), skipping app.py and its sidebar. The real server turns that mode off as soon as
    app.py calls ``st.navigation``; do the same here. AppTest modules use it with
    ``pytestmark = pytest.mark.usefixtures("navigation_v2")``."""
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)


def app_db_copy(template: Path, tmp_path: Path, monkeypatch) -> Path:
    """A private copy of the database ``template`` for one app test, named by SEMTRIAGE_DB
    (``tmp_path`` is the server folder the app may ingest from)."""
    from core.store import backup, open_db

    src = open_db(template)
    path = backup(src, tmp_path / "data" / "app.db")
    src.conn.close()
    monkeypatch.setenv("SEMTRIAGE_DB", str(path))
    monkeypatch.setenv("SEMTRIAGE_ROOTS", str(tmp_path))
    return path
