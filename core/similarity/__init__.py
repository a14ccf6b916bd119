"""Similarity: an embedding per image, its nearest neighbours, near-copy clusters and a 2-D map
of the archive with outliers marked.

Pipeline: :func:`embed_archive` (texture features of the stored thumbnails, projected onto
the archive's principal components; resumable) → :func:`neighbours` (a FAISS index kept beside
the database: exact up to 20,000 images, an inverted file above) → :func:`build_map`
(t-SNE of a sample, local outlier factor) and :func:`near_copy_clusters` (difference hashes).
Its tables are the migration set ``semtriage.similarity`` (:mod:`core.similarity.schema`).

    embed_archive(db)                         # after ingest; again for the images added since
    for image_id, cos in neighbours(db, 42, k=12): ...
    rows = neighbourhood(db, 42, k=24, model_id=active["id"])   # with names, labels, thumbnails
"""

from __future__ import annotations

from core.similarity.atlas import (
    COLOUR_BY,
    MAP_SAMPLE,
    MAX_MAP_SAMPLE,
    MapReport,
    build_map,
    map_points,
    near_copy_clusters,
    outlier_limit,
)
from core.similarity.embed import (
    BATCH,
    DIMS,
    FIT_SAMPLE,
    MIN_IMAGES,
    EmbedReport,
    Space,
    active_space,
    embed_archive,
    embed_new,
    fit_space,
    thumbnail_features,
    thumbnail_input,
    vectors,
)
from core.similarity.index import (
    EXACT_UP_TO,
    MAX_K,
    NPROBE,
    NeighbourIndex,
    build_index,
    current_index,
    forget_index,
    neighbours,
)
from core.similarity.schema import m001_similarity, migrations
from core.similarity.views import describe, neighbourhood, neighbourhood_candidates, status

__all__ = [
    "BATCH",
    "COLOUR_BY",
    "DIMS",
    "EXACT_UP_TO",
    "FIT_SAMPLE",
    "MAP_SAMPLE",
    "MAX_K",
    "MAX_MAP_SAMPLE",
    "MIN_IMAGES",
    "NPROBE",
    "EmbedReport",
    "MapReport",
    "NeighbourIndex",
    "Space",
    "active_space",
    "build_index",
    "build_map",
    "current_index",
    "describe",
    "embed_archive",
    "embed_new",
    "fit_space",
    "forget_index",
    "m001_similarity",
    "map_points",
    "migrations",
    "near_copy_clusters",
    "neighbourhood",
    "neighbourhood_candidates",
    "neighbours",
    "outlier_limit",
    "status",
    "thumbnail_features",
    "thumbnail_input",
    "vectors",
]
