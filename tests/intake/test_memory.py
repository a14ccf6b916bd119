"""Issue 18, finding 1: a few small files must not exhaust the server's memory.

The attack: 14000 x 14000 16-bit zlib-tiled TIFFs of ~400 KB each (under SEMTRIAGE_MAX_PIXELS)
used to keep every decoded float frame in the pending batch. Here the same kind of files, smaller
(so the suite stays fast), are ingested by the real CLI in a child process, and its peak memory
must not grow with the number of huge files. bench/ingest_memory.py measures the full-size attack.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.images import WORK_SIDE, decode_bytes, read_image
from core.images.levels import block_mean
from core.intake.threads import ByteBudget
from tests.helpers import write_mosaic_tiff

ROOT = Path(__file__).resolve().parents[2]


def _peak_mb_of(cmd: list[str], env: dict[str, str]) -> float:
    """Peak RSS (MB) of one child: run it from a fresh helper process, so RUSAGE_CHILDREN sees
    only this child (ru_maxrss for the children is the largest one so far)."""
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "assert r.returncode == 0, r.stdout + r.stderr\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *cmd], check=False, env=env, cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def test_peak_memory_does_not_grow_with_the_number_of_huge_images(tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    side = 5000  # 25 Mpx, 16-bit: 50 MB of samples and 100 MB as a float frame, 0.6 MB on disk
    write_mosaic_tiff(one / "m0.tif", side, seed=0)
    for i in range(6):
        write_mosaic_tiff(many / f"m{i}.tif", side, seed=i)
    env = dict(os.environ, SEMTRIAGE_ROOTS=str(tmp_path), SEMTRIAGE_DECODE_MB="128", HOME=str(tmp_path))
    peaks = {}
    for name, folder in (("one", one), ("many", many)):
        db = tmp_path / f"{name}.db"
        cli = [sys.executable, "-m", "core.cli"]
        subprocess.run([*cli, "init", "--db", str(db)], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        peaks[name] = _peak_mb_of([*cli, "ingest", "--db", str(db), str(folder)], env)
    # before the fix each of the 6 frames stayed in the batch: ~+600 MB over one image
    assert peaks["many"] - peaks["one"] < 100, peaks


def test_a_huge_frame_is_reduced_but_windowed_on_every_pixel(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.normal(20000, 3000, (3000, 2100)).clip(0, 65535).astype(np.uint16)
    a[2700:] = 0  # a black strip at the bottom
    a[2750:2760, 100:1500] = 65535  # with "text" on it: a data bar
    import tifffile

    p = tmp_path / "big.tif"
    tifffile.imwrite(p, a, compression="zlib", tile=(256, 256))
    full = read_image(p)
    small = read_image(p, max_side=1000)
    assert (full.reduction, small.reduction) == (1, 3)
    assert (small.width, small.height, small.databar_px) == (2100, 3000, full.databar_px)
    assert full.databar_px > 0
    assert small.data.shape == (1000, 700)
    assert small.scan.shape[0] == (3000 - full.databar_px) // 3
    # the same window (percentiles of every stored pixel) over block means: close to the block
    # means of the full windowed frame (they differ only where a block mixes clipped pixels)
    diff = np.abs(small.scan - block_mean(full.scan, 3)[: small.scan.shape[0]])
    assert float(diff.mean()) < 0.003 and float(diff.max()) < 0.1, (diff.mean(), diff.max())
    assert small.without_pixels().data.size == 0 and small.without_pixels().width == 2100


def test_decode_estimate_comes_from_the_header(tmp_path):
    p = write_mosaic_tiff(tmp_path / "m.tif", 5000)
    assert p.stat().st_size < 2_000_000
    est = decode_bytes(p, WORK_SIDE)
    f = -(-5000 // WORK_SIDE)
    assert est == 5000 * 5000 * 2 + 4 * (-(-5000 // f)) ** 2
    assert decode_bytes(tmp_path / "missing.tif") == 0


def test_byte_budget_holds_at_most_its_limit_and_runs_a_huge_one_alone():
    budget = ByteBudget(100)
    live: list[int] = []
    lock = threading.Lock()
    seen_with_huge: list[int] = []

    def work(n: int) -> None:
        with budget.hold(n):
            with lock:
                live.append(n)
                if n >= 100:
                    seen_with_huge.append(len(live))
            time.sleep(0.02)
            with lock:
                live.remove(n)

    sizes = [40, 40, 40, 500, 30, 30, 90, 10, 10]
    threads = [threading.Thread(target=work, args=(n,)) for n in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert budget.peak <= 100 and budget.held == 0
    assert seen_with_huge == [1], "the huge image was decoded beside others"


@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_block_mean_matches_pillow_reduce_on_partial_blocks(dtype):
    from PIL import Image

    rng = np.random.default_rng(0)
    a = rng.integers(0, 250, (37, 53)).astype(dtype)
    want = np.asarray(Image.fromarray(a.astype(np.float32), mode="F").reduce(4))
    np.testing.assert_allclose(block_mean(a, 4), want, rtol=1e-5)
