"""What a worker runs: :class:`ArchivePredictor`, a callable class over batches of the work
list (a dict of column arrays, Ray Data's ``numpy`` batch format) that reads, hashes and
predicts each file with :func:`core.intake.predict_files` — the same code as `semtriage
predict` — and answers every row: the probabilities or why the file could not be read.

Under Ray Data it becomes an actor pool (``map_batches(ArchivePredictor, concurrency=N)``),
each actor holding one ONNX Runtime session, on the CPU or, with ``gpu``, on CUDA; the local
engine calls the same object in one process. It never opens a database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelError
from core.files import sha256_file
from core.intake import predict_files
from core.models import CPU, CUDA, Classifier


class ArchivePredictor:
    """One model session and the reading threads of one worker.

    ``model_path`` is the work folder's copy of the model, refused unless its SHA-256 is
    ``model_sha256`` (the registered file's). ``gpu``: run on CUDA or fail (``ProviderError``),
    never fall back to the CPU silently; otherwise the CPU. ``threads``: files read at once;
    ``onnx_threads``: ONNX Runtime intra-op threads (None: its default)."""

    def __init__(
        self,
        model_path: str,
        model_sha256: str,
        *,
        gpu: bool = False,
        threads: int = 2,
        onnx_threads: int | None = None,
        batch_size: int = 32,
        max_pixels: int = 200_000_000,
    ):
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"Worker cannot see the model {str(path)!r}: is the work folder on "
                             "storage every node mounts at the same path?")
        if sha256_file(path) != model_sha256:
            raise ModelError(f"{str(path)!r} is not the model this run was planned with (SHA-256 differs)")
        self.classifier = Classifier(path, providers=[CUDA, CPU] if gpu else [CPU],
                                     threads=onnx_threads)
        self.threads = threads
        self.batch_size = batch_size
        self.max_pixels = max_pixels

    @property
    def provider(self) -> str:
        return self.classifier.provider

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        paths = [str(p) for p in batch["path"]]
        n = len(paths)
        k = len(self.classifier.class_names)
        probs = np.full((n, k), np.nan, np.float32)
        shas = np.full(n, "", dtype=object)
        errors = np.full(n, "", dtype=object)
        ood = np.full(n, np.nan, np.float32)
        why = np.full(n, "", dtype=object)
        answers = predict_files(paths, self.classifier, max_pixels=self.max_pixels,
                                batch_size=self.batch_size, workers=self.threads, hash_files=True)
        for i, a in enumerate(answers):  # one answer per path, in order
            if a.probs is None:
                errors[i] = a.error or "unreadable"
            else:
                probs[i] = a.probs
                shas[i] = a.sha256 or ""
                ood[i] = np.nan if a.ood is None else a.ood
                why[i] = a.unfamiliar or ""
        return {
            "shard": np.asarray(batch["shard"]), "row": np.asarray(batch["row"]),
            "image_id": np.asarray(batch["image_id"]), "path": np.asarray(paths, dtype=object),
            "sha256": shas, "probs": probs, "error": errors,
            "provider": np.full(n, self.provider, dtype=object), "ood": ood, "unfamiliar": why,
        }
