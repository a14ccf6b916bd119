"""The Similarity page's helpers (Streamlit only): the build as a background job (core/jobs.py,
one per database: a rerun or another browser finds it; progress polled from a fragment), the
cached status, the map figure and the hand-over to Grid confirm."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
from core import jobs, similarity
from core.access import User
from core.progress import Progress
from core.store import open_db

K = ui.K
COLOUR_LABELS = {"label": "Current label", "prediction": "Prediction", "queue": "Queue", "reviewer": "Reviewer"}


def job_key(db_key: str) -> str:
    return "similarity:" + db_key


@st.cache_data(ttl=20, show_spinner=False)
def status(_db: Any, key: str) -> dict[str, Any]:
    return similarity.status(_db)


@st.cache_data(ttl=20, show_spinner=False, max_entries=8)
def points(_db: Any, key: str, model_id: int | None, built_at: str | None) -> pd.DataFrame:
    return similarity.map_points(_db, model_id)


@st.cache_data(ttl=60, show_spinner="Comparing difference hashes…", max_entries=8)
def copies(_db: Any, key: str, max_distance: int) -> list[list[int]]:
    return similarity.near_copy_clusters(_db, max_distance=max_distance, limit=50)


def start_build(key: str, *, refit: bool, by: User | None, sample: int) -> None:
    path = ui.settings().db

    def work(progress: Progress, cancel: Any) -> dict[str, Any]:
        own = open_db(path)  # this thread's own connection
        try:
            rep = similarity.embed_archive(own, refit=refit, by=by, cancel=cancel,
                                           progress=lambda f, m: progress(0.75 * f, m))
            progress(0.75, "bringing the neighbour index up to date")
            if refit:
                similarity.forget_index(own)
            similarity.current_index(own, verify=True)
            mp = similarity.build_map(own, sample=sample, cancel=cancel,
                                      progress=lambda f, m: progress(0.75 + 0.25 * f, m))
            return {"embed": rep, "map": mp}
        finally:
            own.conn.close()

    jobs.start_job(key, "similarity", work)


def finished(key: str) -> None:
    """How the last build ended, shown once."""
    job = jobs.get_job(key)
    if job is None or job.running:
        return
    jobs.forget_job(key)
    status.clear()
    points.clear()
    copies.clear()
    if job.status == "done":
        e, m = job.result["embed"], job.result["map"]
        st.success(f"{e.total:,} of {e.images:,} images embedded ({e.embedded:,} now); map of "
                   f"{m.points:,} images, {m.outliers:,} outliers.", icon=":material/task_alt:")
    elif job.status == "cancelled":
        st.info("The build was stopped; what was embedded is kept — Update goes on from there.",
                icon=":material/info:")
    else:
        ui.show_job_failure(job, "Building the similarity view")


def map_figure(df: pd.DataFrame, colour: str) -> go.Figure:
    """The map: one point per image coloured by ``colour``, outliers ringed. Names and
    labels are user text: escaped (Plotly renders a little HTML in hover text and legends)."""
    shown = df.assign(
        group=df[colour].replace("", "—").map(lambda v: html.escape(str(v))),
        hover=df["name"].map(lambda v: html.escape(str(v))),
    )
    fig = px.scatter(shown, x="x", y="y", color="group", custom_data=["image_id", "hover", "lof"], height=560)
    fig.update_traces(marker={"size": 6, "opacity": 0.8})
    out = shown[shown["outlier"]]
    if len(out):  # rings around the outliers, one legend entry of their own
        fig.add_trace(go.Scatter(x=out["x"], y=out["y"], mode="markers", name="outlier",
                                 customdata=out[["image_id", "hover", "lof"]].to_numpy(),
                                 marker={"symbol": "circle-open", "size": 14, "line": {"width": 2},
                                         "color": "#d62728"}))
    fig.update_traces(hovertemplate="#%{customdata[0]} %{customdata[1]}<br>LOF %{customdata[2]:.2f}<extra></extra>")
    fig.update_layout(legend_title_text=COLOUR_LABELS[colour], margin={"l": 0, "r": 0, "t": 10, "b": 0},
                      xaxis={"visible": False}, yaxis={"visible": False}, dragmode="select")
    return fig


def chosen_point(event: Any) -> int | None:
    """The image id of the first point selected on the map (a click or a box), or None."""
    try:
        pts = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    for p in pts or []:
        data = p.get("customdata")
        if data:
            return int(data[0])
    return None


def open_in_grid(image_id: int) -> None:
    st.session_state[K.grid_like] = int(image_id)
    ui.switch_page(ui.GRID_PAGE)
