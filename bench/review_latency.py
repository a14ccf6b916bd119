"""Review latency in a real browser: time from a key press to the next image fully shown.

Builds a database of 50,000 images (rows inserted in bulk; they point at a set of real
synthetic SEM files, distinct for the first few hundred in queue order so every decision
shows a file the server has not decoded before), starts `streamlit run app.py`, opens Review
in headless Chromium and makes ≥ 100 decisions by keyboard. For each one it records, in the
page, the key-down time and the moment the new image's ``<img>`` has a new ``src``, is
``complete`` and decoded (checked every animation frame). Prints p50 / p95 / max.

    .venv/bin/python bench/review_latency.py [--images 50000] [--decisions 120] [--think 0.3]

``--think`` is the pause between seeing an image and pressing the next key (a person looks at
the image first); ``--think 0`` presses as soon as the previous rerun has finished.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from core.config import NFFA_CLASSES
from core.images import read_image, thumbnail_jpeg
from core.intake import random_key
from core.models import register_model
from core.review import Thresholds, decide_queue
from core.store import now_iso, open_db, write_tx

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
MAIN_IMAGE = '[data-testid="stMain"] [data-testid="stImage"] img'
KEYS = ["Enter", "1", "2", "3", "Enter", "4", "5", "m", "Enter", "6", "7", "u", "8", "9", "0"]


def make_files(folder: Path, n: int, size: int) -> list[Path]:
    from core.synth import generate, save_image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"sem_{i:04d}.tif"
        if not p.exists():
            img, truth = generate(NFFA_CLASSES[i % 10], seed=i, size=size)
            save_image(img, p, truth["pixel_size_m"])
        out.append(p)
    return out


def build_db(out: Path, n_images: int, n_files: int, size: int) -> Path:
    from conftest import build_tiny_model

    db_path = out / "bench.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    t0 = time.perf_counter()
    files = make_files(out / "images", n_files, size)
    print(f"{n_files} files of {size}×{size} px ready in {time.perf_counter() - t0:.1f} s", flush=True)
    db = open_db(db_path)
    model = register_model(db, build_tiny_model(out / "models" / "nffa.onnx", tuple(NFFA_CLASSES)),
                           activate=True)
    meta = [(read_image(f), f) for f in files]
    thumb = thumbnail_jpeg(meta[0][0].scan, 256)
    rng = np.random.default_rng(0)
    stamp = now_iso()
    t = Thresholds()
    images, preds = [], []
    for i in range(n_images):
        img, f = meta[i % n_files]
        sha = f"{i:064x}"
        images.append((i + 1, sha, str(f), f"{i:06d}_{f.name}", f.stat().st_size, img.width, img.height,
                       img.bit_depth, img.raw_dtype, img.pixel_size_m, img.pixel_size_source,
                       img.databar_px, img.databar_source, json.dumps(img.metadata), thumb, stamp))
        p = rng.dirichlet(np.full(10, 0.6))
        o = np.argsort(-p)
        p1, p2 = float(p[o[0]]), float(p[o[1]])
        c1, c2 = NFFA_CLASSES[o[0]], NFFA_CLASSES[o[1]]
        q, reason = decide_queue(c1, p1, c2, p2, t)
        # queue order (margin) walks the files in turn: the first n_files decisions are all distinct
        margin = i / n_images
        preds.append((i + 1, model["id"], c1, p1, c2, p2, margin, float(-(p * np.log(p)).sum()),
                      json.dumps([round(float(v), 6) for v in p]), "uncertain" if i < n_files * 2 else q,
                      reason, random_key(sha), stamp))
    with write_tx(db, "bench rows"):
        db.conn.executemany(
            "INSERT INTO images(id, sha256, path, name, size_bytes, width, height, bit_depth, raw_dtype, "
            "pixel_size_m, pixel_size_source, databar_px, databar_source, metadata, thumb, added_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", images)
        db.conn.executemany(
            "INSERT INTO predictions(image_id, model_id, pred, p1, second, p2, margin, entropy, probs, "
            "queue, reason, rnd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", preds)
    db.execute("ANALYZE")
    n = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    print(f"database with {n:,} images built in {time.perf_counter() - t0:.1f} s", flush=True)
    db.conn.close()
    return db_path


def serve(db_path: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, SEMTRIAGE_DB=str(db_path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"streamlit did not start:\n{log.read_text()}")


PROBE = """
(sel) => {
  window.__lat = [];
  window.addEventListener('keydown', () => {
    const img = document.querySelector(sel);
    const old = img ? img.getAttribute('src') : null;
    const t0 = performance.now();
    const check = () => {
      const i = document.querySelector(sel);
      if (i && i.getAttribute('src') !== old && i.complete && i.naturalWidth > 0) {
        (i.decode ? i.decode() : Promise.resolve()).catch(() => {}).then(
          () => window.__lat.push(performance.now() - t0));
      } else {
        requestAnimationFrame(check);
      }
    };
    requestAnimationFrame(check);
  }, true);
}
"""


def settle(page) -> None:
    """Wait until the app's script run has finished (and its status widget is gone)."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=60_000)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=60_000)


def measure(url: str, decisions: int, think: float, shot: Path | None) -> list[float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{url}/review?reviewer=bench")
        page.wait_for_selector(MAIN_IMAGE, timeout=120_000)
        settle(page)
        page.evaluate(PROBE, MAIN_IMAGE)
        warm = 3
        for k in range(decisions + warm):
            page.keyboard.press(KEYS[k % len(KEYS)])
            page.wait_for_function("(n) => window.__lat.length >= n", arg=k + 1, timeout=60_000)
            settle(page)
            if think:
                page.wait_for_timeout(think * 1000)
            if shot and k == warm:
                page.screenshot(path=str(shot))
        lat = page.evaluate("window.__lat")[warm:]
        browser.close()
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=50_000)
    ap.add_argument("--files", type=int, default=160, help="distinct real image files")
    ap.add_argument("--size", type=int, default=1024, help="side of the synthetic images in px")
    ap.add_argument("--decisions", type=int, default=120)
    ap.add_argument("--think", type=float, default=0.3, help="seconds between image shown and next key")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "latency")
    a = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    a.out.mkdir(parents=True, exist_ok=True)
    db_path = build_db(a.out, a.images, max(a.files, a.decisions + 10), a.size)
    proc, url = serve(db_path, a.out / "streamlit.log")
    try:
        lat = measure(url, a.decisions, a.think, a.out / "review.png")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    lat_sorted = sorted(lat)

    def pct(q: float) -> float:
        return lat_sorted[min(len(lat_sorted) - 1, round(q / 100 * (len(lat_sorted) - 1)))]

    result = {
        "images_in_db": a.images, "decisions": len(lat), "think_s": a.think, "image_px": a.size,
        "p50_ms": round(pct(50), 1), "p95_ms": round(pct(95), 1), "max_ms": round(max(lat), 1),
        "mean_ms": round(statistics.fmean(lat), 1),
    }
    (a.out / "result.json").write_text(json.dumps({**result, "latencies_ms": lat}, indent=1))
    print(f"key press → next image fully shown, {len(lat)} decisions over {a.images:,} images "
          f"({a.size} px files, think {a.think} s):")
    print(f"  p50 {result['p50_ms']:.0f} ms · p95 {result['p95_ms']:.0f} ms · max {result['max_ms']:.0f} ms "
          f"· mean {result['mean_ms']:.0f} ms   (goal: p95 ≤ 300 ms)")


if __name__ == "__main__":
    main()
