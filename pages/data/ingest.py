"""Ingest: add images from the browser (files or a zip) or from a folder on the server; each new
image is stored, predicted by the active model and routed to a queue."""

import time

import pandas as pd
import streamlit as st

import ui
from core import intake
from core.errors import SemTriageError
from core.files import IMAGE_SUFFIXES

st.title(":material/upload: Ingest")
db, key, cfg = ui.db(), ui.db_key(), ui.settings()
model = ui.active_model(db, key)
if model is None:
    st.warning("No active model: images will be stored but not predicted until a model is added "
               "on **Models & thresholds**.", icon=":material/warning:")


def run_ingest(groups: list[tuple[list, bool]]) -> None:
    """Ingest each (paths, labels_from_folders) group with one progress bar; show the report."""
    try:
        clf = ui.classifier(model) if model else None
    except SemTriageError as e:  # e.g. the model file changed after it was registered
        ui.show_error(e)
        return
    bar = st.progress(0.0, text="Starting…")
    failed: list[tuple[str, str]] = []
    summaries = []
    routed: dict[str, int] = {}
    try:
        for paths, from_folders in groups:
            if not paths:
                continue
            rep = intake.ingest(
                db, paths, classifier=clf, model_id=model["id"] if model else None,
                labels_from_folders=from_folders, settings=cfg,
                progress=lambda f, m: bar.progress(f, text=m),
            )
            failed += rep.failed
            summaries.append(rep.summary())
            for q, n in rep.routed.items():
                routed[q] = routed.get(q, 0) + n
            routed["labelled"] = routed.get("labelled", 0) + min(rep.auto_labelled, rep.routed.get("auto", 0))
    except SemTriageError as e:
        ui.show_error(e)
        return
    finally:
        ui.clear_after_model()
    bar.progress(1.0, text="Done")
    (st.warning if failed else st.success)(ui.esc("; ".join(summaries)),
                                          icon=":material/warning:" if failed else ":material/check:")
    if failed:
        st.markdown(f"**{len(failed):,} files could not be ingested:**")
        st.dataframe(pd.DataFrame(failed, columns=["file", "reason"]), hide_index=True, key="ing_failed")
    if routed:  # where the new images went: the auto-labelled ones reach no review queue
        st.markdown("**Where the new images went**")
        for col, q in zip(st.columns(3), ("auto", "uncertain", "mixed")):
            col.metric("Confident" if q == "auto" else f"{ui.QUEUE_LABELS[q]} queue",
                       f"{routed.get(q, 0):,}", border=True)
        if routed.get("labelled"):
            st.caption(f"{routed['labelled']:,} images were labelled by the model without a person: they "
                       "reach a reviewer only through the spot-check queues (the blind one measures how "
                       "often the model is wrong there).")
        if unverified := routed.get("auto", 0) - routed.get("labelled", 0):
            st.caption(f"{unverified:,} confident images were not labelled: the model's auto-accept is "
                       "not certified on this lab's images yet. Confirm them on Grid confirm — each "
                       "confirmation counts towards certification.")
    if model is not None:
        st.page_link(ui.REVIEW_PAGE, label="Start reviewing", icon=":material/rate_review:")


tab_up, tab_dir = st.tabs(["Upload files or a zip", "Folder on the server"])
with tab_up:
    files = st.file_uploader(
        f"Images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) or zip archives — up to "
        f"{cfg.upload_max_mb} MB each", type=[s[1:] for s in IMAGE_SUFFIXES] + ["zip"],
        accept_multiple_files=True, key="ing_files", max_upload_size=cfg.upload_max_mb,
    )
    up_labels = st.checkbox("Labels from folder names (zip archives with one folder per class)",
                            key="ing_up_labels")
    if st.button("Ingest uploads", key="ing_go_upload", type="primary", disabled=not files,
                 icon=":material/upload:"):
        dest = ui.data_dir("uploads", time.strftime("%Y%m%d-%H%M%S"))
        try:
            saved, rejected = intake.save_uploads(((f.name, f) for f in files), dest,
                                           max_bytes=cfg.upload_max_mb * 2**20, max_pixels=cfg.max_pixels)
        except SemTriageError as e:
            ui.show_error(e)
            saved, rejected = [], []
        if rejected:
            st.warning(f"{len(rejected)} uploads were refused:", icon=":material/block:")
            st.dataframe(pd.DataFrame(rejected, columns=["upload", "reason"]), hide_index=True,
                         key="ing_rejected")
        if saved:
            # a folder label only makes sense for files inside a zip's class folder
            nested = [p for p in saved if p.parent != dest]
            flat = [p for p in saved if p.parent == dest]
            run_ingest([(nested, up_labels), (flat, False)])

with tab_dir:
    st.caption("Allowed folders (SEMTRIAGE_ROOTS): " + ", ".join(f"`{r}`" for r in cfg.roots))
    folder = st.text_input("Folder on the server", key="ing_folder", placeholder=cfg.roots[0] if cfg.roots else "")
    dir_labels = st.checkbox("Labels from folder names (one sub-folder per class)", key="ing_dir_labels")
    if st.button("Ingest folder", key="ing_go_folder", type="primary", disabled=not folder.strip(),
                 icon=":material/folder_open:"):
        try:
            path = intake.check_allowed(folder.strip(), cfg.roots)
        except SemTriageError as e:
            ui.show_error(e)
        else:
            if not path.is_dir():
                st.error(f"{ui.esc(str(path))} is not a folder on the server.", icon=":material/error:")
            else:
                run_ingest([([path], dir_labels)])
