"""Settings as plain data: one list of :class:`Setting` drives the typed :class:`Settings`
object's defaults, the parsing of its ``SEMTRIAGE_<NAME>`` environment variables and the
README's settings table (:func:`settings_table`; tests/test_config.py keeps them in step).

    Settings.from_env()          # defaults, overridden by SEMTRIAGE_* (SettingsError if bad)

Also the fixed paths of a checkout (``DEFAULT_DB``, ``DEFAULT_MODEL``, ``DEMO_DIR``) and the
class names of the NFFA-Europe taxonomy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from core.errors import SettingsError

PROJECT_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_DIR / "data"
DEFAULT_DB = DATA_DIR / "semtriage.db"
MODELS_DIR = DATA_DIR / "models"
DEFAULT_MODEL = MODELS_DIR / "default.onnx"
DEMO_DIR = DATA_DIR / "demo"

# The NFFA-Europe SEM taxonomy (Aversa et al., Sci. Data 2018), as our class names.
NFFA_CLASSES = [
    "biological",
    "fibres",
    "films",
    "mems",
    "nanowires",
    "particles",
    "patterned",
    "porous",
    "powder",
    "tips",
]

AUTH_MODES = ("none", "proxy", "oidc")
_HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


def _text(raw: str) -> str:
    return raw


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected an integer") from None


def _paths(raw: str) -> list[str]:
    return [p for p in raw.split(os.pathsep) if p]


def _names(raw: str) -> list[str]:
    return [u.strip() for u in raw.split(",") if u.strip()]


def _auth(raw: str) -> str:
    mode = raw.strip().lower()
    if mode not in AUTH_MODES:
        raise ValueError(f"expected one of {', '.join(AUTH_MODES)}")
    return mode


def _header(raw: str) -> str:
    name = raw.strip()
    if not _HEADER_RE.match(name):
        raise ValueError("expected an HTTP header name such as 'X-Forwarded-User'")
    return name


@dataclass(frozen=True)
class Setting:
    """One setting: its name (``SEMTRIAGE_<NAME>`` in the environment), default, help as the
    README shows it, how the environment's text becomes a value, and the default as shown
    to people when it differs from the value (a path relative to the checkout)."""

    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = _text
    shown: str | None = None

    @property
    def env(self) -> str:
        return f"SEMTRIAGE_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting("db", str(DEFAULT_DB), "the SQLite database", shown="data/semtriage.db"),
    Setting("roots", [str(DATA_DIR)], "server folders the app may ingest from (`:`-separated)",
            _paths, shown="data/"),
    Setting("upload_max_mb", 512, "largest upload (file or zip)", _integer),
    Setting("max_pixels", 200_000_000, "largest image decoded (decompression-bomb guard)",
            _integer),
    Setting("thumb_px", 256, "longest side of the stored thumbnails, in pixels", _integer),
    Setting("batch_size", 32, "images per ONNX Runtime call", _integer),
    Setting("claim_seconds", 300, "how long a reviewer's claim on an image lasts", _integer),
    Setting("auth", "none", "sign-in: `none` (type a name), `proxy` (a reverse proxy's header), "
            "`oidc` (`st.login`); see `docs/DEPLOY.md`", _auth),
    Setting("auth_header", "X-Forwarded-User", "with `proxy`: the header naming the signed-in "
            "user", _header),
    Setting("admin_users", [], "who may change thresholds and models and delete; empty = "
            "everyone with `none`, nobody with sign-in", _names, shown="empty"),
    Setting("adjudicators", [], "who may settle disagreements between reviewers (the "
            "adjudication queue) besides the administrators", _names, shown="empty"),
)
_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass
class Settings:
    """The settings in force (see :data:`SETTINGS` for what each one means)."""

    db: str = _BY_NAME["db"].default
    roots: list[str] = field(default_factory=lambda: list(_BY_NAME["roots"].default))
    upload_max_mb: int = _BY_NAME["upload_max_mb"].default
    max_pixels: int = _BY_NAME["max_pixels"].default
    thumb_px: int = _BY_NAME["thumb_px"].default
    batch_size: int = _BY_NAME["batch_size"].default
    claim_seconds: int = _BY_NAME["claim_seconds"].default
    auth: str = _BY_NAME["auth"].default
    auth_header: str = _BY_NAME["auth_header"].default
    admin_users: list[str] = field(default_factory=lambda: list(_BY_NAME["admin_users"].default))
    adjudicators: list[str] = field(default_factory=lambda: list(_BY_NAME["adjudicators"].default))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, overridden by ``SEMTRIAGE_*`` environment variables. A value a setting
        cannot take raises :class:`SettingsError` naming the variable, the value and why."""
        env = os.environ if environ is None else environ
        s = cls()
        for f in fields(cls):
            setting = _BY_NAME[f.name]
            raw = env.get(setting.env)
            if raw is None:
                continue
            try:
                setattr(s, f.name, setting.parse(raw))
            except ValueError as e:
                raise SettingsError(f"Setting {setting.env}={raw!r}: {e}") from None
        return s


def settings_table() -> str:
    """The README's table of settings (Markdown), from :data:`SETTINGS`."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        shown = s.shown if s.shown is not None else str(s.default)
        rows.append(f"| `{s.env}` | {shown if shown == 'empty' else f'`{shown}`'} | {s.help} |")
    return "\n".join(rows)
