"""Issue 18, findings 8 and 10: in ``proxy`` mode the user header is believed only from a trusted proxy
address, or with the shared secret; the shipped Streamlit config listens on localhost only and
shows no traceback (server paths) in the browser."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from core.access import proxy_header_trusted
from core.config import Settings
from core.errors import SettingsError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("peer", "trusted", "ok"), [
    (None, ["127.0.0.1", "::1"], True),  # Streamlit reports localhost as None
    ("10.0.0.7", ["127.0.0.1", "::1"], False),  # someone on the lab network, straight to Streamlit
    ("10.0.0.7", ["10.0.0.0/24"], True),
    ("::ffff:10.0.0.7", ["10.0.0.0/24"], True),
    ("10.0.1.7", ["10.0.0.0/24"], False),
    ("not an address", ["127.0.0.1"], False),
])
def test_header_only_from_trusted_addresses(peer, trusted, ok):
    assert proxy_header_trusted(peer, None, Settings(auth="proxy", trusted_proxies=trusted)) is ok


def test_with_a_secret_the_secret_decides():
    s = Settings(auth="proxy", proxy_secret="s3cret-long-value")
    assert proxy_header_trusted("10.0.0.7", "s3cret-long-value", s)
    assert not proxy_header_trusted(None, None, s), "even from localhost, no secret: nobody"
    assert not proxy_header_trusted(None, "guess", s)


def test_a_bad_trusted_address_is_refused_in_one_line():
    with pytest.raises(SettingsError, match="SEMTRIAGE_TRUSTED_PROXIES.*not an IP address"):
        Settings.from_env({"SEMTRIAGE_TRUSTED_PROXIES": "proxy.lab"})


def test_the_shipped_server_listens_on_localhost_only():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert cfg["server"]["address"] == "127.0.0.1"
    assert "0.0.0.0" not in (ROOT / "scripts" / "app.sh").read_text(encoding="utf-8")


def test_the_browser_never_gets_a_traceback():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert cfg["client"]["showErrorDetails"] in ("type", "none")
