"""Who may do what. Every signed-in user reviews, ingests and exports; only administrators
(``SEMTRIAGE_ADMIN_USERS``) change thresholds and models or delete anything.

Who is signed in is the app's business (``ui.py``: a name typed in the sidebar, a header set by
a trusted reverse proxy, or Streamlit's OIDC login, per ``Settings.auth``). The app passes that
user as ``by=`` to every admin-only core function, which calls :func:`require_admin` before it
writes: a button hidden or disabled in a page is not the only guard. The CLI passes nothing
(``by=None``): it runs on the server with file access to the database, which is trusted.

With ``auth = "none"`` and no admin list everyone is an administrator (a single-user laptop);
with sign-in (``proxy`` / ``oidc``) an empty list means nobody is (fail closed).
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from core.config import Settings
from core.errors import Forbidden


@dataclass(frozen=True)
class User:
    """The person behind a page run: ``name`` as labels record it ('' until known)."""

    name: str
    admin: bool


def same_identity(a: str, b: str) -> bool:
    """Identities compare without case (e-mail addresses are case-insensitive in practice)."""
    return a.strip().casefold() == b.strip().casefold()


def is_admin(name: str, settings: Settings) -> bool:
    """Whether ``name`` may change thresholds and models and delete, under ``settings``."""
    if not settings.admin_users:
        return settings.auth == "none"
    return bool(name.strip()) and any(same_identity(name, a) for a in settings.admin_users)


def user(name: str, settings: Settings) -> User:
    return User(name, is_admin(name, settings))


def require_admin(by: User | None, what: str) -> None:
    """Raise :class:`Forbidden` unless ``by`` is an administrator (``None``: local use, allowed).

    ``what`` completes "may not …", e.g. ``"change the routing thresholds"``.
    """
    if by is None or by.admin:
        return
    who = repr(by.name) if by.name else "Nobody signed in"
    raise Forbidden(
        f"{who} may not {what}: only administrators may (SEMTRIAGE_ADMIN_USERS). "
        "Ask one of them, or an administrator can add you to that list."
    )


PROXY_SECRET_HEADER = "X-SemTriage-Proxy-Secret"


def proxy_header_trusted(peer: str | None, secret: str | None, settings: Settings) -> bool:
    """Whether a request's user header (``auth = "proxy"``) may be believed: with
    ``proxy_secret`` set, only when the request carries it (``PROXY_SECRET_HEADER``,
    compared in constant time); otherwise only from a ``trusted_proxies`` address.
    ``peer`` is the connection's address (None: localhost, as Streamlit reports it). Anyone
    reaching Streamlit directly could otherwise send the header and become anyone."""
    if settings.proxy_secret:
        return secret is not None and hmac.compare_digest(secret.encode(), settings.proxy_secret.encode())
    try:
        addr = ipaddress.ip_address((peer or "127.0.0.1").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies)
