"""Streamlit-only helpers shared by the pages: session-state key names, the per-session
database connection, the cached model session and query results, display images (cached by
path and mtime, prefetched in the background), the reviewer widget, error display, and the
Review page's button callbacks. Behaviour lives in ``core/``; this module adapts it to Streamlit.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.errors import StreamlitAuthError
from streamlit.runtime.pages_manager import PagesManager

from core import access, calibration, labels, registry, stats
from core.config import Settings
from core.errors import ClaimConflict, SemTriageError
from core.imageio import encode_png, read_image
from core.model import Classifier
from core.preprocess import resize
from core.store import open_db

DISPLAY_MAX_PX = 1400  # longest side of the review image (Streamlit would shrink > 1460 anyway)
QUEUE_LABELS = {
    "uncertain": "Uncertain",
    "mixed": "Mixed",
    "auto": "Spot-check (auto)",
    "all": "All unreviewed",
}
ORDER_LABELS = {  # short: they are buttons (a select box would keep the keyboard focus)
    "margin": "Margin",
    "confidence": "Least confidence",
    "entropy": "Entropy",
    "random": "Random",
    "file": "File",
}
ORDER_HELP = ("Margin: smallest gap between the top two classes first · Least confidence: lowest "
              "top-class probability first · Entropy: most spread-out probabilities first · "
              "Random: an unbiased sample. Stored as this queue's default order for everyone.")


class K:
    """Session-state key names, named once. Widgets whose value must survive a page change use
    ``persist_state="session"``; derived values live in non-widget keys."""

    db = "_db"  # (path, Database) of this browser session
    reviewer = "reviewer"  # sidebar text input (also the URL query parameter)
    reviewer_name = "reviewer_name"  # the cleaned name (non-widget: survives page changes)
    review_queue = "review_queue"
    review_order = "review_order"
    review_current = "review_current"  # image id on screen
    review_pin = "review_pin"  # image id to show first (after undo)
    review_hist = "review_hist"  # image ids decided in this session, oldest first
    review_back = "review_back"  # index into review_hist while looking back, else None
    review_done = "review_done"  # decisions in this session
    review_msg = "review_msg"  # (kind, text) to show once
    review_fullres = "review_fullres"
    grid_class = "grid_class"
    grid_n = "grid_n"
    grid_auto = "grid_auto"
    grid_msg = "grid_msg"
    ref_page = "ref_page"


# ---------------------------------------------------------------- page set-up

# app.py defines the pages with st.navigation, which switches Streamlit's older `pages/`
# auto-discovery off — but only once app.py has run in this server process. Until then (the
# first request after a start that lands on a page URL, e.g. a tab reconnecting on /review)
# Streamlit would run the page file alone, without app.py's layout and sidebar. Importing ui
# switches it off at once, and `page()` reruns such a run through app.py.
PagesManager.uses_pages_directory = False
_run = threading.local()


def app_ran() -> None:
    """Called by app.py at the start of each run."""
    _run.app = True


def page() -> None:
    """Called first by every page: makes sure this run went through app.py."""
    if not getattr(_run, "app", False):
        st.rerun()
    _run.app = False


# ---------------------------------------------------------------- settings and database


def settings() -> Settings:
    return Settings.from_env()


def db() -> Any:
    """This browser session's connection (opened once, reopened if SEMTRIAGE_DB changed)."""
    path = settings().db
    held = st.session_state.get(K.db)
    if held is None or held[0] != path:
        st.session_state[K.db] = (path, open_db(path))
    return st.session_state[K.db][1]


def db_key() -> str:
    """A hashable stand-in for the database in cache keys."""
    return str(Path(settings().db).resolve())


def show_error(e: BaseException, where: Any = st) -> None:
    """A core error as a message, never a traceback."""
    where.error(str(e), icon=":material/error:")


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def esc(text: Any) -> str:
    """User text (file names, labels, reviewer names) made inert for Markdown."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


# ---------------------------------------------------------------- cached resources and queries


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _classifier(path: str, mtime: float, sha256: str, version: str) -> Classifier:
    return registry.model_classifier({"path": path, "sha256": sha256, "version": version})


def classifier(model: dict[str, Any]) -> Classifier:
    """The ONNX session of a registered model, shared by every session (keyed by path and
    mtime); refused (ModelError) when its file changed after it was registered."""
    path = str(model["path"])
    mtime = os.path.getmtime(path) if os.path.isfile(path) else -1.0  # missing: core says so
    return _classifier(path, mtime, model["sha256"], model["version"])


@st.cache_data(max_entries=64, show_spinner=False)
def _file_changed(path: str, mtime: float, sha256: str) -> bool:
    return registry.file_changed({"path": path, "sha256": sha256})


def model_file_changed(model: dict[str, Any]) -> bool:
    """Whether a registered model's file was overwritten since (hashed once per file mtime)."""
    path = model["path"]
    return os.path.isfile(path) and _file_changed(path, os.path.getmtime(path), model["sha256"])


@st.cache_data(ttl=60, show_spinner=False)
def active_model(_db: Any, key: str) -> dict[str, Any] | None:
    return registry.active_model(_db)


@st.cache_data(ttl=60, show_spinner=False)
def models(_db: Any, key: str) -> list[dict[str, Any]]:
    return registry.list_models(_db)


@st.cache_data(ttl=20, show_spinner=False)
def overview(_db: Any, key: str) -> dict[str, Any]:
    return stats.overview(_db)


@st.cache_data(ttl=20, show_spinner=False)
def per_class(_db: Any, key: str) -> list[dict[str, Any]]:
    return stats.per_class(_db)


@st.cache_data(ttl=60, show_spinner=False)
def charts(_db: Any, key: str, model_id: int) -> dict[str, Any]:
    return {
        "hist": stats.confidence_histogram(_db, model_id),
        "confusion": stats.confusion(_db, model_id),
        "per_hour": stats.labels_per_hour(_db),
    }


@st.cache_data(ttl=30, show_spinner=False)
def reference_page(_db: Any, key: str, f: stats.RefFilter, page: int) -> tuple[list[dict[str, Any]], int]:
    return stats.search_reference(_db, f, page=page)


@st.cache_data(ttl=60, show_spinner=False)
def facets(_db: Any, key: str) -> dict[str, list[str]]:
    return stats.reference_facets(_db)


@st.cache_data(ttl=20, show_spinner=False)
def grid_counts(_db: Any, key: str, model_id: int, include_auto: bool) -> dict[str, int]:
    return stats.grid_class_counts(_db, model_id, include_auto=include_auto)


@st.cache_data(ttl=600, max_entries=8, show_spinner="Reading the held-out human labels…")
def recommendation(_db: Any, key: str, model_id: int, target: float, version: int
                   ) -> tuple[calibration.HeldOut, dict[str, calibration.Recommendation] | None]:
    """Held-out labels of ``model_id`` and the recommended thresholds for ``target``; ``version``
    (core.labels.label_version) makes a new label recompute it."""
    held = calibration.heldout_predictions(_db, model_id)
    if len(held) == 0:
        return held, None
    return held, calibration.recommend_per_class(held.probs, held.labels, held.class_names, target)


@st.cache_data(ttl=30, max_entries=64, show_spinner=False)
def threshold_preview(_db: Any, key: str, model_id: int,
                      ts_items: tuple[tuple[str, tuple[float, float, float, float]], ...],
                      version: int) -> tuple[dict[str, int], dict[str, Any]]:
    """Queue sizes and the auto-accept error estimate under thresholds given as
    ``((class, (accept, mixed_margin, mixed_mass, cooccur)), ...)``: a slider moved back and
    forth costs one computation per position (1 s at a million images, not every rerun)."""
    from core import routing

    ts = {c: routing.Thresholds(*v) for c, v in ts_items}
    return routing.preview_counts(_db, model_id, ts), stats.auto_error_estimate(_db, model_id, ts)


def clear_after_label() -> None:
    """After a label was written: the numbers and lists that count labels."""
    for fn in (overview, per_class, charts, reference_page, facets, grid_counts,
               threshold_preview):
        fn.clear()


def clear_after_model() -> None:
    """After a model was registered/activated or thresholds changed: everything derived."""
    clear_after_label()
    active_model.clear()
    models.clear()


# ---------------------------------------------------------------- images


@st.cache_data(max_entries=48, show_spinner=False)
def _view(path: str, mtime: float, max_side: int) -> dict[str, Any]:
    img = read_image(path, max_pixels=settings().max_pixels)
    scan = img.scan
    h, w = scan.shape
    f = min(1.0, max_side / max(h, w))
    shown = resize(scan, (max(1, round(h * f)), max(1, round(w * f)))) if f < 1 else scan
    bar = img.databar
    return {
        "scan": encode_png(shown),
        "bar": encode_png(bar) if bar is not None else None,
        "scaled": f < 1,
        "bit_depth": img.bit_depth,
        "warnings": img.warnings,
    }


def image_view(path: str, max_side: int = DISPLAY_MAX_PX) -> dict[str, Any]:
    """Display PNGs of one image (scan at most ``max_side`` px, data bar apart), cached by
    path and modification time. Raises ImageReadError when the file is gone or unreadable."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        mtime = -1.0  # read_image will say what is wrong
    return _view(path, mtime, max_side)


_prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semtriage-prefetch")


def _view_quietly(path: str, mtime: float, max_side: int) -> None:
    # an unreadable file is reported by the page when it shows that image
    with contextlib.suppress(Exception):
        _view(path, mtime, max_side)


def prefetch(path: str, max_side: int = DISPLAY_MAX_PX) -> None:
    """Start decoding and encoding ``path`` for display in a background thread (into the same
    cache ``image_view`` reads; a page asking for it meanwhile waits for this work instead of
    repeating it). Pillow releases the GIL while it encodes, so this overlaps the page run."""
    try:
        mtime = os.path.getmtime(path)
    except OSError:
        return
    _prefetcher.submit(_view_quietly, path, mtime, max_side)


@st.cache_data(max_entries=4, show_spinner="Encoding the full-resolution image…")
def _full(path: str, mtime: float) -> bytes:
    return encode_png(read_image(path, max_pixels=settings().max_pixels).data)


def full_resolution_html(path: str, height_px: int = 720) -> str:
    """The whole frame at 1:1 in a scrolling box, as HTML for ``st.html`` (our PNG bytes only;
    no user text goes into it)."""
    b64 = base64.b64encode(_full(path, os.path.getmtime(path))).decode("ascii")
    return (f'<div style="overflow:auto;max-height:{int(height_px)}px;border:1px solid #d0d7de;'
            f'border-radius:6px"><img alt="" style="max-width:none;display:block" '
            f'src="data:image/png;base64,{b64}"></div>')


# ---------------------------------------------------------------- who is signed in
# Settings.auth (docs/DEPLOY.md): "none" = the name typed in the sidebar (a single-user laptop);
# "proxy" = the header a trusted reverse proxy sets (read from the websocket's opening request,
# st.context.headers); "oidc" = Streamlit's st.login with a provider in secrets.toml [auth].
# With sign-in the name cannot be edited and nothing is shown until someone is signed in.


def _header_identity(header: str) -> str:
    values = st.context.headers.get_all(header)
    if len(values) != 1:  # absent, or sent twice (ambiguous): nobody
        return ""
    try:
        return labels.clean_reviewer(values[0])
    except SemTriageError:
        return ""


def _oidc_identity() -> str:
    u = st.user
    if not u.get("is_logged_in"):
        return ""
    for claim in ("email", "preferred_username", "name", "sub"):
        value = u.get(claim)
        if isinstance(value, str) and value.strip():
            try:
                return labels.clean_reviewer(value)
            except SemTriageError:
                continue
    return ""


def reviewer() -> str:
    """Who labels in this session ('' until someone is signed in or a name is typed)."""
    cfg = settings()
    if cfg.auth == "proxy":
        return _header_identity(cfg.auth_header)
    if cfg.auth == "oidc":
        return _oidc_identity()
    return st.session_state.get(K.reviewer_name, "")


def user() -> access.User:
    """The signed-in user with their role; passed as ``by=`` to admin-only core calls."""
    return access.user(reviewer(), settings())


def is_admin() -> bool:
    return user().admin


def require_admin() -> bool:
    """Whether this user may change thresholds and models or delete; when not, says so once
    on the page (the caller disables those controls; core refuses them anyway)."""
    if is_admin():
        return True
    cfg = settings()
    who = f"**{esc(reviewer())}** is" if reviewer() else "You are"
    if cfg.admin_users:
        st.warning(f"{who} not an administrator: only " + ", ".join(esc(u) for u in cfg.admin_users)
                   + " may change models and thresholds or delete (SEMTRIAGE_ADMIN_USERS).",
                   icon=":material/lock:")
    else:
        st.warning(f"{who} not an administrator: with sign-in on, nobody is until SEMTRIAGE_ADMIN_USERS "
                   "names them.", icon=":material/lock:")
    return False


def sign_in_gate() -> None:
    """With sign-in on and nobody signed in: a sign-in message and nothing else (st.stop)."""
    cfg = settings()
    if cfg.auth == "none" or reviewer():
        return
    st.title(":material/lock: Sign-in required")
    if cfg.auth == "proxy":
        st.info(f"This SEM Triage server signs people in through the lab's web proxy, which did not "
                f"name you (no valid `{esc(cfg.auth_header)}` header). Open the app through its "
                "usual address and sign in there.", icon=":material/login:")
    else:
        st.info("Sign in with your institutional account to review and label.", icon=":material/login:")
        if st.button("Log in", key="auth_login", type="primary", icon=":material/login:"):
            try:
                st.login()
            except StreamlitAuthError as e:  # no [auth] in secrets.toml, Authlib missing: say so
                st.error(f"Sign-in is not set up on this server: {e}", icon=":material/error:")
    st.stop()


def reviewer_sidebar() -> None:
    """The reviewer in the sidebar. Without sign-in: a name box, kept for the session (and in
    the URL, so a page reload keeps it; the cleaned copy lives in a non-widget key). With
    sign-in: the signed-in name, not editable (and a log-out button with OIDC)."""
    ss = st.session_state
    cfg = settings()
    if cfg.auth != "none":
        st.sidebar.markdown(f":material/person: **{esc(reviewer())}**"
                            + (" · administrator" if is_admin() else ""))
        if cfg.auth == "oidc":
            st.sidebar.button("Log out", key="auth_logout", icon=":material/logout:", on_click=st.logout)
        return
    raw = st.sidebar.text_input(
        "Reviewer", key=K.reviewer, placeholder="Your name",
        help="Every label you give is recorded under this name.",
        icon=":material/person:", bind="query-params",
    )
    name = ""
    if raw and raw.strip():
        try:
            name = labels.clean_reviewer(raw)
        except SemTriageError as e:
            show_error(e, st.sidebar)
    old = ss.get(K.reviewer_name)
    if old and old != name:
        try:
            labels.release_claims(db(), old)  # the images they held go back to the queue
        except SemTriageError:
            pass
    ss[K.reviewer_name] = name


def switch_page(path: str) -> None:
    """``st.switch_page`` for every page switch. The reviewer name box is bound to the URL's
    ``reviewer`` parameter, and Streamlit refuses both to clear a widget-bound parameter (what a
    plain switch does) and to set one: pass the other parameters; the widget keeps its own."""
    keep = {k: v for k, v in st.query_params.to_dict().items() if k != K.reviewer}
    st.switch_page(path, query_params=keep)


def no_model_hint() -> None:
    st.info(
        "No model is active yet. Register one on **Models & thresholds** "
        "(or run `semtriage demo` for the built-in demo).",
        icon=":material/model_training:",
    )
    st.page_link("pages/models.py", label="Models & thresholds", icon=":material/tune:")


def no_images_hint() -> None:
    st.info("No images yet — add some on **Ingest**.", icon=":material/upload:")
    st.page_link("pages/ingest.py", label="Go to Ingest", icon=":material/upload:")


def data_dir(*parts: str) -> Path:
    """A folder beside the database (``data/exports``, ``data/uploads`` for the default one)."""
    return Path(settings().db).resolve().parent.joinpath(*parts)


# ---------------------------------------------------------------- review session
# Button callbacks of the Review page. They run before the rerun that shows the next image;
# each decision is one small write through core.labels.


def _review_advance(iid: int, back_mode: bool) -> None:
    ss = st.session_state
    hist = ss.setdefault(K.review_hist, [])
    if back_mode:
        b = ss[K.review_back] + 1
        ss[K.review_back] = b if b < len(hist) else None
    else:
        hist.append(iid)
    if ss.get(K.review_pin) == iid:
        ss.pop(K.review_pin)
    ss[K.review_current] = None  # a second press before the next image shows does nothing


def review_decide(iid: int, action: str, label: str | None = None) -> None:
    ss = st.session_state
    if ss.get(K.review_current) != iid:
        return  # a key press meant for an image that is no longer on screen
    back_mode = ss.get(K.review_back) is not None
    try:
        labels.decide(db(), iid, action, reviewer=reviewer(), label=label)
    except ClaimConflict as e:  # someone took it meanwhile (possible for an undone image)
        ss.pop(K.review_pin, None)
        ss[K.review_msg] = ("error", str(e))
        return
    except SemTriageError as e:
        ss[K.review_msg] = ("error", str(e))
        return
    if not back_mode and action != "skip":
        ss[K.review_done] = ss.get(K.review_done, 0) + 1
    _review_advance(iid, back_mode)
    clear_after_label()


def review_keep(iid: int) -> None:
    """Looking back: keep this label and step forward."""
    if st.session_state.get(K.review_current) == iid:
        _review_advance(iid, True)


def review_undo() -> None:
    """Undo the reviewer's last decision and put that image back on screen."""
    ss = st.session_state
    try:
        ev = labels.undo_last(db(), reviewer())
    except SemTriageError as e:
        ss[K.review_msg] = ("error", str(e))
        return
    if ev is None:
        ss[K.review_msg] = ("info", "Nothing to undo.")
        return
    hist = ss.setdefault(K.review_hist, [])
    if ev["image_id"] in hist:
        del hist[len(hist) - 1 - hist[::-1].index(ev["image_id"])]  # its latest occurrence
        if ev["action"] != "skip":
            ss[K.review_done] = max(0, ss.get(K.review_done, 0) - 1)
    ss[K.review_pin], ss[K.review_back] = ev["image_id"], None
    what = f"{ev['action']} {ev['label']}" if ev["label"] else ev["action"]
    ss[K.review_msg] = ("info", f"Undone: {what}. The image is back on screen.")
    clear_after_label()


def review_step(delta: int | None) -> None:
    """Move through this session's decisions: -1 back, +1 forward, None back to the queue."""
    ss = st.session_state
    hist, b = ss.get(K.review_hist, []), ss.get(K.review_back)
    if delta is None or (delta > 0 and (b is None or b + 1 >= len(hist))):
        ss[K.review_back] = None
    elif not hist:
        ss[K.review_msg] = ("info", "No earlier decision in this session yet.")
    else:
        ss[K.review_back] = len(hist) - 1 if b is None else max(0, b + delta)


def review_release(*_: object) -> None:
    """The queue or order changed: give back the images this reviewer held."""
    try:
        labels.release_claims(db(), reviewer())
    except SemTriageError:
        pass
