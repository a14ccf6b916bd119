"""What a worker runs: :class:`ArchivePredictor`, a callable class over batches of the work
list (a dict of column arrays, Ray Data's ``numpy`` batch format) that reads, hashes and
predicts each file with :func:`core.intake.predict_files` — the same code as `semtriage
predict` — and answers every row: the probabilities or why the file could not be read. A file
the database has not stored yet (image id 0) is read as `semtriage ingest` reads it
(``predict_files(..., thumb_px=...)`` over :func:`core.intake.load_file`), and its answer
carries its ``images`` row (JSON) and thumbnail for the merge to store.

Under Ray Data it becomes an actor pool (``map_batches(ArchivePredictor, concurrency=N)``),
each actor holding one ONNX Runtime session, on the CPU or, with ``gpu``, on CUDA; the local
engine calls the same object in one process. It never opens a database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelError
from core.files import sha256_file
from core.intake import image_record, predict_files
from core.models import CPU, CUDA, Classifier


class ArchivePredictor:
    """One model session and the reading threads of one worker.

    ``model_path`` is the work folder's copy of the model, refused unless its SHA-256 is
    ``model_sha256`` (the registered file's). ``gpu``: run on CUDA or fail (``ProviderError``),
    never fall back to the CPU silently; otherwise the CPU. ``threads``: files read at once;
    ``onnx_threads``: ONNX Runtime intra-op threads (None: its default); ``thumb_px``: the
    thumbnails of files not stored yet (the driver's ``SEMTRIAGE_THUMB_PX``)."""

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
        thumb_px: int = 256,
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
        self.thumb_px = thumb_px

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
        images = np.full(n, "", dtype=object)
        thumbs = np.full(n, b"", dtype=object)
        mtimes = np.full(n, np.nan, np.float64)
        ids = np.asarray(batch["image_id"])
        keys = batch.get("group_key")
        stored = [i for i in range(n) if ids[i]]
        new = [i for i in range(n) if not ids[i]]
        for rows, ingesting in ((stored, False), (new, True)):
            if not rows:
                continue
            answers = predict_files([paths[i] for i in rows], self.classifier,
                                    max_pixels=self.max_pixels, batch_size=self.batch_size,
                                    workers=self.threads, hash_files=True,
                                    thumb_px=self.thumb_px if ingesting else None)
            for i, a in zip(rows, answers):  # one answer per path, in order
                shas[i] = a.sha256 or ""
                if a.probs is None:
                    errors[i] = a.error or "unreadable"
                else:
                    probs[i] = a.probs
                    ood[i] = np.nan if a.ood is None else a.ood
                    why[i] = a.unfamiliar or ""
                if a.file is not None:  # read (its output may still be unusable): its image row
                    key = None if keys is None else keys[i]
                    rec = image_record(a.file, None if key is None else str(key))
                    thumbs[i] = rec.pop("thumb") or b""
                    images[i] = json.dumps(rec)
                    mtimes[i] = a.file.mtime
        return {
            "shard": np.asarray(batch["shard"]), "row": np.asarray(batch["row"]),
            "image_id": ids, "path": np.asarray(paths, dtype=object),
            "sha256": shas, "probs": probs, "error": errors,
            "provider": np.full(n, self.provider, dtype=object), "ood": ood, "unfamiliar": why,
            "image": images, "thumb": thumbs, "mtime": mtimes,
        }
