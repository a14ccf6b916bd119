"""SEM Triage — the Streamlit app. Run with `streamlit run app.py`.

This file only sets the page up, draws the shared sidebar and hands over to the page chosen in
`st.navigation`; each page is a thin layer over `core/`, its helpers in the `ui` package. The
page files sit in sub-folders of `pages/` (one per section): Streamlit's legacy auto-discovery
only looks at `pages/*.py`, so even the first request of a fresh server to a page URL such as
/review runs this file first (tests/ui/test_browser_nav.py).
"""

from pathlib import Path

import streamlit as st

import ui
from core.errors import SemTriageError

st.set_page_config(
    page_title="SEM Triage",
    page_icon=str(Path(__file__).parent / "ui" / "favicon.png"),  # shipped: an offline lab gets it too
    layout="wide",
    initial_sidebar_state="expanded",
)
try:
    ui.settings()
except SemTriageError as e:  # a bad SEMTRIAGE_* variable: say which, on every page
    ui.show_error(e)
    st.stop()
pages = {
    "Label": [
        st.Page(ui.REVIEW_PAGE, title="Review", icon=":material/rate_review:"),
        st.Page(ui.GRID_PAGE, title="Grid confirm", icon=":material/grid_view:"),
        st.Page(ui.ADJUDICATE_PAGE, title="Adjudicate", icon=":material/gavel:"),
    ],
    "Data": [
        st.Page(ui.OVERVIEW_PAGE, title="Overview", icon=":material/dashboard:", default=True),
        st.Page(ui.REFERENCE_PAGE, title="Reference set", icon=":material/library_books:"),
        st.Page(ui.AGREEMENT_PAGE, title="Agreement", icon=":material/handshake:"),
        st.Page(ui.SIMILARITY_PAGE, title="Similarity", icon=":material/hub:"),
        st.Page(ui.INGEST_PAGE, title="Ingest", icon=":material/upload:"),
        st.Page(ui.EXPORT_PAGE, title="Export", icon=":material/download:"),
        st.Page(ui.PARTICLES_PAGE, title="Particles", icon=":material/scatter_plot:"),
        st.Page(ui.FIBRES_PAGE, title="Fibres", icon=":material/line_axis:"),
    ],
    "Set-up": [
        st.Page(ui.MODELS_PAGE, title="Models & thresholds", icon=":material/tune:"),
    ],
}
# Whatever fails below (a damaged database, a file the server cannot read) is said in words,
# never as a traceback (ui/failures.py); the page's own failures name the page.
with ui.failure_boundary("Opening SEM Triage"):
    # with sign-in on (SEMTRIAGE_AUTH) and nobody signed in: the page asked for is resolved (kept in
    # the URL) but not shown, nor the menu, and nothing below the gate runs
    signed_in = ui.settings().auth == "none" or bool(ui.reviewer())
    page = st.navigation(pages, position="sidebar" if signed_in else "hidden")
    ui.sign_in_gate()
    # Our CSS (no user text): less empty space above each page, so the review image sits high.
    st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.5rem}</style>")

    with st.sidebar:
        st.markdown("### :material/biotech: SEM Triage")
        ui.reviewer_sidebar()
        if not ui.reviewer():
            st.caption("Type your name to start reviewing.")
        ui.theme_sidebar(ui.reviewer())

    try:
        db = ui.db()
    except Exception as e:  # noqa: BLE001 - a folder, a damaged file: said on every page, no server path
        ui.show_failure(e, "Opening the database")
        st.stop()

    with st.sidebar:
        model = ui.active_model(db, ui.db_key())
        st.caption(f"Model: {ui.esc(model['version'])}" if model else "No active model")
        if ui.is_admin():  # a server path is for those who run the server
            st.caption(f"Database: {ui.esc(ui.settings().db)}")

    with ui.failure_boundary(f"The {page.title} page"):
        page.run()
