"""Models & thresholds: model versions with their cards, adding a model, switching the active
one (re-predicting), retraining on the labels (compare, promote, discard: ui/retrain.py), and
routing thresholds with a live preview of the queues, the error rate of auto-accepted labels
and a recommended accept threshold."""

import tempfile
from dataclasses import astuple
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

import ui
from core import intake, models, review
from core.config import DEFAULT_MODEL
from core.errors import SemTriageError
from core.files import safe_name
from ui import certification, retrain

K, ss = ui.K, st.session_state
st.title(":material/tune: Models & thresholds")
db, key, cfg = ui.db(), ui.db_key(), ui.settings()
admin = ui.require_admin()  # non-admins see no control that changes models or thresholds
ms = ui.models(db, key)
active = next((m for m in ms if m["active"]), None)


def show_card(card: dict, mid: int) -> None:
    """Accuracy, calibration, per-class table and confusion matrix from a model card."""
    ece = card.get("ece_15_bins") if isinstance(card.get("ece_15_bins"), dict) else {}
    trained = card.get("training_data") if isinstance(card.get("training_data"), dict) else {}
    where = str(card.get("evaluated_on") or "")
    synthetic = trained.get("source") == "synthetic" or "synthetic" in where
    acc_label = ("Accuracy on synthetic images" if synthetic else
                 "Accuracy on held-out labels" if "human" in where else "Accuracy (where measured: see below)")
    figures = [(acc_label, card.get("accuracy"), "{:.1%}"), ("ECE (calibrated)", ece.get("after_temperature"),
               "{:.3f}"), ("ECE before", ece.get("before_temperature"), "{:.3f}"),
               ("Temperature", card.get("temperature"), "{:.2f}"), ("Parameters", card.get("parameters"), "{:,}")]
    figures = [(k, v, f) for k, v, f in figures if isinstance(v, (int, float))]
    for col, (k, v, f) in zip(st.columns(max(1, len(figures))), figures):
        col.metric(k, f.format(v))
    if card.get("evaluated_on"):
        st.caption(f"Evaluated on {ui.esc(card['evaluated_on'])}"
                   + (" — synthetic micrographs made by our generator, not yours: it says little about "
                      "real images. The error measured on your own labels is on the **Thresholds** tab."
                      if synthetic else "."))
    left, right = st.columns(2)
    per = card.get("per_class")
    if isinstance(per, dict) and per and all(isinstance(v, dict) for v in per.values()):
        left.dataframe(pd.DataFrame(per).T, key=f"card_pc_{mid}", height=min(420, 38 + 35 * len(per)),
                       column_config={c: st.column_config.NumberColumn(c, format="%.2f")
                                      for c in ("precision", "recall", "f1")})
    cm = card.get("confusion_matrix")
    names = card.get("class_names") or []
    if isinstance(cm, dict):
        names, cm = cm.get("classes") or names, cm.get("matrix")
    if isinstance(cm, list) and cm and all(isinstance(r, list) for r in cm):
        ax = [str(n) for n in names] if len(names) == len(cm) else None
        fig = px.imshow(cm, x=ax, y=ax, text_auto=True, color_continuous_scale="Blues", aspect="auto",
                        labels={"x": "predicted", "y": "true", "color": "images"})
        fig.update_layout(height=380, margin={"l": 0, "r": 0, "t": 30, "b": 0}, title="Confusion (held-out)")
        ui.plotly_chart(right, fig, key=f"card_cm_{mid}")
    with st.popover("Full model card", icon=":material/description:"):
        st.json(card, expanded=1)


busy = retrain.job_status(admin)  # a retraining or promotion: progress above the tabs
tab_models, tab_retrain, tab_thr, tab_add = st.tabs(["Model versions", "Retrain", "Thresholds",
                                                     "Add a model"])
with tab_models:
    if not ms:
        st.info("No model registered yet — use the shipped default model (trained on synthetic "
                "micrographs, with its card) or add your own on the **Add a model** tab.",
                icon=":material/info:")
        retrain.use_default_button(db, "mdl_use_default", admin, busy)
    for m in reversed(ms):
        with st.expander(ui.esc(m["version"]) + ("  · active" if m["active"] else ""), expanded=m["active"],
                         icon=":material/check_circle:" if m["active"] else ":material/deployed_code:"):
            info = m["info"]
            st.caption(f"{len(m['class_names'])} classes: " + ", ".join(ui.esc(c) for c in m["class_names"])
                       + f" · input {info.get('input_size')} × {info.get('channels')} ch · "
                       f"T = {info.get('temperature', 1):.2f} · added {m['added_at'][:16]}")
            try:
                card = m["card"] or models.read_card(m["path"])
            except SemTriageError as e:
                ui.show_error(e)
                card = None
            if card:
                show_card(card, m["id"])
            else:
                st.caption("No model card (accuracy, calibration) was found beside this model.")
            pending = intake.pending_count(db, m["id"])
            if admin and busy is not None:
                st.caption(retrain.busy_text(busy))
            stale = ui.model_file_changed(m)
            if stale:
                st.warning(f"{ui.esc(m['path'])} has changed since this version was registered: it "
                           "no longer predicts under this name (its predictions and label history "
                           "stay). Register the new file on **Add a model** as a new version.",
                           icon=":material/warning:")
            if not m["active"]:
                if admin and st.button("Make active and predict", key=f"mdl_activate_{m['id']}",
                                       icon=":material/play_arrow:", disabled=busy is not None or stale):
                    retrain.start_promote(m["id"])  # in the background, like a promotion
                    st.rerun()
            elif admin and pending and st.button(f"Predict {pending:,} images not yet predicted",
                                                 key=f"mdl_predict_{m['id']}", icon=":material/play_arrow:",
                                                 disabled=busy is not None):
                retrain.start_promote(m["id"])
                st.rerun()

with tab_thr:
    if active is None:
        ui.no_model_hint()
    else:
        certification.banner(db, key, active["id"], review.label_version(db))
        g = review.get_thresholds(db)[review.GLOBAL]
        saved = review.get_thresholds(db)
        c = st.columns(4)
        acc = c[0].slider("Accept when p1 ≥", 0.0, 1.0, g.accept, 0.01, key="thr_accept")
        mm = c[1].slider("Mixed: margin <", 0.0, 1.0, g.mixed_margin, 0.01, key="thr_margin",
                         help="…while p1 + p2 ≥ the mass below: a boundary between two classes")
        mass = c[2].slider("Mixed: p1 + p2 ≥", 0.0, 1.0, g.mixed_mass, 0.01, key="thr_mass")
        co = c[3].slider("Both present: p2 ≥", 0.0, 1.0, g.cooccur, 0.01, key="thr_cooccur")
        glob = review.Thresholds(acc, mm, mass, co)
        per_df = pd.DataFrame({"class": active["class_names"],
                               "accept": [saved[c].accept if c in saved else None for c in active["class_names"]]})
        with st.expander("Per-class accept thresholds (optional; blank = the global one)"):
            edited = st.data_editor(per_df, key="thr_per_class", hide_index=True, disabled=["class"],
                                    column_config={"accept": st.column_config.NumberColumn(
                                        "accept p1 ≥", min_value=0.0, max_value=1.0, step=0.01)})
        overrides = {r["class"]: review.Thresholds(float(r["accept"]), mm, mass, co)
                     for r in edited.to_dict("records") if pd.notna(r["accept"])}
        ts = {review.GLOBAL: glob, **overrides}
        now = review.queue_counts(db, active["id"])
        new, err = ui.threshold_preview(db, key, active["id"],
                                        tuple(sorted((c, astuple(t)) for c, t in ts.items())),
                                        review.label_version(db))
        st.markdown("**Queues with these thresholds** (unreviewed images; nothing is saved yet)")
        for col, q in zip(st.columns(3), review.QUEUES):
            col.metric(ui.QUEUE_LABELS[q], f"{new[q]:,}", delta=new[q] - now[q], delta_color="off",
                       border=True)
        if err["n"]:
            st.markdown(f"**Estimated error of auto-accepted labels: {err['rate']:.1%}** "
                        f"(95 % Wilson interval {err['lo']:.1%}–{err['hi']:.1%}), measured on the "
                        f"{err['n']:,} independently labelled images these thresholds would auto-accept "
                        f"({err['errors']:,} of them labelled otherwise; {err['blind']:,} blind spot-checks).")
        else:
            st.info(f"No independently labelled image would be auto-accepted at these thresholds "
                    f"({err['labelled']:,} labelled in all) — no error estimate yet. The **Blind "
                    "spot-check** queue on Review measures it.")
        if err["confirmed_unblind"]:
            st.caption(f"{err['confirmed_unblind']:,} auto labels confirmed on the Spot-check queue with the "
                       "model's answer in view are left out: one-key confirmations flatter the model. "
                       "Blind spot-checks (answer hidden) count.")
        if admin and st.button("Save thresholds and re-route", key="thr_save", type="primary",
                               icon=":material/save:"):
            try:
                with st.spinner("Re-routing…"):
                    review.save_thresholds(db, active["id"], glob, overrides, active["class_names"],
                                           by=ui.user())
            except SemTriageError as e:
                ui.show_error(e)
            else:
                ui.clear_after_model()
                st.success("Saved. The queues now follow the new thresholds.", icon=":material/check:")
        retrain.recommendation(db, active, admin)

with tab_retrain:
    retrain.retrain_tab(db, active, admin, busy)

with tab_add:
    if not any(Path(m["path"]).resolve() == DEFAULT_MODEL.resolve() for m in ms):
        retrain.use_default_button(db, "mdl_use_default_add", admin, busy)
    up = st.file_uploader("ONNX model", type=["onnx"], key="mdl_file")
    names = st.text_area("Class names, one per line (only if the model's metadata has none)",
                         key="mdl_classes", height=120)
    make_active = st.toggle("Make it the active model and predict every image", key="mdl_make_active")
    if admin and st.button("Register model", key="mdl_register", type="primary", disabled=up is None,
                           icon=":material/add:"):
        meta = {"class_names": [n.strip() for n in names.splitlines() if n.strip()]} if names.strip() else None
        dest = ui.data_dir("models", "uploads")
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            path = Path(tmp) / safe_name(up.name, default="model.onnx")
            path.write_bytes(up.getvalue())
            try:
                m = models.register_model(db, path, metadata=meta, copy_to=dest, by=ui.user())
            except SemTriageError as e:
                ui.show_error(e)
                m = None
        if m is not None:
            ui.clear_after_model()
            if make_active:  # activate, predict every image, re-route: in the background
                retrain.start_promote(m["id"])
                st.rerun()
            st.success(f"Registered {ui.esc(m['version'])} with {len(m['class_names'])} classes.")
