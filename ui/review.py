"""The Review page's callbacks. They run before the rerun that shows the next image; each
decision is one small write through core.review."""


from __future__ import annotations

import streamlit as st

from core import agreement, images, review
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
    """The zoom listener reported: a click on the fitted image (zoom there: 1:1, or at least
    twice the fitted view for a small image), a click on the zoomed one (back to the whole
    image), a zoom level from the zoom bar (kept centred) or a pan by half a view."""
    ss = st.session_state
    got = (ss.get(K.review_zoom_listener) or {}).get("zoom") or {}
    zoom, size = ss.get(K.review_zoom), ss.get(K.review_size)
    iid = ss.get(K.review_current)
    if size is None or size[0] != iid:
        return  # nothing on screen to zoom (or another image by now)
    _, width, height = size
    if "pan" in got:
        try:
            dx, dy = (int(v) for v in got["pan"])
        except (TypeError, ValueError):
            return
        if zoom:
            win = images.pan(zoom_window(zoom, width, height), max(-1, min(dx, 1)), max(-1, min(dy, 1)))
            zoom["fx"], zoom["fy"] = win.centre
        return
    if "level" in got:
        if got["level"] not in [str(z) for z in images.ZOOM_LEVELS]:
            ss.pop(K.review_zoom, None)  # Fit
        elif zoom:
            zoom["zoom"] = int(got["level"])
        elif (box := _box(got)) is not None:
            ss[K.review_zoom] = {"image_id": iid, "fx": 0.5, "fy": 0.5, "w": box[0], "h": box[1],
                                 "zoom": int(got["level"])}
        return
    if got.get("out") or zoom:
        ss.pop(K.review_zoom, None)
        return
    box = _box(got)
    try:
        fx, fy = float(got["fx"]), float(got["fy"])
    except (KeyError, TypeError, ValueError):
        return
    if box is None:
        return
    ss[K.review_zoom] = {"image_id": iid, "fx": fx, "fy": fy, "w": box[0], "h": box[1],
                         "zoom": images.click_zoom(box[0] / max(1, width))}


def _box(got: dict) -> tuple[int, int] | None:
    """The displayed size the listener reported, within sane bounds (None when absent)."""
    try:
        w, h = int(float(got["w"])), int(float(got["h"]))
    except (KeyError, TypeError, ValueError):
        return None
    if w <= 0 or h <= 0:
        return None
    return max(64, min(w, 4000)), max(64, min(h, 4000))


def zoom_window(zoom: dict, width: int, height: int) -> images.ZoomWindow:
    """The window the zoom state shows of a ``width`` × ``height`` scan."""
    return images.zoom_window(width, height, zoom["fx"], zoom["fy"], zoom["w"], zoom["h"],
                              int(zoom.get("zoom", 1)))


def levels_keys(iid: int) -> tuple[str, str, str]:
    """Widget keys of one image's window / level controls: the mode, the stored-value slider
    and the percentile slider (per image: the next image starts from its own default)."""
    p = K.review_levels
    return f"{p}_by_{iid}", f"{p}_raw_{iid}", f"{p}_pct_{iid}"


LEVELS_RAW, LEVELS_PCT = "Stored values", "Percentiles"
DEFAULT_PCT = (0.5, 99.5)


def review_levels(iid: int, frame: images.RawFrame) -> tuple[float, float]:
    """The window (stored values shown black and white) chosen for this image with its level
    widgets; the image's default window while they are untouched."""
    ss = st.session_state
    by, raw, pct = levels_keys(iid)
    if ss.get(by) == LEVELS_PCT:
        return images.percentile_window(frame.raw, *ss.get(pct, DEFAULT_PCT))
    if ss.get(raw):
        lo, hi = ss[raw]
        return float(lo), float(hi)
    return frame.lo, frame.hi


def levels_controls(iid: int, frame: images.RawFrame, bounds: tuple[float, float]) -> None:
    """The window / level controls of one image: by stored values (a low / high slider over the
    image's own range) or by percentiles, the window in numbers, and a reset."""
    by, raw, pct = levels_keys(iid)
    lo_b, hi_b = min(bounds[0], frame.lo), max(bounds[1], frame.hi)
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="small")
    mode = row.segmented_control("Window by", [LEVELS_RAW, LEVELS_PCT], default=LEVELS_RAW, key=by,
                                 required=True, help="Stored values: the raw numbers in the file. "
                                 "Percentiles: the values that many percent of the pixels lie below.")
    row.button("Reset levels", key=f"{K.review_levels}_reset_{iid}", icon=":material/restart_alt:",
               on_click=review_levels_reset, args=(iid,))
    if hi_b <= lo_b:
        st.caption("Every pixel has the same value: there is no contrast to adjust.")
        return
    if mode == LEVELS_PCT:
        st.slider("Black and white at (percentiles)", 0.0, 100.0, DEFAULT_PCT, step=0.1, format="%.1f %%",
                  key=pct)
    elif frame.raw.dtype.kind in "uib":
        st.slider(f"Black and white at (stored values, {frame.bit_depth}-bit)", int(lo_b), int(hi_b),
                  (int(frame.lo), int(frame.hi)), step=1, key=raw)
    else:
        st.slider("Black and white at (stored values)", float(lo_b), float(hi_b), (float(frame.lo), float(frame.hi)),
                  step=(hi_b - lo_b) / 1000, format="%.4g", key=raw)
    lo, hi = review_levels(iid, frame)
    st.caption(f"Black at {lo:,.6g}, white at {hi:,.6g} (stored values; the file holds {bounds[0]:,.6g}–"
               f"{bounds[1]:,.6g}).")


def review_levels_reset(iid: int) -> None:
    """Back to the image's default window."""
    for k in levels_keys(iid):
        st.session_state.pop(k, None)


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
