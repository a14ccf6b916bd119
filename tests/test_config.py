"""One settings list (core.config.SETTINGS) drives the Settings defaults, the parsing of the
SEMTRIAGE_* variables and the README's table; a bad value is a one-line error in the CLI and an
error on every page of the app, never a traceback."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import SETTINGS, Settings, settings_table
from core.errors import SettingsError
from tests.helpers import failures

ROOT = Path(__file__).resolve().parents[1]


def test_the_list_drives_the_settings_object():
    fields = {f.name for f in dataclasses.fields(Settings)}
    assert fields == {s.name for s in SETTINGS}
    defaults = Settings()
    for s in SETTINGS:
        assert getattr(defaults, s.name) == s.default, s.name
    assert Settings().roots is not Settings().roots, "list defaults are not shared"


def test_readme_shows_the_settings_table_of_the_list():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, "README's settings table differs from core.config.SETTINGS"


@pytest.mark.parametrize("env,value", [
    ({"SEMTRIAGE_BATCH_SIZE": "64"}, ("batch_size", 64)),
    ({"SEMTRIAGE_ROOTS": os.pathsep.join(["/a", "", "/b"])}, ("roots", ["/a", "/b"])),
    ({"SEMTRIAGE_ADMIN_USERS": " ann , ,Bob "}, ("admin_users", ["ann", "Bob"])),
    ({"SEMTRIAGE_AUTH": " OIDC "}, ("auth", "oidc")),
    ({"SEMTRIAGE_DB": "/x/y.db"}, ("db", "/x/y.db")),
])
def test_environment_overrides(env, value):
    assert getattr(Settings.from_env(env), value[0]) == value[1]


@pytest.mark.parametrize("env,match", [
    ({"SEMTRIAGE_BATCH_SIZE": "big"}, "SEMTRIAGE_BATCH_SIZE='big': expected an integer"),
    ({"SEMTRIAGE_MAX_PIXELS": "1e9"}, "SEMTRIAGE_MAX_PIXELS='1e9': expected an integer"),
    ({"SEMTRIAGE_AUTH": "ldap"}, "SEMTRIAGE_AUTH='ldap': expected one of none, proxy, oidc"),
    ({"SEMTRIAGE_AUTH_HEADER": "X-User: admin"}, "SEMTRIAGE_AUTH_HEADER"),
])
def test_a_bad_value_names_the_variable(env, match):
    with pytest.raises(SettingsError, match=match):
        Settings.from_env(env)


def test_cli_bad_setting_is_one_line(tmp_path):
    env = dict(os.environ, SEMTRIAGE_BATCH_SIZE="big", SEMTRIAGE_DB=str(tmp_path / "t.db"))
    exe = Path(sys.executable).with_name("semtriage")
    r = subprocess.run([str(exe), "stats"], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r
    assert r.stderr.strip() == "Error: Setting SEMTRIAGE_BATCH_SIZE='big': expected an integer", r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "t.db").exists(), "nothing was opened"


def test_app_bad_setting_is_an_error_on_the_page(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMTRIAGE_DB", str(tmp_path / "t.db"))
    monkeypatch.setenv("SEMTRIAGE_CLAIM_SECONDS", "soon")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.run()
    assert not failures(at), [e.value for e in failures(at)]
    assert [e.value for e in at.error] == ["Setting SEMTRIAGE_CLAIM_SECONDS='soon': expected an integer"]
