"""Keyboard help for pages driven from the keyboard: focus goes back to the page after every
click (a clicked button or toggle keeps the focus otherwise, and Streamlit's shortcuts then
stop working: Enter re-presses the focused button, a focused toggle swallows every key), and
``?`` shows an overlay listing the page's keys.

One small ``st.components.v2`` component (trusted code of ours, mounted into the page, no
iframe). The overlay is built with ``textContent`` only: nothing passed to it is parsed as HTML.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

_JS = r"""
export default function (component) {
  const { data } = component;
  window.__semtriageKeys = (data && data.keys) || [];
  if (window.__semtriageKeysReady) return;
  window.__semtriageKeysReady = true;
  const typing = (el) => !!el && (el.isContentEditable || el.tagName === "TEXTAREA" ||
      el.tagName === "SELECT" || el.getAttribute("role") === "combobox" ||
      (el.tagName === "INPUT" && !["checkbox", "radio", "range", "button", "submit"].includes(el.type)));
  // after a click, give the focus back to the page so that the shortcuts work again
  document.addEventListener("click", () => {
    setTimeout(() => {
      const a = document.activeElement;
      if (a && a !== document.body && !typing(a) && typeof a.blur === "function") a.blur();
    }, 0);
  }, true);
  let overlay = null;
  const hide = () => { if (overlay) { overlay.remove(); overlay = null; } };
  const show = () => {
    overlay = document.createElement("div");
    overlay.setAttribute("data-testid", "semtriage-keys-help");
    overlay.setAttribute("role", "dialog");
    overlay.style.cssText = "position:fixed;inset:0;z-index:100000;display:flex;align-items:center;" +
      "justify-content:center;background:rgba(0,0,0,.45)";
    const box = document.createElement("div");
    box.style.cssText = "background:#fff;color:#111;border-radius:10px;padding:18px 26px;" +
      "font:15px/1.6 sans-serif;min-width:320px;box-shadow:0 8px 30px rgba(0,0,0,.35)";
    const h = document.createElement("div");
    h.textContent = "Keyboard";
    h.style.cssText = "font-weight:600;font-size:17px;margin-bottom:8px";
    box.appendChild(h);
    const table = document.createElement("table");
    for (const [k, what] of window.__semtriageKeys) {
      const tr = document.createElement("tr");
      const a = document.createElement("td");
      const kbd = document.createElement("kbd");
      kbd.textContent = k;
      kbd.style.cssText = "border:1px solid #bbb;border-radius:4px;padding:0 6px;background:#f6f8fa";
      a.appendChild(kbd);
      a.style.cssText = "padding:2px 14px 2px 0;white-space:nowrap";
      const b = document.createElement("td");
      b.textContent = what;
      tr.append(a, b);
      table.appendChild(tr);
    }
    box.appendChild(table);
    const foot = document.createElement("div");
    foot.textContent = "? or Esc closes this";
    foot.style.cssText = "color:#666;font-size:13px;margin-top:8px";
    box.appendChild(foot);
    overlay.appendChild(box);
    overlay.addEventListener("click", hide);
    document.body.appendChild(overlay);
  };
  document.addEventListener("keydown", (e) => {
    if (typing(document.activeElement) || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "?") {
      e.preventDefault();
      overlay ? hide() : show();
    } else if (overlay && e.key === "Escape") {
      e.preventDefault();
      e.stopImmediatePropagation();
      hide();
    }
  }, true);
}
"""

_component = st.components.v2.component("semtriage_keys", js=_JS)


def keyboard(keys: Sequence[tuple[str, str]], *, key: str) -> None:
    """Mount the keyboard help on this page: ``keys`` are (key, what it does) rows for the
    ``?`` overlay (our own words, shown as text)."""
    _component(data={"keys": [list(k) for k in keys]}, key=key)
