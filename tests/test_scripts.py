"""The README's two commands behave on a lab machine: the dev install that scripts/test.sh makes
is accepted by scripts/app.sh (no reinstall between them), and scripts/app.sh with SEMTRIAGE_DB
naming a lab's database never pours the demo into it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from core.models import active_model
from core.store import open_db
from tests.helpers.browser import free_port

ROOT = Path(__file__).resolve().parents[1]
STAMP = ROOT / ".venv" / ".semtriage-installed"


@pytest.fixture
def installed():
    if not STAMP.is_file():
        pytest.skip("no .venv made by scripts/setup.sh")
    return STAMP.read_text().split()


def test_the_app_accepts_the_dev_install(installed):
    if "dev" not in installed[1].split(","):
        pytest.skip("this .venv has no dev install")
    r = subprocess.run(["bash", "scripts/setup.sh"], check=False, cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Installing" not in r.stderr, "the app's set-up reinstalled over the test set-up"
    assert STAMP.read_text().split() == installed


def test_app_sh_on_a_lab_database_creates_it_without_the_demo(installed, tmp_path):
    db_path = tmp_path / "lab" / "lab.db"
    port = free_port()
    env = dict(os.environ, SEMTRIAGE_DB=str(db_path), SEMTRIAGE_ROOTS=str(tmp_path))
    log = (tmp_path / "app.log").open("w")
    proc = subprocess.Popen(["bash", "scripts/app.sh", "--server.port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, up = time.monotonic() + 90, False
        while time.monotonic() < deadline and not up:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    up = r.status == 200
            except OSError:
                time.sleep(0.3)
        assert up, (tmp_path / "app.log").read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    db = open_db(db_path)
    assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0, "no demo images in a lab database"
    assert active_model(db) is not None, "the shipped default model is registered"
    assert "Building demo" not in (tmp_path / "app.log").read_text()
