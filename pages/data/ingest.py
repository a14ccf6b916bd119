"""Ingest: add images from the browser (files or a zip) or from a folder on the server; each new
image is stored, predicted by the active model and routed to a queue. The ingest runs in the
background (ui/ingest.py): closing the tab does not stop it."""

import time

import pandas as pd
import streamlit as st

import ui
from core import intake
from core.errors import SemTriageError
from core.files import IMAGE_SUFFIXES
from ui import ingest as job

st.title(":material/upload: Ingest")
db, key, cfg = ui.db(), ui.db_key(), ui.settings()
model = ui.active_model(db, key)
if model is None:
    st.warning("No active model: images will be stored but not predicted until a model is added "
               "on **Models & thresholds**.", icon=":material/warning:")
running = job.show_last(job.job_key(key))
if refused := st.session_state.get("ing_refused_rows"):  # the last upload's refusals
    st.warning(f"{len(refused)} uploads were refused:", icon=":material/block:")
    st.dataframe(pd.DataFrame(refused, columns=["upload", "reason"]), hide_index=True,
                 key="ing_rejected")
if not running:
    job.resume_offer(db, model)
admin = ui.is_admin()


def replace_box(where: str) -> bool:
    return st.checkbox("Replace existing labels with the folder names (administrators)",
                       key=f"ing_{where}_replace", disabled=not admin,
                       help="Off: an image that already has a label keeps it.")


def begin(**kw) -> None:
    try:
        job.start(model, **kw)
    except SemTriageError as e:
        ui.show_error(e)
        return
    st.rerun()


tab_up, tab_dir = st.tabs(["Upload files or a zip", "Folder on the server"])
with tab_up:
    files = st.file_uploader(
        f"Images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) or zip archives — up to "
        f"{cfg.upload_max_mb} MB each", type=[s[1:] for s in IMAGE_SUFFIXES] + ["zip"],
        accept_multiple_files=True, key="ing_files", max_upload_size=cfg.upload_max_mb,
    )
    up_labels = st.checkbox("Labels from folder names (zip archives with one folder per class)",
                            key="ing_up_labels")
    up_replace = replace_box("up") if up_labels else False
    if st.button("Ingest uploads", key="ing_go_upload", type="primary", disabled=not files or running,
                 icon=":material/upload:"):
        dest = ui.data_dir("uploads", time.strftime("%Y%m%d-%H%M%S"))
        try:
            saved, rejected = intake.save_uploads(((f.name, f) for f in files), dest,
                                                  max_bytes=cfg.upload_max_mb * 2**20,
                                                  max_pixels=cfg.max_pixels)
        except SemTriageError as e:
            ui.show_error(e)
            saved, rejected = [], []
        st.session_state["ing_refused_rows"] = rejected
        if saved:
            begin(uploads=[dest], labels=up_labels, replace=up_replace)
        else:
            st.rerun()

with tab_dir:
    st.caption("Allowed folders (SEMTRIAGE_ROOTS): " + ", ".join(f"`{ui.esc(r)}`" for r in cfg.roots))
    folder = st.text_input("Folder on the server", key="ing_folder", placeholder=cfg.roots[0] if cfg.roots else "")
    dir_labels = st.checkbox("Labels from folder names (one sub-folder per class)", key="ing_dir_labels")
    dir_replace = replace_box("dir") if dir_labels else False
    if st.button("Ingest folder", key="ing_go_folder", type="primary",
                 disabled=not folder.strip() or running, icon=":material/folder_open:"):
        try:
            path = intake.check_allowed(folder.strip(), cfg.roots)
        except SemTriageError as e:
            ui.show_error(e)
        else:
            if not path.is_dir():
                st.error(f"{ui.esc(folder.strip())} is not a folder on the server.", icon=":material/error:")
            else:
                begin(folder=path, labels=dir_labels, replace=dir_replace)
