"""Particles: review and correct detections on the image (click to select, add by clicking,
delete / merge / split / not-a-particle / verify / undo, each with its key; zoom 1:1 – 8:1 and
pan by half a view, Shift + arrows, clicks still in full-image pixels), size distributions of
a set (histograms, D-values, populations, two sets side by side; saved selections),
detection / export of the whole database, and training a candidate detector from the
verified images. Helpers and callbacks: ui/particles.py, ui/particle_train.py."""

import functools

import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

import ui
from core import particles as P
from core.errors import SemTriageError
from ui import particle_train
from ui import particles as uip
from ui.particles import MODES, PK

ss = st.session_state
st.title(":material/scatter_plot: Particles")
db = ui.db()
view = st.segmented_control("View", ["Review", "Distribution", "Detect & export", "Train"], key=PK.view,
                            default="Review", required=True, label_visibility="collapsed")
uip.show_message()

if view == "Detect & export":
    c = st.columns(3)
    method = c[0].radio("Detector", P.METHODS, key="pt_method", horizontal=True,
                        help="model: the active ONNX detector · classical: threshold + watershed")
    redo = c[1].toggle("Redo detected images", key="pt_redo", help="Verified images are never touched")
    todo = P.image_ids_without_particles(db) if not redo else P.select_images(db, all_images=True)
    c[2].metric("Images to detect", len(todo))
    if st.button("Detect particles", key="pt_detect", type="primary", disabled=not todo):
        bar = st.progress(0.0, "Detecting")
        rep = P.detect_images(db, todo, method=method, redo=redo,
                              progress=lambda f, m: bar.progress(min(1.0, f), m))
        (st.warning if rep.failed else st.success)(rep.summary())
    st.divider()
    fmt = st.radio("Export", P.FORMATS, key="pt_fmt", horizontal=True)
    if st.button("Export", key="pt_export"):
        try:
            out = ui.data_dir("exports", "particles")
            res = P.export_particles(db, out, fmt)
            st.success(f"Written to {ui.esc(out)}: " + ", ".join(f"{v} {k}" for k, v in res.items()))
        except SemTriageError as e:
            ui.show_error(e)
    st.stop()

if view == "Train":
    particle_train.train_view(db)
    st.stop()

images = P.particle_images(db)
if not images:
    st.info("No particles yet: detect them in the Detect & export view, or run "
            "`semtriage particles detect --all`.", icon=":material/info:")
    st.stop()

if view == "Distribution":
    by = st.radio("Sets", ["all", *P.BY], key=PK.by, horizontal=True)
    sets = {"all": None} if by == "all" else P.group_sets(db, by)
    if not sets:
        st.info("No saved selection yet: choose a set (all, an image, a folder or a class), then save "
                "its images as a selection below the histogram, or run `semtriage particles selection "
                "save NAME IMAGE_ID...`.", icon=":material/info:")
        st.stop()
    names = list(sets)
    c = st.columns([2, 2, 1, 1])
    a = c[0].selectbox("Set", names, key=PK.set_a)
    b = c[1].selectbox("Compare with", ["—", *names], key="pt_set_b")
    log = c[2].toggle("Log bins", key="pt_log")
    weight = c[3].radio("Weight", ["number", "volume"], key="pt_weight")
    sa = P.size_set(db, sets[a])
    data = {a: sa.d}
    if b != "—" and b != a:
        data[b] = P.size_set(db, sets[b]).d
    if sa.unit == "px":
        st.warning("Pixel size unknown for these images: sizes are in pixels. Set it in the "
                   "Review view.", icon=":material/warning:")
    ui.plotly_chart(st, uip.histogram_figure(data, sa.unit, log=log, weight=weight), key="pt_hist")
    st.json(P.set_stats(db, sets[a]) if len(data) == 1 else P.compare_sets(*data.values()), expanded=False)
    stats = P.set_stats(db, sets[a])
    if stats.get("count"):
        st.markdown(f"**{stats['count']:,} particles** · D10 {stats['d10']:.2f} · D50 {stats['d50']:.2f} · "
                    f"D90 {stats['d90']:.2f} {sa.unit} · left out: {stats['excluded_edge']} edge, "
                    f"{stats['excluded_databar']} data bar, {stats['not_particles']} not particles")
    shown = [r["id"] for r in images] if sets[a] is None else sets[a]
    with st.form("pt_sel_form", border=False):
        f = st.columns([3, 1], vertical_alignment="bottom")
        f[0].text_input(f"Save these {len(shown)} images as a selection", key=PK.sel_name,
                        placeholder="a name, e.g. batch 7 calcined")
        f[1].form_submit_button("Save selection", key="pt_sel_save", icon=":material/bookmark_add:",
                                on_click=uip.save_selection, args=(shown, "shown in the app: " + (
                                    "all images with particles" if by == "all" else f"{by} {a!r}")))
    if by == "selection":
        sel = P.find_selection(db, a)
        st.caption(f"{ui.esc(sel['name'])}: {sel['images']} image(s), made by {ui.esc(sel['created_by'])}: "
                   f"{ui.esc(sel['how'])}")
        st.button("Delete this selection", key="pt_sel_delete", icon=":material/delete:",
                  on_click=uip.delete_selection, args=(a,), disabled=not P.may_delete_selection(sel, ui.user()),
                  help="Only its maker or an administrator; its images and particles stay")
    st.stop()

# ---- Review
queue = {r["image_id"]: r for r in P.review_queue(db, 200)}
order = list(queue) + [r["id"] for r in images if r["id"] not in queue]
info = {r["id"]: r for r in images}
if ss.get(PK.image) not in order:
    ss[PK.image] = order[0]
top = st.columns([4, 2, 2])
image_id = top[0].selectbox(
    "Image (worst first)", order, key=PK.image,
    format_func=lambda i: f"{info[i]['name']} · {info[i]['n_particles']} particles · {info[i]['state']}")
mode = top[1].radio("Click", list(MODES), format_func=MODES.get, key=PK.mode, horizontal=True)
outlines = top[2].toggle("Outlines", key=PK.outlines, value=True)
scan = uip.image_scan(image_id)
labels, ids = P.label_image(db, image_id, scan.shape)
sel = [s for s in uip.selected() if s in ids]
row = info[image_id]
if not row["pixel_size_m"]:
    st.warning("Pixel size unknown: sizes are in pixels. Set it below (typed, or two clicks on the "
               "scale bar).", icon=":material/warning:")

b = st.columns(7)
b[0].button("Delete", key="pt_del", shortcut="D", on_click=uip.do, args=("delete", image_id), disabled=not sel)
b[1].button("Merge", key="pt_merge", shortcut="M", on_click=uip.do, args=("merge", image_id), disabled=len(sel) < 2)
b[2].button("Split", key="pt_split", shortcut="X", on_click=uip.do, args=("split", image_id), disabled=len(sel) != 1)
b[3].button("Not a particle", key="pt_shadow", shortcut="N", on_click=uip.do, args=("shadow", image_id), disabled=not sel)
b[4].button("Undo", key="pt_undo", shortcut="Z", on_click=uip.do, args=("undo", image_id))
b[5].button("Verify image", key="pt_verify", shortcut="V", type="primary", on_click=uip.do, args=("verify", image_id))
b[6].button("Clear selection", key="pt_clear", shortcut="Escape", on_click=uip.set_selected, args=([],))

z = st.columns([3, 2, 4], vertical_alignment="center")
z[0].segmented_control("Zoom", uip.zoom_options(image_id, scan.shape), key=PK.zoom, required=True,
                       format_func=uip.zoom_label, on_change=uip.on_zoom, args=(image_id,),
                       help="Zooming in goes to your last click; Shift + arrow keys pan by half a view")
win = uip.view_window(image_id, scan.shape)
pans = z[1].columns(4)
for col, (arrow, name, dx, dy) in zip(pans, [("←", "Left", -1, 0), ("↑", "Up", 0, -1),
                                            ("↓", "Down", 0, 1), ("→", "Right", 1, 0)]):
    col.button(arrow, key=f"pt_pan_{name.lower()}", shortcut=f"Shift+{name}", disabled=win is None,
               help=f"Pan {name.lower()} by half a view", on_click=uip.on_pan,
               args=(image_id, scan.shape, dx, dy))
if win is not None:
    z[2].caption(f"{win.zoom}:1 · showing x {win.x0}–{win.x0 + win.width}, y {win.y0}–{win.y0 + win.height} "
                 f"of {scan.shape[1]} × {scan.shape[0]} px")
ov = P.overlay(scan, labels, selected={ids.index(s) + 1 for s in sel}, outlines=outlines, window=win)
streamlit_image_coordinates(ov.rgb, key=PK.click, image_format="JPEG", jpeg_quality=90,
                            cursor="crosshair", on_click=functools.partial(
                                uip.on_click, image_id, labels, ids, ov))
st.caption(f"{len(ids)} particles · {row['state']}"
           + (f" by {ui.esc(row['verified_by'])}" if row["verified_by"] else "")
           + f" · detector {ui.esc(row['detector_version'] or '–')} · selected: {len(sel)}")
if sel:
    rows = [r for r in P.particle_rows(db, image_id) if r["id"] in sel]
    st.dataframe(rows, key="pt_sel_table", hide_index=True)

with st.expander("Pixel size", expanded=not row["pixel_size_m"]):
    c = st.columns(3)
    nm = c[0].number_input("nm per pixel", min_value=0.0, value=float((row["pixel_size_m"] or 0) * 1e9),
                           format="%.4f", key="pt_nm")
    c[1].button("Set for this image", key="pt_set_img", on_click=uip.set_scale,
                args=([image_id], nm, "typed"))
    c[2].button("Set for its folder", key="pt_set_folder", on_click=uip.set_scale,
                args=(P.folder_images(db, image_id), nm, "typed"))
    if mode != "scale":
        st.caption("Or measure it on the image: pick the two-click scale-bar mode above, "
                   "then click both ends of the scale bar.")
if mode == "scale":  # outside the expander: shown whether or not it is open
    pts = ss.get(PK.scale_pts, [])
    with st.container(border=True):
        if len(pts) == 2:
            length = st.number_input("Scale bar length (nm)", min_value=0.0, value=1000.0, key="pt_bar_nm")
            ps = P.scale_bar_pixel_size(*pts[0], *pts[1], length) if length > 0 else None
            if ps:
                st.button(f"Use {ps * 1e9:.4f} nm/px for this image", key="pt_use_bar",
                          on_click=uip.set_scale, args=([image_id], ps * 1e9, "scale bar"))
        else:
            st.caption(f"Click both ends of the scale bar ({len(pts)}/2).")
