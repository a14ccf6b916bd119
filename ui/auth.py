"""Who is signed in (``Settings.auth``, docs/DEPLOY.md): "none" = the name typed in the sidebar
(a single-user laptop); "proxy" = the header a trusted reverse proxy sets (read from the
websocket's opening request, st.context.headers); "oidc" = Streamlit's st.login with a provider
in secrets.toml [auth]. With sign-in the name cannot be edited and nothing is shown until
someone is signed in."""


from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAuthError

from core import access, review
from core.errors import SemTriageError
from ui.common import esc, show_error
from ui.state import K, db, settings


def _header_identity(header: str) -> str:
    values = st.context.headers.get_all(header)
    if len(values) != 1:  # absent, or sent twice (ambiguous): nobody
        return ""
    secrets = st.context.headers.get_all(access.PROXY_SECRET_HEADER)
    secret = secrets[0] if len(secrets) == 1 else None
    if not access.proxy_header_trusted(st.context.ip_address, secret, settings()):
        return ""  # sent straight to Streamlit, not by the lab's proxy: nobody
    try:
        return review.clean_reviewer(values[0])
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
                return review.clean_reviewer(value)
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
                f"name you (no valid {esc(cfg.auth_header)} header from a trusted proxy). Open the "
                "app through its usual address and sign in there.", icon=":material/login:")
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
    if is_admin():  # no sign-in and no admin list: say what that means, on every screen
        st.sidebar.caption(":material/lock_open: Sign-in is off: anyone who can reach this server "
                           "is an administrator (docs/DEPLOY.md turns sign-in on).")
    raw = st.sidebar.text_input(
        "Reviewer", key=K.reviewer, placeholder="Your name",
        help="Every label you give is recorded under this name.",
        icon=":material/person:", bind="query-params",
    )
    name = ""
    if raw and raw.strip():
        try:
            name = review.clean_reviewer(raw)
        except SemTriageError as e:
            show_error(e, st.sidebar)
    old = ss.get(K.reviewer_name)
    if old and old != name:
        try:
            review.release_claims(db(), old)  # the images they held go back to the queue
        except SemTriageError:
            pass
    ss[K.reviewer_name] = name
