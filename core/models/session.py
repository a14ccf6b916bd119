"""One ONNX Runtime session, the base of every model SEM Triage runs.

:class:`OnnxSession` owns what every model needs, in one place (after fastembed's
``OnnxModel``): the execution providers, each checked against what this onnxruntime offers,
with a silent CUDA → CPU fallback reported as :class:`~core.errors.ProviderError`; the session
options (graph optimisation, threads, no busy-waiting); the model's metadata (``metadata_props``
merged with a sidecar JSON ``<model>.json``, the sidecar winning; values JSON-decoded); its
inputs and outputs as the session reports them (names are read, never assumed); and a batched
run in bounded chunks. A task is a subclass that validates ``self.metadata`` against the
session and turns its own inputs and outputs into answers::

    class Segmenter(OnnxSession):
        def __init__(self, path, **kw):
            super().__init__(path, **kw)            # ModelError / ProviderError if it cannot run
            self.tile = int(self.metadata.get("tile_size", 512))
        def masks(self, batch):                     # (N, 1, H, W) float32
            return self.run_batches(batch)          # the first output, chunk by chunk

:class:`core.models.Classifier` is the image classifier built this way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelError, ProviderError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


# Larger batches run in chunks: the activations grow with the batch (the default CNN's first
# layer alone is 0.4 MB an image), so one call on thousands of images would take gigabytes.
MAX_RUN_BATCH = 64


def _parse(key: str, raw: Any, path: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        if key in ("output", "version"):
            return raw
        if key == "class_names":  # tolerate "a,b,c"
            return [c.strip() for c in raw.split(",") if c.strip()]
        raise ModelError(f"Model {path!r}: metadata {key!r} = {raw!r} is not valid JSON") from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The model's own metadata_props merged with its sidecar JSON (sidecar wins)."""
    import onnx

    path = Path(path)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 — any parse failure is a bad model file
        raise ModelError(f"Cannot read ONNX model {str(path)!r}: {type(e).__name__}: {e}") from None
    meta: dict[str, Any] = {p.key: p.value for p in proto.metadata_props}
    for side in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if side.is_file():
            try:
                extra = json.loads(side.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise ModelError(f"Sidecar {str(side)!r} is not valid JSON: {e}") from None
            if not isinstance(extra, dict):
                raise ModelError(f"Sidecar {str(side)!r} must hold a JSON object")
            meta.update(extra)
            break
    return {k: _parse(k, v, str(path)) for k, v in meta.items()}


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def default_providers() -> list[str]:
    """CUDA first when onnxruntime-gpu is installed and offers it, then CPU. Whether CUDA
    really runs is checked after the session is made (see :attr:`Classifier.provider`)."""
    avail = available_providers()
    return [CUDA, CPU] if CUDA in avail else [CPU]


def session_options(threads: int | None = None) -> Any:
    """The ONNX Runtime session options every model gets."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    # no busy-waiting between runs: spinning ONNX Runtime threads take the CPU that the
    # decoding workers of an ingest (or other app sessions) need (bench/ingest_predict.py)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


class OnnxSession:
    """An ONNX Runtime session on the model file at ``path`` (see the module doc).

    ``providers``: execution providers in order of preference; None = CUDA where
    onnxruntime-gpu offers it, else the CPU (:func:`default_providers`); a requested provider
    that is not available, or that ONNX Runtime silently replaced, raises
    :class:`ProviderError`. ``metadata``: keys added to / overriding the model's own.
    ``threads``: intra-op threads (None: ONNX Runtime's default).

    After ``__init__``: ``path``, ``metadata`` (dict), ``session``, ``providers`` (what really
    runs, best first) and ``provider``, ``inputs`` / ``outputs`` (the session's NodeArgs:
    ``name``, ``shape``, ``type``), ``input_name`` (the first input's) and ``batch_fixed`` (its
    static batch size, or None when the batch axis is dynamic). Thread-safe for concurrent
    runs (ONNX Runtime sessions are), so one instance can serve every app session.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        threads: int | None = None,
    ):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"Model file {str(self.path)!r} does not exist")
        meta = read_metadata(self.path)
        if metadata:
            meta.update(metadata)
        self.metadata: dict[str, Any] = meta
        avail = available_providers()
        wanted = list(providers) if providers else default_providers()
        missing = [p for p in wanted if p not in avail]
        if missing:
            raise ProviderError(
                f"Execution provider(s) {missing} not available; this onnxruntime offers {avail}. "
                "Hint: CUDA needs the 'gpu' extra (onnxruntime-gpu) and a visible GPU."
            )
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=session_options(threads),
                                                providers=wanted)
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"ONNX Runtime cannot load {str(self.path)!r}: {e}") from None
        self.providers = list(self.session.get_providers())
        self.provider = self.providers[0]
        if providers and self.provider != wanted[0]:
            raise ProviderError(
                f"Asked for {wanted[0]} but ONNX Runtime fell back to {self.provider} for {str(self.path)!r}"
            )
        self.inputs = list(self.session.get_inputs())
        self.outputs = list(self.session.get_outputs())
        self.input_name = self.inputs[0].name if self.inputs else ""
        batch = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        self.batch_fixed: int | None = batch if isinstance(batch, int) and batch > 0 else None

    def run_batches(self, batch: np.ndarray, *, input_name: str | None = None) -> np.ndarray:
        """The first output for the inputs ``batch`` (N, ...), run in chunks of at most
        :data:`MAX_RUN_BATCH` images, or of the model's static batch size (the last chunk is
        padded with zeros and the padding's answers dropped)."""
        name = input_name or self.input_name
        fixed = self.batch_fixed
        step = fixed or MAX_RUN_BATCH
        out = []
        for i in range(0, len(batch), step):
            x = batch[i : i + step].astype(np.float32, copy=False)
            n = len(x)
            if fixed and n < fixed:
                x = np.concatenate([x, np.zeros((fixed - n, *x.shape[1:]), np.float32)])
            out.append(self.session.run(None, {name: x})[0][:n])
        return np.concatenate(out)
