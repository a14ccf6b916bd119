"""The Particles page's helpers: session keys, the cached scan of an image, the review view's
zoom and pan (core.particles.review_window: the window the picture shows), the click handler
(select / add / scale-bar points, the click mapped to full-image pixels by the picture's
Overlay), the edit callbacks (delete, merge, split, verify, undo), the saved-selection
callbacks (save the images shown, delete) and the Plotly figures of a size distribution.
Every edit is one core call. The Train view: ui/particle_train.py."""

from __future__ import annotations

import os

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import particles as P
from core.errors import SemTriageError
from core.images import ZoomWindow, read_image
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
    zoom = "pt_zoom"  # 0 = fit, else a zoom level (widget)
    centre = "pt_centre"  # (image id, x, y): the zoomed view's centre, full-image pixels
    point = "pt_point"  # (image id, x, y): the last click on the image, full-image pixels


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


def zoom_label(z: int) -> str:
    return "Fit" if not z else f"{z}:1"


def zoom_options(image_id: int, shape: tuple[int, int]) -> list[int]:
    """Fit (0) and the zoom levels beyond the fitted view of this image; a level another image
    offered and this one does not goes back to Fit."""
    options = [0, *P.zoom_levels(*shape)]
    if st.session_state.get(PK.zoom) not in options:
        st.session_state[PK.zoom] = 0
    return options


def _centre(image_id: int) -> tuple[float, float] | None:
    c = st.session_state.get(PK.centre)
    return (c[1], c[2]) if c and c[0] == image_id else None


def view_window(image_id: int, shape: tuple[int, int]) -> ZoomWindow | None:
    """The window of the image the review picture shows at the chosen zoom (None: fitted)."""
    z = st.session_state.get(PK.zoom) or 0
    return P.review_window(shape[0], shape[1], z, _centre(image_id)) if z else None


@guarded("Zooming")
def on_zoom(image_id: int) -> None:
    """Zooming in from the fitted view goes to the last click on this image (the middle if
    none); between zoom levels the view stays centred where it was."""
    ss = st.session_state
    if not ss.get(PK.zoom):
        ss.pop(PK.centre, None)
    elif _centre(image_id) is None:
        pt = ss.get(PK.point)
        ss[PK.centre] = (image_id, pt[1], pt[2]) if pt and pt[0] == image_id else None


@guarded("Panning")
def on_pan(image_id: int, shape: tuple[int, int], dx: int, dy: int) -> None:
    z = st.session_state.get(PK.zoom) or 0
    if z:
        st.session_state[PK.centre] = (image_id, *P.panned_centre(shape[0], shape[1], z, _centre(image_id), dx, dy))


@guarded("Handling the click on the image")
def on_click(image_id: int, labels: np.ndarray, ids: list[int], view: P.Overlay) -> None:
    """The image component's callback: select / add / scale-bar point at the click, mapped
    to full-image pixels through the picture shown (fitted or zoomed)."""
    c = st.session_state.get(PK.click)
    if not c:
        return
    stamp = (c.get("x"), c.get("y"), c.get("unix_time"))
    if stamp == st.session_state.get(PK.last_click):
        return
    st.session_state[PK.last_click] = stamp
    x, y = view.to_image(c["x"], c["y"], c.get("width"))  # the browser may draw it smaller
    st.session_state[PK.point] = (image_id, x, y)
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
