"""Adjudicate: overlap images whose reviewers disagree, one at a time, with every rating shown;
the adjudicator's decision becomes the current label (keys: 1–9, 0 a class, M several, U
unusable). For adjudicators (SEMTRIAGE_ADJUDICATORS) and administrators; nobody settles a
disagreement they took part in. Callbacks in ui/agreement.py."""

import streamlit as st

import ui
from core import agreement
from core.errors import SemTriageError
from ui import agreement as agr

AK, ss = agr.AK, st.session_state
DIGITS = "1234567890"
db, key = ui.db(), ui.db_key()
st.title(":material/gavel: Adjudicate")
model, reviewer = ui.active_model(db, key), ui.reviewer()
if model is None:
    ui.no_model_hint()
    st.stop()
if not reviewer:
    st.info("Type your name in the sidebar to adjudicate.", icon=":material/person:")
    st.stop()
if not agr.may_adjudicate():
    st.warning(f"**{ui.esc(reviewer)}** may not adjudicate: only adjudicators (SEMTRIAGE_ADJUDICATORS) "
               "and administrators may.", icon=":material/lock:")
    st.stop()
agr.show_message()
try:
    items = agreement.adjudication_queue(db, reviewer, n=1, claim_seconds=ui.settings().claim_seconds,
                                         settings=ui.settings())
except SemTriageError as e:
    ui.show_error(e)
    st.stop()
st.markdown(f"**{ss.get(AK.adj_done, 0)}** settled this session")
if not items:
    ss[AK.adj_current] = None
    st.success("No open disagreement waits for you.", icon=":material/task_alt:")
    st.page_link(ui.AGREEMENT_PAGE, label="Agreement", icon=":material/handshake:")
    st.stop()
item = items[0]
iid = item["image_id"]
ss[AK.adj_current] = iid
img_col, side = st.columns([3, 2], gap="medium")
with img_col:
    try:
        view = ui.image_view(item["path"])
        st.image(view["scan"], width="stretch", output_format="PNG")
    except SemTriageError as e:
        ui.show_error(e)
    st.caption(ui.esc(item["name"]))
with side:
    st.markdown("#### The reviewers said")
    for who, label in item["ratings"].items():
        st.markdown(f"- **{ui.esc(label)}** — {ui.esc(who)}")
    if item["pred"]:
        st.caption(f"Model: {ui.esc(item['pred'])} (p = {item['p1']:.2f})")
    names = list(model["class_names"])
    said = set(item["ratings"].values())
    grid = st.columns(2)
    for i, c in enumerate(names[:10]):
        grid[i % 2].button(c, key=f"adj_cls{i}_{iid}", width="stretch", shortcut=DIGITS[i],
                           type="primary" if c in said else "secondary",
                           on_click=agr.adjudicate, args=(iid, c))
    row = st.columns(2)
    row[0].button("Several", key=f"adj_several_{iid}", width="stretch", shortcut="M",
                  on_click=agr.adjudicate, args=(iid, "several"))
    row[1].button("Unusable", key=f"adj_unusable_{iid}", width="stretch", shortcut="U",
                  on_click=agr.adjudicate, args=(iid, "unusable"))
