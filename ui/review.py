"""The Review page's callbacks. They run before the rerun that shows the next image; each
decision is one small write through core.review."""


from __future__ import annotations

import streamlit as st

from core import agreement, review
from core.errors import ClaimConflict, SemTriageError
from ui.auth import reviewer
from ui.cache import clear_after_label
from ui.state import K, db


def _review_advance(iid: int, back_mode: bool) -> None:
    ss = st.session_state
    hist = ss.setdefault(K.review_hist, [])
    if back_mode:
        b = ss[K.review_back] + 1
        ss[K.review_back] = b if b < len(hist) else None
    else:
        hist.append(iid)
    if ss.get(K.review_pin) == iid:
        ss.pop(K.review_pin)
    ss[K.review_current] = None  # a second press before the next image shows does nothing


def review_decide(iid: int, action: str, label: str | None = None) -> None:
    ss = st.session_state
    if ss.get(K.review_current) != iid:
        return  # a key press meant for an image that is no longer on screen
    back_mode = ss.get(K.review_back) is not None
    try:
        agreement.decide(db(), iid, action, reviewer=reviewer(), label=label)  # gold answers apart
    except ClaimConflict as e:  # someone took it meanwhile (possible for an undone image)
        ss.pop(K.review_pin, None)
        ss[K.review_msg] = ("error", str(e))
        return
    except SemTriageError as e:
        ss[K.review_msg] = ("error", str(e))
        return
    if not back_mode and action != "skip":
        ss[K.review_done] = ss.get(K.review_done, 0) + 1
    _review_advance(iid, back_mode)
    clear_after_label()


def review_keep(iid: int) -> None:
    """Looking back: keep this label and step forward."""
    if st.session_state.get(K.review_current) == iid:
        _review_advance(iid, True)


def review_undo() -> None:
    """Undo the reviewer's last decision and put that image back on screen."""
    ss = st.session_state
    try:
        ev = agreement.undo_last(db(), reviewer())
    except SemTriageError as e:
        ss[K.review_msg] = ("error", str(e))
        return
    if ev is None:
        ss[K.review_msg] = ("info", "Nothing to undo.")
        return
    hist = ss.setdefault(K.review_hist, [])
    if ev["image_id"] in hist:
        del hist[len(hist) - 1 - hist[::-1].index(ev["image_id"])]  # its latest occurrence
        if ev["action"] != "skip":
            ss[K.review_done] = max(0, ss.get(K.review_done, 0) - 1)
    ss[K.review_pin], ss[K.review_back] = ev["image_id"], None
    what = f"{ev['action']} {ev['label']}" if ev["label"] else ev["action"]
    ss[K.review_msg] = ("info", f"Undone: {what}. The image is back on screen.")
    clear_after_label()


def review_step(delta: int | None) -> None:
    """Move through this session's decisions: -1 back, +1 forward, None back to the queue."""
    ss = st.session_state
    hist, b = ss.get(K.review_hist, []), ss.get(K.review_back)
    if delta is None or (delta > 0 and (b is None or b + 1 >= len(hist))):
        ss[K.review_back] = None
    elif not hist:
        ss[K.review_msg] = ("info", "No earlier decision in this session yet.")
    else:
        ss[K.review_back] = len(hist) - 1 if b is None else max(0, b + delta)


def review_release(*_: object) -> None:
    """The queue or order changed: give back the images this reviewer held."""
    try:
        review.release_claims(db(), reviewer())
    except SemTriageError:
        pass


def queue_changed() -> None:
    """Another queue: give back held images and open it in its stored default order."""
    review_release()
    ss = st.session_state
    ss[K.review_order] = review.queue_order(db(), ss[K.review_queue])


def order_changed() -> None:
    """Another order: give back held images and store it as this queue's default."""
    ss = st.session_state
    review_release()
    try:
        review.set_queue_order(db(), ss[K.review_queue], ss[K.review_order])
    except SemTriageError as e:
        ss[K.review_msg] = ("error", str(e))
