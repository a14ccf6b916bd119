"""The Agreement and Adjudicate pages' helpers: the cached report, the adjudication callback,
the administrators' set-up callbacks (overlap rules, gold rate, gold images) and two charts."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from core import agreement
from core.errors import SemTriageError
from ui.auth import reviewer, user
from ui.cache import clear_after_label
from ui.failures import guarded
from ui.state import db, settings


class AK:
    """Session-state keys of these pages (named once)."""

    msg = "agr_msg"  # (kind, text) to show once
    adj_current = "adj_current"  # image id on the Adjudicate page
    adj_done = "adj_done"  # adjudications in this session
    rule_scope = "agr_rule_scope"
    rule_rate = "agr_rule_rate"
    rule_reviewers = "agr_rule_reviewers"
    gold_rate = "agr_gold_rate"
    gold_image = "agr_gold_image"
    gold_label = "agr_gold_label"
    pair = "agr_pair"


@st.cache_data(ttl=20, show_spinner="Computing agreement…")
def report(_db: Any, key: str) -> dict[str, Any]:
    return agreement.agreement_report(_db)


def may_adjudicate() -> bool:
    return agreement.may_adjudicate(reviewer(), settings())


def _say(kind: str, text: str) -> None:
    st.session_state[AK.msg] = (kind, text)


def show_message() -> None:
    if (msg := st.session_state.pop(AK.msg, None)) is not None:
        (st.error if msg[0] == "error" else st.toast)(msg[1])


def _changed() -> None:
    report.clear()
    clear_after_label()


@guarded("Adjudicating")
def adjudicate(iid: int, label: str) -> None:
    ss = st.session_state
    if ss.get(AK.adj_current) != iid:
        return  # a key press meant for an image no longer on screen
    try:
        agreement.adjudicate(db(), iid, label, reviewer=reviewer(), settings=settings())
    except SemTriageError as e:
        _say("error", str(e))
        return
    ss[AK.adj_current] = None
    ss[AK.adj_done] = ss.get(AK.adj_done, 0) + 1
    _say("info", f"Image {iid}: settled as {label}.")
    _changed()


@guarded("Saving the overlap rule")
def save_rule() -> None:
    ss = st.session_state
    scope = ss[AK.rule_scope]
    kind, _, name = scope.partition(":")
    try:
        agreement.set_overlap(db(), ss[AK.rule_rate] / 100, reviewers=int(ss[AK.rule_reviewers]),
                              queue=name if kind == "queue" else None,
                              cls=name if kind == "class" else None, by=user())
    except SemTriageError as e:
        _say("error", str(e))
        return
    _say("info", "Overlap rule saved: it applies to decisions from now on.")
    _changed()


@guarded("Removing the overlap rule")
def remove_rule(scope: str) -> None:
    try:
        agreement.clear_overlap(db(), scope, by=user())
    except SemTriageError as e:
        _say("error", str(e))
        return
    _changed()


@guarded("Saving the gold-image rate")
def save_gold_rate() -> None:
    try:
        agreement.set_gold_rate(db(), st.session_state[AK.gold_rate] / 100, by=user())
    except SemTriageError as e:
        _say("error", str(e))
        return
    _say("info", "Gold rate saved.")
    _changed()


@guarded("Marking gold images")
def mark_gold() -> None:
    ss = st.session_state
    label = ss.get(AK.gold_label) or None
    try:
        agreement.mark_gold(db(), int(ss[AK.gold_image]), None if label == "(its current label)" else label,
                            marked_by=reviewer() or "admin", by=user())
    except SemTriageError as e:
        _say("error", str(e))
        return
    _say("info", f"Image {int(ss[AK.gold_image])} is a gold image now.")
    _changed()


@guarded("Unmarking a gold image")
def unmark_gold(iid: int) -> None:
    try:
        agreement.unmark_gold(db(), iid, by=user())
    except SemTriageError as e:
        _say("error", str(e))
        return
    _changed()


def interval_bars(rows: list[dict[str, Any]], name: str, value: str, title: str,
                  axis: str, lo: float = -1.0) -> go.Figure:
    """Horizontal bars of estimates with their 95 % intervals (``rows[i][value]`` holds
    value / low / high or accuracy / low / high)."""
    rows = [r for r in rows if r[value].get("value", r[value].get("accuracy")) is not None]
    vals = [r[value].get("value", r[value].get("accuracy")) for r in rows]
    low = [v - (r[value]["low"] if r[value]["low"] is not None else v) for v, r in zip(vals, rows)]
    high = [(r[value]["high"] if r[value]["high"] is not None else v) - v for v, r in zip(vals, rows)]
    fig = go.Figure(go.Bar(
        x=vals, y=[html.escape(str(r[name])) for r in rows], orientation="h", marker_color="#1f6feb",
        error_x={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
        text=[f"{v:.2f}" for v in vals], textposition="inside"))
    fig.update_layout(title=title, height=120 + 30 * len(rows), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis={"range": [lo, 1], "title": axis})
    return fig


def matrix(m: list[list[float]], labels: list[str], title: str, x: str, y: str) -> go.Figure:
    names = [html.escape(lab) for lab in labels]
    fig = go.Figure(go.Heatmap(z=m, x=names, y=names, colorscale="Blues", texttemplate="%{z:.0f}",
                               hovertemplate=f"{y} %{{y}}<br>{x} %{{x}}<br>%{{z}}<extra></extra>"))
    fig.update_layout(title=title, height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title=x, yaxis={"title": y, "autorange": "reversed"})
    return fig
