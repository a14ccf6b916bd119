"""The Streamlit side of SEM Triage (core never imports it): session state and the
per-session database, shared words and widgets, cached resources and queries, display
images, sign-in; and one module of helpers and callbacks per page that needs them
(``ui.review``, ``ui.grid``, ``ui.retrain`` for the Models page's Retrain tab, ``ui.issues``
for the Reference page's Likely mislabelled view). Pages: ``import ui`` for the shared
helpers, ``from ui import review`` for their own."""

from ui.auth import is_admin, require_admin, reviewer, reviewer_sidebar, sign_in_gate, user
from ui.cache import (
    active_model,
    charts,
    classifier,
    clear_after_label,
    clear_after_model,
    facets,
    grid_counts,
    model_file_changed,
    models,
    overview,
    per_class,
    recommendation,
    reference_page,
    threshold_preview,
)
from ui.common import (
    DISPLAY_MAX_PX,
    EXPORT_PAGE,
    GRID_PAGE,
    INGEST_PAGE,
    MODELS_PAGE,
    ORDER_HELP,
    ORDER_LABELS,
    OVERVIEW_PAGE,
    QUEUE_HELP,
    QUEUE_LABELS,
    REFERENCE_PAGE,
    REVIEW_PAGE,
    esc,
    no_images_hint,
    no_model_hint,
    show_error,
    switch_page,
)
from ui.images import image_view, prefetch, zoom_view
from ui.keys import keyboard
from ui.state import K, data_dir, db, db_key, settings
from ui.zoom import zoom_listener

__all__ = [
    "DISPLAY_MAX_PX",
    "EXPORT_PAGE",
    "GRID_PAGE",
    "INGEST_PAGE",
    "MODELS_PAGE",
    "ORDER_HELP",
    "ORDER_LABELS",
    "OVERVIEW_PAGE",
    "QUEUE_HELP",
    "QUEUE_LABELS",
    "REFERENCE_PAGE",
    "REVIEW_PAGE",
    "K",
    "active_model",
    "charts",
    "classifier",
    "clear_after_label",
    "clear_after_model",
    "data_dir",
    "db",
    "db_key",
    "esc",
    "facets",
    "grid_counts",
    "image_view",
    "is_admin",
    "keyboard",
    "model_file_changed",
    "models",
    "no_images_hint",
    "no_model_hint",
    "overview",
    "per_class",
    "prefetch",
    "recommendation",
    "reference_page",
    "require_admin",
    "reviewer",
    "reviewer_sidebar",
    "settings",
    "show_error",
    "sign_in_gate",
    "switch_page",
    "threshold_preview",
    "user",
    "zoom_listener",
    "zoom_view",
]
