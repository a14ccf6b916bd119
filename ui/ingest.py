"""The Ingest page's background job (Streamlit only): an upload or a server folder is ingested
in a core.jobs thread with its own database connection, keyed by the database, so closing the
tab neither stops it part-way nor hides how it ended; the page polls it from a fragment. An
upload that stopped with the server is offered again (``core.intake.unfinished_uploads``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import ui
from core import intake, jobs, similarity
from core.errors import SemTriageError
from core.progress import Progress
from core.store import open_db
from ui.failures import guarded


def job_key(db_key: str) -> str:
    return "ingest:" + db_key


def start(model: dict[str, Any] | None, *, uploads: list[Path] = (), folder: Path | None = None,  # type: ignore[assignment]
          labels: bool = False, replace: bool = False) -> None:
    """Start ingesting ``uploads`` (upload folders) or a server ``folder`` in the background."""
    cfg, by = ui.settings(), ui.user()
    clf = ui.classifier(model) if model else None  # a refused model is said before starting
    model_id = model["id"] if model else None

    def work(progress: Progress, cancel: Any) -> intake.IngestReport:
        own = open_db(cfg.db)  # this thread's own connection
        try:
            if folder is not None:
                total = intake.ingest(own, [folder], classifier=clf, model_id=model_id,
                                      labels_from_folders=labels, settings=cfg, progress=progress,
                                      allowed_roots=cfg.roots, importer=f"import:{by.name or 'upload'}",
                                      replace_labels=replace, by=by)
            else:
                total = intake.IngestReport()
                for up in uploads:
                    rep = intake.ingest_upload(own, up, classifier=clf, model_id=model_id,
                                               labels_from_folders=labels, settings=cfg,
                                               progress=progress, by=by, replace_labels=replace)
                    intake.received._add(total, rep)
            if total.added:  # the new images get neighbours at once where a similarity view exists
                with contextlib.suppress(SemTriageError):  # never fails the ingest itself
                    similarity.embed_new(own, progress=progress, cancel=cancel)
            return total
        finally:
            own.conn.close()

    jobs.start_job(job_key(ui.db_key()), "ingest", work)


@st.fragment(run_every=1.0)
@guarded("Showing the ingest's progress")
def progress_box(key: str) -> None:
    job = jobs.get_job(key)
    if job is None or not job.running:
        st.rerun()  # the whole page: show the report
    assert job is not None
    st.progress(job.fraction, text=f"Ingesting · {job.message}")
    st.caption("Runs on the server: you may close this tab; the result waits here.")
    if st.button("Stop", key="ing_cancel", icon=":material/stop:",
                 help="Stops after the current batch; what was stored stays, and the rest can "
                      "be resumed."):
        job.cancel()


def routing(rep: intake.IngestReport) -> None:
    """Where the new images went: the auto-labelled ones reach no review queue."""
    if not rep.routed:
        return
    st.markdown("**Where the new images went**")
    for col, q in zip(st.columns(3), ("auto", "uncertain", "mixed")):
        col.metric("Confident" if q == "auto" else f"{ui.QUEUE_LABELS[q]} queue",
                   f"{rep.routed.get(q, 0):,}", border=True)
    labelled = min(rep.auto_labelled, rep.routed.get("auto", 0))
    if labelled:
        st.caption(f"{labelled:,} images were labelled by the model without a person: they reach a "
                   "reviewer only through the spot-check queues (the blind one measures how often the "
                   "model is wrong there).")
    if unverified := rep.routed.get("auto", 0) - labelled:
        st.caption(f"{unverified:,} confident images were not labelled: the model's auto-accept is not "
                   "certified on this lab's images yet. Confirm them on Grid confirm — each "
                   "confirmation counts towards certification.")


def show_last(key: str) -> bool:
    """How the last ingest ended (once), or its progress; True while one runs."""
    job = jobs.get_job(key)
    if job is None:
        return False
    if job.running:
        progress_box(key)
        return True
    jobs.forget_job(key)
    ui.clear_after_model()
    if job.status == "done":
        rep: intake.IngestReport = job.result
        (st.warning if rep.failed else st.success)(
            ui.esc(rep.summary()), icon=":material/warning:" if rep.failed else ":material/check:")
        if rep.failed:
            st.markdown(f"**{len(rep.failed):,} files could not be ingested:**")
            st.dataframe(pd.DataFrame(rep.failed, columns=["file", "reason"]), hide_index=True,
                         key="ing_failed")
        if rep.routed:  # where the new images went: the auto-labelled ones reach no review queue
            labelled = min(rep.auto_labelled, rep.routed.get("auto", 0))
            st.markdown("**Where the new images went**")
            for col, q in zip(st.columns(3), ("auto", "uncertain", "mixed")):
                col.metric("Confident" if q == "auto" else f"{ui.QUEUE_LABELS[q]} queue",
                           f"{rep.routed.get(q, 0):,}", border=True)
            if labelled:
                st.caption(f"{labelled:,} images were labelled by the model without a person: they "
                           "reach a reviewer only through the spot-check queues (the blind one "
                           "measures how often the model is wrong there).")
            if unverified := rep.routed.get("auto", 0) - labelled:
                st.caption(f"{unverified:,} confident images were not labelled: the model's "
                           "auto-accept is not certified on this lab's images yet. Confirm them on "
                           "Grid confirm — each confirmation counts towards certification.")
        if rep.labels_kept:
            st.info(f"{rep.labels_kept:,} images already had a label, which was kept: folder names "
                    "replace labels only when an administrator ticks **Replace existing labels**.",
                    icon=":material/info:")
        routing(rep)
        if rep.added:
            st.page_link(ui.REVIEW_PAGE, label="Start reviewing", icon=":material/rate_review:")
    elif job.status == "cancelled":
        st.info("Ingest stopped; what was stored stays. Resume it below.", icon=":material/info:")
    else:
        ui.show_job_failure(job, "Ingest")
    return False


def resume_offer(db: Any, model: dict[str, Any] | None) -> None:
    """Uploads that were saved but not (fully) ingested, with a button to finish them."""
    try:
        left = intake.unfinished_uploads(db, ui.data_dir("uploads"))
    except (OSError, SemTriageError):
        return
    if not left:
        return
    c = st.columns([4, 1], vertical_alignment="center")
    c[0].info(f"{len(left)} earlier uploads were not fully ingested (stopped, or the server "
              "restarted).", icon=":material/history:")
    if c[1].button("Resume", key="ing_resume", icon=":material/play_arrow:"):
        try:
            start(model, uploads=left)
        except SemTriageError as e:
            ui.show_error(e)
        st.rerun()
