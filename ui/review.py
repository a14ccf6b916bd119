"""The Review page's callbacks. They run before the rerun that shows the next image; each
decision is one small write through core.review."""


from __future__ import annotations

import streamlit as st

from core import agreement, review
from core.errors import ClaimConflict, SemTriageError
from ui.auth import reviewer, user
from ui.cache import clear_after_label
from ui.failures import guarded
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


@guarded("Saving your decision")
def review_decide(iid: int, action: str, label: str | None = None,
                  classes: list[str] | None = None) -> None:
    ss = st.session_state
    if ss.get(K.review_current) != iid:
        return  # a key press meant for an image that is no longer on screen
    back_mode = ss.get(K.review_back) is not None
    blind = ss.get(K.review_queue) == review.BLIND_QUEUE and not back_mode
    try:
        ev = agreement.decide(db(), iid, action, reviewer=reviewer(), label=label, classes=classes,
                              blind=blind)  # an answer to a gold probe is kept apart
    except ClaimConflict as e:  # someone took it meanwhile (possible for an undone image)
        ss.pop(K.review_pin, None)
        ss[K.review_msg] = ("error", str(e))
        return
    except SemTriageError as e:
        ss[K.review_msg] = ("error", str(e))
        return
    if not back_mode and action != "skip":
        ss[K.review_done] = ss.get(K.review_done, 0) + 1
    if blind and action != "skip":  # the hidden answer, once the reviewer has chosen
        item = review.review_item(db(), iid)
        said = f"{item['pred']} (p = {item['p1']:.2f})" if item["pred"] else "nothing"
        agree = "agrees" if ev["label"] == item["pred"] else "disagrees"
        ss[K.review_msg] = ("info", f"Blind check saved: {ev['label']}. The model said {said}; it {agree}.")
    ss.pop(K.review_several, None)
    ss.pop(K.review_zoom, None)
    _review_advance(iid, back_mode)
    clear_after_label()


@guarded("Marking several")
def review_several(iid: int) -> None:
    """M: start choosing the classes present (class keys toggle them, Enter saves)."""
    if st.session_state.get(K.review_current) == iid:
        st.session_state[K.review_several] = []


@guarded("Choosing a class")
def review_toggle(cls: str) -> None:
    chosen = st.session_state.setdefault(K.review_several, [])
    if cls in chosen:
        chosen.remove(cls)
    else:
        chosen.append(cls)


@guarded("Saving your decision")
def review_several_save(iid: int) -> None:
    """Enter while choosing: save 'several' with the chosen classes (at least two)."""
    chosen = list(st.session_state.get(K.review_several) or [])
    if len(chosen) < 2:
        hint = "Choose at least two classes present (their keys), then Enter — or Esc to cancel."
        st.session_state[K.review_msg] = ("info", hint)
        return
    review_decide(iid, "several", classes=chosen)


@guarded("Cancelling")
def review_several_cancel() -> None:
    st.session_state.pop(K.review_several, None)


@guarded("Zooming in")
def review_zoom() -> None:
    """A click on the review image: zoom to 1:1 around it, or (zoomed) back to the whole image."""
    ss = st.session_state
    click = (ss.get(K.review_zoom_listener) or {}).get("zoom") or {}
    if click.get("out") or ss.get(K.review_zoom):
        ss.pop(K.review_zoom, None)
        return
    try:
        fx, fy, w, h = (float(click[k]) for k in ("fx", "fy", "w", "h"))
    except (KeyError, TypeError, ValueError):
        return
    ss[K.review_zoom] = {"image_id": ss.get(K.review_current), "fx": fx, "fy": fy,
                         "w": max(64, min(int(w), 4000)), "h": max(64, min(int(h), 4000))}


@guarded("Zooming out")
def review_unzoom() -> None:
    st.session_state.pop(K.review_zoom, None)


@guarded("Keeping the label")
def review_keep(iid: int) -> None:
    """Looking back: keep this label and step forward."""
    if st.session_state.get(K.review_current) == iid:
        _review_advance(iid, True)


@guarded("Undoing your last decision")
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


@guarded("Stepping through your decisions")
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


@guarded("Releasing the image")
def review_release(*_: object) -> None:
    """The queue or order changed: give back the images this reviewer held."""
    try:
        review.release_claims(db(), reviewer())
    except SemTriageError:
        pass


@guarded("Changing the queue")
def queue_changed() -> None:
    """Another queue: give back held images and open it in this reviewer's order of it."""
    review_release()
    ss = st.session_state
    ss.pop(K.review_several, None)
    ss.pop(K.review_zoom, None)
    ss[K.review_order] = review.queue_order(db(), ss[K.review_queue], reviewer())


@guarded("Changing the order")
def order_changed() -> None:
    """Another order: give back held images and remember it as this reviewer's order of the
    queue (nobody else's changes)."""
    ss = st.session_state
    review_release()
    try:
        review.set_queue_order(db(), ss[K.review_queue], ss[K.review_order], reviewer=reviewer())
    except SemTriageError as e:
        ss[K.review_msg] = ("error", str(e))


@guarded("Setting the order for everyone")
def order_for_everyone() -> None:
    """Administrators: make the current order this queue's default for everyone."""
    ss = st.session_state
    try:
        review.set_queue_order(db(), ss[K.review_queue], ss[K.review_order], by=user())
    except SemTriageError as e:
        ss[K.review_msg] = ("error", str(e))
        return
    name = review.ORDER_NAMES[ss[K.review_order]].capitalize()
    ss[K.review_msg] = ("info", f"{name} is now the default order of this queue for everyone without their own.")
