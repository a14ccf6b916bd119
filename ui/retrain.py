"""The Models page's Retrain tab and its threshold recommendation (Streamlit only).

Behaviour lives in core: ``core.training`` (retrain, compare), ``core.workflows.promote``,
``core.models.discard``, ``core.jobs`` (the background thread, its progress and cancel),
``core.models`` calibration (threshold with an error bound, risk–coverage curve). Retraining
and promotion (which re-predicts every image and rebuilds the queues) run as ``core.jobs`` jobs under one key per database, so only one of them
runs at a time, and a page rerun or a second browser finds the run in progress instead of
starting another; the page polls it from a fragment that reruns every second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
from core import jobs, models, review, training, workflows
from core.config import DEFAULT_MODEL
from core.errors import SemTriageError
from core.models import Recommendation
from core.progress import Progress
from core.store import open_db
from ui.failures import guarded

POLL_S = 1.0
RT_MSG = "rt_msg"  # (kind, text) shown once after promote / discard
REC_MSG = "rec_msg"  # (kind, text) shown once after applying recommended thresholds


def job_key() -> str:
    """The one key of model jobs (kinds ``retrain`` and ``promote``) on this database."""
    return "retrain:" + ui.db_key()


def busy_text(job: jobs.Job) -> str:
    what = "A promotion" if job.kind == "promote" else "A retraining"
    return (f"{what} is running ({ui.esc(job.message)}); retraining and promotion wait until it has "
            "finished" + ("." if job.kind == "promote" else " or is cancelled."))


def _start_job(kind: str, work: jobs.Work) -> None:
    """Start a model job unless one is running (then say which, once, after the rerun)."""
    held = jobs.get_job(job_key())
    job = held if held is not None and held.running else jobs.start_job(job_key(), kind, work)
    # start_job hands back, instead of starting ours, a job another session started just now
    if job is held or job.kind != kind:
        st.session_state[RT_MSG] = ("warning", busy_text(job))


def _flash(key: str) -> None:
    msg = st.session_state.pop(key, None)
    if msg:
        getattr(st, msg[0])(msg[1], icon=":material/info:" if msg[0] == "info" else None)


def _options(active: dict[str, Any] | None) -> training.RetrainOptions:
    c = st.columns(3)
    names = {"cnn": "CNN", "texture": "Texture features + linear head", "best": "Both: keep the better"}
    family = c[0].selectbox("Model family", list(training.FAMILIES), key="rt_family",
                            format_func=lambda f: names.get(f, f),
                            help="With a few hundred labels from few specimens the texture family "
                            "often wins; 'both' trains each and keeps the better on unseen groups.")
    holdout = c[1].slider("Held out (whole groups)", 0.1, 0.4, 0.2, 0.05, key="rt_holdout")
    epochs = c[2].number_input("CNN epochs", 1, 200, 22, key="rt_epochs")
    d = st.columns([1, 1, 1, 1])
    folder = d[3].toggle("Group by folder", value=True, key="rt_folder",
                         help="Images in one folder are held out together. Turn off when a "
                         "folder mixes specimens (then give a file-name pattern).")
    pattern = d[0].text_input("Specimen / session in file names (regex)", key="rt_pattern",
                              placeholder=r"^(S\d+)_",
                              help="Images whose names share this match (its first group) are "
                              "held out together, like images in one folder and near-copies.")
    synth = d[1].number_input("Synthetic images per class (training only)", 0, 2000, 0, 50,
                              key="rt_synth", help="Generated micrographs added to training, "
                              "never to the held-out test. They also keep the active model's "
                              "classes that have no labels yet.")
    init = d[2].toggle("Start from the active model's weights", key="rt_init",
                       disabled=active is None or family == "texture")
    return training.RetrainOptions(family=family or "cnn", holdout=float(holdout), epochs=int(epochs),
                                  group_pattern=pattern.strip() or None, use_folder=bool(folder),
                                  synthetic_per_class=int(synth), init_from_active=bool(init))


def _start(opts: training.RetrainOptions) -> None:
    path, out_dir, cfg, by = ui.settings().db, ui.data_dir("models", "retrained"), ui.settings(), ui.user()

    def work(progress: Progress, cancel: Any) -> dict[str, Any]:
        db = open_db(path)  # this thread's own connection
        try:
            res = training.retrain(db, opts, out_dir, settings=cfg, progress=progress,
                                  cancel=cancel, by=by)
            return {"model_id": res.model["id"], "version": res.model["version"],
                    "headline": res.headline}
        finally:
            db.conn.close()

    _start_job("retrain", work)


def use_default_button(db: Any, key: str, admin: bool, busy: Any) -> None:
    """The shipped default model, one click away (its card comes with it): registered, made
    active and — when images are stored — predicted in the background."""
    if not admin or not DEFAULT_MODEL.is_file():
        return
    if st.button("Use the shipped default model", key=key, icon=":material/deployed_code:",
                 disabled=busy is not None,
                 help="Trained by SEM Triage's own code on synthetic micrographs (its card says how it "
                      "scored there); measure it on your own labelled images before trusting it."):
        try:
            m = workflows.use_default_model(db, by=ui.user())
        except SemTriageError as e:
            ui.show_error(e)
            return
        ui.clear_after_model()
        start_promote(m["id"])  # predicts what is stored (nothing on a fresh database)
        st.rerun()


def start_promote(model_id: int) -> None:
    """Promote in the background: activate, predict every unpredicted image, re-route. Also
    the Model versions tab's "Make active and predict" and "Predict … not yet predicted"
    (promoting the active model predicts what it has not seen), so a switch on a large
    database neither blocks the page nor stops half-way when the user clicks elsewhere."""
    path, cfg, by = ui.settings().db, ui.settings(), ui.user()

    def work(progress: Progress, cancel: Any) -> dict[str, Any]:
        db = open_db(path)  # this thread's own connection
        try:
            return workflows.promote(db, model_id, cfg, progress=progress, by=by)
        finally:
            db.conn.close()

    _start_job("promote", work)


def _finished(job: jobs.Job) -> None:
    """Show how the last model job ended (once) and drop it from the registry."""
    jobs.forget_job(job_key())
    if job.kind == "promote":
        if job.status == "done":
            res = job.result
            ui.clear_after_model()  # active model, queues, charts: all derived from the switch
            bad = res["failed"]
            failed = (f"; {len(bad):,} could not be read (" + "; ".join(
                ui.esc(f"{Path(f['path']).name}: {f['reason']}") for f in bad[:3])
                + ("; …" if len(bad) > 3 else "") + ")") if bad else ""
            st.session_state[RT_MSG] = ("success", f"{ui.esc(res['active'])} is now active: "
                                        f"{res['predicted']:,} images predicted{failed}, queues "
                                        "rebuilt " + ", ".join(f"{q} {n:,}" for q, n in res["queues"].items()))
        else:
            ui.clear_after_model()  # it may have switched before failing
            st.session_state[RT_MSG] = ("error", "Promotion failed: " + ui.job_failure_text(job, "Promotion"))
        st.rerun()  # the whole page: the new active model everywhere
    if job.status == "done":
        st.session_state[RT_MSG] = ("success", (f"Trained {ui.esc(job.result['version'])}: "
                                                f"held-out accuracy on unseen groups "
                                                f"{job.result['headline']:.1%}. Compare it "
                                                "below, then promote or discard it."))
        st.session_state["rt_candidate"] = job.result["model_id"]
        ui.models.clear()  # the candidate is listed under Model versions at once
        st.rerun()  # the whole page, not only this fragment
    elif job.status == "cancelled":
        st.info("Retraining was cancelled; nothing was registered.", icon=":material/info:")
    else:
        ui.show_job_failure(job, "Retraining")


@st.fragment(run_every=POLL_S)
@guarded("Showing the progress")
def _progress(admin: bool) -> None:
    job = jobs.get_job(job_key())
    if job is None or not job.running:
        st.rerun()  # the whole page: show the result
    assert job is not None
    what = "Promoting" if job.kind == "promote" else "Retraining"
    st.progress(job.fraction, text=f"{what} · {job.message}")
    if admin and job.kind == "retrain" and st.button("Cancel", key="rt_cancel", icon=":material/stop:"):
        job.cancel()


def job_status(admin: bool) -> jobs.Job | None:
    """Above the Models page's tabs: the running model job's progress, or how the last one
    ended (once). Returns the running job, if any."""
    _flash(RT_MSG)
    job = jobs.get_job(job_key())
    if job is not None and job.running:
        _progress(admin)
        return job
    if job is not None:
        _finished(job)
    return None


def retrain_tab(db: Any, active: dict[str, Any] | None, admin: bool,
                job: jobs.Job | None) -> None:
    """``job``: the running model job (:func:`job_status`), whose progress shows above."""
    counts = training.label_summary(db)
    st.caption(f"{sum(counts.values()):,} labelled images to learn from (human and imported "
               "labels; several / unusable left out): "
               + (", ".join(f"{ui.esc(c)} {n:,}" for c, n in counts.items()) or "none yet"))
    if job is not None and job.kind == "promote":  # candidates and active model change as it ends
        st.caption("Predicting every image the new model has not seen and rebuilding the "
                   "queues. Retraining and other promotions wait until it has finished.")
        return
    if job is not None:
        st.caption("Retraining is running: its progress shows above the tabs.")
    elif admin:
        with st.expander("Train a candidate", icon=":material/model_training:",
                         expanded=not models.find_candidates(db)):
            opts = _options(active)
            if st.button("Start retraining", key="rt_start", type="primary",
                         icon=":material/play_arrow:"):
                try:
                    opts.validate()
                except SemTriageError as e:
                    ui.show_error(e)
                else:
                    _start(opts)
                    st.rerun()
    cands = models.find_candidates(db)
    if not cands:
        st.info("No candidate yet. A candidate trains on the labels, never sees the held-out "
                "groups, and stays inactive until promoted.", icon=":material/info:")
        return
    ids = [m["id"] for m in cands]
    if st.session_state.get("rt_candidate") not in ids:
        st.session_state.pop("rt_candidate", None)
    cid = st.selectbox("Candidate", ids, key="rt_candidate",
                       format_func=lambda i: next(m["version"] for m in cands if m["id"] == i))
    _comparison(db, next(m for m in cands if m["id"] == cid), admin)


def _heatmap(cm: dict[str, Any], title: str) -> go.Figure:
    fig = px.imshow(cm["matrix"], x=cm["columns"], y=cm["rows"], text_auto=True, aspect="auto",
                    color_continuous_scale="Blues",
                    labels={"x": "predicted", "y": "human label", "color": "images"})
    fig.update_layout(height=340, margin={"l": 0, "r": 0, "t": 30, "b": 0}, title=title)
    return fig


def _comparison(db: Any, cand: dict[str, Any], admin: bool) -> None:
    try:
        c = training.compare(db, cand["id"], settings=ui.settings())
    except SemTriageError as e:
        ui.show_error(e)
        return
    rt = (cand["card"] or {}).get("retrain") or {}
    st.markdown(f"**Same {c['images']:,} held-out human labels**"
                + (f" from {c['groups']} groups the candidate never trained on" if c["groups"] else "")
                + (f" ({c['excluded_trained_on_by_active']} left out: the active model trained on "
                   "them)" if c["excluded_trained_on_by_active"] else ""))
    sides = [("Candidate", c["candidate"])] + ([("Active", c["active"])] if c["active"] else [])
    for col, (who, m) in zip(st.columns(len(sides)), sides):
        other = c["active"] if who == "Candidate" and c["active"] else None
        a = m["auto_accept"]
        with col.container(border=True):
            st.markdown(f"**{who}** · {ui.esc(m['version'])}")
            x = st.columns(3)
            x[0].metric("Accuracy", f"{m['accuracy']:.1%}",
                        delta=f"{m['accuracy'] - other['accuracy']:+.1%}" if other else None)
            x[1].metric("ECE", f"{m['ece']:.3f}")
            x[2].metric("Auto-accept", "—" if a["precision"] is None else f"{a['precision']:.1%}",
                        help="Precision of auto-accepted labels at the current thresholds")
            st.caption(f"95 % interval {m['interval'][0]:.1%}–{m['interval'][1]:.1%} · auto-accepts "
                       f"{a['coverage']:.0%} of these images ({a['accepted']}, {a['correct']} right)")
            ui.plotly_chart(st, _heatmap(m["confusion_matrix"], "Confusion"), key=f"rt_cm_{who}")
    rec = pd.DataFrame({"class": list(c["candidate"]["per_class"]),
                        "images": [v["support"] for v in c["candidate"]["per_class"].values()],
                        "candidate recall": [v["recall"] for v in c["candidate"]["per_class"].values()]})
    if c["active"]:
        rec["active recall"] = [c["active"]["per_class"].get(k, {}).get("recall") for k in rec["class"]]
    st.dataframe(rec, hide_index=True, key="rt_recall", column_config={
        k: st.column_config.NumberColumn(k, format="percent") for k in ("candidate recall", "active recall")})
    fams = rt.get("families") or {}
    if len(fams) > 1:
        st.caption("Families: " + " · ".join(f"{f} {v['accuracy']:.1%} (ECE {v['ece']:.3f})"
                                             for f, v in fams.items())
                   + f" — kept {rt.get('family')}; {rt.get('chosen_by', '')}.")
    gone = (rt.get("classes") or {}).get("of_the_active_model_not_learnt")
    if gone:
        st.warning("No labels for " + ", ".join(ui.esc(g) for g in gone) + " (classes of the active "
                   "model): this candidate does not know them, and after promotion such images get "
                   "another class. Add synthetic images per class, or label some first.",
                   icon=":material/warning:")
    if rt.get("calibration"):
        st.caption("Calibration: " + ui.esc(rt["calibration"]) + ".")
    if not admin:
        return
    b = st.columns([1, 1, 3])
    if b[0].button("Promote", key=f"rt_promote_{cand['id']}", type="primary", icon=":material/upgrade:",
                   help="Runs in the background: predicts every image this model has not seen "
                   "and rebuilds the queues."):
        start_promote(cand["id"])
        st.rerun()
    if b[1].button("Discard", key=f"rt_discard_{cand['id']}", icon=":material/delete:"):
        try:
            res = models.discard(db, cand["id"], by=ui.user())
        except SemTriageError as e:
            ui.show_error(e)
        else:
            ui.clear_after_model()
            st.session_state[RT_MSG] = ("info", f"Discarded {ui.esc(res['discarded'])}.")
            st.rerun()


# ---------------------------------------------------------------- threshold recommendation


@guarded("Applying the recommended thresholds")
def _apply(db: Any, model_id: int, recs: dict[str, Recommendation],
           per_class: bool) -> None:
    """Button callback: certify the recommended thresholds (core.review.certify: recorded,
    stored, re-routed; auto labels follow) before the rerun, so the sliders take the new
    values."""
    try:
        rep = review.certify(db, model_id, target=recs["*"].target, level=recs["*"].level,
                             per_class=per_class, by=ui.user())
    except SemTriageError as e:
        st.session_state[REC_MSG] = ("error", str(e))
        return
    for k in ("thr_accept", "thr_per_class"):
        st.session_state.pop(k, None)
    ui.clear_after_model()
    st.session_state[REC_MSG] = ("success", "Applied the recommended thresholds. " + rep.certification.summary()
                                + " Queues now " + ", ".join(f"{q} {n:,}" for q, n in (rep.queues or {}).items()))


def recommendation(db: Any, active: dict[str, Any], admin: bool) -> None:
    """The accept threshold that keeps the error of auto-accepted labels under a target, from
    held-out human labels, with the risk–coverage curve and per-class thresholds."""
    st.subheader("Recommended accept threshold", divider="gray")
    _flash(REC_MSG)
    target = st.number_input("Target error of auto-accepted labels (%)", 0.1, 20.0, 2.0, 0.1,
                             key="rec_target") / 100
    held, recs = ui.recommendation(db, ui.db_key(), active["id"], target, review.label_version(db))
    if recs is None:
        st.info("No human label on an image this model predicted and did not train on yet.",
                icon=":material/info:")
        return
    g = recs["*"]
    extra = f" ({held.excluded_train:,} left out: the model trained on them)" if held.excluded_train else ""
    if g.threshold is None:
        st.info(g.reason, icon=":material/info:")
    else:
        st.markdown(f"**Accept when p1 ≥ {g.threshold:.3f}**: on {g.n:,} held-out human labels{extra}, "
                    f"{g.n_accepted:,} ({g.coverage:.0%}) would be auto-accepted with {g.errors} errors; "
                    f"error {g.risk:.1%}, 95 % interval {g.interval[0]:.1%}–{g.interval[1]:.1%}, "
                    f"guaranteed ≤ {g.risk_upper:.1%} at {g.level:.0%} confidence.")
    curve = pd.DataFrame(models.thin_curve(g.curve))
    if len(curve):
        fig = go.Figure()
        fig.add_scatter(x=curve["coverage"], y=curve["risk"], name="error (observed)", mode="lines")
        fig.add_scatter(x=curve["coverage"], y=curve["risk_upper"], name="upper bound (95 %)",
                        mode="lines", line={"dash": "dot"})
        fig.add_hline(y=target, line={"color": "red", "dash": "dash"}, annotation_text="target")
        if g.threshold is not None:
            fig.add_scatter(x=[g.coverage], y=[g.risk], mode="markers", name=f"p ≥ {g.threshold:.3f}",
                            marker={"size": 12, "symbol": "diamond"})
        fig.update_layout(height=320, margin={"l": 0, "r": 0, "t": 30, "b": 0},
                          title="Risk–coverage on held-out human labels",
                          xaxis={"title": "share auto-accepted", "tickformat": ".0%"},
                          yaxis={"title": "error of auto-accepted", "tickformat": ".0%"})
        ui.plotly_chart(st, fig, key="rec_curve")
    rows = [{"class": c, "threshold": r.threshold, "own": not r.fallback, "predicted as": r.n,
             "accepted": r.n_accepted, "errors": r.errors, "bound": r.risk_upper}
            for c, r in recs.items() if c != "*"]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="rec_table", column_config={
        "threshold": st.column_config.NumberColumn(format="%.3f"),
        "bound": st.column_config.NumberColumn("error bound", format="percent")})
    own = [r for c, r in recs.items() if c != "*" and not r.fallback]
    if admin and g.threshold is not None:
        per = st.toggle("Also per-class thresholds (classes with enough labels of their own)",
                        key="rec_per_class", value=bool(own), disabled=not own)
        st.button("Certify, apply and re-route", key="rec_apply", icon=":material/done_all:",
                  on_click=_apply, args=(db, active["id"], recs, per))
