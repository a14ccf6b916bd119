"""Export a trained model to one self-contained ONNX file (dynamic batch, metadata per
docs/ARCHITECTURE.md) with its model card beside it, checked against torch."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import onnxruntime as ort
import torch

from core.errors import ModelError
from core.files import sha256_file
from core.models import (
    EXTRACTOR_INPUT,
    FEATURES,
    extractor_path,
    feature_extractor,
    fit_familiarity,
    set_energy_limit,
    write_card,
)
from core.training.cnn import TrainResult


def build_card(result: TrainResult, version: str) -> dict[str, Any]:
    m = result.metrics
    return {
        "version": version,
        "architecture": cast(Any, result.model).describe(),
        "parameters": result.parameters,
        "input_size": list(result.input_size),
        "channels": result.channels,
        "mean": result.mean,
        "std": result.std,
        "class_names": result.class_names,
        "data_counts": result.counts,
        "training_data": result.training_data,
        "epochs": result.epochs,
        "seed": result.seed,
        "training_time_s": result.seconds,
        "temperature": round(result.temperature, 4),
        "accuracy": m.get("accuracy"),
        "per_class": m.get("per_class"),
        "confusion_matrix": m.get("confusion_matrix"),
        "ece_15_bins": {"before_temperature": m.get("ece_before"),
                        "after_temperature": m.get("ece_after")},
        "nll": {"before_temperature": m.get("nll_before"), "after_temperature": m.get("nll_after")},
        "evaluated_on": m.get("evaluated_on"),
        "mixed_held_out": m.get("mixed_held_out"),
        "temperature_fitted_on": (m.get("mixed_held_out") or {}).get(
            "temperature_fitted_on", "held-out single-class images"),
        "history": result.history,
        "torch": torch.__version__,
    }


def export_onnx(result: TrainResult, out_path: str | Path, *, version: str,
                opset: int = 17) -> Path:
    """Write ``out_path`` (one self-contained .onnx, dynamic batch, metadata per
    docs/ARCHITECTURE.md) and ``<name>.card.json`` beside it. Checks that ONNX Runtime and torch
    agree within 1e-4 on a batch; raises :class:`ModelError` if not."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = result.model.eval()
    h, w = result.input_size
    rng = np.random.default_rng(result.seed)
    example = torch.from_numpy(rng.normal(0, 1, (4, result.channels, h, w)).astype(np.float32))
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        # the TorchScript exporter writes one file with embedded weights (the dynamo exporter
        # would write a separate .onnx.data); no constant folding keeps the state_dict names,
        # so init_from can read the weights back (ONNX Runtime fuses BN itself at load)
        torch.onnx.export(model, (example,), str(tmp), input_names=["input"],
                          output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=opset, do_constant_folding=False, dynamo=False)
    proto = onnx.load(str(tmp))
    tmp.unlink()
    meta = {
        "class_names": json.dumps(result.class_names),
        "input_size": json.dumps([h, w]),
        "channels": str(result.channels),
        "mean": json.dumps(result.mean),
        "std": json.dumps(result.std),
        "output": "logits",
        "temperature": repr(float(result.temperature)),
        "version": version,
        "training_data": json.dumps(result.training_data, sort_keys=True),
        "architecture": json.dumps(cast(Any, result.model).architecture()),
    }
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.producer_name = "semtriage core.training"
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(out), save_as_external_data=False)
    for extra in (out.with_name(out.name + ".data"), out.with_suffix(".data")):
        if extra.exists():
            raise ModelError(f"Export left an external data file {str(extra)!r}; expected one file")
    # verify: ONNX Runtime vs torch on a batch
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": example.numpy()})[0]
    with torch.inference_mode():
        ref = model(example).numpy()
    diff = float(np.abs(got - ref).max())
    if not diff <= 1e-4:
        raise ModelError(f"ONNX Runtime and torch disagree on {str(out)!r}: max |Δlogit| = "
                         f"{diff:.2e} > 1e-4")
    card = build_card(result, version)
    card["onnx_check_max_abs_diff"] = diff
    card["model_file"] = out.name
    write_card(out, card)
    return out


# ---------------------------------------------------------------- familiarity


class _Features(torch.nn.Module):
    """The fixed texture features of :class:`core.training.TextureNet` as a model of its own."""

    def __init__(self) -> None:
        super().__init__()
        from core.training.texture import TextureNet  # torch module, loaded with this one

        h, w = EXTRACTOR_INPUT["input_size"]
        self.net = TextureNet(2, (int(h), int(w)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def export_features(out_path: str | Path | None = None, opset: int = 17) -> Path:
    """Write the texture-feature extractor (``data/models/texture-features.onnx`` by default):
    prepared inputs (N, 1, 128, 128) → (N, 136) features, checked against torch. Nothing in it
    is learnt, so rebuilding it gives the same numbers (its SHA-256 may differ with the torch
    version: cards record the one their statistics were fitted with)."""
    out = Path(out_path or extractor_path())
    model = _Features().eval()
    h, w = (int(v) for v in EXTRACTOR_INPUT["input_size"])
    example = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (4, 1, h, w)).astype(np.float32))
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(tmp), input_names=["input"],
                          output_names=["features"],
                          dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    proto = onnx.load(str(tmp))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "features", json.dumps(FEATURES)
    proto.producer_name = "semtriage core.training"
    onnx.checker.check_model(proto)
    onnx.save_model(proto, str(tmp), save_as_external_data=False)
    sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": example.numpy()})[0]
    with torch.inference_mode():
        ref = model(example).numpy()
    diff = float(np.abs(got - ref).max())
    if not diff <= 1e-3:
        tmp.unlink()
        raise ModelError(f"ONNX Runtime and torch disagree on the feature extractor: {diff:.2e}")
    tmp.replace(out)
    return out


def fit_model_familiarity(
    x_train: np.ndarray,
    *,
    x_holdout: np.ndarray | None = None,
    holdout_logits: np.ndarray | None = None,
    pixel_sizes: Sequence[float | None] | None = None,
    instruments: Sequence[str | None] | None = None,
    fitted_on: str = "",
) -> dict[str, Any]:
    """The card's ``familiarity`` block from a model's prepared training inputs (N, 1, 128, 128)
    through the shipped extractor; the limit from ``x_holdout`` when given (else cross-fitted),
    the energy limit from the model's raw ``holdout_logits`` when given."""
    ext = feature_extractor()
    fam = fit_familiarity(ext.features(x_train),
                          holdout=None if x_holdout is None else ext.features(x_holdout),
                          pixel_sizes=pixel_sizes, instruments=instruments,
                          extractor_sha256=sha256_file(ext.path), fitted_on=fitted_on)
    if holdout_logits is not None and len(holdout_logits):
        set_energy_limit(fam, holdout_logits)
    return fam.to_json()
