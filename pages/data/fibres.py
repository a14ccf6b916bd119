"""Fibres: orientation, alignment and diameters of fibre / nanowire images — one image with its
orientation overlay, rose and numbers (gradient and learned methods), and a set view comparing
folders."""

import pandas as pd
import streamlit as st

import ui
from core import fibres
from core.config import NFFA_CLASSES
from core.errors import SemTriageError
from ui import fibres as uf

ss = st.session_state
st.title(":material/line_axis: Fibres & nanowires")
st.caption("Angles: degrees in [0, 180), counter-clockwise from the image x axis as displayed. "
           "S = ⟨cos 2(θ − θ₀)⟩ (1 aligned, 0 isotropic). Aligned fraction: wire area within "
           "the tolerance of θ₀.")
db, key = ui.db(), ui.db_key()
one, many = st.tabs(["One image", "Compare folders"])

with one:
    c = st.columns([2, 5], vertical_alignment="bottom")
    cls = c[0].selectbox("Class", [uf.ALL_CLASSES, *NFFA_CLASSES], key=uf.KEY_CLASS, index=0)
    items = uf.choices(db, key, None if cls == uf.ALL_CLASSES else cls)
    if not items:
        ui.no_images_hint()
        st.stop()
    labels = {i["id"]: f"#{i['id']} · {i['name']} · {i['class'] or 'no class'}" for i in items}
    image_id = c[1].selectbox("Image", list(labels), format_func=labels.get, key=uf.KEY_IMAGE)
    p = st.columns(4, vertical_alignment="bottom")
    tol = p[0].slider("Tolerance (± °)", 1, 45, 15, key=uf.KEY_TOL)
    auto = p[1].toggle("Automatic scale", value=True, key=uf.KEY_AUTO_SIGMA,
                       help="Structure-tensor window: half the median fibre diameter")
    sigma = None if auto else p[2].number_input("σ (px)", 0.5, 32.0, 3.0, 0.5, key=uf.KEY_SIGMA)
    mincoh = p[3].slider("Min coherency", 0.0, 0.9, 0.2, 0.05, key=uf.KEY_MINCOH)
    try:
        v = uf.view(db, key, int(image_id), sigma, float(tol), float(mincoh))
    except SemTriageError as e:
        ui.show_error(e)
        st.stop()
    for w in v.gradient.warnings:
        st.warning(w, icon=":material/warning:")
    if v.learned_error:
        st.warning(f"Learned estimator unavailable: {v.learned_error}", icon=":material/warning:")
    im = st.columns(3)
    im[0].image(v.scan_png, caption=ui.esc(v.name), width="stretch")
    if v.overlay_png:
        im[1].image(v.overlay_png, caption="Orientation (hue) × coherency (brightness)",
                    width="stretch")
        im[2].image(v.mask_png, caption="Wires (blue) and skeleton (red)",
                    width="stretch")
    nums = st.columns([3, 2])
    hists = {"gradient": v.gradient.histogram}
    if v.learned:
        hists["learned"] = v.learned.histogram
    ui.plotly_chart(nums[0], uf.rose(hists, "Orientation distribution"), key="fib_rose",
                         width="stretch")
    table = pd.DataFrame({"gradient": uf.numbers(v.gradient), "learned": uf.numbers(v.learned)})
    nums[1].dataframe(table, key="fib_numbers", width="stretch")
    if st.button("Store this measurement", key=uf.KEY_STORE, icon=":material/save:"):
        params = fibres.FibreParams(sigma=sigma, tolerance_deg=float(tol),
                                    min_coherency=float(mincoh))
        try:
            for m in ("gradient", "learned") if v.learned else ("gradient",):
                fibres.measure_images(db, [int(image_id)], method=m, params=params, redo=True)
        except SemTriageError as e:
            ui.show_error(e)
        else:
            uf.clear()
            st.success("Stored.", icon=":material/check:")

with many:
    method = st.segmented_control("Method", ["gradient", "learned"], default="gradient",
                                  required=True, key=uf.KEY_COMPARE_METHOD)
    if st.button("Measure every fibres / nanowires image not yet measured", key=uf.KEY_BATCH,
                 icon=":material/play_arrow:"):
        bar = st.progress(0.0, text="Measuring…")
        try:
            ids = sorted({*fibres.select_images(db, cls="fibres"),
                          *fibres.select_images(db, cls="nanowires")})
            rep = fibres.measure_images(db, ids, method=method,
                                        progress=lambda f, m: bar.progress(f, text=m))
        except SemTriageError as e:
            ui.show_error(e)
        else:
            uf.clear()
            bar.progress(1.0, text=f"{rep.measured} measured, {len(rep.failed)} failed, "
                                   f"{rep.skipped} already measured")
            for f in rep.failed:
                st.error(f"{ui.esc(f['path'])}: {ui.esc(f['reason'])}", icon=":material/error:")
    groups = uf.comparison(db, key, method)
    if not groups:
        st.info("No measured images yet: measure them here or with `semtriage fibres measure`.",
                icon=":material/info:")
    else:
        chosen = st.multiselect("Folders", [g["folder"] for g in groups],
                                default=[g["folder"] for g in groups][:4], key=uf.KEY_FOLDERS)
        shown = [g for g in groups if g["folder"] in chosen]
        st.dataframe(pd.DataFrame([{
            "folder": g["folder"], "images": g["images"],
            "S mean": g["order_parameter"]["mean"], "S SD": g["order_parameter"]["sd"],
            "aligned mean": g["aligned_fraction"]["mean"],
            "aligned SD": g["aligned_fraction"]["sd"],
            "D50 mean": g["diameter_median"]["mean"], "D50 SD": g["diameter_median"]["sd"],
            "unit": g["diameter_unit"], "mean direction (°)": g["mean_direction_deg"],
        } for g in shown]), key="fib_groups", hide_index=True, width="stretch")
        ui.plotly_chart(st, uf.rose({g["folder"]: g["histogram"] for g in shown},
                                "Pooled orientation per folder"), key="fib_group_rose",
                        width="stretch")
