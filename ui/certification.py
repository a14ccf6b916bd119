"""Whether the active model may auto-accept, said on the Overview and the Models page
(Streamlit only; the state comes from core.review.certification)."""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.review import CERTIFIED, PROVISIONAL, certification, guard_counts
from ui.common import esc


@st.cache_data(ttl=20, show_spinner=False)
def _state(_db: Any, key: str, model_id: int, version: int) -> tuple[str, str, dict[str, int]]:
    c = certification(_db, model_id)
    return c.state, c.summary(), guard_counts(_db, model_id)


def banner(db: Any, key: str, model_id: int, version: int) -> None:
    """One box: provisional (warning), forced (warning), certified (success), with what the
    guard holds back. ``version``: core.review.label_version, so a new label refreshes it."""
    state, summary, held = _state(db, key, model_id, version)
    extra = (f" Held back now: {held['confident_unverified']:,} confident (unverified), "
             f"{held['unfamiliar']:,} unfamiliar images (unlike anything the model was trained on).")
    if state == PROVISIONAL:
        st.warning(esc(summary + extra), icon=":material/gpp_maybe:")
    elif state == CERTIFIED:
        st.success(esc(summary + extra), icon=":material/verified:")
    else:
        st.warning(esc(summary + extra), icon=":material/policy:")
