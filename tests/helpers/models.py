"""A tiny real ONNX classifier built in code (no download, no training)."""


from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

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
    overflow_above: float | None = None,
) -> Path:
    """A real ONNX classifier: mean brightness → linear → logits (or softmax probabilities).

    Dark images favour the first class, bright ones the last, mid-grey ones sit between two
    classes — so one folder of images of varied brightness fills every queue.
    ``overflow_above``: images brighter than this (mean in [0, 1]) get infinite logits, as an
    fp16 export overflowing does (mid-grey 0.5 is what a blank test batch shows).
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
    if overflow_above is not None:
        inits += [helper.make_tensor("thr", TensorProto.FLOAT, [], [float(overflow_above)]),
                  helper.make_tensor("big", TensorProto.FLOAT, [], [1e38])]
        nodes[-1] = helper.make_node("Add", ["l12", "b"], ["lin"])
        nodes += [helper.make_node("Sub", ["f", "thr"], ["over"]),
                  helper.make_node("Relu", ["over"], ["r"]),
                  helper.make_node("Mul", ["r", "big"], ["r1"]),
                  helper.make_node("Mul", ["r1", "big"], ["r2"]),  # inf where r > 0
                  helper.make_node("Add", ["lin", "r2"], ["logits"])]
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
