"""Ingest + predict throughput on real-size SEM TIFFs, against the decode-only floor.

    .venv/bin/python bench/ingest_predict.py [--n 300] [--compression none,packbits,lzw,deflate]

Writes N 8-bit TIFFs of 1024×768 (SEM-like texture with a data bar) per compression once into
bench/out/tiffs-<compression> (real instrument files are usually PackBits-, LZW- or
Deflate-compressed; issue 13's target is ingest + predict ≤ 1.5× the decode-only floor on 2
cores for them), then measures for each set in the same run:
  * decode-only: read_image() of every file (1 thread, and the ingest's worker threads);
  * ingest + predict into a fresh SQLite file, broken into hash, decode, preprocess
    (window, thumbnail, resize), inference and database time (summed over threads, so the
    parts can exceed the wall time when decoding overlaps inference).
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import DEFAULT_MODEL, Settings
from core.images import read_image
from core.intake import ingest
from core.models import Classifier, register_model
from core.store import open_db


def make_tiffs(folder: Path, n: int, compression: str = "none") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = sorted(folder.glob("*.tif"))
    if len(files) >= n:
        return files[:n]
    rng = np.random.default_rng(0)
    for i in range(n):
        h, w = 768, 1024
        small = rng.random((h // 16, w // 16)).astype(np.float32)
        img = np.kron(small, np.ones((16, 16), np.float32))  # blocky texture
        img += rng.normal(0, 0.08, (h, w)).astype(np.float32)  # shot noise
        img[-64:] = 0.0  # data bar
        img[-40:-30, 40:240] = 1.0  # scale bar
        arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        tifffile.imwrite(folder / f"sem_{i:05d}.tif", arr, resolution=(1 / 0.01, 1 / 0.01),
                         metadata={"unit": "um"}, imagej=True,
                         compression=None if compression == "none" else compression, rowsperstrip=64)
    return sorted(folder.glob("*.tif"))[:n]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_set(files: list[Path], compression: str, model: Path, workers: int) -> float:
    n = len(files)
    size_mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"\n{n} TIFFs of 1024x768 8-bit, {compression} ({size_mb:.0f} MB) on {os.cpu_count()} cores")
    for f in files:  # warm the page cache so both runs read from memory
        f.read_bytes()
    t0 = time.perf_counter()
    for f in files:
        read_image(f)
    dec1 = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        for _ in ex.map(read_image, files):  # consumed at once: memory stays bounded
            pass
    decw = time.perf_counter() - t0
    print(f"decode-only, 1 thread:          {dec1:6.2f} s  {n / dec1:7.1f} img/s")
    print(f"decode-only, {workers} threads:         {decw:6.2f} s  {n / decw:7.1f} img/s   <- floor")

    clf = Classifier(model)
    with tempfile.TemporaryDirectory() as tmp:
        db = open_db(Path(tmp) / "bench.db")
        reg = register_model(db, model, activate=True)
        t0 = time.perf_counter()
        rep = ingest(db, [files[0].parent], classifier=clf, model_id=reg["id"],
                     settings=Settings(), workers=workers)
        wall = time.perf_counter() - t0
    assert rep.added == n and rep.predicted == n, rep.summary()
    ratio = wall / decw
    print(f"ingest + predict ({clf.provider}, batch {Settings().batch_size}): "
          f"{wall:6.2f} s  {n / wall:7.1f} img/s   = {ratio:.2f}x the decode-only floor "
          f"[{'ok' if ratio <= 1.5 else 'MISSED'}: <= 1.5x]")
    t = rep.timings
    print("  time by part (summed over threads):")
    for k in ("hash", "decode", "preprocess", "inference", "database"):
        print(f"    {k:<11} {t.get(k, 0):6.2f} s  {1000 * t.get(k, 0) / n:6.2f} ms/img")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compression", default="none,packbits,lzw,deflate",
                    help="comma-separated TIFF compressions, one set of files each")
    args = ap.parse_args()
    ratios = {}
    for comp in [c.strip() for c in args.compression.split(",") if c.strip()]:
        files = make_tiffs(ROOT / "bench" / "out" / f"tiffs-{comp}", args.n, comp)
        ratios[comp] = run_set(files, comp, args.model, args.workers)
    print("\nsummary: ingest + predict / decode-only floor: "
          + ", ".join(f"{c} {r:.2f}x" for c, r in ratios.items()))
    print(f"peak RSS: {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
