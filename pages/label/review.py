"""Review: one image at a time, decided from the keyboard (every button carries its key).

Two images are claimed at a time; the second is decoded, encoded and sent to the browser
(hidden) while the first is on screen, so after a decision the next one shows at once. Z
undoes the last decision and shows that image again; ← steps back through this session's
decisions (a class key there changes the label, Enter keeps it). M marks an image as showing
several categories: the class keys then toggle the classes present and Enter saves them. A
click on the image shows that spot at 1:1; another click goes back; the zoom bar under it
chooses Fit / 1:1 / 2:1 / 4:1 / 8:1 and pans (Shift + arrows too), Levels sets the window on the
stored values, and a scale bar follows the zoom. ``?`` lists the keys.
The Blind spot-check queue hides the model's answer until the reviewer has chosen. The
callbacks are in ui/review.py.
"""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from core import agreement, images, review
from core.errors import SemTriageError
from ui import review as callbacks

K, ss = ui.K, st.session_state
DIGITS = "1234567890"
# our CSS, no user text: the prefetched image hidden; the review image as large as the screen
# allows (its box fits the picture, so a click's position is a position in the image)
st.html("<style>.st-key-review_prefetch{display:none}.st-key-review_image img{cursor:zoom-in}"
        "[data-testid='stMainBlockContainer']{padding-left:1.5rem;padding-right:1.5rem;max-width:none}"
        "</style>")
KEYS = [("Enter", "accept the model's class (choosing several: save)"),
        ("1–9, 0", "choose that class (choosing several: toggle it)"),
        ("M", "several categories: then choose the classes present"), ("U", "unusable"),
        ("S", "skip (it comes back later)"), ("Z", "undo your last decision"),
        ("←", "back through this session's decisions"), ("Esc", "cancel / back to the queue"),
        ("click", "zoom to 1:1 there; click again for the whole image"),
        ("Shift + arrows", "zoomed: pan by half a view"), ("?", "this list")]
db, key = ui.db(), ui.db_key()
model, reviewer = ui.active_model(db, key), ui.reviewer()
if model is None or not reviewer:
    st.title(":material/rate_review: Review")
    if model is None:
        ui.no_model_hint()
    else:
        st.info("Type your name in the sidebar to start — every label is recorded under it.",
                icon=":material/person:")
    st.stop()


def top5(probs: dict[str, float]) -> go.Figure:
    items = list(probs.items())[:5][::-1]
    fig = go.Figure(go.Bar(x=[p for _, p in items], y=[c for c, _ in items], orientation="h",
                           text=[f"{p:.2f}" for _, p in items], textposition="outside",
                           cliponaxis=False, marker_color="#1f6feb"))
    fig.update_layout(height=170, margin={"l": 0, "r": 30, "t": 0, "b": 0},
                      xaxis={"range": [0, 1], "visible": False})
    return fig


def empty_queue(queue: str) -> None:
    ss[K.review_current] = None
    st.success(f"The {ui.QUEUE_LABELS[queue].lower()} queue is empty — nothing left here.",
               icon=":material/task_alt:")
    for col, (q, n) in zip(st.columns(4), review.queue_counts(db, model["id"]).items()):
        if q != queue and n:
            col.button(f"{ui.QUEUE_LABELS[q]} ({n:,})", key=f"rv_switch_{q}", icon=":material/swap_horiz:",
                       on_click=lambda q=q: ss.update({K.review_queue: q}))


def fit_css(width: int, height: int) -> None:
    """Our CSS (numbers only): the image as wide as its column but no taller than 84 % of the
    window, its box the picture's own shape — so a click's position is a position in the image
    (and the scale bar's width a fraction of the image's)."""
    aspect = max(width, 1) / max(height, 1)
    st.html(f"<style>.st-key-review_image{{width:fit-content!important;max-width:min(100%, calc(84vh * {aspect:.4f}))!important}}"
            ".st-key-review_image img{width:100%!important;height:auto!important}</style>")


def image_column(item: dict) -> None:
    iid, path = item["image_id"], item["path"]
    ss[K.review_size] = (iid, item["width"], item["height"])
    zoom = ss.get(K.review_zoom)
    if zoom and zoom.get("image_id") != iid:
        ss.pop(K.review_zoom, None)
        zoom = None
    levels_on, frame, lo, hi = bool(ss.get(K.review_levels_on)), None, 0.0, 0.0
    try:
        if zoom or levels_on:  # the full-resolution stored values (decoded once per image)
            frame = ui.raw_frame(path)
            lo, hi = callbacks.review_levels(iid, frame) if levels_on else (frame.lo, frame.hi)
        if zoom and frame is not None:
            win = callbacks.zoom_window(zoom, frame.width, frame.height)
            with st.container(key="review_image", gap=None):
                # ours, numbers only: the view at its own size (so 1:1 is one screen pixel each)
                st.html(f"<style>.st-key-review_image{{width:{win.display_size[0]}px;max-width:100%}}"
                        ".st-key-review_image img{cursor:zoom-out;width:100%!important;height:auto!important}</style>")
                st.image(ui.zoom_view(path, win, lo, hi), width="stretch", output_format="PNG")
                ui.scale_bar_overlay(images.scale_bar(item["pixel_size_m"], win.width, win.zoom))
            where = f"x {win.x0}–{win.x0 + win.width}, y {win.y0}–{win.y0 + win.height}"
            st.caption(f"Zoomed: {win.zoom}:1, " + ("one screen pixel per image pixel" if win.zoom == 1 else
                       f"each image pixel {win.zoom}×{win.zoom} screen pixels") + f" ({where}) — click the image "
                       "for the whole of it; Shift + arrows pan.")
        else:
            view = ui.image_view(path)
            custom = frame is not None and (lo, hi) != (frame.lo, frame.hi)
            with st.container(key="review_image", gap=None):
                fit_css(view["width"], view["height"])
                st.image(ui.levels_view(path, lo, hi) if custom else view["scan"], width="stretch",
                         output_format="PNG")
                ui.scale_bar_overlay(images.scale_bar(item["pixel_size_m"], item["width"]))
            if view["bar"] is not None:
                st.image(view["bar"], width="stretch", output_format="PNG",
                         caption="Data bar (not seen by the model)")
    except SemTriageError as e:
        ui.show_error(e)
    row = st.container(horizontal=True, vertical_alignment="center", gap="small")
    with row:
        ui.zoom_bar(zoom.get("zoom", 1) if zoom else None)
        st.toggle("Levels", key=K.review_levels_on, help="Brightness / contrast: choose the stored values "
                  "shown black and white (16-bit images: their own values, not an 8-bit copy)")
    if levels_on and frame is not None:
        callbacks.levels_controls(iid, frame, ui.frame_range(path))
    depth = f"{item['bit_depth']}-bit" + (" (contrast-windowed)" if item["bit_depth"] > 8 else "")
    scale = images.scale_text(item["pixel_size_m"], item["width"]) or "pixel size unknown"
    st.caption(" · ".join(ui.esc(x) for x in [item["name"], f"{item['width']}×{item['height']} px", depth, scale])
               + " · click the image to zoom")
    ui.zoom_listener(key=K.review_zoom_listener, zoomed=bool(zoom), on_zoom=callbacks.review_zoom)


def metadata_table(item: dict) -> None:
    with st.expander("Metadata", icon=":material/info:"):
        if item["warnings"]:
            st.warning("\n\n".join(ui.esc(w) for w in item["warnings"]))
        rows = images.metadata_rows(item["metadata"], pixel_size_m=item["pixel_size_m"],
                                    pixel_size_source=item["pixel_size_source"])
        rows = [("File", item["path"]), ("Instrument", item["instrument"] or "unknown"), *rows]
        st.dataframe(pd.DataFrame(rows, columns=["Field", "Value"]), hide_index=True, width="stretch")


def several_actions(item: dict, chosen: list[str]) -> None:
    """Choosing the classes present in a 'several' image: class keys toggle, Enter saves."""
    iid, names, k = item["image_id"], model["class_names"], f"_{item['image_id']}"
    st.markdown("**Several categories** — choose the classes present, then Enter.")
    st.button(f"Save {len(chosen)} classes" if chosen else "Save (choose at least two)", key="rv_sv_save" + k,
              type="primary", width="stretch", shortcut="Enter", on_click=callbacks.review_several_save,
              args=(iid,))
    grid = st.columns(2)
    for i, c in enumerate(names[:10]):
        on = c in chosen
        grid[i % 2].button(c, key=f"rv_sv{i}" + k, width="stretch", shortcut=DIGITS[i],
                           type="primary" if on else "secondary",
                           icon=":material/check_box:" if on else ":material/check_box_outline_blank:",
                           on_click=callbacks.review_toggle, args=(c,))
    if len(names) > 10:
        more = st.selectbox("Other class", names[10:], key="rv_sv_more")
        st.button("Add / remove it", key="rv_sv_more_go" + k, on_click=callbacks.review_toggle, args=(more,))
    st.button("Cancel", key="rv_sv_cancel" + k, width="stretch", shortcut="Esc",
              on_click=callbacks.review_several_cancel)


def actions(item: dict, back: int | None, blind: bool) -> None:
    iid, pred, names, k = item["image_id"], item["pred"], model["class_names"], f"_{item['image_id']}"
    if back is not None:
        st.button("Keep this label", key="rv_keep" + k, type="primary", width="stretch", shortcut="Enter",
                  on_click=callbacks.review_keep, args=(iid,))
    elif not blind:
        st.button(f"Accept {pred or ''}", key="rv_accept" + k, type="primary", width="stretch", shortcut="Enter",
                  on_click=callbacks.review_decide, args=(iid, "accept"), disabled=not pred)
    grid = st.columns(2)
    for i, c in enumerate(names[:10]):
        grid[i % 2].button(c, key=f"rv_cls{i}" + k, width="stretch", shortcut=DIGITS[i],
                           on_click=callbacks.review_decide, args=(iid, "accept" if c == pred else "relabel", c),
                           icon=":material/check:" if c == pred and not blind else None)
    if len(names) > 10:
        more = st.selectbox("Other class", names[10:], key="rv_more")
        st.button("Set class", key="rv_more_go" + k, on_click=callbacks.review_decide, args=(iid, "relabel", more))
    row = st.columns(2)
    row[0].button("Several", key="rv_several" + k, width="stretch", shortcut="M",
                  help="More than one category: then choose the classes present",
                  on_click=callbacks.review_several, args=(iid,))
    row[1].button("Unusable", key="rv_unusable" + k, width="stretch", shortcut="U",
                  on_click=callbacks.review_decide, args=(iid, "unusable"))
    row = st.columns(2)
    if back is None:
        row[0].button("Skip", key="rv_skip" + k, width="stretch", shortcut="S", help="It comes back later",
                      on_click=callbacks.review_decide, args=(iid, "skip"))
    else:
        row[0].button("Forward", key="rv_fwd", width="stretch", shortcut="Right", on_click=callbacks.review_step, args=(1,))
    row[1].button("Undo", key="rv_undo", width="stretch", shortcut="Z", on_click=callbacks.review_undo,
                  help="Take back your last decision and show that image again")
    row = st.columns(2)
    row[0].button("Back", key="rv_back", width="stretch", shortcut="Left", on_click=callbacks.review_step, args=(-1,),
                  help="Show the image you decided before (change or keep its label)")
    if back is not None:
        row[1].button("To queue", key="rv_queue", width="stretch", shortcut="Esc", on_click=callbacks.review_step,
                      args=(None,))


def choose_queue() -> str:
    """The queue: this session's choice, else the URL's ``queue`` (a reload keeps it), else
    Uncertain. Kept in the URL as it changes."""
    if K.review_queue not in ss:
        asked = st.query_params.get("queue")
        ss[K.review_queue] = asked if asked in ui.QUEUE_LABELS else "uncertain"
    return ss[K.review_queue]


@st.fragment
@ui.guarded("The review panel")
def panel() -> None:
    top = st.container(horizontal=True, vertical_alignment="bottom", gap="medium")
    choose_queue()
    ss.setdefault(K.review_order, review.queue_order(db, ss[K.review_queue], reviewer))
    queue = top.segmented_control(
        "Queue", list(ui.QUEUE_LABELS), format_func=ui.QUEUE_LABELS.get, key=K.review_queue,
        required=True, persist_state="session", on_change=callbacks.queue_changed, help=ui.QUEUE_HELP)
    if st.query_params.get("queue") != queue:
        st.query_params["queue"] = queue
    blind = queue == review.BLIND_QUEUE
    if blind:
        order = "random"
        top.caption("Random sample of the auto-accepted images; the model's answer stays hidden "
                    "until you choose. Only such checks measure the auto-accept error rate.")
    else:
        order = top.segmented_control(
            "Order", list(ui.ORDER_LABELS), format_func=ui.ORDER_LABELS.get, key=K.review_order,
            required=True, persist_state="session", on_change=callbacks.order_changed, help=ui.ORDER_HELP)
        if ui.is_admin() and order != review.queue_order(db, queue):
            top.button("Default for everyone", key="rv_order_all", icon=":material/groups:",
                       on_click=callbacks.order_for_everyone,
                       help="Make this order the queue's default for reviewers who have not chosen their own")
    hist, back = ss.setdefault(K.review_hist, []), ss.get(K.review_back)
    try:
        if back is not None:
            item, nxt = review.review_item(db, hist[back]), None
        else:
            items = agreement.next_images(db, queue, reviewer, n=2, order=order,  # + overlap, gold
                                          claim_seconds=ui.settings().claim_seconds)
            if (pin := ss.get(K.review_pin)) is not None:
                items = [review.review_item(db, pin)] + [i for i in items if i["image_id"] != pin]
            item, nxt = (items + [None, None])[:2]
            if nxt is not None:
                ui.prefetch(nxt["path"])  # starts now, in the background
        left = review.queue_left(db, model["id"], queue)
    except SemTriageError as e:
        ui.show_error(e)
        return
    top.markdown(f"**{left:,}** left · **{ss.get(K.review_done, 0)}** decided this session · **?** keys",
                 width="content")
    ui.keyboard(KEYS, key="rv_keys")
    if (msg := ss.pop(K.review_msg, None)) is not None:
        (st.error if msg[0] == "error" else st.toast)(ui.esc(msg[1]))
    if item is None:
        empty_queue(queue)
        return

    if ss.get(K.review_current) != item["image_id"]:
        ss.pop(K.review_several, None)
    ss[K.review_current] = item["image_id"]
    if back is not None:
        now = ui.esc(item["current_label"] or "none (undone)")
        st.info(f"Looking back at decision {back + 1} of {len(hist)} — label now: **{now}**. "
                "A class key changes it; Enter keeps it; Esc returns to the queue.", icon=":material/history:")
    img_col, side = st.columns([3, 1], gap="medium")
    with img_col:
        image_column(item)
    chart = None
    with side:
        if blind and back is None:
            st.markdown("#### Which class is this?")
            st.caption("Blind spot-check: the model's answer is shown after you choose.")
        elif item["pred"]:
            st.markdown(f"#### {ui.esc(item['pred'])} · p = {item['p1']:.2f}")
            st.caption(f"{ui.QUEUE_LABELS[item['queue']]} because {ui.esc(item['reason'])}")
            chart = st.empty()  # filled last
        else:
            st.warning("No prediction from the active model for this image.")
        chosen = ss.get(K.review_several)
        if chosen is not None:
            several_actions(item, chosen)
        else:
            actions(item, back, blind and back is None)
        metadata_table(item)
    if nxt is not None:  # the next image (prefetched above), sent to the browser hidden
        try:
            pv = ui.image_view(nxt["path"])
            with st.container(key="review_prefetch"):
                st.image(pv["scan"], width="stretch", output_format="PNG")
        except SemTriageError:
            pass
    if chart is not None:  # last: the browser draws the image and the keys before the chart
        ui.plotly_chart(chart, top5(item["probs"]), key="rv_top5", config={"displayModeBar": False})


panel()
