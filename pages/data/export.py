"""Export: the labelled images as a dataset (CSV / JSONL manifest, ImageFolder, Hugging Face
imagefolder), optionally split, with the particles of its images if asked, as a zip to download;
and the model's predictions as a report."""

import time
from pathlib import Path

import pandas as pd
import streamlit as st

import ui
from core import datasets, workflows
from core.errors import SemTriageError
from core.files import safe_name

ss = st.session_state
st.title(":material/download: Export")
db, key = ui.db(), ui.db_key()
FORMATS = {
    "imagefolder": "ImageFolder (class folders, files copied)",
    "hf": "Hugging Face imagefolder (metadata.csv)",
    "csv": "CSV manifest (paths to the originals)",
    "jsonl": "JSONL manifest (paths to the originals)",
}
SPLITS = {"none": "No split", "80-10-10": "80 / 10 / 10", "custom": "Custom"}

c = st.columns([3, 2, 2], vertical_alignment="bottom")
fmt = c[0].selectbox("Format", list(FORMATS), format_func=FORMATS.get, key="exp_fmt")
split_kind = c[1].segmented_control("Train / validation / test split", list(SPLITS),
                                    format_func=SPLITS.get, key="exp_split", default="none", required=True)
with c[2]:
    auto = st.toggle("Include auto-accepted labels", key="exp_auto", help="Labels no person has confirmed")
    special = st.toggle("Include several / unusable", key="exp_special")
    with_particles = st.toggle("Include particles", key="exp_particles",
                               help="Also the exported images' particles: particles.csv (one row per "
                                    "particle, sizes in nm), particles-images.csv and particles-coco.json "
                                    "(instance masks) beside the manifest")
split = None
if split_kind == "80-10-10":
    split = (0.8, 0.1, 0.1)
elif split_kind == "custom":
    s = st.columns(4)
    tr = s[0].number_input("Train %", 0, 100, 70, key="exp_train")
    va = s[1].number_input("Validation %", 0, 100, 15, key="exp_val")
    te = s[2].number_input("Test %", 0, 100, 15, key="exp_test")
    seed = s[3].number_input("Seed", 0, 2**31 - 1, 0, key="exp_seed")
    if tr + va + te != 100:
        st.warning(f"The split adds up to {tr + va + te} %, not 100 %.", icon=":material/warning:")
    split = (tr / 100, va / 100, te / 100)

try:
    counts = datasets.export_counts(db, include_auto=auto, include_special=special)
except SemTriageError as e:
    ui.show_error(e)
    st.stop()
total = sum(counts.values())
if not total:
    st.info("Nothing to export yet: no labels match. Review some images"
            + ("" if auto else ", or include auto-accepted labels") + ".", icon=":material/info:")
else:
    st.markdown(f"**{total:,} images** in {len(counts)} classes")
    st.dataframe(
        pd.DataFrame({"class": list(counts), "images": list(counts.values())}), hide_index=True,
        key="exp_counts", height=min(400, 38 + 35 * len(counts)),
        column_config={"images": st.column_config.ProgressColumn(
            "images", min_value=0, max_value=max(counts.values()), format="%d")},
    )

name = st.text_input("Export name", value=f"labels-{time.strftime('%Y%m%d-%H%M')}", key="exp_name")
out = ui.data_dir("exports", safe_name(name, default="labels"))
theirs = not datasets.may_replace_export(out, ui.user())  # core refuses it too
if theirs:
    st.caption(f":material/lock: An export named {ui.esc(out.name)} by "
               f"{ui.esc(datasets.export_maker(out) or 'someone else')} exists: choose another name "
               "(only an administrator may replace it).")
if st.button("Export", key="exp_go", type="primary", disabled=not total or theirs, icon=":material/archive:"):
    bar = st.progress(0.0, text="Exporting…")
    try:
        rep = workflows.export_dataset(
            db, out, particles=with_particles, fmt=fmt, include_auto=auto, include_special=special, split=split,
            seed=int(ss.get("exp_seed", 0)), zip_output=True,
            progress=lambda f, m: bar.progress(f, text=m), by=ui.user(),
        )
    except SemTriageError as e:
        ui.show_error(e)
    else:
        bar.progress(1.0, text="Done")
        ss["exp_last"] = {"summary": rep.summary(), "zip": str(rep.zip_path), "skipped": rep.skipped,
                          "per_split": rep.per_split}

if last := ss.get("exp_last"):
    st.success(ui.esc(last["summary"]), icon=":material/check:")
    if last["per_split"]:
        st.dataframe(pd.DataFrame(last["per_split"]).fillna(0).astype(int), key="exp_splits")
    if last["skipped"]:
        st.warning(f"{len(last['skipped'])} images were skipped:")
        st.dataframe(pd.DataFrame(last["skipped"], columns=["file", "reason"]), hide_index=True,
                     key="exp_skipped")
    z = Path(last["zip"])
    if z.is_file():
        st.download_button(f"Download {z.name} ({z.stat().st_size / 2**20:.1f} MB)", data=z.read_bytes,
                           file_name=z.name, mime="application/zip", key="exp_download",
                           icon=":material/download:", on_click="ignore")

st.divider()
st.subheader("Predictions report")
st.caption("Every image with the active model's prediction, probabilities, queue and current label.")
rc = st.columns([1, 1, 3], vertical_alignment="bottom")
rfmt = rc[0].segmented_control("Report format", ["csv", "jsonl"], key="exp_rfmt", default="csv", required=True)
if rc[1].button("Build report", key="exp_report", icon=":material/table:"):
    path = ui.data_dir("exports", f"predictions-{time.strftime('%Y%m%d-%H%M%S')}.{rfmt}")
    try:
        ss["exp_report_path"] = str(datasets.predictions_report(db, path, fmt=rfmt))
    except SemTriageError as e:
        ui.show_error(e)
if (rp := ss.get("exp_report_path")) and Path(rp).is_file():
    st.download_button(f"Download {Path(rp).name}", data=Path(rp).read_bytes, file_name=Path(rp).name,
                       key="exp_report_download", icon=":material/download:", on_click="ignore")
