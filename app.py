"""SEM Triage — the Streamlit app. Run with `streamlit run app.py`.

This file only sets the page up, draws the shared sidebar and hands over to the page chosen in
`st.navigation`; each page is a thin layer over `core/`.
"""

import streamlit as st

import ui
from core.errors import SemTriageError

ui.app_ran()

st.set_page_config(
    page_title="SEM Triage",
    page_icon=":material/biotech:",
    layout="wide",
    initial_sidebar_state="expanded",
)
ui.sign_in_gate()  # with sign-in on (SEMTRIAGE_AUTH): nothing below runs until someone is signed in

pages = {
    "Label": [
        st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
        st.Page("pages/grid.py", title="Grid confirm", icon=":material/grid_view:"),
    ],
    "Data": [
        st.Page("pages/overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page("pages/reference.py", title="Reference set", icon=":material/library_books:"),
        st.Page("pages/ingest.py", title="Ingest", icon=":material/upload:"),
        st.Page("pages/export.py", title="Export", icon=":material/download:"),
    ],
    "Set-up": [
        st.Page("pages/models.py", title="Models & thresholds", icon=":material/tune:"),
    ],
}
page = st.navigation(pages)
# Our CSS (no user text): less empty space above each page, so the review image sits high.
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.5rem}</style>")

with st.sidebar:
    st.markdown("### :material/biotech: SEM Triage")
    ui.reviewer_sidebar()
    if not ui.reviewer():
        st.caption("Type your name to start reviewing.")

try:
    db = ui.db()
except SemTriageError as e:  # e.g. SEMTRIAGE_DB names a folder: say so on every page
    ui.show_error(e)
    st.stop()

with st.sidebar:
    model = ui.active_model(db, ui.db_key())
    st.caption(f"Model: {ui.esc(model['version'])}" if model else "No active model")
    st.caption(f"Database: {ui.esc(ui.settings().db)}")

page.run()
