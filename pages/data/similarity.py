"""Similarity: the archive as a map (t-SNE of texture embeddings, coloured by label, prediction,
queue or reviewer, outliers marked), more like this for any image (and labelling its whole
neighbourhood on Grid confirm), and the near-copy clusters."""

import streamlit as st

import ui
from core import jobs, similarity
from core.errors import SemTriageError
from ui import similarity as sv
from ui.progress import job_progress

K, ss = ui.K, st.session_state
st.title(":material/hub: Similarity")
db, key = ui.db(), ui.db_key()
model = ui.active_model(db, key)
job = sv.job_key(key)
sv.finished(job)
running = jobs.get_job(job)
state = sv.status(db, key)
admin = ui.is_admin()

if not state["images"]:
    ui.no_images_hint()
    st.stop()

top = st.columns([4, 1.2, 1], vertical_alignment="bottom")
if state["space"] is None:
    top[0].caption("Not built yet. Building embeds every image's stored thumbnail (texture features, "
                   "no model needed), indexes them for nearest-neighbour search and lays out a map.")
else:
    left = state["images"] - state["embedded"] - state["without_thumbnail"]
    top[0].caption(
        f"{state['embedded']:,} of {state['images']:,} images embedded"
        + (f" · **{left:,} added since: Update**" if left > 0 else "")
        + (f" · {state['without_thumbnail']:,} without a readable thumbnail" if state["without_thumbnail"] else "")
        + f" · map of {state['map_points']:,} images, {state['map_outliers']:,} outliers"
        + (f" (built {state['map_built_at'][:16].replace('T', ' ')} UTC)" if state["map_built_at"] else ""))
sample = int(top[1].number_input("Images on the map", min_value=50, max_value=similarity.MAX_MAP_SAMPLE,
                                 value=similarity.MAP_SAMPLE, step=500, key="sim_sample",
                                 help="A random sample: a map of more than a few thousand points is "
                                      "slow to lay out and hard to read. Neighbours search every image."))
if running is not None and running.running:
    job_progress(job, "Building the similarity view", "sim_cancel")
elif top[2].button("Build" if state["space"] is None else "Update", key="sim_build", type="primary",
                   icon=":material/play_arrow:", help="Embed the images added since, update the index, "
                   "lay out the map again"):
    sv.start_build(job, refit=False, by=ui.user(), sample=sample)
    st.rerun()
if state["space"] is None:
    st.stop()
if admin and running is None:
    with st.expander("Refit (administrators)", icon=":material/restart_alt:"):
        st.caption("Fit the projection again on the archive as it is now and re-embed every image — "
                   "after the archive changed a lot. Everyone's map and neighbours change.")
        if st.button("Refit and rebuild", key="sim_refit", icon=":material/restart_alt:"):
            sv.start_build(job, refit=True, by=ui.user(), sample=sample)
            st.rerun()

df = sv.points(db, key, model["id"] if model else None, state["map_built_at"])
if not df.empty:
    colour = st.segmented_control("Colour by", list(sv.COLOUR_LABELS), format_func=sv.COLOUR_LABELS.get,
                                  default="label", required=True, key="sim_colour")
    event = ui.plotly_chart(st, sv.map_figure(df, colour or "label"), on_select="rerun",
                            selection_mode=("points", "box", "lasso"), key="sim_map", width="stretch")
    picked = sv.chosen_point(event)
    if picked is not None and picked != ss.get(K.sim_anchor):  # the box below follows the map
        ss[K.sim_anchor] = ss["sim_anchor_box"] = picked
    st.caption("Click a point (or draw a box) to see more like it below. Red rings: outliers — images "
               "much more isolated than their neighbours are (local outlier factor).")

st.subheader("More like this")
c = st.columns([1.2, 1, 3], vertical_alignment="bottom")
if "sim_anchor_box" not in ss:
    ss["sim_anchor_box"] = int(ss.get(K.sim_anchor) or (df["image_id"].iloc[0] if not df.empty else 1))
anchor = int(c[0].number_input("Image id", min_value=1, step=1, key="sim_anchor_box"))
ss[K.sim_anchor] = anchor
k = int(c[1].segmented_control("Neighbours", [12, 24, 48], default=12, required=True, key="sim_k") or 12)
try:
    rows = similarity.neighbourhood(db, int(anchor), k, model["id"] if model else None)
    me = similarity.describe(db, [int(anchor)], model["id"] if model else None).get(int(anchor))
except SemTriageError as e:
    ui.show_error(e)
    rows, me = [], None
if me is not None:
    if model is not None and ui.reviewer() and c[2].button(
            "Label this neighbourhood on Grid confirm", key="sim_to_grid", icon=":material/grid_view:",
            help="The image and its unlabelled neighbours as one grid: tick the odd ones out, "
                 "confirm the rest as one class"):
        sv.open_in_grid(int(anchor))
    cols = st.columns(6)
    with cols[0].container(border=True):
        if me["thumb"]:
            st.image(me["thumb"], width="stretch")
        st.caption(f"**#{me['image_id']}** {ui.esc(me['name'])}  \n"
                   f"label: {ui.esc(me['label'] or '—')} · predicted {ui.esc(me['pred'] or '—')}")
    for i, r in enumerate(rows):
        with cols[(i + 1) % 6].container(border=True):
            if r["thumb"]:
                st.image(r["thumb"], width="stretch")
            st.caption(f"#{r['image_id']} · {r['similarity']:.2f}  \n{ui.esc(r['name'])}  \n"
                       f"label: {ui.esc(r['label'] or '—')} · predicted {ui.esc(r['pred'] or '—')}")

st.subheader("Near-copies")
if st.toggle("Find near-copies", key="sim_copies", help="Compares every image's difference hash "
             "(computed once per image, then kept): seconds on a large archive"):
    dist = st.slider("Difference-hash bits apart (of 64)", 0, 12, 6, key="sim_dist",
                     help="6 catches the same field saved twice, re-exported or resized")
    try:
        clusters = sv.copies(db, key, dist)
    except SemTriageError as e:
        ui.show_error(e)
        clusters = []
    if not clusters:
        st.caption("No near-copies at this distance.")
    info = similarity.describe(db, [i for cl in clusters[:20] for i in cl[:6]])
    for cl in clusters[:20]:
        st.caption(f"{len(cl)} images: " + ", ".join(f"#{i}" for i in cl[:12]) + (" …" if len(cl) > 12 else ""))
        cs = st.columns(6)
        for col, i in zip(cs, cl[:6]):
            if info.get(i) and info[i]["thumb"]:
                col.image(info[i]["thumb"], caption=ui.esc(info[i]["name"]), width="stretch")
