"""What the pages and the CLI show of neighbours: names, thumbnails, labels, predictions; and
the open neighbours Grid confirm can label at once."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from core import review
from core.errors import InvalidValue
from core.similarity.embed import active_space
from core.similarity.index import MAX_K, neighbours


def describe(db: Database, image_ids: list[int], model_id: int | None = None) -> dict[int, dict[str, Any]]:
    """Per image: name, path, thumbnail, current label and reviewer (None: no label), and the
    prediction of model ``model_id`` (class, confidence, second class, queue)."""
    out: dict[int, dict[str, Any]] = {}
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    for start in range(0, len(ids), 900):
        chunk = ids[start:start + 900]
        marks = ",".join("?" * len(chunk))
        for r in db.query(
            "SELECT i.id AS image_id, i.name, i.path, i.thumb, c.label, c.reviewer, c.source, "
            "p.pred, p.p1, p.second, p.queue FROM images i "
            "LEFT JOIN current_labels c ON c.image_id = i.id "
            f"LEFT JOIN predictions p ON p.image_id = i.id AND p.model_id = ? WHERE i.id IN ({marks})",
            [model_id if model_id is not None else -1, *chunk],
        ):
            out[int(r["image_id"])] = r
    return out


def neighbourhood(db: Database, image_id: int, k: int = 12, model_id: int | None = None
                  ) -> list[dict[str, Any]]:
    """:func:`neighbours` of ``image_id`` with what :func:`describe` says of each, best first;
    ``similarity`` is the cosine similarity (1 = the same texture)."""
    hits = neighbours(db, image_id, k)
    info = describe(db, [i for i, _ in hits], model_id)
    return [{**info[i], "similarity": s} for i, s in hits if i in info]


def neighbourhood_candidates(db: Database, image_id: int, model_id: int, reviewer: str, *, limit: int = 24,
                             min_similarity: float = 0.5, now: float | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` images of the neighbourhood of ``image_id`` (the image itself first when it
    qualifies, then the most similar, at least ``min_similarity``) that Grid confirm can label
    now: predicted by model ``model_id``, no human or imported label yet, not on another
    reviewer's screen. Rows as :func:`core.review.grid_candidates` gives them plus
    ``similarity`` (1.0 for the image itself). Labelled neighbours are skipped, so the search
    looks further than ``limit`` (up to :data:`MAX_K` neighbours)."""
    if not -1.0 <= float(min_similarity) <= 1.0:
        raise InvalidValue(f"min_similarity (a cosine similarity) must be between -1 and 1, got {min_similarity!r}")
    hits = [(int(image_id), 1.0)] + [(i, s) for i, s in neighbours(db, image_id, min(MAX_K, 8 * int(limit)))
                                     if s >= float(min_similarity)]
    rows = review.grid_rows(db, model_id, [i for i, _ in hits], reviewer, now=now)
    return [{**rows[i], "similarity": s} for i, s in hits if i in rows][: int(limit)]


def status(db: Database) -> dict[str, Any]:
    """How far the similarity view is built: the active space, images embedded (and without a
    readable thumbnail) of all images, and the map's size, outliers and build time."""
    space = active_space(db)
    (images,) = db.execute("SELECT COUNT(*) FROM images").fetchone()
    out: dict[str, Any] = {"space": None, "images": int(images), "embedded": 0, "without_thumbnail": 0,
                           "map_points": 0, "map_outliers": 0, "map_built_at": None}
    if space is None:
        return out
    emb, none = db.execute("SELECT COUNT(vec), COUNT(*) - COUNT(vec) FROM embeddings WHERE space = ?",
                           [space.id]).fetchone()
    pts, outl, built = db.execute("SELECT COUNT(*), COALESCE(SUM(outlier), 0), MAX(built_at) FROM similarity_map "
                                  "WHERE space = ?", [space.id]).fetchone()
    out.update(space=space.id, dims=space.dims, fitted_on=space.fitted_on, fitted_at=space.created_at,
               embedded=int(emb), without_thumbnail=int(none), map_points=int(pts), map_outliers=int(outl),
               map_built_at=built)
    return out
