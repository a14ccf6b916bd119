"""One embedding per image: the texture features of its stored thumbnail, projected onto the
archive's principal components and L2-normalised (so a dot product is a cosine similarity).

Why these vectors: the 136 fixed texture features (``data/models/texture-features.onnx``, the
same ones the familiarity check uses) do not depend on any trained classifier, so the map and
the neighbours stay put when the model is retrained, and they work on images of classes the
model has never seen. Measured on the 59 labelled real micrographs of ``real-sem`` (the nearest
other image has the same category, leave-one-out): 83 % for 32 centred principal components
with cosine similarity, 73 % for z-scored features, 47 % for whitened components (whitening
lifts the noise directions).

The projection (*space*) is fitted once per database on a random sample of up to
:data:`FIT_SAMPLE` thumbnails and kept (``similarity_spaces``); images added later are embedded
in the same space, so their vectors stay comparable. ``refit=True`` fits a new space and
re-embeds every image. Embedding works in short batches, each its own transaction: a run that
is stopped keeps what it wrote, and the next run goes on with the images still missing.

    report = embed_archive(db, progress=print_progress)
    space = active_space(db)
    vecs = space.project(features)                       # (N, dims) float32, unit length
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from sqlite_utils import Database

from core.access import User, require_admin
from core.errors import Cancelled, InvalidValue, StoreError
from core.files import sha256_file
from core.images.preprocess import prepare
from core.models.familiarity import EXTRACTOR_INPUT, FEATURES, feature_extractor
from core.progress import Progress
from core.similarity import schema
from core.store import migrate, now_iso, write_tx

DIMS = 32  # principal components kept (real-sem: 32 as good as all 136, 8 clearly worse)
FIT_SAMPLE = 20_000  # thumbnails the projection is fitted on (a random sample)
MIN_IMAGES = 3  # fewer images with thumbnails: nothing to compare
BATCH = 256  # thumbnails per batch (one extractor call, one short write transaction)

_ = schema  # the tables' migration set is registered on import


@dataclass(frozen=True)
class Space:
    """A projection: ``(features - mean) @ components.T``, then unit length."""

    id: str
    features: str
    extractor_sha256: str
    mean: np.ndarray  # (F,)
    components: np.ndarray  # (dims, F)
    fitted_on: int
    created_at: str

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    def project(self, feats: np.ndarray) -> np.ndarray:
        """(N, F) texture features → (N, dims) float32 unit vectors (a zero vector stays zero)."""
        p = (np.asarray(feats, np.float64) - self.mean) @ self.components.T
        norm = np.linalg.norm(p, axis=1, keepdims=True)
        return (p / np.where(norm > 0, norm, 1.0)).astype(np.float32)

    def projection_json(self) -> str:
        return json.dumps({"mean": _b64(self.mean), "components": _b64(self.components),
                           "shape": list(self.components.shape)})

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Space:
        try:
            d = json.loads(row["projection"])
            shape = tuple(int(v) for v in d["shape"])
            mean = _unb64(d["mean"], (shape[1],))
            comps = _unb64(d["components"], shape)
        except (ValueError, KeyError, TypeError) as e:
            raise StoreError(f"The similarity space {row.get('id')!r} is damaged ({e}); "
                             "rebuild it with `semtriage similar build --refit`") from None
        return cls(row["id"], row["features"], row["extractor_sha256"], mean, comps,
                   int(row["fitted_on"]), row["created_at"])


@dataclass
class EmbedReport:
    space: str
    dims: int
    images: int  # images in the database
    embedded: int  # embedded in this run
    without_thumbnail: int  # in this run: no readable thumbnail (not tried again)
    total: int  # images with a vector in the active space now
    refitted: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, "<f8").tobytes()).decode("ascii")


def _unb64(s: str, shape: tuple[int, ...]) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(s, validate=True), "<f8")
    return a.reshape(shape).copy()


# ---------------------------------------------------------------- features of thumbnails


def thumbnail_input(blob: bytes | None) -> np.ndarray | None:
    """A stored thumbnail (JPEG bytes) → the extractor's (1, 128, 128) input, or None when it
    is missing or cannot be decoded."""
    if not blob:
        return None
    try:
        with Image.open(io.BytesIO(blob)) as im:
            grey = np.asarray(im.convert("L"), np.float32) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    if grey.ndim != 2 or min(grey.shape) < 2:
        return None
    spec = EXTRACTOR_INPUT
    return prepare(grey, spec["input_size"], spec["channels"], spec["mean"], spec["std"])


def thumbnail_features(blobs: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """Texture features (N_ok, F) of the thumbnails that decode, and the mask (N,) of which did."""
    inputs = [thumbnail_input(b) for b in blobs]
    ok = np.array([x is not None for x in inputs], bool)
    if not ok.any():
        return np.zeros((0, 0)), ok
    batch = np.stack([x for x in inputs if x is not None])
    return feature_extractor().features(batch), ok


# ---------------------------------------------------------------- spaces


def fit_space(feats: np.ndarray, *, dims: int = DIMS) -> Space:
    """The projection onto the top ``dims`` principal components of ``feats`` (N, F), centred
    (not scaled: the features are already on comparable, log-like scales)."""
    f = np.asarray(feats, np.float64)
    if f.ndim != 2 or len(f) < MIN_IMAGES:
        raise InvalidValue(f"At least {MIN_IMAGES} images with thumbnails are needed to build "
                           f"the similarity view, got {len(f)}")
    mean = f.mean(axis=0)
    _, _, vt = np.linalg.svd(f - mean, full_matrices=False)
    comps = vt[: max(1, min(dims, len(f) - 1, f.shape[1]))]
    # a principal axis has no sign: fix it so that a refit on the same data is the same space
    comps = comps * np.where(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)] < 0, -1, 1)[:, None]
    ext = feature_extractor()
    h = hashlib.sha256(np.ascontiguousarray(mean).tobytes() + np.ascontiguousarray(comps).tobytes())
    return Space(f"{FEATURES}-{h.hexdigest()[:12]}", FEATURES, sha256_file(ext.path), mean, comps,
                 len(f), now_iso())


def active_space(db: Database) -> Space | None:
    """The space embeddings are made in now, or None before the first build."""
    migrate(db)
    rows = list(db.query("SELECT * FROM similarity_spaces WHERE active = 1 LIMIT 1"))
    return Space.from_row(rows[0]) if rows else None


def _save_space(db: Database, space: Space) -> None:
    with write_tx(db, "saving the similarity space"):
        db.execute("UPDATE similarity_spaces SET active = 0 WHERE active = 1")
        db.execute(
            "INSERT INTO similarity_spaces (id, features, extractor_sha256, dims, fitted_on, projection, "
            "active, created_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(id) DO UPDATE SET active = 1",
            [space.id, space.features, space.extractor_sha256, space.dims, space.fitted_on,
             space.projection_json(), space.created_at])


def _thumbs(db: Database, ids: Sequence[int]) -> list[tuple[int, bytes | None]]:
    marks = ",".join("?" * len(ids))
    found = dict(db.execute(f"SELECT id, thumb FROM images WHERE id IN ({marks})", list(ids)).fetchall())
    return [(i, found.get(i)) for i in ids if i in found]


def _store(db: Database, space: Space, ids: Sequence[int], vecs: np.ndarray, ok: np.ndarray) -> None:
    rows, k = [], 0
    for i, good in zip(ids, ok.tolist()):
        if good:
            rows.append((i, space.id, vecs[k].astype("<f2").tobytes()))
            k += 1
        else:
            rows.append((i, space.id, None))
    with write_tx(db, "storing embeddings", bulk=True):
        db.conn.executemany(
            "INSERT INTO embeddings (image_id, space, vec) VALUES (?, ?, ?) "
            "ON CONFLICT(image_id) DO UPDATE SET space = excluded.space, vec = excluded.vec", rows)


def _embed_batch(db: Database, space: Space, ids: Sequence[int]) -> tuple[int, int]:
    pairs = _thumbs(db, ids)
    if not pairs:
        return 0, 0
    feats, ok = thumbnail_features([b for _, b in pairs])
    vecs = space.project(feats) if ok.any() else np.zeros((0, space.dims), np.float32)
    _store(db, space, [i for i, _ in pairs], vecs, ok)
    return int(ok.sum()), int((~ok).sum())


def _fit_new_space(db: Database, all_ids: np.ndarray, seed: int, progress: Progress | None,
                   cancel: threading.Event | None) -> tuple[Space, list[int], np.ndarray]:
    """Fit a space on a random sample; return it with the ids and features of the sample's
    images that have a readable thumbnail (neither stored yet)."""
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(all_ids, size=min(FIT_SAMPLE, len(all_ids)), replace=False)).tolist()
    feats: list[np.ndarray] = []
    kept: list[int] = []
    for start in range(0, len(sample), BATCH):
        _check(cancel)
        pairs = _thumbs(db, sample[start:start + BATCH])
        f, ok = thumbnail_features([b for _, b in pairs])
        if ok.any():
            feats.append(f)
            kept += [i for (i, _), good in zip(pairs, ok.tolist()) if good]
        if progress is not None:
            done = min(start + BATCH, len(sample))
            progress(0.3 * done / len(sample), f"fitting the similarity space: {done:,}/{len(sample):,} thumbnails")
    if len(kept) < MIN_IMAGES:
        raise InvalidValue(f"At least {MIN_IMAGES} images with readable thumbnails are needed to "
                           f"build the similarity view, found {len(kept)}")
    return fit_space(np.concatenate(feats)), kept, np.concatenate(feats)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("Similarity build stopped; run it again to go on where it stopped")


def embed_archive(db: Database, *, refit: bool = False, seed: int = 0, progress: Progress | None = None,
                  cancel: threading.Event | None = None, by: User | None = None) -> EmbedReport:
    """Embed every image that has no vector in the active space yet (all of them after a
    ``refit`` or the first time, when the space is fitted first). Resumable: each batch is
    committed on its own. A ``refit`` replaces everyone's map and neighbours: administrators
    only (``by``; None = local use)."""
    if refit:
        require_admin(by, "refitting the similarity space")
    t0 = time.perf_counter()
    migrate(db)
    all_ids = np.fromiter((r[0] for r in db.execute("SELECT id FROM images ORDER BY id")), np.int64)
    space = None if refit else active_space(db)
    if space is not None and space.extractor_sha256 != sha256_file(feature_extractor().path):
        space = None  # the extractor changed: its features are not comparable with the old ones
    refitted = space is None
    if space is None:
        if len(all_ids) < MIN_IMAGES:
            raise InvalidValue(f"At least {MIN_IMAGES} images are needed to build the similarity "
                               f"view; the database has {len(all_ids)} (ingest some first)")
        space, kept, feats = _fit_new_space(db, all_ids, seed, progress, cancel)
        _save_space(db, space)
        for start in range(0, len(kept), BATCH):  # the sample's vectors: not computed twice
            part = slice(start, start + BATCH)
            _store(db, space, kept[part], space.project(feats[part]), np.ones(len(kept[part]), bool))
    todo = [r[0] for r in db.execute(
        "SELECT i.id FROM images i LEFT JOIN embeddings e ON e.image_id = i.id "
        "WHERE e.image_id IS NULL OR e.space != ? ORDER BY i.id", [space.id])]
    done, without = (len(kept), 0) if refitted else (0, 0)
    base = 0.3 if refitted else 0.0
    for start in range(0, len(todo), BATCH):
        _check(cancel)
        good, bad = _embed_batch(db, space, todo[start:start + BATCH])
        done, without = done + good, without + bad
        if progress is not None:
            n = min(start + BATCH, len(todo))
            progress(base + (1 - base) * n / len(todo), f"embedding thumbnails: {n:,}/{len(todo):,}")
    total = db.execute("SELECT COUNT(*) FROM embeddings WHERE space = ? AND vec IS NOT NULL",
                       [space.id]).fetchone()[0]
    return EmbedReport(space.id, space.dims, len(all_ids), done, without, int(total), refitted,
                       round(time.perf_counter() - t0, 2))


def embed_new(db: Database, *, progress: Progress | None = None,
              cancel: threading.Event | None = None) -> EmbedReport | None:
    """After an ingest: embed the images added since, in the active space, so that they have
    neighbours at once (the map waits for the next build). None — nothing done — when the
    database has no similarity view yet (building one is a choice: ``semtriage similar build``)
    or its extractor changed (that needs a refit)."""
    space = active_space(db)
    if space is None or space.extractor_sha256 != sha256_file(feature_extractor().path):
        return None
    return embed_archive(db, progress=progress, cancel=cancel)


def vectors(db: Database, space: Space, image_ids: Sequence[int] | None = None, *,
            after: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,), vectors (N, dims) float32) in ``space``, in id order: of every embedded image,
    of those of ``image_ids`` that have a vector, or of those with an id above ``after``."""
    base = "SELECT image_id, vec FROM embeddings WHERE space = ? AND vec IS NOT NULL"
    if image_ids is None:
        extra, args = ("", []) if after is None else (" AND image_id > ?", [int(after)])
        rows = db.execute(base + extra + " ORDER BY image_id", [space.id, *args]).fetchall()
    else:
        rows = []
        ids = sorted({int(i) for i in image_ids})
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            marks = ",".join("?" * len(chunk))
            rows += db.execute(f"{base} AND image_id IN ({marks}) ORDER BY image_id", [space.id, *chunk]).fetchall()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, space.dims), np.float32)
    ids_arr = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    try:
        vecs = np.frombuffer(b"".join(r[1] for r in rows), "<f2").reshape(len(rows), space.dims)
    except ValueError:
        raise StoreError(f"Damaged embeddings in space {space.id!r}; rebuild them with "
                         "`semtriage similar build --refit`") from None
    return ids_arr, vecs.astype(np.float32)
