"""The ONNX Runtime session base every model builds on: providers checked (a silent CUDA → CPU
fallback reported), metadata and sidecar read, inputs read from the session, batched runs —
through a small subclass, as a particle segmenter or fibre estimator will be written."""

import json

import numpy as np
import pytest

from core.errors import ModelError, ProviderError
from core.models import MAX_RUN_BATCH, Classifier, OnnxSession, available_providers
from tests.helpers import build_tiny_model


class MeanBrightness(OnnxSession):
    """A task of its own: the tiny model's raw logits, validated from its metadata."""

    def __init__(self, path, **kw):
        super().__init__(path, **kw)
        if "class_names" not in self.metadata:
            raise ModelError(f"{self.path}: no class_names")
        self.classes = self.metadata["class_names"]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.run_batches(batch)


def test_a_subclass_gets_metadata_inputs_and_batched_runs(tmp_path):
    path = build_tiny_model(tmp_path / "m.onnx", ("a", "b", "c"), batch=4)
    s = MeanBrightness(path)
    assert s.classes == ["a", "b", "c"]  # JSON-decoded from metadata_props
    assert s.input_name == "image" and s.inputs[0].shape == [4, 1, 32, 32]
    assert s.batch_fixed == 4 and s.outputs[0].name == "out"
    x = np.random.default_rng(0).uniform(-2, 2, (MAX_RUN_BATCH * 2 + 3, 1, 32, 32)).astype(np.float32)
    got = s.logits(x)  # chunks of the static batch, the last one padded
    assert got.shape == (len(x), 3)
    ref = MeanBrightness(build_tiny_model(tmp_path / "dyn.onnx", ("a", "b", "c"))).logits(x)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_the_sidecar_wins_and_extra_metadata_is_added(tmp_path):
    path = build_tiny_model(tmp_path / "m.onnx", ("a", "b", "c"))
    path.with_suffix(".json").write_text(json.dumps({"class_names": ["x", "y", "z"], "tile": 512}))
    s = MeanBrightness(path, metadata={"extra": [1, 2]})
    assert s.classes == ["x", "y", "z"] and s.metadata["tile"] == 512 and s.metadata["extra"] == [1, 2]
    with pytest.raises(ModelError, match="does not exist"):
        MeanBrightness(tmp_path / "missing.onnx")


def test_unavailable_provider_is_reported(tiny_model):
    assert "CPUExecutionProvider" in available_providers()
    with pytest.raises(ProviderError, match="not available"):
        Classifier(tiny_model(), providers=["NoSuchExecutionProvider"])
    c = Classifier(tiny_model(), providers=["CPUExecutionProvider"])
    assert c.provider == "CPUExecutionProvider"



def test_cuda_fallback_is_reported_not_hidden(tiny_model, monkeypatch):
    """No GPU here: pretend onnxruntime-gpu offers CUDA (the edge we cannot run) and check that
    the provider that really runs is reported, and that an explicit CUDA request that falls back
    is an error rather than a silent CPU run."""
    import onnxruntime as ort

    real = ort.get_available_providers()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", *real])
    from core.models import default_providers

    assert default_providers()[0] == "CUDAExecutionProvider"
    c = Classifier(tiny_model())
    assert c.provider == "CPUExecutionProvider"
    with pytest.raises(ProviderError, match="fell back to CPUExecutionProvider"):
        Classifier(tiny_model(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(ProviderError, match="fell back to CPUExecutionProvider"):
        MeanBrightness(tiny_model(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
