"""Grid confirm: a page of thumbnails the model puts in one class, least sure first. Tick the
odd ones out, give them their class, and confirm the rest with one key (Enter)."""

import streamlit as st

import ui
from core import review
from core.errors import SemTriageError
from ui.grid import class_key, confirm, odd_key

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
COLS = 6


top = st.columns([2, 1, 1], vertical_alignment="bottom")
with_auto = top[2].toggle("Include auto-accepted", key=K.grid_auto, persist_state="session",
                          help="Also show images already auto-labelled (a spot check)")
counts = ui.grid_counts(db, key, model["id"], with_auto)
if ss.get(K.grid_class) not in names:  # start on the class with most to confirm
    ss[K.grid_class] = max(names, key=lambda c: counts.get(c, 0))
cls = top[0].selectbox("Predicted class", names, key=K.grid_class, persist_state="session",
                       format_func=lambda c: f"{c} ({counts.get(c, 0):,} to confirm)")
n = top[1].segmented_control("Thumbnails", [24, 36, 48], key=K.grid_n, persist_state="session",
                             default=24, required=True)
if (msg := ss.pop(K.grid_msg, None)) is not None:
    (st.error if msg[0] == "error" else st.success)(ui.esc(msg[1]))

try:
    rows = review.grid_candidates(db, model["id"], cls, reviewer, limit=n, include_auto=with_auto)
    mine = set(review.claim(db, [r["image_id"] for r in rows], reviewer))  # others won't get these
    rows = [r for r in rows if r["image_id"] in mine]
except SemTriageError as e:
    ui.show_error(e)
    st.stop()
if not rows:
    st.success(f"No unreviewed images predicted {ui.esc(cls)} — pick another class.",
               icon=":material/task_alt:")
    st.stop()

ids = [r["image_id"] for r in rows]
odd = [i for i in ids if ss.get(odd_key(i))]
st.caption(f"{len(rows)} images predicted **{ui.esc(cls)}**, least confident first. Tick the ones "
           "that are *not* this class and choose their class; Enter confirms the rest.")
st.button(f"Confirm {len(rows) - len(odd)} as {ui.esc(cls)} · relabel {len(odd)} ticked", key="grid_confirm",
          type="primary", shortcut="Enter", on_click=confirm, args=(cls, ids), icon=":material/done_all:")

for start in range(0, len(rows), COLS):
    for col, r in zip(st.columns(COLS), rows[start:start + COLS]):
        with col.container(border=True):
            iid = r["image_id"]
            if r["thumb"]:
                st.image(r["thumb"], width="stretch")
            st.checkbox(f"Not {ui.esc(cls)} · p {r['p1']:.2f}", key=odd_key(iid), help=ui.esc(r["name"]))
            if ss.get(odd_key(iid)):
                second = r["second"] if r["second"] in CHOICES else CHOICES[0]
                st.selectbox("Class", CHOICES, index=CHOICES.index(second), key=class_key(iid),
                             label_visibility="collapsed")
