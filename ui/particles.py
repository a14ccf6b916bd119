"""The Particles page's helpers: session keys, the cached scan of an image, the click handler
(select / add / scale-bar points), the edit callbacks (delete, merge, split, verify, undo), the
saved-selection callbacks (save the images shown, delete) and the Plotly figures of a size
distribution. Every edit is one core call. The Train view: ui/particle_train.py."""

from __future__ import annotations

import os

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import particles as P
from core.errors import SemTriageError
from core.images import read_image
from ui.auth import reviewer, user
from ui.failures import guarded
from ui.state import db


class PK:
    """Session-state keys of the Particles page."""

    view = "pt_view"
    image = "pt_image"
    sel = "pt_sel"  # selected particle ids (non-widget)
    mode = "pt_mode"  # 'select' | 'add' | 'scale'
    outlines = "pt_outlines"
    click = "pt_click"  # the component's widget key
    last_click = "pt_last_click"  # the last click handled (the component repeats it on reruns)
    scale_pts = "pt_scale_pts"
    msg = "pt_msg"
    by = "pt_by"  # the Distribution view's kind of set
    set_a = "pt_set_a"
    sel_name = "pt_sel_name"  # the name typed to save the images shown as a selection


MODES = {"select": "Select", "add": "Add by clicking", "scale": "Scale bar (2 clicks)"}


@st.cache_data(max_entries=8, show_spinner=False)
def scan_of(path: str, mtime: float) -> tuple[np.ndarray, int]:
    """(scan, data-bar rows) of an image file, cached by path and modification time."""
    del mtime
    img = read_image(path)
    return img.scan.copy(), img.databar_px


def image_scan(image_id: int) -> np.ndarray:
    path = P.image_path(db(), image_id)
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        mtime = 0.0
    return scan_of(path, mtime)[0]


def _say(kind: str, text: str) -> None:
    st.session_state[PK.msg] = (kind, text)


def _who() -> str | None:
    name = reviewer()
    if not name:
        _say("warning", "Type your name in the sidebar first: every edit records who made it.")
    return name


def selected() -> list[int]:
    return list(st.session_state.get(PK.sel, []))


def set_selected(ids: list[int]) -> None:
    st.session_state[PK.sel] = ids


@guarded("Handling the click on the image")
def on_click(image_id: int, labels: np.ndarray, ids: list[int], scale: float, shown_w: int) -> None:
    """The image component's callback: select / add / scale-bar point at the click."""
    c = st.session_state.get(PK.click)
    if not c:
        return
    stamp = (c.get("x"), c.get("y"), c.get("unix_time"))
    if stamp == st.session_state.get(PK.last_click):
        return
    st.session_state[PK.last_click] = stamp
    f = shown_w / c["width"] if c.get("width") else 1.0  # the browser may draw it smaller
    x, y = c["x"] * f / scale, c["y"] * f / scale
    mode = st.session_state.get(PK.mode, "select")
    if mode == "scale":
        pts = list(st.session_state.get(PK.scale_pts, []))[-1:] + [(x, y)]
        st.session_state[PK.scale_pts] = pts
        return
    if mode == "add":
        who = _who()
        if not who:
            return
        try:
            pid = P.add_particle(db(), image_id, image_scan(image_id), x, y, reviewer=who)
            set_selected([pid])
            _say("success", f"Added particle {pid}")
        except SemTriageError as e:
            _say("error", str(e))
        return
    k = P.particle_at(labels, x, y)
    sel = selected()
    if k:
        pid = ids[k - 1]
        sel = [s for s in sel if s != pid] if pid in sel else sel + [pid]
    else:
        sel = []
    set_selected(sel)


@guarded("Editing the particles")
def do(action: str, image_id: int) -> None:
    """Delete / merge / split / verify / undo, as the buttons and their keys ask."""
    who = _who()
    if not who:
        return
    sel = selected()
    d = db()
    try:
        if action == "delete":
            P.delete_particles(d, image_id, sel, reviewer=who)
            _say("success", f"Deleted {len(sel)} particle(s)")
            set_selected([])
        elif action == "merge":
            pid = P.merge_particles(d, image_id, sel, image_scan(image_id), reviewer=who)
            set_selected([pid])
            _say("success", f"Merged into particle {pid}")
        elif action == "split":
            if len(sel) != 1:
                _say("warning", "Select exactly one particle to split")
                return
            new = P.split_particle(d, image_id, sel[0], image_scan(image_id), reviewer=who)
            set_selected(new)
            _say("success", f"Split into {len(new)} particles")
        elif action == "shadow":
            P.relabel_particles(d, image_id, sel, P.NOT_PARTICLE, reviewer=who)
            _say("success", f"{len(sel)} particle(s) marked as not particles (left out of sizes)")
        elif action == "verify":
            P.verify_image(d, image_id, reviewer=who)
            _say("success", "Image verified: detection never overwrites it; it trains detectors")
        elif action == "undo":
            ev = P.undo_last(d, image_id, reviewer=who)
            _say("info", f"Undid {ev['action']}" if ev else "Nothing to undo")
            set_selected([])
    except SemTriageError as e:
        _say("error", str(e))


@guarded("Setting the pixel size")
def set_scale(image_ids: list[int], nm_per_px: float | None, how: str) -> None:
    who = _who()
    if not who:
        return
    try:
        n = P.set_pixel_size(db(), image_ids, None if not nm_per_px else nm_per_px * 1e-9,
                             reviewer=who, how=how)
        _say("success", f"Pixel size set on {n} image(s)")
        st.session_state[PK.scale_pts] = []
    except SemTriageError as e:
        _say("error", str(e))


@guarded("Saving the selection")
def save_selection(image_ids: list[int], how: str) -> None:
    """The save form's callback: the images shown, under the name typed, then shown as that
    selection."""
    who = _who()
    if not who:
        return
    try:
        s = P.save_selection(db(), st.session_state.get(PK.sel_name, ""), image_ids, reviewer=who,
                             how=how)
    except SemTriageError as e:
        _say("error", str(e))
        return
    _say("success", f"Saved {s['images']} image(s) as the selection {s['name']!r}")
    st.session_state[PK.sel_name] = ""
    st.session_state[PK.by], st.session_state[PK.set_a] = "selection", s["name"]


@guarded("Deleting the selection")
def delete_selection(name: str) -> None:
    try:
        res = P.delete_selection(db(), name, by=user())
    except SemTriageError as e:
        _say("error", str(e))
        return
    _say("info", f"Deleted the selection {res['deleted']!r} (its images and particles stay)")
    st.session_state.pop(PK.set_a, None)


def show_message() -> None:
    m = st.session_state.pop(PK.msg, None)
    if m:
        getattr(st, m[0])(m[1])


def histogram_figure(sets: dict[str, np.ndarray], unit: str, *, log: bool, weight: str) -> go.Figure:
    fig = go.Figure()
    for name, d in sets.items():
        h = P.histogram(d, bins=40, log=log, weight=weight)
        if not h["edges"]:
            continue
        e = np.asarray(h["edges"])
        mids = np.sqrt(e[:-1] * e[1:]) if log else (e[:-1] + e[1:]) / 2
        fig.add_bar(x=mids, y=h["fraction"], width=np.diff(e), name=name, opacity=0.6)
        if h["lognormal_pdf"] and len(sets) == 1:
            fig.add_scatter(x=mids, y=h["lognormal_pdf"], mode="lines", name="log-normal fit")
    fig.update_layout(barmode="overlay", height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis_title=f"equivalent-circle diameter ({unit})",
                      yaxis_title=f"fraction ({weight})")
    if log:
        fig.update_xaxes(type="log")
    return fig
