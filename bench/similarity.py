"""Similarity view at archive scale: neighbour search time and recall at a million images,
embedding throughput on real thumbnails, and the map's build time.

    .venv/bin/python bench/similarity.py [--images 1000000] [--queries 200] [--map-sample 3000]

1. Embedding: texture features + projection of real micrographs' thumbnails (../shared/real-sem
   when present, else the synthetic demo generator), images per second on this machine.
2. Scale: a database (bench/out/similarity/, rebuilt each run) with N images and N embeddings
   drawn like real ones — clustered unit vectors whose spread falls off over the 32 components
   the way the real-sem components' variances do — then: building the index from SQLite (cold),
   loading it from the file beside the database in a fresh process cache, and
   core.similarity.neighbours (k = 12, including its SQL) over ``--queries`` random images:
   p50 / p95 / max, and recall@12 against an exact scan of all N vectors.
3. Map: core.similarity.build_map of ``--map-sample`` images (t-SNE + local outlier factor).

Prints numbers; asserts nothing. Goal (ok / MISSED): neighbours p95 < 1 s at 1 M images
(issue 16), recall@12 >= 0.9.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import similarity
from core.errors import SemTriageError
from core.images import read_image, thumbnail_jpeg
from core.similarity.embed import fit_space
from core.store import now_iso, open_db, write_tx

OUT = ROOT / "bench" / "out" / "similarity"
REAL = ROOT.parent / "shared" / "real-sem"


def real_thumbnails() -> list[bytes]:
    files = sorted(p for p in REAL.rglob("*") if p.suffix.lower() in {".png", ".tif", ".tiff", ".jpg", ".bmp"})
    out = []
    for p in files:
        try:
            img = read_image(p)
        except SemTriageError:  # a bench: skip what does not decode
            continue
        out.append(thumbnail_jpeg(img.scan, 256))
    if not out:  # no real set here: messy synthetic micrographs instead
        from core.synth import write_dataset

        with tempfile.TemporaryDirectory() as d:
            write_dataset(d, 60, seed=0)
            for p in sorted(Path(d).rglob("*.tif")):
                out.append(thumbnail_jpeg(read_image(p).scan, 256))
    return out


def bench_embedding(thumbs: list[bytes]) -> np.ndarray:
    reps = max(1, 1000 // len(thumbs))
    blobs = thumbs * reps
    t = time.perf_counter()
    feats, _ = similarity.thumbnail_features(blobs)
    dt = time.perf_counter() - t
    print(f"embedding: {len(blobs):,} real thumbnails in {dt:.2f} s = {len(blobs) / dt:,.0f} images/s "
          f"(1 M images: {1e6 / (len(blobs) / dt) / 60:.0f} min on this machine)")
    return feats[: len(thumbs)]


def archive_like(n: int, space_std: np.ndarray, seed: int = 0) -> np.ndarray:
    """N unit vectors in clusters (specimens) with the real components' spread."""
    rng = np.random.default_rng(seed)
    d = len(space_std)
    centres = rng.normal(0, 1, (max(10, n // 200), d)) * space_std
    which = rng.integers(0, len(centres), n)
    v = centres[which] + rng.normal(0, 0.35, (n, d)) * space_std
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v.astype(np.float32)


def build_db(path: Path, vecs: np.ndarray, space: similarity.Space) -> None:
    for suffix in ("", "-wal", "-shm", "-similarity.faiss", "-similarity.json"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    db = open_db(path)
    stamp = now_iso()
    n = len(vecs)
    step = 50_000
    for start in range(0, n, step):
        ids = range(start + 1, min(n, start + step) + 1)
        with write_tx(db):
            db.conn.executemany(
                "INSERT INTO images(id, sha256, path, name, size_bytes, width, height, bit_depth, raw_dtype, "
                "added_at) VALUES (?, ?, ?, ?, 1000, 64, 64, 8, 'uint8', ?)",
                [(i, hashlib.sha256(str(i).encode()).hexdigest(), f"/a/{i}.tif", f"{i}.tif", stamp) for i in ids])
            db.conn.executemany("INSERT INTO embeddings(image_id, space, vec) VALUES (?, ?, ?)",
                                [(i, space.id, vecs[i - 1].astype("<f2").tobytes()) for i in ids])
    with write_tx(db):
        db.execute("INSERT INTO similarity_spaces (id, features, extractor_sha256, dims, fitted_on, projection, "
                   "active, created_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?)",
                   [space.id, space.features, space.extractor_sha256, space.dims, space.fitted_on,
                    space.projection_json(), stamp])


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--map-sample", type=int, default=similarity.MAP_SAMPLE)
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)

    thumbs = real_thumbnails()
    feats = bench_embedding(thumbs)
    space = fit_space(feats)
    spread = np.std(space.project(feats), axis=0) + 1e-3
    print(f"space: {space.dims} components fitted on {len(feats)} real thumbnails")

    t = time.perf_counter()
    vecs = archive_like(a.images, spread)
    path = OUT / "similarity.db"
    build_db(path, vecs, space)
    print(f"database: {a.images:,} images with embeddings written in {time.perf_counter() - t:.1f} s")

    db = open_db(path)
    t = time.perf_counter()
    idx = similarity.current_index(db)
    print(f"index: {idx.n:,} vectors ({idx.kind}) built from SQLite in {time.perf_counter() - t:.2f} s")
    similarity.forget_index(db)
    t = time.perf_counter()
    idx = similarity.current_index(db)
    print(f"index: loaded from the file beside the database in {time.perf_counter() - t:.2f} s")

    rng = np.random.default_rng(1)
    queries = rng.integers(1, a.images + 1, a.queries).tolist()
    times, recalls = [], []
    k = 12
    for q in queries:
        t = time.perf_counter()
        hits = similarity.neighbours(db, q, k)
        times.append(time.perf_counter() - t)
        sims = vecs @ vecs[q - 1].astype(np.float32)
        sims[q - 1] = -np.inf
        exact = set((np.argpartition(-sims, k)[:k] + 1).tolist())
        recalls.append(len(exact & {i for i, _ in hits}) / k)
    p95 = pct(times, 95)
    recall = statistics.mean(recalls)
    print(f"neighbours (k={k}, {a.queries} queries, {a.images:,} images): p50 {pct(times, 50) * 1e3:.1f} ms, "
          f"p95 {p95 * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms · recall@{k} {recall:.3f} "
          f"[{'ok' if p95 < 1.0 and recall >= 0.9 else 'MISSED'}: p95 < 1 s, recall >= 0.9]")

    t = time.perf_counter()
    rep = similarity.build_map(db, sample=a.map_sample)
    print(f"map: {rep.points:,} images, {rep.outliers:,} outliers in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
