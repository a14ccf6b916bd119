"""Shared words and small widgets of the pages: queue and order labels, errors shown as
messages (never tracebacks), Markdown escaping of user text, page links and switches."""


from __future__ import annotations

import re
from typing import Any

import streamlit as st

from ui.state import K

# the page files (app.py's st.navigation lists them; sections are sub-folders of pages/)
REVIEW_PAGE = "pages/label/review.py"
GRID_PAGE = "pages/label/grid.py"
OVERVIEW_PAGE = "pages/data/overview.py"
REFERENCE_PAGE = "pages/data/reference.py"
INGEST_PAGE = "pages/data/ingest.py"
EXPORT_PAGE = "pages/data/export.py"
FIBRES_PAGE = "pages/data/fibres.py"
MODELS_PAGE = "pages/setup/models.py"
ADJUDICATE_PAGE = "pages/label/adjudicate.py"
AGREEMENT_PAGE = "pages/data/agreement.py"
PARTICLES_PAGE = "pages/data/particles.py"
SIMILARITY_PAGE = "pages/data/similarity.py"
DISPLAY_MAX_PX = 1400  # longest side of the review image (Streamlit would shrink > 1460 anyway)


QUEUE_LABELS = {
    "uncertain": "Uncertain",
    "mixed": "Mixed",
    "auto": "Confident",
    "blind": "Blind spot-check",
    "all": "All unreviewed",
}


QUEUE_HELP = ("Uncertain: the model is not confident · Mixed: between two categories or showing "
              "several · Confident: above the accept threshold (auto-labelled once the model is "
              "certified), the model's answer shown · Blind spot-check: a random sample of the "
              "confident ones with the answer hidden — only these (and labels given in the other "
              "queues) measure how often auto-accepting is wrong · All unreviewed: every queue.")


ORDER_LABELS = {  # short: they are buttons (a select box would keep the keyboard focus)
    "margin": "Margin",
    "confidence": "Least confidence",
    "entropy": "Entropy",
    "random": "Random",
    "file": "File",
}


ORDER_HELP = ("Margin: smallest gap between the top two classes first · Least confidence: lowest "
              "top-class probability first · Entropy: most spread-out probabilities first · "
              "Random: an unbiased sample. Remembered as your order of this queue; an administrator "
              "can make it the default for everyone.")


def show_error(e: BaseException, where: Any = st) -> None:
    """A core error as a message, never a traceback."""
    where.error(str(e), icon=":material/error:")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def esc(text: Any) -> str:
    """User text (file names, labels, reviewer names) made inert for Markdown."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def switch_page(path: str, **params: str) -> None:
    """``st.switch_page`` for every page switch, with ``params`` set in the URL. The reviewer
    name box is bound to the URL's ``reviewer`` parameter, and Streamlit refuses both to clear a
    widget-bound parameter (what a plain switch does) and to set one: pass the other parameters;
    the widget keeps its own."""
    keep = {k: v for k, v in st.query_params.to_dict().items() if k != K.reviewer}
    st.switch_page(path, query_params={**keep, **params})


def no_model_hint() -> None:
    st.info(
        "No model is active yet. On **Models & thresholds**, use the shipped default model "
        "or register your own (or run `semtriage demo` for the built-in demo).",
        icon=":material/model_training:",
    )
    st.page_link(MODELS_PAGE, label="Models & thresholds", icon=":material/tune:")


def no_images_hint() -> None:
    st.info("No images yet — add some on **Ingest**.", icon=":material/upload:")
    st.page_link(INGEST_PAGE, label="Go to Ingest", icon=":material/upload:")
