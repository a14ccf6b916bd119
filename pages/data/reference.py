"""Reference set: every labelled image, searchable and filterable, paginated in SQL. Select a
row to see the image, its full label history, and to relabel it. The "Likely mislabelled" view
is ui/issues.py."""

import pandas as pd
import streamlit as st

import ui
from core import review
from core.errors import SemTriageError
from ui import issues

K, ss = ui.K, st.session_state
st.title(":material/library_books: Reference set")
db, key = ui.db(), ui.db_key()
fac = ui.facets(db, key)
if not fac["labels"]:
    st.info("No labelled images yet — review some on **Review** or **Grid confirm**, or ingest "
            "folders with *labels from folder names*.", icon=":material/info:")
    st.page_link(ui.REVIEW_PAGE, label="Go to Review", icon=":material/rate_review:")
    st.stop()
view = st.segmented_control("View", ["all", "issues"], key="ref_view", required=True, default="all",
                            format_func={"all": "All labels", "issues": "Likely mislabelled"}.get,
                            persist_state="session")
if view == "issues":
    issues.issues_view(db, key)
    st.stop()

c = st.columns([2, 2, 2])
text = c[0].text_input("File name contains", key="ref_text", icon=":material/search:")
classes = c[1].multiselect("Label", fac["labels"], key="ref_classes")
# the reference set is what people labelled (or imported): auto-accepted labels only on request
sources = c[2].multiselect("Source", ["human", "import", "auto"], key="ref_sources", default=["human", "import"],
                           format_func={"human": "Human", "import": "Imported", "auto": "Auto-accepted"}.get,
                           help="Auto-accepted labels (the model's, not yet checked by a person) are not part "
                                "of the reference set; add them here to see them.")
c = st.columns([2, 2, 2], vertical_alignment="bottom")
who = c[0].selectbox("Reviewer", ["(anyone)"] + fac["reviewers"], key="ref_reviewer")
dates = c[1].date_input("Labelled between", value=(), key="ref_dates")
disagree = c[2].toggle("Model disagrees with the label", key="ref_disagree")

f = review.RefFilter(
    classes=classes, sources=sources, text=text, disagree=disagree,
    reviewer=None if who == "(anyone)" else who,
    date_from=dates[0] if len(dates) > 0 else None, date_to=dates[1] if len(dates) > 1 else None,
)
if ss.get("ref_filter") != f:  # a new search starts on its first page, nothing selected
    ss["ref_filter"], ss[K.ref_page] = f, 0
page = ss.get(K.ref_page, 0)
table_key = f"ref_table_{page}_{hash(repr(f)) & 0xFFFFFF}"
try:
    rows, total = ui.reference_page(db, key, f, page)
except SemTriageError as e:
    ui.show_error(e)
    st.stop()
pages = max(1, -(-total // review.REFERENCE_PAGE))

table = pd.DataFrame(rows, columns=["image_id", "name", "label", "source", "reviewer", "updated_at",
                                    "model_pred", "model_p", "path"])
event = st.dataframe(
    table.drop(columns=["path"]), hide_index=True, key=table_key, on_select="rerun",
    selection_mode="single-row", height=380,
    column_config={
        "image_id": st.column_config.NumberColumn("ID", width="small"),
        "name": "File", "label": "Label", "source": "Source", "reviewer": "Reviewer",
        "updated_at": "Labelled (UTC)", "model_pred": "Model says",
        "model_p": st.column_config.ProgressColumn("p", min_value=0.0, max_value=1.0, format="%.2f"),
    },
)
nav = st.columns([1, 1, 4], vertical_alignment="center")
if nav[0].button("Previous", key="ref_prev", icon=":material/chevron_left:", disabled=page == 0):
    ss[K.ref_page] = page - 1
    st.rerun()
if nav[1].button("Next", key="ref_next", icon=":material/chevron_right:", disabled=page + 1 >= pages):
    ss[K.ref_page] = page + 1
    st.rerun()
first = page * review.REFERENCE_PAGE
nav[2].caption(f"{first + 1 if total else 0:,}–{first + len(rows):,} of {total:,} labelled images · "
               f"page {page + 1} of {pages}")

sel = [i for i in (event.selection.rows if event is not None else []) if i < len(rows)]
if not sel:
    st.caption("Select a row to see the image, its history, and to relabel it.")
    st.stop()
row = rows[sel[0]]
iid = row["image_id"]
st.divider()
left, right = st.columns([2, 3], gap="large")
with left:
    st.markdown(f"**{ui.esc(row['name'])}** · label **{ui.esc(row['label'])}** ({row['source']})")
    try:
        st.image(ui.image_view(row["path"], max_side=900)["scan"], width="stretch", output_format="PNG")
    except SemTriageError as e:
        thumb = review.thumbnail(db, iid)
        ui.show_error(e)
        if thumb:
            st.image(thumb, caption="Stored thumbnail")
with right:
    choices = (ui.active_model(db, key) or {}).get("class_names", []) + list(review.SPECIAL_LABELS)
    choices += [c for c in fac["labels"] if c not in choices]
    cc = st.columns([3, 1], vertical_alignment="bottom")
    new = cc[0].selectbox("Relabel as", choices, key=f"ref_new_{iid}",
                          index=choices.index(row["label"]) if row["label"] in choices else 0)
    if cc[1].button("Save label", key=f"ref_save_{iid}", type="primary", disabled=not ui.reviewer(),
                    help=None if ui.reviewer() else "Type your name in the sidebar first"):
        action = new if new in review.SPECIAL_LABELS else "relabel"
        try:
            review.decide(db, iid, action, reviewer=ui.reviewer(), label=None if action != "relabel" else new)
        except SemTriageError as e:
            ui.show_error(e)
        else:
            ui.clear_after_label()
            st.rerun()
    st.markdown("**Label history**")
    hist = pd.DataFrame(review.history(db, iid))
    st.dataframe(
        hist[["id", "created_at", "action", "label", "source", "reviewer", "model_version", "prob",
              "undoes", "undone"]],
        hide_index=True, key=f"ref_hist_{iid}",
        column_config={"id": "#", "created_at": "When (UTC)", "action": "Action", "label": "Label",
                       "source": "Source", "reviewer": "Who", "model_version": "Model",
                       "prob": st.column_config.NumberColumn("p", format="%.2f"),
                       "undoes": "Undoes #", "undone": st.column_config.CheckboxColumn("Undone")},
    )
