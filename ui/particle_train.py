"""The Particles page's Train view: train a candidate particle detector from the verified
images in the background (``core.jobs``: one per database, progress and Cancel through
``ui.progress.job_progress``), then the candidate beside the active detector on its held-out
verified images (F1, D50 error) with Promote / Discard. Administrators only; core refuses the
others too (``by=``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

import ui
from core import jobs, training
from core import particles as P
from core.errors import SemTriageError
from core.progress import Progress
from core.store import open_db
from ui.progress import job_progress

MSG = "pt_train_msg"  # (kind, text) shown once
CANDIDATE = "pt_candidate"


def job_key() -> str:
    """The one particle-training job of this database."""
    return "particles-train:" + ui.db_key()


def start(seconds: float, synthetic: int) -> None:
    path, out_dir, by = ui.settings().db, ui.data_dir("models", "particles"), ui.user()

    def work(progress: Progress, cancel: Any) -> dict[str, Any]:
        own = open_db(path)  # this thread's own connection
        try:
            return training.retrain_particles(own, out_dir, synthetic=synthetic, seconds=seconds,
                                              progress=progress, cancel=cancel, by=by)
        finally:
            own.conn.close()

    job = jobs.start_job(job_key(), "particle-train", work)
    if job.kind != "particle-train":  # cannot happen: the key is this job's own
        st.session_state[MSG] = ("warning", "Another job is running on this database.")


def _say(kind: str, text: str) -> None:
    st.session_state[MSG] = (kind, text)


def _finished(job: jobs.Job) -> None:
    """How the last training ended, once; then it is dropped."""
    jobs.forget_job(job_key())
    if job.status == "done":
        st.session_state[CANDIDATE] = job.result["version"]
        _say("success", f"Trained {ui.esc(job.result['version'])} on {job.result['trained_on']} "
                        f"verified image(s) in {job.result['seconds']} s: compare it below, then "
                        "promote or discard it.")
    elif job.status == "cancelled":
        _say("info", "Training was cancelled; no detector was registered.")
    else:
        _say("error", "Training failed: " + ui.job_failure_text(job, "Training"))


def _form(verified: int) -> None:
    if verified < P.MIN_TRAIN_VERIFIED:
        st.info(f"{verified} verified image(s). Training needs at least {P.MIN_TRAIN_VERIFIED}: one "
                "to learn from and one held out to compare the candidate with the active detector. "
                "Correct an image's particles in the Review view and press **Verify image** (V), or "
                "import proofread masks with `semtriage particles import-masks FOLDER`.",
                icon=":material/info:")
    c = st.columns([1, 1, 2], vertical_alignment="bottom")
    seconds = c[0].number_input("Training time (s)", min_value=5, max_value=3600, value=240, step=30,
                                key="pt_train_seconds")
    synthetic = c[1].number_input("Synthetic images", min_value=0, max_value=500, value=60, step=10,
                                  key="pt_train_synthetic",
                                  help="Generated micrographs mixed in with the verified images")
    if c[2].button("Train a candidate detector", key="pt_train", type="primary",
                   icon=":material/model_training:", disabled=verified < P.MIN_TRAIN_VERIFIED,
                   help="Runs in the background: you can keep working. The candidate stays "
                        "inactive until you promote it."):
        start(float(seconds), int(synthetic))
        st.rerun()


def _metric_line(m: dict[str, Any]) -> str:
    d50 = m.get("d50_rel_err")
    return (f"precision {m['precision']:.3f} · recall {m['recall']:.3f} · D50 error "
            f"{'–' if d50 is None else f'{d50:+.1%}'} · merges {m['merges']} · splits {m['splits']}")


def _comparison(db: Any, cand: dict[str, Any], admin: bool) -> None:
    m = cand["metrics"]
    c, a = m["candidate"], m["active_at_training"]
    held = len(m.get("held_out_images") or [])
    st.markdown(f"**On {held} held-out verified image(s)** the candidate never trained on")
    for col, who, ver, x, other in zip(st.columns(2), ("Candidate", "Active"),
                                       (cand["version"], a["version"]), (c, a), (a, None)):
        with col.container(border=True):
            st.markdown(f"**{who}** · {ui.esc(ver)}")
            d50 = x.get("d50_rel_err")
            k = st.columns(2)
            k[0].metric("F1", f"{x['f1']:.3f}",
                        delta=f"{x['f1'] - other['f1']:+.3f}" if other else None)
            k[1].metric("D50 error", "–" if d50 is None else f"{d50:+.1%}")
            st.caption(_metric_line(x))
    now = P.active_detector(db)["version"]
    if now != a["version"]:
        st.caption(f"The active detector is now {ui.esc(now)}; compare the candidate with it: "
                   f"`semtriage particles detector compare {ui.esc(cand['version'])}`.")
    if not admin:
        return
    b = st.columns([1, 1, 3])
    if b[0].button("Promote", key=f"pt_promote_{cand['id']}", type="primary", icon=":material/upgrade:",
                   help="Detection uses it from now on; verified images are never re-detected"):
        _act(lambda: P.promote_detector(db, cand["version"], by=ui.user()),
             lambda d: ("success", f"{ui.esc(d['version'])} is now the active particle detector."))
    if b[1].button("Discard", key=f"pt_discard_{cand['id']}", icon=":material/delete:"):
        _act(lambda: P.discard_detector(db, cand["version"], by=ui.user()),
             lambda res: ("info", f"Discarded {ui.esc(res['discarded'])}."))


def _act(do: Callable[[], dict[str, Any]], said: Callable[[dict[str, Any]], tuple[str, str]]) -> None:
    """One administrator's action on a candidate: its error shown, or its message kept for
    the next run and the page rerun."""
    try:
        res = do()
    except SemTriageError as e:
        ui.show_error(e)
    else:
        _say(*said(res))
        st.rerun()


def train_view(db: Any) -> None:
    """The whole view: the job (or its form), then the candidates."""
    job = jobs.get_job(job_key())
    if job is not None and not job.running:
        _finished(job)
        job = None
    msg = st.session_state.pop(MSG, None)
    if msg:
        getattr(st, msg[0])(msg[1])
    admin = ui.is_admin()
    verified = len(P.verified_images(db))
    st.caption(f"Active detector: {ui.esc(P.active_detector(db)['version'])} · {verified} verified "
               "image(s) to learn from. A candidate is fine-tuned on them (whole folders held out) "
               "and compared with the active detector on the held-out ones.")
    if job is not None:
        job_progress(job_key(), "Training a candidate detector", "pt_train_cancel", can_cancel=admin)
    elif admin:
        _form(verified)
    else:
        ui.require_admin()
    cands = P.detector_candidates(db)
    if not cands:
        return
    versions = [d["version"] for d in cands]
    if st.session_state.get(CANDIDATE) not in versions:
        st.session_state[CANDIDATE] = versions[0]
    v = st.selectbox("Candidate", versions, key=CANDIDATE)
    _comparison(db, next(d for d in cands if d["version"] == v), admin)
