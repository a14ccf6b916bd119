"""Cached resources and query results: the model session shared by every session (keyed by
path and mtime), numbers with a short time to live, cleared after writes."""


from __future__ import annotations

import os
from typing import Any

import streamlit as st

from core import models as core_models
from core import review
from core.models import Classifier, Recommendation
from core.review import HeldOut, RefFilter


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _classifier(path: str, mtime: float, sha256: str, version: str) -> Classifier:
    return core_models.model_classifier({"path": path, "sha256": sha256, "version": version})


def classifier(model: dict[str, Any]) -> Classifier:
    """The ONNX session of a registered model, shared by every session (keyed by path and
    mtime); refused (ModelError) when its file changed after it was registered."""
    path = str(model["path"])
    mtime = os.path.getmtime(path) if os.path.isfile(path) else -1.0  # missing: core says so
    return _classifier(path, mtime, model["sha256"], model["version"])


@st.cache_data(max_entries=64, show_spinner=False)
def _file_changed(path: str, mtime: float, sha256: str) -> bool:
    return core_models.file_changed({"path": path, "sha256": sha256})


def model_file_changed(model: dict[str, Any]) -> bool:
    """Whether a registered model's file was overwritten since (hashed once per file mtime)."""
    path = model["path"]
    return os.path.isfile(path) and _file_changed(path, os.path.getmtime(path), model["sha256"])


@st.cache_data(ttl=60, show_spinner=False)
def active_model(_db: Any, key: str) -> dict[str, Any] | None:
    return core_models.active_model(_db)


@st.cache_data(ttl=60, show_spinner=False)
def models(_db: Any, key: str) -> list[dict[str, Any]]:
    return core_models.list_models(_db)


@st.cache_data(ttl=20, show_spinner=False)
def overview(_db: Any, key: str) -> dict[str, Any]:
    return review.overview(_db)


@st.cache_data(ttl=20, show_spinner=False)
def per_class(_db: Any, key: str) -> list[dict[str, Any]]:
    return review.per_class(_db)


@st.cache_data(ttl=60, show_spinner=False)
def charts(_db: Any, key: str, model_id: int) -> dict[str, Any]:
    return {
        "hist": review.confidence_histogram(_db, model_id),
        "confusion": review.confusion(_db, model_id),
        "per_hour": review.labels_per_hour(_db),
    }


@st.cache_data(ttl=30, show_spinner=False)
def reference_page(_db: Any, key: str, f: RefFilter, page: int) -> tuple[list[dict[str, Any]], int]:
    return review.search_reference(_db, f, page=page)


@st.cache_data(ttl=60, show_spinner=False)
def facets(_db: Any, key: str) -> dict[str, list[str]]:
    return review.reference_facets(_db)


@st.cache_data(ttl=20, show_spinner=False)
def grid_counts(_db: Any, key: str, model_id: int, include_auto: bool) -> dict[str, int]:
    return review.grid_class_counts(_db, model_id, include_auto=include_auto)


@st.cache_data(ttl=600, max_entries=8, show_spinner="Reading the held-out human labels…")
def recommendation(_db: Any, key: str, model_id: int, target: float, version: int
                   ) -> tuple[HeldOut, dict[str, Recommendation] | None]:
    """Held-out labels of ``model_id`` and the recommended thresholds for ``target``; ``version``
    (core.review.label_version) makes a new label recompute it."""
    held = review.heldout_predictions(_db, model_id)
    if len(held) == 0:
        return held, None
    return held, core_models.recommend_per_class(held.probs, held.labels, held.class_names, target)


@st.cache_data(ttl=30, max_entries=64, show_spinner=False)
def threshold_preview(_db: Any, key: str, model_id: int,
                      ts_items: tuple[tuple[str, tuple[float, float, float, float]], ...],
                      version: int) -> tuple[dict[str, int], dict[str, Any]]:
    """Queue sizes and the auto-accept error estimate under thresholds given as
    ``((class, (accept, mixed_margin, mixed_mass, cooccur)), ...)``: a slider moved back and
    forth costs one computation per position (1 s at a million images, not every rerun)."""
    ts = {c: review.Thresholds(*v) for c, v in ts_items}
    return review.preview_counts(_db, model_id, ts), review.auto_error_estimate(_db, model_id, ts)


def clear_after_label() -> None:
    """After a label was written: the numbers and lists that count labels."""
    for fn in (overview, per_class, charts, reference_page, facets, grid_counts,
               threshold_preview):
        fn.clear()


def clear_after_model() -> None:
    """After a model was registered/activated or thresholds changed: everything derived."""
    clear_after_label()
    active_model.clear()
    models.clear()
