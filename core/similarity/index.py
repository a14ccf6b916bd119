"""Nearest neighbours of an image among every embedded image: a FAISS index, not a scan.

Up to :data:`EXACT_UP_TO` vectors the index is exact (a flat inner-product index: a few
milliseconds). Above, it is an inverted file (``IndexIVFFlat``, k-means cells of the unit
vectors, :data:`NPROBE` cells searched per query), which keeps a query at a million images in
milliseconds; ``bench/similarity.py`` measures its time and recall against the exact answer.

The index is kept beside the database (``<database>-similarity.faiss`` and a ``.json`` stamp
saying which space and which vectors it holds) and loaded once per process. When images were
embedded since, the new ones are added to it; a new space (refit) builds it afresh. The file is
a cache: deleting it costs one rebuild from the ``embeddings`` table.

    hits = neighbours(db, image_id, k=12)     # [(image id, cosine similarity), ...], best first
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.errors import DependencyMissing, InvalidValue, NotFound
from core.similarity.embed import Space, active_space, vectors
from core.store import db_file

EXACT_UP_TO = 20_000  # vectors: below this, an exact flat index
NPROBE = 24  # cells searched per query of the inverted-file index
MAX_K = 500


def _faiss() -> Any:
    try:
        import faiss  # heavy: loaded when the first index is built or read
    except ImportError as e:  # pragma: no cover — faiss-cpu is a dependency
        raise DependencyMissing("The similarity view needs faiss-cpu (`pip install faiss-cpu`)") from e
    return faiss


@dataclass
class NeighbourIndex:
    space: str
    index: Any  # a FAISS index with the image ids as its ids
    n: int
    max_id: int
    kind: str  # 'exact' | 'ivf'

    def search(self, vecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids (m, k), similarities (m, k)) of the ``k`` nearest vectors to each row; missing
        places (fewer than ``k`` vectors) are id -1."""
        q = np.ascontiguousarray(vecs, np.float32).reshape(-1, self.index.d)
        sims, ids = self.index.search(q, k)
        return ids, sims


def _cells(n: int) -> int:
    return int(np.clip(4 * np.sqrt(n), 16, 4096))


def build_index(ids: np.ndarray, vecs: np.ndarray, space: str, *, exact_up_to: int = EXACT_UP_TO,
                seed: int = 0) -> NeighbourIndex:
    """An index of ``vecs`` (N, d) unit vectors under the image ids ``ids``."""
    faiss = _faiss()
    d = vecs.shape[1]
    x = np.ascontiguousarray(vecs, np.float32)
    if len(ids) <= exact_up_to:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
        kind = "exact"
    else:
        cells = _cells(len(ids))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, cells, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = x[rng.choice(len(x), size=min(len(x), cells * 64), replace=False)]
        index.train(train)
        index.nprobe = NPROBE
        kind = "ivf"
    if len(ids):
        index.add_with_ids(x, np.ascontiguousarray(ids, np.int64))
    return NeighbourIndex(space, index, len(ids), int(ids.max()) if len(ids) else 0, kind)


# ---------------------------------------------------------------- kept beside the database


def _paths(db_file: str) -> tuple[Path, Path]:
    return Path(f"{db_file}-similarity.faiss"), Path(f"{db_file}-similarity.json")


def _save(idx: NeighbourIndex, db_file: str) -> None:
    faiss = _faiss()
    data, stamp = _paths(db_file)
    try:
        tmp = data.with_name(data.name + f".{os.getpid()}.tmp")
        faiss.write_index(idx.index, str(tmp))
        os.replace(tmp, data)
        stamp.write_text(json.dumps({"space": idx.space, "n": idx.n, "max_id": idx.max_id,
                                     "kind": idx.kind}))
    except (OSError, RuntimeError):
        pass  # a read-only folder: the index lives in this process only


def _load(db_file: str) -> NeighbourIndex | None:
    data, stamp = _paths(db_file)
    try:
        s = json.loads(stamp.read_text())
        index = _faiss().read_index(str(data))
        idx = NeighbourIndex(str(s["space"]), index, int(s["n"]), int(s["max_id"]), str(s["kind"]))
    except (OSError, RuntimeError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: rebuilt
    if index.ntotal != idx.n:
        return None
    if idx.kind == "ivf":
        index.nprobe = NPROBE
    return idx


_CACHE: dict[str, NeighbourIndex] = {}
_LOCK = threading.Lock()


def _stamp(db: Database, space: Space, idx: NeighbourIndex | None, verify: bool) -> tuple[int, int]:
    """(vectors, largest image id) in ``space``. Images are embedded in id order, so a larger
    id than the index knows is how new vectors show; the count (a scan of the space's index
    entries, ~0.1 s at a million) is taken only when ``verify``-ing or when there are new ones."""
    (top,) = db.execute("SELECT MAX(image_id) FROM embeddings WHERE space = ? AND vec IS NOT NULL",
                        [space.id]).fetchone()
    top = int(top or 0)
    if not verify and idx is not None and idx.space == space.id and idx.max_id == top:
        return idx.n, top
    (n,) = db.execute("SELECT COUNT(*) FROM embeddings WHERE space = ? AND vec IS NOT NULL",
                      [space.id]).fetchone()
    return int(n), top


def current_index(db: Database, space: Space | None = None, *, verify: bool = False) -> NeighbourIndex:
    """The index of every embedded image in the active space: from this process's cache or the
    file beside the database, brought up to date (new images added, or rebuilt). ``verify``:
    also count the vectors (after an embedding run), not only look at the newest id."""
    space = space or active_space(db)
    if space is None:
        raise NotFound("No similarity view yet: build it with `semtriage similar build` "
                       "(or on the Similarity page)")
    path = db_file(db)
    with _LOCK:
        idx = _CACHE.get(path) or (_load(path) if path else None)
        n, top = _stamp(db, space, idx, verify)
        fresh = idx is not None and idx.space == space.id
        if fresh and idx is not None and (idx.n, idx.max_id) == (n, top):
            _CACHE[path] = idx
            return idx
        if fresh and idx is not None and top > idx.max_id:
            new_ids, new_vecs = vectors(db, space, after=idx.max_id)
            if idx.n + len(new_ids) == n and (idx.kind == "ivf" or n <= EXACT_UP_TO):
                idx.index.add_with_ids(np.ascontiguousarray(new_vecs, np.float32), new_ids)
                idx.n, idx.max_id = n, top
                _CACHE[path] = idx
                if path:
                    _save(idx, path)
                return idx
        ids, vecs = vectors(db, space)
        idx = build_index(ids, vecs, space.id)
        _CACHE[path] = idx
        if path:
            _save(idx, path)
        return idx


def forget_index(db: Database) -> None:
    """Drop this process's cached index of ``db`` (after a refit or in tests)."""
    with _LOCK:
        _CACHE.pop(db_file(db), None)


def neighbours(db: Database, image_id: int, k: int = 12) -> list[tuple[int, float]]:
    """The ``k`` images most like ``image_id`` (cosine similarity of their embeddings, best
    first; the image itself left out)."""
    if not 1 <= int(k) <= MAX_K:
        raise InvalidValue(f"k (how many neighbours) must be between 1 and {MAX_K}, got {k!r}")
    space = active_space(db)
    if space is None:
        raise NotFound("No similarity view yet: build it with `semtriage similar build` "
                       "(or on the Similarity page)")
    if db.execute("SELECT 1 FROM images WHERE id = ?", [int(image_id)]).fetchone() is None:
        raise NotFound(f"No image with id {image_id} in the database")
    ids, vecs = vectors(db, space, [int(image_id)])
    if not len(ids):
        raise NotFound(f"Image {image_id} has no embedding yet (no readable thumbnail, or added "
                       "since the last build): run `semtriage similar build`")
    idx = current_index(db, space)
    got, sims = idx.search(vecs, int(k) + 1)
    out = [(int(i), float(s)) for i, s in zip(got[0].tolist(), sims[0].tolist())
           if i >= 0 and i != int(image_id)]
    return out[: int(k)]
