"""Light, dark or as the system says: the sidebar's theme choice, kept for the browser session
and, for a named reviewer, in the database (core.store.user_theme) for their next sessions.

Streamlit has no documented way to switch its theme from Python while the app runs (its own
switch is the app menu's Settings, which this app's minimal toolbar hides; ``st.context.theme``
only reads it). So the dark theme is our palette, CSS over Streamlit's public ``data-testid``
and BaseWeb hooks, no user text: applied always (Dark) or inside
``@media (prefers-color-scheme: dark)`` (System). Images are never recoloured. Plotly figures
follow through :func:`plotly_chart` (``plotly_dark`` when the page is dark); for System one
small ``st.components.v2`` component reports the browser's preference (once, and again only
when it changes).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.errors import SemTriageError
from core.store import THEMES, set_user_theme, user_theme
from ui.auth import reviewer as signed_reviewer
from ui.state import K, db

LABELS = {"light": "Light", "dark": "Dark", "system": "System"}
DEFAULT = "system"

_BG, _BG2, _FG, _MUTED, _LINE = "#0e1117", "#262730", "#fafafa", "rgba(250,250,250,.62)", "rgba(250,250,250,.2)"
_DARK_RULES = (
    f"[data-testid=stApp],[data-testid=stHeader],[data-testid=stMain],[data-testid=stBottomBlockContainer]"
    f"{{background-color:{_BG}!important;color:{_FG}!important;color-scheme:dark}}"
    f"[data-testid=stSidebar],[data-testid=stSidebarContent]{{background-color:{_BG2}!important;color:{_FG}!important}}"
    f"[data-testid=stApp] :is(h1,h2,h3,h4,h5,h6,p,li,label,summary,span,th,td,strong,em,"
    f"[data-testid=stMarkdownContainer],[data-testid=stWidgetLabel],[data-testid=stMetricValue]){{color:{_FG}}}"
    f"[data-testid=stApp] :is([data-testid=stCaptionContainer],[data-testid=stCaptionContainer] *,"
    f"[data-testid=stMetricLabel],[data-testid=stMetricLabel] *){{color:{_MUTED}!important}}"
    f"[data-testid=stApp] :is(button[kind=secondary],button[kind=tertiary],[data-testid^=stBaseButton-secondary],"
    f"[data-testid=stBaseButton-segmented_control],[data-testid=stBaseButton-pills],"
    f"[data-testid=stButtonGroup] button[aria-checked=false]){{background-color:{_BG};color:{_FG};border-color:{_LINE}}}"
    f"[data-testid=stApp] :is([data-baseweb=input],[data-baseweb=base-input],[data-baseweb=textarea],"
    f"[data-baseweb=select]>div,[data-testid=stFileUploaderDropzone],[data-testid=stNumberInputContainer],"
    f"[data-testid=stTextInputRootElement],[data-testid=stTextAreaRootElement],[data-testid=stDateInputField]){{"
    f"background-color:{_BG2}!important;color:{_FG};border-color:{_LINE}}}"
    f"[data-testid=stApp] :is(input,textarea){{color:{_FG}!important;-webkit-text-fill-color:{_FG};background:transparent}}"
    f"[data-testid=stApp] :is([data-testid=stExpander] details,[data-testid=stVerticalBlockBorderWrapper],"
    f"[data-testid=stForm],hr){{border-color:{_LINE}!important}}"
    f"[data-testid=stApp] [data-testid=stExpander] summary:hover *{{color:#1f6feb}}"
    f"[data-testid=stApp] :is(code,pre,[data-testid=stCode]){{background-color:{_BG2}!important;color:{_FG}}}"
    f"[data-testid=stApp] [data-baseweb=tab-list]{{background:transparent}}"
    # alerts: the dark theme's tints of their colours, light text
    + "".join(f"[data-testid=stAlertContainer]:has([data-testid=stAlertContent{kind}]){{background-color:{tint}!important}}"
              for kind, tint in (("Info", "rgba(61,157,243,.2)"), ("Warning", "rgba(255,189,69,.2)"),
                                 ("Error", "rgba(255,108,108,.2)"), ("Success", "rgba(61,213,109,.2)")))
    + f"[data-testid=stAlertContainer] *{{color:{_FG}}}"
    # the dataframe grid is drawn on a canvas in the light theme's colours: shown inverted
    f"[data-testid=stApp] :is([data-testid=stDataFrame],[data-testid=stDataFrameResizable]) canvas"
    f"{{filter:invert(1) hue-rotate(180deg)}}"
    # menus, tooltips and toasts live outside the app's tree
    f":is([data-baseweb=popover] [role=listbox],[data-baseweb=popover] ul,[data-baseweb=menu],"
    f"[data-testid=stTooltipContent],[data-testid=stToast],[data-baseweb=popover]>div>div){{"
    f"background-color:{_BG2}!important;color:{_FG}!important}}"
    f"[data-baseweb=popover] li{{color:{_FG}}}"
    f"[data-testid=stDialog] [role=dialog]{{background-color:{_BG};color:{_FG}}}"
)

_JS = r"""
export default function (component) {
  const { data, setTriggerValue } = component;
  const mq = window.matchMedia("(prefers-color-scheme: dark)");
  window.__semtriageTheme = { send: setTriggerValue, known: data && data.known };
  const report = () => {
    const t = window.__semtriageTheme, now = mq.matches ? "dark" : "light";
    if (t && t.known !== now) { t.known = now; t.send("system", now); }
  };
  report();
  if (window.__semtriageThemeReady) return;
  window.__semtriageThemeReady = true;
  mq.addEventListener("change", report);
}
"""

_component = st.components.v2.component("semtriage_theme", js=_JS)


def choice() -> str:
    """This session's theme (one of core.store.THEMES)."""
    got = st.session_state.get(K.theme)
    return got if got in THEMES else DEFAULT


def is_dark() -> bool:
    """Whether the page is dark now: Dark, or System in a browser that prefers dark."""
    c = choice()
    return c == "dark" or (c == "system" and st.session_state.get(K.theme_system) == "dark")


def _remember() -> None:
    """The switch changed (a person's click, never a page run): store it under their name, or
    once the name is known."""
    who = signed_reviewer()
    if not who:
        st.session_state[K.theme_pending] = True
        return
    st.session_state.pop(K.theme_pending, None)
    try:
        set_user_theme(db(), who, choice())
    except SemTriageError:
        pass  # a locked database: the choice still holds for this session


def _system_reported() -> None:
    got = (st.session_state.get(K.theme_listener) or {}).get("system")
    if got in ("light", "dark"):
        st.session_state[K.theme_system] = got


def theme_sidebar(reviewer: str) -> None:
    """The theme switch (in the sidebar), its remembered value, and the page's palette."""
    ss = st.session_state
    if reviewer and ss.get(K.theme_user) != reviewer:  # a reviewer's own theme, once per name
        ss[K.theme_user] = reviewer
        try:
            mine = user_theme(db(), reviewer)
        except SemTriageError:
            mine = None
        if ss.get(K.theme_pending):
            _remember()  # chosen on the switch before the name was typed: theirs from now on
        elif mine is not None:
            ss[K.theme] = mine
    ss.setdefault(K.theme, DEFAULT)
    st.segmented_control("Theme", list(LABELS), format_func=lambda t: LABELS[t], key=K.theme, required=True,
                         on_change=_remember, help="Light, dark, or as your system / browser is set. "
                         "Remembered for your name on this database. Images keep their own grey levels.")
    c = choice()
    if c == "dark":
        st.html(f"<style>{_DARK_RULES}</style>")
    elif c == "system":
        st.html(f"<style>@media (prefers-color-scheme: dark){{{_DARK_RULES}}}</style>")
        _component(data={"known": ss.get(K.theme_system, "light")}, key=K.theme_listener,
                   on_system_change=_system_reported)


def plotly_chart(where: Any, fig: Any, **kwargs: Any) -> Any:
    """``where.plotly_chart(fig, ...)`` (``where``: ``st``, a column, a container) following the
    page's theme: Streamlit's own chart theme when light, Plotly's ``plotly_dark`` template on
    a clear background when dark."""
    if is_dark():
        fig.update_layout(template="plotly_dark", paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)")
        return where.plotly_chart(fig, theme=None, **kwargs)
    return where.plotly_chart(fig, **kwargs)
