"""Session state and the per-session database: key names (named once), the settings in
force, this browser session's connection, folders beside the database."""


from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from core.config import Settings
from core.store import open_db


class K:
    """Session-state key names, named once. Widgets whose value must survive a page change use
    ``persist_state="session"``; derived values live in non-widget keys."""

    db = "_db"  # (path, Database) of this browser session
    reviewer = "reviewer"  # sidebar text input (also the URL query parameter)
    reviewer_name = "reviewer_name"  # the cleaned name (non-widget: survives page changes)
    review_queue = "review_queue"
    review_order = "review_order"
    review_current = "review_current"  # image id on screen
    review_pin = "review_pin"  # image id to show first (after undo)
    review_hist = "review_hist"  # image ids decided in this session, oldest first
    review_back = "review_back"  # index into review_hist while looking back, else None
    review_done = "review_done"  # decisions in this session
    review_msg = "review_msg"  # (kind, text) to show once
    review_several = "review_several"  # classes chosen so far while marking 'several', else absent
    review_zoom = "review_zoom"  # {image_id, fx, fy, w, h, zoom} while zoomed in, else absent
    review_zoom_listener = "rv_zoom_listener"  # the click-to-zoom component's state
    review_size = "review_size"  # (image id, width, height) of the scan on screen, in image px
    review_levels_on = "rv_levels_on"  # toggle: the window / level controls shown
    review_levels = "rv_levels"  # prefix of the per-image level widgets (ui.review.levels_keys)
    theme = "theme"  # sidebar: light / dark / system (ui.theme)
    theme_system = "_theme_system"  # what the browser prefers, as its listener reported ('light' until then)
    theme_user = "_theme_user"  # the reviewer whose stored theme was read (once per name)
    theme_listener = "theme_listener"  # the system-preference listener's state
    theme_pending = "_theme_pending"  # chosen on the switch before a name was known: stored once it is
    grid_class = "grid_class"  # the chosen class (non-widget: survives label changes of the box)
    grid_class_box = "grid_class_box"
    grid_size = "grid_size"
    grid_n = "grid_n"
    grid_auto = "grid_auto"
    grid_msg = "grid_msg"
    grid_like = "grid_like"  # image id whose neighbourhood Grid confirm shows, else absent
    sim_anchor = "sim_anchor"  # image id the Similarity page shows neighbours of
    sim_msg = "sim_msg"  # (kind, text) to show once
    ref_page = "ref_page"


def settings() -> Settings:
    return Settings.from_env()


def db() -> Any:
    """This browser session's connection (opened once, reopened if SEMTRIAGE_DB changed)."""
    path = settings().db
    held = st.session_state.get(K.db)
    if held is None or held[0] != path:
        st.session_state[K.db] = (path, open_db(path))
    return st.session_state[K.db][1]


def db_key() -> str:
    """A hashable stand-in for the database in cache keys."""
    return str(Path(settings().db).resolve())


def data_dir(*parts: str) -> Path:
    """A folder beside the database (``data/exports``, ``data/uploads`` for the default one)."""
    return Path(settings().db).resolve().parent.joinpath(*parts)
