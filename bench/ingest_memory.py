"""Peak memory of ingest on huge images — numbers, no pass/fail.

    .venv/bin/python bench/ingest_memory.py [--files 16] [--sizes 2000,4000,8000,14000]

The attack of issue 18: N 16-bit zlib-tiled TIFFs of SIDE x SIDE pixels (~400 KB each on disk,
196 Mpx at 14000, under SEMTRIAGE_MAX_PIXELS) ingested and predicted by the default model in one
run. Each run is a fresh process (`python -m core.cli ingest`, started from a fresh helper, whose
getrusage(RUSAGE_CHILDREN).ru_maxrss is then that ingest's own peak resident memory). Prints one
line per image size: files, seconds, peak RSS.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.images import write_mosaic_tiff

_PROBE = (
    "import resource, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "dt = time.perf_counter() - t0\n"
    "if r.returncode: sys.exit(r.stdout + r.stderr)\n"
    "print(dt, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else '')\n"
)


def child_peak_mb(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, last output line) of ``cmd``, run from a fresh helper process so
    that RUSAGE_CHILDREN's ru_maxrss (the largest child so far) is this command's own peak."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *cmd], check=False, env=env, cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"ingest failed:\n{out.stdout}\n{out.stderr}")
    first, last = (out.stdout.strip().splitlines() + [""])[:2]
    dt, kb = first.split()
    return float(dt), int(kb) / 1024, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--sizes", default="2000,4000,8000,14000",
                    help="image sides to measure, comma-separated (the last one is judged)")
    ap.add_argument("--limit-mb", type=float, default=1536.0, help="the target peak (issue 18: 1.5 GB)")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    print(f"{'side':>6} {'Mpx':>5} {'files':>5} {'on disk':>9} {'seconds':>8} {'peak RSS':>9}")
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="semtriage-ingmem-") as tmp:
        env = dict(os.environ, SEMTRIAGE_ROOTS=tmp, HOME=tmp)
        for side in sizes:
            folder = Path(tmp) / f"s{side}"
            folder.mkdir()
            for i in range(a.files):
                write_mosaic_tiff(folder / f"mosaic_{i:02d}.tif", side, seed=i)
            disk = sum(f.stat().st_size for f in folder.iterdir())
            db = Path(tmp) / f"s{side}.db"
            base = [sys.executable, "-m", "core.cli"]
            subprocess.run([*base, "init", "--db", str(db)], env=env, check=True,
                           capture_output=True, cwd=ROOT)
            dt, peak, last = child_peak_mb([*base, "ingest", "--db", str(db), str(folder)], env)
            worst = peak if side == sizes[-1] else worst
            print(f"{side:>6} {side * side / 1e6:>5.0f} {a.files:>5} {disk / 1e6:>7.1f}MB "
                  f"{dt:>8.1f} {peak:>7.0f}MB   {last}")
            for f in folder.iterdir():
                f.unlink()
    verdict = "within" if worst <= a.limit_mb else "ABOVE"
    print(f"peak at {sizes[-1]} px: {worst:.0f} MB, {verdict} the {a.limit_mb:.0f} MB target")


if __name__ == "__main__":
    main()
