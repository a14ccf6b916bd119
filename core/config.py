"""Settings as plain data: one typed object, documented, with defaults that work out of the box.

Every setting can be overridden by an environment variable ``SEMTRIAGE_<NAME>`` (upper case).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

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

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str


SETTINGS_DOC = [
    Setting("db", str(DEFAULT_DB), "SQLite database file."),
    Setting("roots", str(DATA_DIR), "Server folders the app may ingest from (os.pathsep-separated)."),
    Setting("upload_max_mb", 512, "Largest single upload (file or zip) in MB."),
    Setting("max_pixels", 200_000_000, "Largest image (width x height) decoded; beyond: refused."),
    Setting("thumb_px", 256, "Longest side of stored thumbnails, in pixels."),
    Setting("batch_size", 32, "Images per ONNX Runtime call."),
    Setting("claim_seconds", 300, "How long a reviewer's claim on an image lasts."),
    Setting("admin_users", "", "Comma-separated identities allowed to change thresholds and models "
            "and to delete; empty: everyone with auth 'none', nobody with 'proxy' or 'oidc'."),
    Setting("auth", "none", "Sign-in: 'none' (name typed in the sidebar), 'proxy' (a trusted reverse "
            "proxy sets the auth_header), 'oidc' (Streamlit's st.login, [auth] in secrets.toml)."),
    Setting("auth_header", "X-Forwarded-User", "With auth 'proxy': the request header holding the "
            "signed-in user (the proxy must overwrite whatever the client sent)."),
]

AUTH_MODES = ("none", "proxy", "oidc")
_HEADER_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


@dataclass
class Settings:
    db: str = str(DEFAULT_DB)
    roots: list[str] = field(default_factory=lambda: [str(DATA_DIR)])
    upload_max_mb: int = 512
    max_pixels: int = 200_000_000
    thumb_px: int = 256
    batch_size: int = 32
    claim_seconds: int = 300
    admin_users: list[str] = field(default_factory=list)
    auth: str = "none"
    auth_header: str = "X-Forwarded-User"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Defaults, overridden by ``SEMTRIAGE_*`` environment variables."""
        env = os.environ if environ is None else environ
        s = cls()
        for f in fields(cls):
            raw = env.get(f"SEMTRIAGE_{f.name.upper()}")
            if raw is None:
                continue
            if f.name == "roots":
                s.roots = [p for p in raw.split(os.pathsep) if p]
            elif f.name == "admin_users":
                s.admin_users = [u.strip() for u in raw.split(",") if u.strip()]
            elif isinstance(getattr(s, f.name), int):
                try:
                    setattr(s, f.name, int(raw))
                except ValueError:
                    raise ValueError(
                        f"Setting SEMTRIAGE_{f.name.upper()}={raw!r}: expected an integer"
                    ) from None
            else:
                setattr(s, f.name, raw)
        s.auth = s.auth.strip().lower()
        if s.auth not in AUTH_MODES:
            raise ValueError(f"Setting SEMTRIAGE_AUTH={s.auth!r}: expected one of {', '.join(AUTH_MODES)}")
        s.auth_header = s.auth_header.strip()
        if not _HEADER_RE.match(s.auth_header):
            raise ValueError(f"Setting SEMTRIAGE_AUTH_HEADER={s.auth_header!r}: expected an HTTP header "
                             "name such as 'X-Forwarded-User'")
        return s
