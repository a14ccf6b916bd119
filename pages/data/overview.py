"""Overview: where the collection stands — totals, queues to work on, and four charts."""

import html

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
from core.config import DEFAULT_MODEL
from core.errors import SemTriageError
from core.review import GLOBAL, get_thresholds, label_version
from core.workflows import build_demo, demo_belongs_in
from ui import certification

K = ui.K
db, key = ui.db(), ui.db_key()
st.title(":material/dashboard: Overview")
ov = ui.overview(db, key)

if ov["images"] == 0:
    ui.no_images_hint()
    if demo_belongs_in(ui.settings().db) and DEFAULT_MODEL.is_file() and ui.is_admin() and st.button(
        "Load the demo (300 synthetic micrographs + default model)", key="ov_demo",
        icon=":material/science:",
    ):
        bar = st.progress(0.0, text="Building the demo…")
        try:
            build_demo(ui.settings().db, by=ui.user(),
                       progress=lambda f, m: bar.progress(f, text=m))
        except SemTriageError as e:
            ui.show_error(e)
        else:
            ui.clear_after_model()
            st.rerun()
    st.stop()

c = st.columns(5)
c[0].metric("Images", f"{ov['images']:,}", border=True)
c[1].metric("Predicted", f"{ov['predicted']:,}", border=True, help="by the active model")
c[2].metric("Labelled by reviewers", f"{ov['human']:,}", border=True,
            help="decided in this app; imported labels are counted apart — the charts below use both")
c[3].metric("Imported labels", f"{ov['imported']:,}", border=True)
c[4].metric("Auto-accepted", f"{ov['auto']:,}", border=True, help="not yet confirmed by a person")
if ov["ingest_errors"]:
    st.caption(f":material/warning: {ov['ingest_errors']:,} files could not be read — see Ingest.")

if ov["model_id"] is None:
    ui.no_model_hint()
    st.stop()

certification.banner(db, key, ov["model_id"], label_version(db))
st.subheader("Review queues")
blurbs = {
    "uncertain": "The model is unsure (below the accept threshold), or the image is unlike anything it was trained on.",
    "mixed": "Two classes compete, or both seem present.",
    "auto": "Confident: auto-accepted once certified (spot-check them, the model's answer shown); until then unverified — confirm them on Grid confirm.",
    "blind": "A random sample of the confident ones, answer hidden: what measures the auto-accept error.",
}
for col, (q, blurb) in zip(st.columns(4), blurbs.items()):
    n = ov["queues"]["auto" if q == "blind" else q]
    with col.container(border=True):
        st.metric(ui.QUEUE_LABELS[q], f"{n:,}", help=blurb)
        st.caption(blurb)
        if st.button(f"Review {ui.QUEUE_LABELS[q].lower()}", key=f"ov_go_{q}",
                     icon=":material/arrow_forward:", disabled=not n):
            st.session_state[K.review_queue] = q
            ui.switch_page(ui.REVIEW_PAGE, queue=q)

per = pd.DataFrame(ui.per_class(db, key))
ch = ui.charts(db, key, ov["model_id"])
accept = get_thresholds(db)[GLOBAL].accept
tall = {"height": 340, "margin": {"l": 10, "r": 10, "t": 40, "b": 10}}

left, right = st.columns(2)
with left:
    hist = pd.DataFrame(ch["hist"])
    fig = go.Figure()
    if not hist.empty:
        colors = {"auto": "#2da44e", "uncertain": "#d29922", "mixed": "#8250df"}
        for q, part in hist.groupby("queue"):
            fig.add_bar(x=part["mid"], y=part["count"], name=ui.QUEUE_LABELS.get(q, q),
                        width=0.05, marker_color=colors.get(q))
    fig.add_vline(x=accept, line_dash="dash", line_color="#cf222e",
                  annotation_text=f"accept ≥ {accept:.2f}", annotation_position="top left")
    fig.update_layout(title="Confidence of the top class (p1)", barmode="stack",
                      xaxis={"range": [0, 1], "title": "p1"}, yaxis_title="images", **tall)
    ui.plotly_chart(st, fig, key="ov_hist")
with right:
    if not per.empty:
        long = per.melt(id_vars="class", value_vars=["predicted", "human"],
                        var_name="source", value_name="images")
        long["source"] = long["source"].map({"predicted": "predicted by model",
                                             "human": "labelled (reviewers + imported)"})
        fig = px.bar(long, x="class", y="images", color="source", barmode="group",
                     title="Classes: predicted vs labelled (reviewers + imported)")
        fig.update_layout(legend_title=None, **tall)
        ui.plotly_chart(st, fig, key="ov_classes")

left, right = st.columns(2)
with left:
    cm = ch["confusion"]
    if cm["total"]:
        fig = px.imshow(cm["matrix"], x=cm["cols"], y=cm["rows"], text_auto=True,
                        color_continuous_scale="Blues", aspect="auto",
                        labels={"x": "model predicts", "y": "label (reviewers + imported)", "color": "images"})
        fig.update_layout(title=f"Labels vs model — agree on {cm['agree'] / cm['total']:.0%} "
                                f"of {cm['total']:,}", **tall)
        ui.plotly_chart(st, fig, key="ov_confusion")
    else:
        st.info("The confusion matrix appears once people have labelled predicted images.")
with right:
    ph = pd.DataFrame(ch["per_hour"])
    if not ph.empty:
        ph["reviewer"] = ph["reviewer"].map(html.escape)  # plotly reads a little HTML in names
        fig = px.bar(ph, x="hour", y="labels", color="reviewer", title="Labels per hour (last 7 days)")
        fig.update_layout(legend_title=None, xaxis_title=None, **tall)
        ui.plotly_chart(st, fig, key="ov_per_hour")
    else:
        st.info("Labels per hour appear once people start reviewing.")

st.subheader("Per class")
st.dataframe(
    per, hide_index=True, key="ov_per_class",
    column_config={
        "class": "Class", "predicted": "Predicted", "to_review": "To review",
        "auto": "Auto-accepted", "human": "Labelled (reviewers + imported)",
    },
)
