"""The reference set: every image people labelled, searched and filtered in SQL (class,
reviewer, source, dates, file name, where the model disagrees), one page at a time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlite_utils import Database

from core.models import active_model

REFERENCE_PAGE = 100


@dataclass
class RefFilter:
    """Filters of the reference-set search; empty values mean "any"."""

    classes: list[str] = field(default_factory=list)
    reviewer: str | None = None
    sources: list[str] = field(default_factory=list)  # human / auto / import
    date_from: date | None = None
    date_to: date | None = None  # inclusive
    disagree: bool = False  # the active model predicts another class than the label
    text: str = ""  # substring of the file name (case-insensitive)


def _ref_where(f: RefFilter, model_id: int | None) -> tuple[str, list[Any]]:
    """WHERE clause over ``current_labels c`` (and ``images i`` when ``f.text`` is set)."""
    where: list[str] = []
    params: list[Any] = []
    if f.classes:
        where.append(f"c.label IN ({','.join('?' * len(f.classes))})")
        params += list(f.classes)
    if f.reviewer:
        where.append("c.reviewer = ?")
        params.append(f.reviewer)
    if f.sources:
        where.append(f"c.source IN ({','.join('?' * len(f.sources))})")
        params += list(f.sources)
    if f.date_from:
        where.append("c.updated_at >= ?")
        params.append(f.date_from.isoformat())
    if f.date_to:
        where.append("c.updated_at < ?")
        params.append((f.date_to + timedelta(days=1)).isoformat())
    if f.disagree:  # as a subquery, so that the labels stay the outer loop
        where.append(
            "EXISTS (SELECT 1 FROM predictions d WHERE d.image_id = c.image_id "
            "AND d.model_id = ? AND d.pred != c.label)"
        )
        params.append(model_id)
    if f.text.strip():
        esc = f.text.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("i.name LIKE ? ESCAPE '\\'")
        params.append(f"%{esc}%")
    return (" AND ".join(where) or "1"), params


def search_reference(
    db: Database,
    f: RefFilter | None = None,
    *,
    page: int = 0,
    page_size: int = REFERENCE_PAGE,
    model_id: int | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """One page of labelled images matching ``f`` (newest label first) and the total count."""
    f = f or RefFilter()
    model_id = model_id if model_id is not None else (active_model(db) or {}).get("id")
    where, params = _ref_where(f, model_id)
    base = (
        "FROM current_labels c JOIN images i ON i.id = c.image_id "
        "LEFT JOIN predictions p ON p.image_id = c.image_id AND p.model_id = ? "
        f"WHERE {where}"
    )
    # the count needs neither the (at most one) prediction nor, without a name filter, the
    # image row (every label has one: foreign key); with the disagree test the labels are read
    # in image-id order (a plain scan) so that its look-ups walk the predictions forwards
    joins = "JOIN images i ON i.id = c.image_id " if f.text.strip() else ""
    scan = " NOT INDEXED" if f.disagree else ""
    total = db.execute(
        f"SELECT COUNT(*) FROM current_labels c{scan} {joins}WHERE {where}", params
    ).fetchone()[0]
    rows = list(
        db.query(
            "SELECT c.image_id, i.name, c.label, c.source, c.reviewer, c.updated_at, "
            "p.pred AS model_pred, p.p1 AS model_p, i.path "
            f"{base} ORDER BY c.updated_at DESC, c.image_id DESC LIMIT ? OFFSET ?",
            [model_id, *params, page_size, max(page, 0) * page_size],
        )
    )
    return rows, int(total)


def reference_facets(db: Database) -> dict[str, list[str]]:
    """Distinct labels and reviewers present in the reference set (for the filter widgets)."""
    return {
        "labels": [r[0] for r in db.execute("SELECT DISTINCT label FROM current_labels ORDER BY label")],
        "reviewers": [
            r[0] for r in db.execute("SELECT DISTINCT reviewer FROM current_labels ORDER BY reviewer")
        ],
    }
