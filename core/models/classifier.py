"""Any ONNX image classifier: metadata, validation at load, calibrated batches.

What a model needs to tell us (class names, input size, channels, normalisation, output kind,
temperature, version) comes from its ``metadata_props`` or a sidecar JSON ``<model>.json``
(the sidecar wins; read by :class:`~core.models.session.OnnxSession`); see
docs/ARCHITECTURE.md and the README. A model that does not fit raises
:class:`~core.errors.ModelError` at load, before anything is written anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelError
from core.images.preprocess import prepare
from core.models.calibration import softmax
from core.models.familiarity import FamiliarityCheck, load_familiarity
from core.models.session import OnnxSession

METADATA_KEYS = {
    "class_names": "JSON list of class names, one per output; required",
    "input_size": "JSON [height, width]; default: the input's static shape",
    "channels": "1 or 3; default: the input's static shape",
    "mean": "JSON list (1 or C values) subtracted after windowing to [0,1]; default [0.5]",
    "std": "JSON list (1 or C values) divided by; default [0.25]",
    "output": "'logits' or 'probabilities'; default: detected from the values",
    "temperature": "calibration temperature T > 0, p = softmax(logits / T); default 1",
    "version": "model version name; default: file name + hash prefix",
    "training_data": "JSON summary of the training data (shown, not used)",
}


@dataclass
class ModelInfo:
    class_names: list[str]
    input_size: tuple[int, int]
    channels: int
    mean: list[float] = field(default_factory=lambda: [0.5])
    std: list[float] = field(default_factory=lambda: [0.25])
    output: str = "auto"  # logits | probabilities | auto
    temperature: float = 1.0
    version: str | None = None
    training_data: Any = None
    input_name: str = ""
    batch_fixed: int | None = None  # set when the model's batch axis is static

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d


class Classifier(OnnxSession):
    """An image classifier: a validated ONNX Runtime session plus everything needed to feed it.

    Thread-safe for concurrent :meth:`predict` calls (ONNX Runtime sessions are), so one
    instance can be shared across Streamlit sessions.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        threads: int | None = None,
    ):
        super().__init__(path, providers=providers, metadata=metadata, threads=threads)
        self.info = self._validate(self.metadata)
        # the unfamiliarity check from the card (None for a model without statistics; the
        # note says why); a broken familiarity block fails the load like bad metadata
        self.familiarity: FamiliarityCheck | None
        self.familiarity, self.familiarity_note = load_familiarity(self.path, self.info.to_json())

    # ------------------------------------------------------------ validation

    def _validate(self, meta: dict[str, Any]) -> ModelInfo:
        try:
            return self._validate_fields(meta)
        except ModelError:
            raise
        except (TypeError, ValueError, KeyError, IndexError, OverflowError, AttributeError) as e:
            raise ModelError(
                f"Model {str(self.path)!r}: metadata does not make sense ({type(e).__name__}: {e}); "
                f"check the keys {sorted(METADATA_KEYS)}"
            ) from None

    def _validate_fields(self, meta: dict[str, Any]) -> ModelInfo:
        where = str(self.path)
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1:
            raise ModelError(
                f"Model {where!r} has {len(inputs)} inputs {[i.name for i in inputs]}; "
                "an image classifier takes exactly one image tensor"
            )
        inp = inputs[0]
        if "float" not in inp.type:
            raise ModelError(f"Model {where!r}: input {inp.name!r} is {inp.type}, expected a float tensor")
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ModelError(
                f"Model {where!r}: input {inp.name!r} has shape {shape} (rank {len(shape)}); "
                "expected rank 4 [batch, channels, height, width]"
            )
        batch, c, h, w = shape

        def static(v: Any) -> int | None:
            return v if isinstance(v, int) and v > 0 else None

        names = meta.get("class_names")
        if not names:
            raise ModelError(
                f"Model {where!r} has no class names: add metadata_props 'class_names' "
                f"(JSON list) or a sidecar {self.path.with_suffix('.json').name!r} "
                '{"class_names": [...]}'
            )
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise ModelError(f"Model {where!r}: class_names must be a list of non-empty strings, got {names!r}")
        if len(set(names)) != len(names):
            raise ModelError(f"Model {where!r}: class_names has duplicates: {names!r}")
        channels = int(meta.get("channels") or static(c) or 1)
        if static(c) and static(c) != channels:
            raise ModelError(f"Model {where!r}: metadata says {channels} channels, input has {c}")
        if channels not in (1, 3):
            raise ModelError(f"Model {where!r}: {channels} input channels; expected 1 or 3")
        size = meta.get("input_size")
        if size is None:
            if not (static(h) and static(w)):
                raise ModelError(
                    f"Model {where!r}: input height/width are dynamic ({h}, {w}) and no "
                    "'input_size' metadata says what to feed"
                )
            size = [h, w]
        try:
            hh, ww = (int(size[0]), int(size[1]))
        except (TypeError, ValueError, IndexError):
            raise ModelError(f"Model {where!r}: input_size {size!r} is not [height, width]") from None
        if (static(h) and static(h) != hh) or (static(w) and static(w) != ww):
            raise ModelError(f"Model {where!r}: input_size {size!r} does not match the input shape {shape}")
        if not (8 <= hh <= 4096 and 8 <= ww <= 4096):
            raise ModelError(f"Model {where!r}: input_size {size!r} is out of range 8–4096")
        out_kind = str(meta.get("output", "auto")).lower()
        if out_kind not in ("logits", "probabilities", "auto"):
            raise ModelError(f"Model {where!r}: output {out_kind!r}; expected logits or probabilities")
        try:
            temperature = float(meta.get("temperature", 1.0))
        except (TypeError, ValueError):
            raise ModelError(f"Model {where!r}: temperature {meta.get('temperature')!r} is not a number") from None
        if not (temperature > 0 and np.isfinite(temperature)):
            raise ModelError(f"Model {where!r}: temperature must be > 0, got {temperature!r}")
        mean = meta.get("mean", [0.5])
        std = meta.get("std", [0.25])
        mean = [float(v) for v in (mean if isinstance(mean, list) else [mean])]
        std = [float(v) for v in (std if isinstance(std, list) else [std])]
        if (
            not all(np.isfinite(v) and abs(v) < 1e6 for v in mean + std)
            or any(abs(np.float32(s)) < 1e-6 for s in std)
            or len(mean) not in (1, channels)
            or len(std) not in (1, channels)
        ):
            raise ModelError(f"Model {where!r}: mean {mean!r} / std {std!r} do not fit {channels} channels")
        info = ModelInfo(
            class_names=list(names),
            input_size=(hh, ww),
            channels=channels,
            mean=mean,
            std=std,
            output=out_kind,
            temperature=temperature,
            version=str(meta["version"]) if meta.get("version") else None,
            training_data=meta.get("training_data"),
            input_name=inp.name,
            batch_fixed=static(batch),
        )
        out = outputs[0]
        oshape = list(out.shape)
        if len(oshape) != 2:
            raise ModelError(
                f"Model {where!r}: output {out.name!r} has shape {oshape}; expected [batch, classes]"
            )
        if static(oshape[1]) and oshape[1] != len(names):
            raise ModelError(
                f"Model {where!r} has {oshape[1]} outputs but {len(names)} class names {names!r}"
            )
        self.info = info
        # one real run: catches models that only fail at run time and dynamic output sizes
        n = info.batch_fixed or 2
        probe = np.zeros((n, channels, hh, ww), dtype=np.float32)
        try:
            raw = self.session.run(None, {inp.name: probe})[0]
        except Exception as e:  # noqa: BLE001
            raise ModelError(f"Model {where!r} failed on a test batch of shape {probe.shape}: {e}") from None
        if raw.shape != (n, len(names)):
            raise ModelError(
                f"Model {where!r} returned shape {tuple(raw.shape)} for a batch of {n}; "
                f"expected ({n}, {len(names)}) for class names {names!r}"
            )
        return info

    # ------------------------------------------------------------ inference

    @property
    def class_names(self) -> list[str]:
        return self.info.class_names

    @property
    def version(self) -> str | None:
        return self.info.version

    def prepare(self, scan: np.ndarray) -> np.ndarray:
        """A 2-D [0,1] scan (data bar cropped) → one (C, H, W) input."""
        i = self.info
        return prepare(scan, i.input_size, i.channels, i.mean, i.std)

    def _output_kind(self, raw: np.ndarray) -> str:
        kind = self.info.output
        if kind == "auto":
            sums = raw.sum(axis=1)
            kind = (
                "probabilities"
                if (raw >= -1e-6).all() and np.allclose(sums, 1.0, atol=1e-3)
                else "logits"
            )
        return kind

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Raw model outputs → temperature-scaled probabilities (rows sum to 1)."""
        raw = np.asarray(raw, dtype=np.float64)
        kind = self._output_kind(raw)
        z = np.log(np.clip(raw, 1e-12, 1.0)) if kind == "probabilities" else raw
        return softmax(z, self.info.temperature).astype(np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) prepared inputs → (N, K) calibrated probabilities."""
        return self.assess(batch, familiarity=False)[0]

    def assess(self, batch: np.ndarray, *, familiarity: bool = True
               ) -> tuple[np.ndarray, np.ndarray | None]:
        """(N, C, H, W) prepared inputs → (N, K) calibrated probabilities and (N,)
        unfamiliarity scores (≥ 1: unlike the training images; None when the model has no
        familiarity statistics, :attr:`familiarity_note` says why)."""
        if batch.ndim != 4:
            raise ModelError(f"Expected a 4-D batch, got shape {batch.shape}")
        if len(batch) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32), None
        raw = self.run_batches(batch, input_name=self.info.input_name)
        probs = self.calibrate(raw)
        blank = self.blank_rows(batch)
        if blank.any():
            probs[blank] = 1.0 / probs.shape[1]
        scores = None
        if familiarity and self.familiarity is not None:
            logits = raw if self._output_kind(raw) == "logits" else None
            scores = self.familiarity.scores(batch, logits)
        return probs, scores

    def unfamiliar_reason(self, score: float | None, *, pixel_size_m: float | None = None,
                          instrument: str | None = None) -> str | None:
        """Why one image counts as unfamiliar to this model, or None (see
        :meth:`core.models.Familiarity.reason`)."""
        if self.familiarity is None:
            return None
        return self.familiarity.reason(score, pixel_size_m=pixel_size_m, instrument=instrument)

    def blank_rows(self, batch: np.ndarray) -> np.ndarray:
        """Which prepared inputs carry no image: less than one grey level (1/255 of the
        scan's range) of variation, e.g. a scan taken with the beam blanked. A model says
        something about any input; on these it would be a confident guess about nothing, so
        :meth:`run` gives them a uniform distribution (they land in the *uncertain* queue)."""
        x = np.asarray(batch, dtype=np.float32).reshape(len(batch), len(self.info.std), -1)
        spread = x.std(axis=2) * np.asarray(self.info.std, np.float32)  # in scan units
        return np.asarray((spread < 1.0 / 255).all(axis=1))

    def predict(self, scans: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Scans (2-D [0,1], bar cropped) → (N, K) probabilities, in batches."""
        out = [self.run(np.stack([self.prepare(s) for s in chunk])) for chunk in _chunks(scans, batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.class_names)), np.float32)


def _chunks(seq: Sequence[np.ndarray], n: int) -> Iterator[Sequence[np.ndarray]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def entropy(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)
