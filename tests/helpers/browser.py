"""Shared bits of the real-browser tests: a `streamlit run app.py` server on a free port, the
Chromium launch flags, and waits for Streamlit's reruns and for the next review image."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
MAIN_IMAGE = '[data-testid="stMain"] [data-testid="stImage"] img'


def need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is absent (install it: apt-get install -y chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_path: Path, roots: Path, log: Path,
                 env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free port with SEMTRIAGE_DB set (plus ``env``); waits for its
    health check."""
    port = free_port()
    full_env = dict(os.environ, SEMTRIAGE_DB=str(db_path), SEMTRIAGE_ROOTS=str(roots), **(env or {}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=full_env, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"streamlit did not answer within 60 s:\n{log.read_text()}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def app_server(db_path: Path, roots: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """A running app (:func:`start_server`, its log ``roots/streamlit.log``) for the block: its
    URL; stopped afterwards. Skips the test when Chromium is absent."""
    need_chromium()
    proc, url = start_server(db_path, roots, roots / "streamlit.log", env=env)
    try:
        yield url
    finally:
        stop_server(proc)


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A launched headless Chromium (Playwright) for the block. Skips when it is absent."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def settle(page) -> None:
    """Wait until the app has finished its rerun (the status widget is gone)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=30_000)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=30_000)


def press(page, key: str) -> str | None:
    """Press ``key`` on the review page; returns the src of the image it was meant for."""
    old = page.locator(MAIN_IMAGE).first.get_attribute("src")
    page.keyboard.press(key)
    return old


def wait_new_image(page, old: str | None) -> str:
    """Wait for a review image other than ``old`` to be fully shown; returns its src."""
    page.wait_for_function(
        """(old) => {{ const i = document.querySelector('{}');
                      return i && i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0; }}""".format(MAIN_IMAGE.replace("'", "\\'")),
        arg=old, timeout=30_000,
    )
    settle(page)
    return page.locator(MAIN_IMAGE).first.get_attribute("src")


def next_image_after(page, key: str) -> str:
    """Press ``key`` and wait for a different review image to be fully shown; returns its src."""
    return wait_new_image(page, press(page, key))
