"""Memory and page times of the app process on a big database — numbers, no pass/fail.

    .venv/bin/python bench/app_memory.py [--db bench/out/scale/base-1000000-100000.db]

Copies the database (bench/scale.py builds the 1M one), starts `streamlit run app.py` on it,
opens every page in Debian's chromium (Playwright) as an admin, twice, and prints the wall time
until each page has rendered and the server process's resident memory (current and peak, from
/proc) after each.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from browser_util import CHROMIUM, CHROMIUM_ARGS, settle, start_server, stop_server

from core.store import open_db

PAGES = ["", "review", "grid", "reference", "models", "ingest", "export"]


def rss_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    kb = {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in status.splitlines())
          if k in ("VmRSS", "VmHWM")}
    return kb["VmRSS"] / 1024, kb["VmHWM"] / 1024


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", default=str(ROOT / "bench/out/scale/base-1000000-100000.db"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="semtriage-appmem-") as tmp:
        db_path = Path(tmp) / "app.db"
        t0 = time.perf_counter()
        shutil.copy(a.db, db_path)
        db = open_db(db_path)
        n = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        db.conn.close()
        print(f"{n:,} images; copy + migrate {time.perf_counter() - t0:.1f} s")
        proc, url = start_server(db_path, Path(tmp), Path(tmp) / "server.log",
                                 env={"SEMTRIAGE_ADMIN_USERS": ""})
        try:
            print(f"server started: RSS {rss_mb(proc.pid)[0]:.0f} MB")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                for rnd in (1, 2):
                    for name in PAGES:
                        t0 = time.perf_counter()
                        page.goto(f"{url}/{name}")
                        page.wait_for_selector('[data-testid="stApp"]')
                        page.wait_for_selector('[data-testid="stMain"] h1', timeout=120_000)
                        settle(page)
                        dt = time.perf_counter() - t0
                        cur, peak = rss_mb(proc.pid)
                        print(f"  round {rnd}  {name or 'overview':<10} {dt:6.2f} s   "
                              f"RSS {cur:5.0f} MB   peak {peak:5.0f} MB", flush=True)
                browser.close()
        finally:
            stop_server(proc)


if __name__ == "__main__":
    main()
