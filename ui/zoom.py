"""Click-to-zoom on the review image: a click on the image (the element keyed
``review_image``) reports where, as fractions of its width and height, and the displayed size;
the page then shows that region at 1:1 (core.images.crop_around). A click on the zoomed view
goes back to the whole image.

One small ``st.components.v2`` component (trusted code of ours, no iframe): one delegated
click listener on the document, installed once, calling the latest mount's trigger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

_JS = r"""
export default function (component) {
  const { data, setTriggerValue } = component;
  window.__semtriageZoom = { send: setTriggerValue, zoomed: !!(data && data.zoomed) };
  if (window.__semtriageZoomReady) return;
  window.__semtriageZoomReady = true;
  document.addEventListener("click", (e) => {
    const img = e.target && e.target.closest && e.target.closest(".st-key-review_image img");
    if (!img || !window.__semtriageZoom) return;
    const z = window.__semtriageZoom;
    if (z.zoomed) { z.send("zoom", { out: true }); return; }
    const r = img.getBoundingClientRect();
    if (!r.width || !r.height) return;
    z.send("zoom", { fx: (e.clientX - r.left) / r.width, fy: (e.clientY - r.top) / r.height,
                     w: Math.round(r.width), h: Math.round(Math.min(r.height, window.innerHeight * 0.85)) });
  }, true);
}
"""

_component = st.components.v2.component("semtriage_zoom", js=_JS)


def zoom_listener(*, key: str, zoomed: bool, on_zoom: Callable[[], None]) -> Any:
    """Mount the click listener. ``on_zoom`` runs (before the rerun) after a click on the review
    image; it reads ``st.session_state[key]["zoom"]``: ``{"fx", "fy", "w", "h"}`` or ``{"out": True}``
    (a click while ``zoomed``)."""
    return _component(data={"zoomed": zoomed}, key=key, on_zoom_change=on_zoom)
