"""Reviewers' label writes while thresholds are saved on a million predictions.

    .venv/bin/python bench/review_writes.py [--db bench/out/scale/base-1000000-100000.db] [--reviewers 50]
        [--think 1.0] [--saves 2] [--force] [--code DIR]

Works on a copy of the database bench/scale.py builds (1,000,000 images with predictions,
100,000 human and ~270,000 auto labels; build it first with `bench/scale.py`). ``--reviewers``
threads, each with its own connection, label images of the uncertain queue with
core.review.decide (a relabel: label event + current label + counts, one write transaction)
after a think time drawn uniformly from [0.5, 1.5] × ``--think`` seconds, while another process
runs ``semtriage thresholds --accept X`` ``--saves`` times (accept 0.60, 0.80, …: each re-routes
the million predictions and brings the auto labels in line). Prints the save times and the
label-write latency p50 / p99 / max before and during the saves. ``--force``: the saves
force the threshold (``--force``: the model may auto-accept without certification), so each
also writes and revokes auto labels by the hundred thousand — the heavier save. Goal: p99 ≤ 100 ms during
the saves. ``--code DIR``: the checkout whose ``core`` runs (e.g. an older one, to compare).
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def line(name: str, xs: list[float]) -> str:
    if not xs:
        return f"{name}: no label writes"
    ms = [x * 1000 for x in xs]
    ok = "ok" if pct(ms, 0.99) <= 100 else "MISSED"
    return (f"{name}: {len(ms)} label writes, p50 {statistics.median(ms):.1f} ms, "
            f"p99 {pct(ms, 0.99):.1f} ms, max {max(ms):.1f} ms  [{ok}: p99 <= 100 ms]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", type=Path, default=ROOT / "bench" / "out" / "scale" / "base-1000000-100000.db")
    ap.add_argument("--reviewers", type=int, default=50)
    ap.add_argument("--think", type=float, default=1.0)
    ap.add_argument("--saves", type=int, default=2)
    ap.add_argument("--force", action="store_true", help="force the thresholds: auto labels written too")
    ap.add_argument("--code", type=Path, default=ROOT)
    args = ap.parse_args()
    if not args.db.is_file():
        sys.exit(f"{args.db} missing: build it with .venv/bin/python bench/scale.py")
    code = args.code.resolve()
    sys.path.insert(0, str(code))
    from core.review import decide
    from core.store import open_db

    with tempfile.TemporaryDirectory(prefix="semtriage-writes-", dir=args.db.parent) as tmp:
        work = Path(tmp) / "work.db"
        t0 = time.perf_counter()
        shutil.copyfile(args.db, work)
        print(f"copied {args.db.name} ({args.db.stat().st_size / 1e6:,.0f} MB) in "
              f"{time.perf_counter() - t0:.1f} s; code: {code}")
        db = open_db(work)
        n = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
        classes = [r[0] for r in db.execute("SELECT DISTINCT pred FROM predictions LIMIT 10")]
        todo = [r[0] for r in db.execute(
            "SELECT image_id FROM predictions WHERE queue = 'uncertain' AND done = 0 LIMIT ?",
            [args.reviewers * 400])]
        db.close()
        print(f"{n:,} predictions; {args.reviewers} reviewers, think {args.think:.1f} s ± 50 %")
        stop = threading.Event()
        samples: list[tuple[float, float]] = []  # (start time, seconds)
        lock = threading.Lock()

        def reviewer(k: int) -> None:
            rng = random.Random(k)
            conn = open_db(work)
            mine = todo[k :: args.reviewers]
            time.sleep(rng.uniform(0, args.think))
            for image_id in mine:
                if stop.wait(rng.uniform(0.5, 1.5) * args.think):
                    break
                t = time.perf_counter()
                decide(conn, image_id, "relabel", reviewer=f"r{k:02d}", label=rng.choice(classes))
                with lock:
                    samples.append((t, time.perf_counter() - t))
            conn.close()

        threads = [threading.Thread(target=reviewer, args=(k,), daemon=True) for k in range(args.reviewers)]
        for th in threads:
            th.start()
        time.sleep(max(6.0, 4 * args.think))
        windows = []
        env = {**os.environ, "PYTHONPATH": str(code)}
        for i in range(args.saves):
            accept = 0.60 if i % 2 == 0 else 0.80
            t = time.perf_counter()
            force = ["--force", "--note", "bench"] if args.force else []
            r = subprocess.run([sys.executable, "-m", "core.cli", "thresholds", "--db", str(work),
                                "--accept", f"{accept:.2f}", *force], cwd=code, env=env, check=False,
                               capture_output=True, text=True)
            dt = time.perf_counter() - t
            windows.append((t, t + dt))
            status = "ok" if r.returncode == 0 else f"FAILED: {r.stderr.strip()[-200:]}"
            print(f"save {i + 1}: accept {accept:.2f}, re-route + auto labels in {dt:.1f} s ({status})")
            time.sleep(2 * args.think)
        stop.set()
        for th in threads:
            th.join()
        during = [s for t, s in samples if any(a <= t <= b for a, b in windows)]
        before = [s for t, s in samples if t < windows[0][0]] if windows else [s for _, s in samples]
        print(line("before the saves", before))
        print(line("during the saves", during))


if __name__ == "__main__":
    main()
