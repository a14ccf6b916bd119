"""A closer look at the review image, in the browser: a click on the image (the element keyed
``review_image``) reports where, as fractions of its width and height, and the displayed size;
the page then shows that region zoomed (core.images.zoom_window). A click on the zoomed view
goes back to the whole image. The zoom bar under the image (Fit, 1:1, 2:1, 4:1, 8:1 and, while
zoomed, four pan buttons) and Shift + arrow keys (pan by half a view; the plain arrows stay the
review's Back / Forward) report through the same listener; the scale bar is drawn over the
image.

One small ``st.components.v2`` component (trusted code of ours, no iframe): one delegated
click listener and one key listener on the document, installed once, calling the latest
mount's trigger. The zoom bar and the scale bar are our HTML, numbers and our own words only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from core.images import ZOOM_LEVELS, ScaleBar

_JS = r"""
export default function (component) {
  const { data, setTriggerValue } = component;
  window.__semtriageZoom = { send: setTriggerValue, zoomed: !!(data && data.zoomed) };
  if (window.__semtriageZoomReady) return;
  window.__semtriageZoomReady = true;
  let n = 0;  // every report differs from the last, so a second pan the same way counts
  const send = (what) => { const z = window.__semtriageZoom; if (z) z.send("zoom", { ...what, n: ++n }); };
  const box = () => {
    const img = document.querySelector(".st-key-review_image img");
    const r = img && img.getBoundingClientRect();
    if (!r || !r.width || !r.height) return { w: 0, h: 0 };
    return { w: Math.round(r.width), h: Math.round(Math.min(r.height, window.innerHeight * 0.85)) };
  };
  document.addEventListener("click", (e) => {
    const t = e.target && e.target.closest ? e.target : null;
    if (!t || !window.__semtriageZoom) return;
    const level = t.closest("[data-semtriage-zoom]");
    if (level) { e.preventDefault(); send({ level: level.getAttribute("data-semtriage-zoom"), ...box() }); return; }
    const pan = t.closest("[data-semtriage-pan]");
    if (pan) { e.preventDefault(); send({ pan: pan.getAttribute("data-semtriage-pan").split(",").map(Number) }); return; }
    const img = t.closest(".st-key-review_image img");
    if (!img) return;
    if (window.__semtriageZoom.zoomed) { send({ out: true }); return; }
    const r = img.getBoundingClientRect();
    if (!r.width || !r.height) return;
    send({ fx: (e.clientX - r.left) / r.width, fy: (e.clientY - r.top) / r.height, ...box() });
  }, true);
  const typing = (el) => !!el && (el.isContentEditable || el.tagName === "TEXTAREA" ||
      el.tagName === "SELECT" || el.getAttribute("role") === "combobox" ||
      (el.tagName === "INPUT" && !["checkbox", "radio", "range", "button", "submit"].includes(el.type)));
  const arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  document.addEventListener("keydown", (e) => {
    const z = window.__semtriageZoom, d = arrows[e.key];
    if (!z || !z.zoomed || !d || !e.shiftKey || e.ctrlKey || e.metaKey || e.altKey) return;
    if (typing(document.activeElement) || document.querySelector(".st-key-review_image img") === null) return;
    e.preventDefault();
    if (!e.repeat) send({ pan: d });
  }, true);
}
"""

_component = st.components.v2.component("semtriage_zoom", js=_JS)

# our CSS, no user text: the zoom bar's buttons in the page's colours (light or dark)
_BAR_CSS = (
    "<style>.semtriage-zoombar{display:flex;flex-wrap:wrap;gap:.35rem;align-items:center;margin:.35rem 0}"
    ".semtriage-zoombar button{font:inherit;font-size:.85rem;color:inherit;background:transparent;"
    "border:1px solid rgba(128,128,128,.45);border-radius:.45rem;padding:.15rem .6rem;cursor:pointer}"
    ".semtriage-zoombar button:hover{border-color:#1f6feb;color:#1f6feb}"
    ".semtriage-zoombar button[aria-pressed=true]{background:#1f6feb;border-color:#1f6feb;color:#fff}"
    ".semtriage-zoombar .sep{width:.6rem}"
    ".st-key-review_image{position:relative}"
    ".st-key-review_scalebar{position:absolute!important;left:2%;bottom:3%;z-index:2;pointer-events:none}"
    ".semtriage-scalebar{color:#fff;font:600 13px/1.2 sans-serif;white-space:nowrap;"
    "text-shadow:0 0 3px #000,0 0 2px #000}"
    ".semtriage-scalebar .bar{height:6px;background:#fff;box-shadow:0 0 0 1px #000;margin-bottom:3px}"
    "</style>"
)
_PANS = [("←", "-1,0", "left"), ("↑", "0,-1", "up"), ("↓", "0,1", "down"), ("→", "1,0", "right")]


def zoom_listener(*, key: str, zoomed: bool, on_zoom: Callable[[], None]) -> Any:
    """Mount the listener. ``on_zoom`` runs (before the rerun) after a click on the review
    image, the zoom bar or a Shift + arrow key; it reads ``st.session_state[key]["zoom"]``:
    ``{"fx", "fy", "w", "h"}`` (a click on the fitted image), ``{"out": True}`` (a click while
    ``zoomed``), ``{"level": "fit" | "1" | "2" | ..., "w", "h"}`` or ``{"pan": [dx, dy]}``."""
    return _component(data={"zoomed": zoomed}, key=key, on_zoom_change=on_zoom)


def zoom_bar(current: int | None) -> None:
    """The zoom bar under the review image: Fit and the zoom levels (``current``: the zoom
    shown, None when fitted) and, while zoomed, the pan buttons. Our HTML, no user text."""
    def button(text: str, attr: str, value: str, title: str, pressed: bool = False) -> str:
        return (f'<button type="button" {attr}="{value}" title="{title}" '
                f'aria-pressed="{"true" if pressed else "false"}">{text}</button>')

    parts = [button("Fit", "data-semtriage-zoom", "fit", "The whole image", current is None)]
    parts += [button(f"{z}:1", "data-semtriage-zoom", str(z), f"{z} screen pixels per image pixel", current == z)
              for z in ZOOM_LEVELS]
    if current is not None:
        parts.append('<span class="sep"></span>')
        parts += [button(t, "data-semtriage-pan", v, f"Pan {w} by half a view (Shift + arrow)")
                  for t, v, w in _PANS]
    st.html(_BAR_CSS + '<div class="semtriage-zoombar" data-testid="semtriage-zoombar">' + "".join(parts) + "</div>")


def scale_bar_overlay(bar: ScaleBar | None) -> None:
    """The scale bar over the bottom left of the review image (inside its container): as wide
    as ``bar.fraction`` of the image on screen, its round length written under it."""
    if bar is None:
        return
    with st.container(key="review_scalebar", width="content", gap=None):
        st.html(f"<style>.st-key-review_scalebar{{width:{100 * bar.fraction:.3f}%!important}}</style>"
                f'<div class="semtriage-scalebar" data-testid="semtriage-scalebar"><div class="bar"></div>'
                f"{bar.label}</div>")
