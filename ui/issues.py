"""The Reference page's "Likely mislabelled" view (Streamlit only).

It runs the label-issue finder (core/training.py) as a background job (core/jobs.py, one per
database: a rerun or another browser finds it; progress polled from a fragment; Cancel keeps
the previous findings) and lists its findings to keep or relabel.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from sqlite_utils import Database

import ui
from core import jobs, review, training
from core.errors import SemTriageError
from core.progress import Progress
from core.store import open_db
from ui.failures import guarded
from ui.progress import job_progress

ISSUES_SHOWN = 20
GROUPING_LABELS: dict[str, str] = {"auto": "Automatic", "folders": "Folders and near-copies", "near-copies": "Near-copies only"}


def job_key(db_key: str) -> str:
    """One finder per database, found again by any session."""
    return "label_issues:" + db_key


def start_finder(job: str, grouping: str = "auto") -> None:
    path, by = ui.settings().db, ui.user()  # who asked: core refuses a non-administrator

    def work(progress: Progress, cancel: Any) -> training.IssueReport:
        own = open_db(path)  # this thread's own connection
        try:
            return training.find_issues(own, progress=progress, cancel=cancel, grouping=grouping, by=by)
        finally:
            own.conn.close()

    jobs.start_job(job, "label_issues", work)


@guarded("Resolving the label issue")
def resolve(iid: int, action: str) -> None:
    try:
        training.resolve_issue(ui.db(), iid, ui.reviewer(), action)
    except SemTriageError as e:
        st.session_state["li_msg"] = str(e)
    ui.clear_after_label()


def issues_view(db: Database, db_key: str) -> None:
    """Run the finder (in the background), then the open issues, most likely wrong first."""
    key = job_key(db_key)
    job = jobs.get_job(key)
    if job is not None and not job.running:  # how the last run ended, shown once
        jobs.forget_job(key)
        if job.status == "done":
            st.success(job.result.summary(), icon=":material/task_alt:")
        elif job.status == "cancelled":
            st.info("Finding label issues was cancelled; the previous findings are kept.",
                    icon=":material/info:")
        else:
            ui.show_job_failure(job, "Finding label issues")
    run, counts = training.last_run(db), training.issue_counts(db)
    c = st.columns([4, 1.3, 1], vertical_alignment="bottom")
    c[0].caption("Images whose label a model trained without them (nor their near-copies) "
                 "contradicts: out-of-fold texture classifier + confident learning (cleanlab). "
                 + (f"Last run {run['run_at']}: {run['flagged']} flagged of {run['labels']}; open "
                    f"{counts['open']}, kept {counts['kept']}, relabelled {counts['relabelled']}."
                    if run else "Not run yet.")
                 + (f" Last run {training.GROUPING_COST}." if run and run.get("grouping") == "near-copies"
                    else ""))
    grouping: str = c[1].selectbox(
        "Keep together", list(GROUPING_LABELS), format_func=lambda g: GROUPING_LABELS[g], key="li_grouping",
        help="Which images share a fold, so that a near-copy cannot vouch for a wrong label. "
             "Automatic: folders and near-copies, or near-copies only when the images are not in "
             f"several folders (e.g. one flat folder). Near-copies only: {training.GROUPING_COST}.")
    if job is not None and job.running:
        job_progress(key, "Finding label issues", "li_cancel")
    elif c[2].button("Find issues", key="li_run", icon=":material/troubleshoot:", type="primary",
                     width="stretch", disabled=not ui.is_admin(),
                     help="Runs in the background; you can keep working." if ui.is_admin() else
                     "Administrators only: its findings replace everyone's list."):
        start_finder(key, grouping or "auto")
        st.rerun()
    if (msg := st.session_state.pop("li_msg", None)) is not None:
        st.error(msg, icon=":material/error:")
    rows = training.issue_queue(db, limit=ISSUES_SHOWN)
    if not rows:
        if run:
            st.info("No open label issues.", icon=":material/task_alt:")
        return
    st.caption(f"The {len(rows)} most likely mislabelled of {training.issue_counts(db)['open']} open. "
               "Keep: the label is right (not flagged again). Relabel: take the suggestion.")
    who = ui.reviewer()
    for r in rows:
        iid = r["image_id"]
        with st.container(border=True, key=f"li_row_{iid}", horizontal=True, vertical_alignment="center"):
            if (thumb := review.thumbnail(db, iid)) is not None:
                st.image(thumb, width=96)
            st.markdown(f"**{ui.esc(r['name'])}**  \nlabel **{ui.esc(r['given'])}** · suggested "
                        f"**{ui.esc(r['suggested'])}**  \np(label) {r['score']:.2f} · "
                        f"p(suggested) {r['suggested_p']:.2f}", width="stretch")
            st.button("Keep", key=f"li_keep_{iid}", icon=":material/check:", disabled=not who,
                      on_click=resolve, args=(iid, "keep"))
            st.button(f"Relabel as {ui.esc(r['suggested'])}", key=f"li_relabel_{iid}", type="primary",
                      icon=":material/edit:", disabled=not who, on_click=resolve, args=(iid, "relabel"),
                      help=None if who else "Type your name in the sidebar first")
