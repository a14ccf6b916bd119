"""The archive at a glance: a 2-D map of the embeddings with outliers marked, and the
near-duplicate clusters.

*Map*: t-SNE (scikit-learn, PCA initialisation, fixed seed) of a random sample of up to
:data:`MAP_SAMPLE` embedded images — a map of a million points would be unreadable and take an
hour; a sample of a few thousand shows the structure in well under a minute. Each point also
gets its *local outlier factor* (scikit-learn's ``LocalOutlierFactor`` on the embeddings, not on
the 2-D positions): an image much less densely surrounded than its neighbours are is marked an
outlier (:func:`outlier_limit`).

*Near-copies*: images whose thumbnails' difference hashes are at most a few bits apart
(:func:`core.datasets.image_groups`, the grouping that keeps copies out of held-out splits),
as clusters of two or more, largest first.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlite_utils import Database

from core.datasets import image_groups
from core.errors import Cancelled, InvalidValue, NotFound
from core.progress import Progress
from core.similarity.embed import MIN_IMAGES, active_space, vectors
from core.store import now_iso, write_tx

MAP_SAMPLE = 3000
MAX_MAP_SAMPLE = 20_000
COLOUR_BY = ("label", "prediction", "queue", "reviewer")


def outlier_limit(lof: np.ndarray) -> float:
    """The local outlier factor above which a point counts as an outlier: far out on the
    upper side of the factors' own spread (third quartile + 3 interquartile ranges), and at
    least 2 (twice as isolated as its neighbours are). scikit-learn's default of 1.5 marked
    one image in twenty of a real-like archive: too many to look at."""
    q1, q3 = np.percentile(lof, [25, 75])
    return float(max(2.0, q3 + 3 * (q3 - q1)))


@dataclass
class MapReport:
    points: int
    outliers: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_map(db: Database, *, sample: int = MAP_SAMPLE, seed: int = 0, progress: Progress | None = None,
              cancel: threading.Event | None = None) -> MapReport:
    """Lay out a random sample of the embedded images in 2-D and mark the outliers; replaces
    the previous map."""
    from sklearn.manifold import TSNE  # heavy: only when a map is built
    from sklearn.neighbors import LocalOutlierFactor

    if not MIN_IMAGES <= int(sample) <= MAX_MAP_SAMPLE:
        raise InvalidValue(f"The map sample must be between {MIN_IMAGES} and {MAX_MAP_SAMPLE:,} images, "
                           f"got {sample!r}")
    t0 = time.perf_counter()
    space = active_space(db)
    if space is None:
        raise NotFound("No embeddings yet: run `semtriage similar build` first")
    ids, vecs = vectors(db, space)
    if len(ids) < MIN_IMAGES:
        raise InvalidValue(f"At least {MIN_IMAGES} embedded images are needed for a map, found {len(ids)}")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(ids), size=min(int(sample), len(ids)), replace=False))
    ids, vecs = ids[pick], vecs[pick].astype(np.float64)
    if progress is not None:
        progress(0.1, f"laying out {len(ids):,} images (t-SNE)")
    n = len(ids)
    xy = TSNE(n_components=2, init="pca", perplexity=float(min(30.0, max(1.0, (n - 1) / 3))),
              random_state=seed, metric="cosine").fit_transform(vecs)
    if cancel is not None and cancel.is_set():
        raise Cancelled("Map build stopped; the previous map is kept")
    if progress is not None:
        progress(0.85, "marking outliers (local outlier factor)")
    # neighbourhoods smaller than a typical cluster (a specimen), else every point looks alike
    lof = LocalOutlierFactor(n_neighbors=max(1, min(20, n - 1, max(5, n // 10))), metric="cosine")
    lof.fit(vecs)
    scores = -lof.negative_outlier_factor_
    flags = scores > outlier_limit(scores)
    stamp = now_iso()
    rows = [(int(i), space.id, float(x), float(y), float(s), int(f), stamp)
            for i, (x, y), s, f in zip(ids.tolist(), xy, scores, flags)]
    with write_tx(db, "saving the similarity map"):
        db.execute("DELETE FROM similarity_map")
        db.conn.executemany("INSERT INTO similarity_map (image_id, space, x, y, lof, outlier, built_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    if progress is not None:
        progress(1.0, f"map of {n:,} images, {int(flags.sum())} outliers")
    return MapReport(n, int(flags.sum()), round(time.perf_counter() - t0, 2))


def map_points(db: Database, model_id: int | None = None) -> pd.DataFrame:
    """The map's points with what they can be coloured by: the current label ('unlabelled'),
    the prediction and queue of model ``model_id``, and the reviewer of the current label
    (empty when the map was built in an older space)."""
    space = active_space(db)
    cols = ["image_id", "name", "x", "y", "lof", "outlier", "label", "prediction", "queue", "reviewer"]
    if space is None:
        return pd.DataFrame(columns=cols)
    df = pd.read_sql_query(
        "SELECT m.image_id, i.name, m.x, m.y, m.lof, m.outlier, "
        "COALESCE(c.label, 'unlabelled') AS label, COALESCE(p.pred, 'not predicted') AS prediction, "
        "COALESCE(CASE WHEN c.image_id IS NOT NULL THEN 'labelled' ELSE p.queue END, 'not predicted') AS queue, "
        "COALESCE(c.reviewer, '') AS reviewer "
        "FROM similarity_map m JOIN images i ON i.id = m.image_id "
        "LEFT JOIN current_labels c ON c.image_id = m.image_id "
        "LEFT JOIN predictions p ON p.image_id = m.image_id AND p.model_id = ? "
        "WHERE m.space = ? ORDER BY m.image_id",
        db.conn, params=[model_id if model_id is not None else -1, space.id])
    df["outlier"] = df["outlier"].astype(bool)
    return df[cols]


def near_copy_clusters(db: Database, *, max_distance: int = 6, min_size: int = 2, limit: int = 200
                       ) -> list[list[int]]:
    """Clusters of near-identical images (difference hashes at most ``max_distance`` bits
    apart), largest first, each as image ids in id order; at most ``limit`` clusters."""
    if min_size < 2:
        raise InvalidValue(f"A cluster has at least 2 images; min_size {min_size!r} is too small")
    ids = [r[0] for r in db.execute("SELECT id FROM images ORDER BY id")]
    groups = image_groups(db, ids, use_folder=False, max_distance=max_distance)
    members: dict[str, list[int]] = defaultdict(list)
    for i, g in groups.items():
        members[g].append(i)
    out = [sorted(m) for m in members.values() if len(m) >= min_size]
    out.sort(key=lambda m: (-len(m), m[0]))
    return out[:limit]
