"""Agreement: how far reviewers agree on the images shown to several of them, how each one
scores against adjudicated labels and gold images; administrators set the overlap and gold
rates and mark gold images. Helpers and callbacks in ui/agreement.py."""

import pandas as pd
import streamlit as st

import ui
from core import agreement as core_agreement
from core.review import QUEUES, SPECIAL_LABELS
from ui import agreement as agr

AK = agr.AK
db, key = ui.db(), ui.db_key()
st.title(":material/handshake: Agreement")
agr.show_message()
rep = agr.report(db, key)
o, ov, adj = rep["overall"], rep["overlap"], rep["adjudication"]


def est(e: dict) -> str:
    if e["value"] is None:
        return "—"
    return f"{e['value']:.2f}" + (f" [{e['low']:.2f}, {e['high']:.2f}]" if e["low"] is not None else "")


c = st.columns(5)
c[0].metric("Images with several ratings", f"{o['items']:,}", border=True,
            help=f"{ov['chosen']:,} chosen for overlap, {ov['waiting']:,} still waiting for a reviewer")
c[1].metric("Krippendorff's α", est(o["alpha"]), border=True,
            help="1 = perfect agreement, 0 = no better than chance; 95 % bootstrap interval")
c[2].metric("Pairs that agree", "—" if o["percent_agreement"] is None else f"{o['percent_agreement']:.0%}",
            border=True)
c[3].metric("Open disagreements", f"{adj['open']:,}", border=True, help=f"{adj['settled']:,} settled")
c[4].metric("Gold images", f"{rep['gold']['images']:,}", border=True,
            help=f"mixed into the queues at {rep['gold']['rate']:.0%}; {rep['gold']['answers']:,} answers")
if adj["open"]:
    st.page_link(ui.ADJUDICATE_PAGE, label=f"Settle {adj['open']:,} disagreements", icon=":material/gavel:")
if not ov["rules"]:
    st.info("No overlap yet: every image is seen by one reviewer. An administrator sets a share of "
            "images for a second reviewer under **Set-up** below.", icon=":material/group:")

tab_agree, tab_people, tab_setup = st.tabs(["Agreement", "Reviewers", "Set-up"])
with tab_agree:
    if o["items"] < 2:
        st.info("Agreement numbers appear once at least two images have two or more ratings.")
    else:
        left, right = st.columns(2)
        ui.plotly_chart(left, agr.interval_bars(rep["per_class"], "label", "alpha",
                                            "Per class: α of the class vs the rest", "α"), key="agr_per_class")
        ui.plotly_chart(right, agr.matrix(o["coincidence"], o["labels"], "Confusion between reviewers "
                                      "(coincidences)", "another reviewer", "one reviewer"), key="agr_coinc")
        pairs = rep["pairs"]
        st.subheader("Reviewer pairs — Cohen's κ")
        st.dataframe(pd.DataFrame([{"reviewer": p["a"], "with": p["b"], "images": p["items"],
                                    "kappa": p["kappa"]["value"], "low": p["kappa"]["low"],
                                    "high": p["kappa"]["high"], "agree": p["percent_agreement"]}
                                   for p in pairs]),
                     hide_index=True, key="agr_pairs",
                     column_config={"agree": st.column_config.NumberColumn(format="percent"),
                                    "kappa": st.column_config.NumberColumn(format="%.2f"),
                                    "low": st.column_config.NumberColumn("95 % low", format="%.2f"),
                                    "high": st.column_config.NumberColumn("95 % high", format="%.2f")})
        names = [f"{p['a']} / {p['b']}" for p in pairs]
        pick = st.selectbox("Confusion of one pair", names, key=AK.pair)
        if pick:
            p = pairs[names.index(pick)]
            ui.plotly_chart(st, agr.matrix(p["confusion"], p["labels"], f"{pick}: κ {est(p['kappa'])}",
                                       p["b"], p["a"]), key="agr_pair_cm")
with tab_people:
    people = rep["reviewers"]
    if not people:
        st.info("Scores appear once reviewers rated overlap images or answered gold images.")
    else:
        st.dataframe(pd.DataFrame([{
            "reviewer": r["reviewer"], "overlap ratings": r["ratings"], "agrees with others": r["agrees_with_others"],
            "adjudicated right": r["vs_adjudicated"]["right"], "of adjudicated": r["vs_adjudicated"]["n"],
            "gold right": r["vs_gold"]["right"], "of gold": r["vs_gold"]["n"],
            "gold accuracy": r["vs_gold"]["accuracy"]} for r in people]), hide_index=True, key="agr_people",
            column_config={"agrees with others": st.column_config.NumberColumn(format="percent"),
                           "gold accuracy": st.column_config.NumberColumn(format="percent")})
        st.caption("Adjudicated labels exist only where reviewers disagreed, so that score is measured "
                   "on the hardest images; gold images are a fair sample only if the gold set is one.")
        ui.plotly_chart(st, agr.interval_bars(people, "reviewer", "vs_gold", "Accuracy on gold images "
                                          "(95 % Wilson interval)", "accuracy", lo=0.0), key="agr_gold_acc")
with tab_setup:
    admin = ui.require_admin()
    rules = core_agreement.overlap_rules(db)
    model = ui.active_model(db, key)
    classes = list(model["class_names"]) if model else []
    scopes = ["*", *(f"queue:{q}" for q in QUEUES), *(f"class:{c}" for c in classes)]
    if rules:
        for scope, r in rules.items():
            row = st.columns([3, 1])
            row[0].markdown(f"**{ui.esc(scope)}** — {r.rate:.0%} of images to {r.reviewers} reviewers")
            row[1].button("Remove", key=f"agr_rm_{scope}", on_click=agr.remove_rule, args=(scope,),
                          disabled=not admin)
    with st.form("agr_rule_form", border=True):
        st.markdown("**Overlap rule** — a class rule wins over a queue rule, which wins over *every image*")
        st.selectbox("Applies to", scopes, key=AK.rule_scope,
                     format_func=lambda s: "every image" if s == "*" else s.replace(":", ": "))
        st.slider("Share of decided images shown again (%)", 0, 100, 10, key=AK.rule_rate)
        st.number_input("Reviewers per image, the first included", 2, 10, 2, key=AK.rule_reviewers)
        st.form_submit_button("Save overlap rule", on_click=agr.save_rule, disabled=not admin)
    with st.form("agr_gold_rate_form", border=True):
        st.number_input("Gold images mixed into the queues (% of the images handed out)", 0.0, 50.0,
                        round(rep["gold"]["rate"] * 100, 1), step=0.5, key=AK.gold_rate)
        st.form_submit_button("Save gold rate", on_click=agr.save_gold_rate, disabled=not admin)
    with st.form("agr_gold_form", border=True):
        st.markdown("**Mark a gold image** — an image whose answer is known (by its id, e.g. from the "
                    "Reference set)")
        st.number_input("Image id", min_value=1, step=1, key=AK.gold_image)
        st.selectbox("Known answer", ["(its current label)", *classes, *SPECIAL_LABELS], key=AK.gold_label)
        st.form_submit_button("Mark as gold", on_click=agr.mark_gold, disabled=not admin)
    for g in core_agreement.gold_images(db):
        row = st.columns([3, 1])
        row[0].markdown(f"**{g['image_id']}** {ui.esc(g['name'])} — {ui.esc(g['label'])} · {g['answers']} answers")
        row[1].button("Unmark", key=f"agr_unmark_{g['image_id']}", on_click=agr.unmark_gold,
                      args=(g["image_id"],), disabled=not admin)
