"""Issue 18, finding 8, the attack itself: in ``proxy`` mode someone who reaches Streamlit
directly (not through the lab's proxy) sends the user header naming an administrator. A real
server, a real browser and a header-setting relay (tests/helpers/proxy.py; browsers put no
extra headers on websocket handshakes): from an address that is not a trusted proxy the header
is ignored (the sign-in page, no data); with the proxy's shared secret it is believed; from the
default trusted address (a proxy on the same machine) it is believed. Needs chromium."""

from __future__ import annotations

import pytest

from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    need_chromium,
    settle,
    start_server,
    stop_server,
)
from tests.helpers.proxy import header_proxy

pytestmark = pytest.mark.browser

ADMIN = "boss@lab.example.org"


@pytest.mark.parametrize(("env", "headers", "signed_in"), [
    # the test's own connection comes from 127.0.0.1: pretend the proxy lives elsewhere
    ({"SEMTRIAGE_TRUSTED_PROXIES": "10.9.9.9"}, {"X-Forwarded-User": ADMIN}, False),
    ({"SEMTRIAGE_PROXY_SECRET": "a-long-shared-secret"}, {"X-Forwarded-User": ADMIN}, False),
    ({"SEMTRIAGE_PROXY_SECRET": "a-long-shared-secret"},
     {"X-Forwarded-User": ADMIN, "X-SemTriage-Proxy-Secret": "a-long-shared-secret"}, True),
    ({}, {"X-Forwarded-User": ADMIN}, True),
])
def test_the_user_header_counts_only_from_the_proxy(tmp_path, env, headers, signed_in):
    need_chromium()
    from playwright.sync_api import sync_playwright

    from tests.helpers import build_app_db

    db_path = build_app_db(tmp_path, n_png=4, n_tiff=0, reference=0)
    proc, url = start_server(db_path, tmp_path, tmp_path / "streamlit.log",
                             env={"SEMTRIAGE_AUTH": "proxy", "SEMTRIAGE_ADMIN_USERS": ADMIN, **env})
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                with header_proxy(int(url.rsplit(":", 1)[1]), headers) as via:
                    page.goto(via)
                    page.wait_for_selector('[data-testid="stApp"]', timeout=30_000)
                    settle(page)
                    body = page.inner_text("body")
                if signed_in:
                    assert ADMIN in body, body[:2000]
                    assert "Sign-in required" not in body
                else:
                    assert "Sign-in required" in body
                    assert ADMIN not in body
            finally:
                browser.close()
    finally:
        stop_server(proc)
