"""Review: one image at a time, decided from the keyboard (every button carries its key).

Two images are claimed at a time; the second is decoded, encoded and sent to the browser
(hidden) while the first is on screen, so after a decision the next one shows at once. Z
undoes the last decision and shows that image again; ← steps back through this session's
decisions (a class key there changes the label, Enter keeps it). The callbacks are in ui/review.py.
"""

import plotly.graph_objects as go
import streamlit as st

import ui
from core import agreement, images, review
from core.errors import SemTriageError
from ui import review as callbacks

K, ss = ui.K, st.session_state
DIGITS = "1234567890"
st.html("<style>.st-key-review_prefetch{display:none}</style>")  # our CSS, no user text
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


def image_column(item: dict) -> None:
    try:
        view = ui.image_view(item["path"])
        st.image(view["scan"], width="stretch", output_format="PNG")
        if view["bar"] is not None:
            st.image(view["bar"], width="stretch", output_format="PNG", caption="Data bar (not seen by the model)")
    except SemTriageError as e:
        ui.show_error(e)
    depth = f"{item['bit_depth']}-bit" + (" (contrast-windowed)" if item["bit_depth"] > 8 else "")
    scale = images.scale_text(item["pixel_size_m"], item["width"]) or "pixel size unknown"
    st.caption(" · ".join(ui.esc(x) for x in [item["name"], f"{item['width']}×{item['height']} px", depth, scale]))
    if st.toggle("Full resolution (1:1, scrolls)", key=K.review_fullres):
        try:
            st.html(ui.full_resolution_html(item["path"]))
        except SemTriageError as e:
            ui.show_error(e)


def actions(item: dict, back: int | None) -> None:
    iid, pred, names, k = item["image_id"], item["pred"], model["class_names"], f"_{item['image_id']}"
    if back is None:
        st.button(f"Accept {pred or ''}", key="rv_accept" + k, type="primary", width="stretch", shortcut="Enter",
                  on_click=callbacks.review_decide, args=(iid, "accept"), disabled=not pred)
    else:
        st.button("Keep this label", key="rv_keep" + k, type="primary", width="stretch", shortcut="Enter",
                  on_click=callbacks.review_keep, args=(iid,))
    grid = st.columns(2)
    for i, c in enumerate(names[:10]):
        grid[i % 2].button(c, key=f"rv_cls{i}" + k, width="stretch", shortcut=DIGITS[i],
                           on_click=callbacks.review_decide, args=(iid, "accept" if c == pred else "relabel", c),
                           icon=":material/check:" if c == pred else None)
    if len(names) > 10:
        more = st.selectbox("Other class", names[10:], key="rv_more")
        st.button("Set class", key="rv_more_go" + k, on_click=callbacks.review_decide, args=(iid, "relabel", more))
    row = st.columns(3)
    row[0].button("Several", key="rv_several" + k, width="stretch", shortcut="M", help="More than one category",
                  on_click=callbacks.review_decide, args=(iid, "several"))
    row[1].button("Unusable", key="rv_unusable" + k, width="stretch", shortcut="U",
                  on_click=callbacks.review_decide, args=(iid, "unusable"))
    if back is None:
        row[2].button("Skip", key="rv_skip" + k, width="stretch", shortcut="S", help="It comes back later",
                      on_click=callbacks.review_decide, args=(iid, "skip"))
    else:
        row[2].button("Forward", key="rv_fwd", width="stretch", shortcut="Right", on_click=callbacks.review_step, args=(1,))
    row = st.columns(3)
    row[0].button("Undo", key="rv_undo", width="stretch", shortcut="Z", on_click=callbacks.review_undo,
                  help="Take back your last decision and show that image again")
    row[1].button("Back", key="rv_back", width="stretch", shortcut="Left", on_click=callbacks.review_step, args=(-1,),
                  help="Show the image you decided before (change or keep its label)")
    if back is not None:
        row[2].button("To queue", key="rv_queue", width="stretch", shortcut="Esc", on_click=callbacks.review_step,
                      args=(None,))


@st.fragment
def panel() -> None:
    top = st.container(horizontal=True, vertical_alignment="bottom", gap="medium")
    ss.setdefault(K.review_queue, "uncertain")
    ss.setdefault(K.review_order, review.queue_order(db, ss[K.review_queue]))
    queue = top.segmented_control(
        "Queue", list(ui.QUEUE_LABELS), format_func=ui.QUEUE_LABELS.get, key=K.review_queue,
        required=True, persist_state="session", on_change=callbacks.queue_changed)
    order = top.segmented_control(
        "Order", list(ui.ORDER_LABELS), format_func=ui.ORDER_LABELS.get, key=K.review_order,
        required=True, persist_state="session", on_change=callbacks.order_changed, help=ui.ORDER_HELP)
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
    top.markdown(f"**{left:,}** left · **{ss.get(K.review_done, 0)}** decided this session", width="content")
    if (msg := ss.pop(K.review_msg, None)) is not None:
        (st.error if msg[0] == "error" else st.toast)(ui.esc(msg[1]))
    if item is None:
        empty_queue(queue)
        return

    ss[K.review_current] = item["image_id"]
    if back is not None:
        now = ui.esc(item["current_label"] or "none (undone)")
        st.info(f"Looking back at decision {back + 1} of {len(hist)} — label now: **{now}**. "
                "A class key changes it; Enter keeps it; Esc returns to the queue.", icon=":material/history:")
    img_col, side = st.columns([3, 2], gap="medium")
    with img_col:
        image_column(item)
    with side:
        if item["pred"]:
            st.markdown(f"#### {ui.esc(item['pred'])} · p = {item['p1']:.2f}")
            st.caption(f"{ui.QUEUE_LABELS[item['queue']]} because {ui.esc(item['reason'])}")
            chart = st.empty()  # filled last
        else:
            st.warning("No prediction from the active model for this image.")
        actions(item, back)
        with st.expander("Metadata", icon=":material/info:"):
            if item["warnings"]:
                st.warning("\n\n".join(ui.esc(w) for w in item["warnings"]))
            st.json(item["metadata"], expanded=True)
    if nxt is not None:  # the next image (prefetched above), sent to the browser hidden
        try:
            pv = ui.image_view(nxt["path"])
            with st.container(key="review_prefetch"):
                st.image(pv["scan"], width="stretch", output_format="PNG")
        except SemTriageError:
            pass
    if item["pred"]:  # last: the browser draws the image and the keys before the chart
        chart.plotly_chart(top5(item["probs"]), key="rv_top5", config={"displayModeBar": False})


panel()
