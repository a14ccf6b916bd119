"""The progress of a background job (core.jobs) on its page: a fragment that reruns every
second, a Cancel button, and the whole page again once the job has ended."""

from __future__ import annotations

import streamlit as st

from core import jobs
from ui.failures import guarded


@st.fragment(run_every=1.0)
@guarded("Showing the progress")
def job_progress(key: str, what: str, cancel_key: str, can_cancel: bool = True) -> None:
    """``what · message`` over the job ``key``'s progress bar; Cancel (widget ``cancel_key``)
    unless not ``can_cancel`` (someone who may not start the job may not stop it either)."""
    job = jobs.get_job(key)
    if job is None or not job.running:
        st.rerun()  # the whole page: show how it ended
    assert job is not None
    st.progress(job.fraction, text=f"{what} · {job.message}")
    if can_cancel and st.button("Cancel", key=cancel_key, icon=":material/stop:"):
        job.cancel()
