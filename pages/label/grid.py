"""Grid confirm: a page of thumbnails the model puts in one class, least sure first. Tick the
odd ones out, give them their class, and confirm the rest with one key (Enter). Opening the
page reserves nothing (the images are claimed when confirming); the counts leave out what
other reviewers have on screen; thumbnails come in four sizes (the larger ones drawn from the
image files). Opened from the Similarity page, it shows one image's neighbourhood instead (the
image and its most similar unlabelled images) to label as one class."""

from collections import Counter

import streamlit as st

import ui
from core import review, similarity
from core.errors import SemTriageError
from ui.grid import class_chosen, class_key, confirm, odd_key, offer_counts

K, ss = ui.K, st.session_state
st.title(":material/grid_view: Grid confirm")
db, key = ui.db(), ui.db_key()
model, reviewer = ui.active_model(db, key), ui.reviewer()
if model is None:
    ui.no_model_hint()
    st.stop()
if not reviewer:
    st.info("Type your name in the sidebar to start — every label is recorded under it.",
            icon=":material/person:")
    st.stop()

names = model["class_names"]
CHOICES = names + list(review.SPECIAL_LABELS)
# thumbnails per row; the larger sizes are drawn from the image files (stored thumbnails are
# SEMTRIAGE_THUMB_PX on their longest side)
SIZES = {"Small": 8, "Medium": 6, "Large": 4, "Extra large": 3}
FROM_FILE = {"Large": 512, "Extra large": 640}
KEYS = [("Enter", "confirm the unticked ones as this class, relabel the ticked ones"),
        ("click", "tick / untick a thumbnail (not this class)"), ("?", "this list")]


like = ss.get(K.grid_like)  # a neighbourhood handed over by the Similarity page
preds: dict[int, str] | None = None
top = st.columns([2, 1.2, 1.6, 1.2, 1] if like is not None else [2, 1.2, 1.6, 1], vertical_alignment="bottom")
n = top[1].segmented_control("Thumbnails", [24, 36, 48], key=K.grid_n, persist_state="session",
                             default=24, required=True)
size = top[2].segmented_control("Size", list(SIZES), key=K.grid_size, persist_state="session",
                                default="Medium", required=True)
if (msg := ss.pop(K.grid_msg, None)) is not None:
    (st.error if msg[0] == "error" else st.success)(ui.esc(msg[1]))
ui.keyboard(KEYS, key="grid_keys")
if like is not None:
    floor = top[3].slider("Least similarity", 0.0, 1.0, 0.5, 0.05, key="grid_like_floor",
                          help="Leave out neighbours less alike than this (cosine similarity of the "
                               "texture embeddings; 1 = the same texture)")
    if top[4].button("Back to classes", key="grid_unlike", icon=":material/arrow_back:"):
        ss.pop(K.grid_like, None)
        st.rerun()
    try:
        rows = similarity.neighbourhood_candidates(db, int(like), model["id"], reviewer, limit=int(n or 24),
                                                   min_similarity=float(floor))
    except SemTriageError as e:
        ui.show_error(e)
        st.stop()
    if not rows:
        st.success(f"Image #{int(like)} and its neighbours at least this similar are all labelled (or on "
                   "other reviewers' screens).", icon=":material/task_alt:")
        st.stop()
    preds = {r["image_id"]: r["pred"] for r in rows}
    if ss.get(K.grid_class) not in names:
        ss[K.grid_class] = Counter(preds.values()).most_common(1)[0][0]
    cls = top[0].selectbox("Class for the neighbourhood", names, index=names.index(ss[K.grid_class]),
                           key=K.grid_class_box, on_change=class_chosen)
    st.caption(f"Image #{int(like)}'s neighbourhood: {len(rows)} unlabelled images, most similar first "
               "(similarity of their textures). Tick "
               f"the ones that are *not* **{ui.esc(cls)}** and choose their class; Enter confirms the rest.")
else:
    with_auto = top[3].toggle("Include auto-accepted", key=K.grid_auto, persist_state="session",
                              help="Also show images already auto-labelled (a spot check)")
    counts, busy_elsewhere = offer_counts(db, key, model["id"], reviewer, with_auto)
    if ss.get(K.grid_class) not in names:  # start on the class with most to confirm
        ss[K.grid_class] = max(names, key=lambda c: counts.get(c, 0))
    cls = top[0].selectbox("Predicted class", names, index=names.index(ss[K.grid_class]), key=K.grid_class_box,
                           format_func=lambda c: f"{c} ({counts.get(c, 0):,} to confirm)", on_change=class_chosen)

    try:
        rows = review.grid_candidates(db, model["id"], cls, reviewer, limit=n, include_auto=with_auto)
    except SemTriageError as e:
        ui.show_error(e)
        st.stop()
    if not rows:
        others = busy_elsewhere.get(cls, 0)
        busy = f" ({others:,} are on other reviewers' screens now)" if others else ""
        st.success(f"No unreviewed images predicted {ui.esc(cls)}{busy} — pick another class.",
                   icon=":material/task_alt:")
        st.stop()
    st.caption(f"{len(rows)} images predicted **{ui.esc(cls)}**, least confident first. Tick the ones "
               "that are *not* this class and choose their class; Enter confirms the rest.")
COLS = SIZES[size]

ids = [r["image_id"] for r in rows]
odd = [i for i in ids if ss.get(odd_key(i))]
st.button(f"Confirm {len(rows) - len(odd)} as {ui.esc(cls)} · relabel {len(odd)} ticked", key="grid_confirm",
          type="primary", shortcut="Enter", on_click=confirm, args=(cls, ids, preds), icon=":material/done_all:")

for start in range(0, len(rows), COLS):
    for col, r in zip(st.columns(COLS), rows[start:start + COLS]):
        with col.container(border=True):
            iid = r["image_id"]
            shown = None
            if size in FROM_FILE:
                try:
                    shown = ui.image_view(r["path"], FROM_FILE[size])["scan"]
                except SemTriageError:
                    shown = None  # the stored thumbnail will do
            if shown is None:
                shown = r["thumb"]
            if shown:
                st.image(shown, width="stretch")
            tag = (f"p {r['p1']:.2f}" if preds is None else
                   f"sim {r['similarity']:.2f} · predicted {ui.esc(r['pred'])}")
            st.checkbox(f"Not {ui.esc(cls)} · {tag}", key=odd_key(iid), help=ui.esc(r["name"]))
            if ss.get(odd_key(iid)):
                alt = r["pred"] if preds is not None and r["pred"] != cls else r["second"]
                second = alt if alt in CHOICES else CHOICES[0]
                st.selectbox("Class", CHOICES, index=CHOICES.index(second), key=class_key(iid),
                             label_visibility="collapsed")
