"""predict-archive throughput: images/s for the local engine vs Ray on this machine, and the
merge rate into SQLite (with the latency of small writes made meanwhile).

    .venv/bin/python bench/archive.py [--n 400] [--model data/models/default.onnx]
        [--engines local,ray] [--actors N] [--gpus-per-actor G] [--address auto]
        [--merge-images 200000] [--shard-size 1000] [--folder-plan]

1. N 8-bit 1024x768 TIFFs (bench/ingest_predict.py's, cached in bench/out/tiffs) ingested
   without predictions into a fresh database; for each engine a fresh work folder is planned
   and run: wall time of the run (Ray: cluster start timed apart, then the run with its actor
   start-up), images/s. Ray runs on a local cluster of every core here (or ``--address``),
   with ``--actors`` actors (default: every CPU but one) and ``--gpus-per-actor``.
2. Merge of the local engine's results into the database (the real thing, small).
   With ``--folder-plan``, also the same folder not ingested: `semtriage ingest` with
   prediction into a fresh database against a file plan (``--folder``) of it into another —
   plan, local run (the worker hashes, reads metadata, makes thumbnails, predicts), merge
   (images, files, predictions stored): seconds and images/s of each step.
3. Merge at scale: a database of ``--merge-images`` image rows (hashes made up, no files)
   and result shards written as a run would write them (random probabilities), merged in
   transactions as merge sizes them (about 30 ms of the lock each), while a second thread
   makes a small write (one settings row, its own connection) every 20 ms: predictions/s, the
   longest merge transaction, and p50 / p99 / max of the small writes.

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from ingest_predict import make_tiffs

from core import archive
from core.config import DEFAULT_MODEL, Settings
from core.intake import ingest
from core.models import Classifier, register_model
from core.store import open_db, set_setting, write_tx


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def run_engines(args: argparse.Namespace, tmp: Path) -> Path:
    files = make_tiffs(ROOT / "bench" / "out" / "tiffs", args.n)
    for f in files:
        f.read_bytes()  # page cache warm for every engine alike
    db_path = tmp / "bench.db"
    db = open_db(db_path)
    model = register_model(db, args.model, activate=True)
    ingest(db, [files[0].parent])
    n = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    print(f"{n} TIFFs 1024x768 8-bit, model {model['version']}, {os.cpu_count()} cores")
    settings = Settings.from_env()
    first = None
    for engine in args.engines.split(","):
        work = tmp / f"work-{engine}"
        archive.plan(db, work, model, shard_size=args.shard_size)
        opts = archive.RayOptions(address=args.address, actors=args.actors,
                                  gpus_per_actor=args.gpus_per_actor)
        started = 0.0
        if engine == "ray":
            import ray

            t0 = time.perf_counter()
            ray.init(address=args.address, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
            started = time.perf_counter() - t0
            cpus = ray.cluster_resources().get("CPU", 1)
            actors = args.actors or archive.default_actors(cpus, 1.0)
            print(f"ray: cluster of {cpus:.0f} CPUs started/joined in {started:.1f} s, {actors} actors")
        t0 = time.perf_counter()
        rep = archive.run(work, engine=engine, settings=settings, ray_options=opts)
        wall = time.perf_counter() - t0
        steady = rep.images / max(wall - rep.startup_s, 1e-9)
        print(f"{engine:>6}: {rep.images} images in {wall:.1f} s = {rep.images / wall:.1f} images/s; "
              f"first answers after {rep.startup_s:.1f} s, then {steady:.1f} images/s (an upper "
              f"bound: work done before the first answers counts as start-up) "
              f"({', '.join(rep.providers)}; {rep.failed} unreadable)")
        if engine == "ray":
            import ray

            ray.shutdown()
        first = first or work
    assert first is not None
    t0 = time.perf_counter()
    m = archive.merge(db, first)
    print(f" merge: {m.predicted} predictions in {time.perf_counter() - t0:.2f} s "
          f"(longest write {m.longest_tx_s * 1000:.1f} ms)")
    return db_path


def folder_plan(args: argparse.Namespace, tmp: Path) -> None:
    """The TIFF folder not ingested: `semtriage ingest` (with prediction) vs a file plan."""
    folder = make_tiffs(ROOT / "bench" / "out" / "tiffs", args.n)[0].parent
    settings = Settings.from_env()
    db = open_db(tmp / "ingest.db")
    model = register_model(db, args.model, activate=True)
    t0 = time.perf_counter()
    rep = ingest(db, [folder], classifier=Classifier(args.model), model_id=model["id"], settings=settings)
    wall = time.perf_counter() - t0
    print(f"\nfolder not ingested ({rep.added} images): semtriage ingest with prediction "
          f"{wall:.1f} s = {rep.added / wall:.1f} images/s")
    db = open_db(tmp / "files.db")
    model = register_model(db, args.model, activate=True)
    work = tmp / "work-files"
    t0 = time.perf_counter()
    m, _ = archive.plan(db, work, model, paths=[folder], shard_size=args.shard_size)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    run = archive.run(work, engine="local", settings=settings)
    t_run = time.perf_counter() - t0
    t0 = time.perf_counter()
    merged = archive.merge(db, work)
    t_merge = time.perf_counter() - t0
    total = t_plan + t_run + t_merge
    print(f"file plan: plan {t_plan:.2f} s ({m.images} files), local run {t_run:.1f} s = "
          f"{run.images / t_run:.1f} images/s, merge {t_merge:.2f} s = {merged.added / t_merge:,.0f} "
          f"images/s (longest write {merged.longest_tx_s * 1000:.0f} ms); all {total:.1f} s = "
          f"{merged.added / total:.1f} images/s")


def merge_at_scale(n: int, shard: int, tmp: Path, model_path: Path) -> None:
    db_path = tmp / "merge.db"
    db = open_db(db_path)
    model = register_model(db, model_path, activate=True)
    k = len(model["class_names"])
    shas = [f"{i:064x}" for i in range(1, n + 1)]
    t0 = time.perf_counter()
    with write_tx(db):
        db.conn.executemany(
            "INSERT INTO images(id, sha256, path, name, size_bytes, width, height, bit_depth, "
            "raw_dtype, added_at) VALUES (?, ?, ?, ?, 1, 1024, 768, 8, 'uint8', '2026-01-01')",
            ((i + 1, s, f"/archive/{i:08d}.tif", f"{i:08d}.tif") for i, s in enumerate(shas)))
    print(f"\nmerge at scale: {n:,} image rows made in {time.perf_counter() - t0:.1f} s")
    work = tmp / "work-merge"
    m, _ = archive.plan(db, work, model, shard_size=shard)
    wd = archive.WorkDir(work)
    rng = np.random.default_rng(0)
    for s in range(len(m.shards)):
        t = wd.read_work(s)
        raw = rng.dirichlet(np.full(k, 0.3), len(t)).astype(np.float32)
        out = {
            "shard": t["shard"].to_numpy(), "row": t["row"].to_numpy(),
            "image_id": t["image_id"].to_numpy(), "path": np.array(t["path"].to_pylist(), object),
            "sha256": np.array(t["sha256"].to_pylist(), object), "probs": raw,
            "error": np.full(len(t), "", object), "provider": np.full(len(t), "bench", object),
            "ood": np.full(len(t), np.nan, np.float32), "unfamiliar": np.full(len(t), "", object),
            "image": np.full(len(t), "", object), "thumb": np.full(len(t), b"", object),
            "mtime": np.full(len(t), np.nan),
        }
        archive.ShardWriter(wd, m, [s]).add(out)
    stop = threading.Event()
    waits: list[float] = []

    def small_writes() -> None:
        other = open_db(db_path)
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            set_setting(other, "bench.tick", str(i))
            waits.append(time.perf_counter() - t)
            i += 1
            time.sleep(0.02)
        other.close()

    th = threading.Thread(target=small_writes)
    th.start()
    t0 = time.perf_counter()
    rep = archive.merge(db, work)
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    print(f"merge: {rep.predicted:,} predictions from {rep.shards} shards in {wall:.1f} s = "
          f"{rep.predicted / wall:,.0f} predictions/s (incl. auto-label sync); longest merge "
          f"transaction {rep.longest_tx_s * 1000:.0f} ms")
    print(f"small writes meanwhile: {len(waits)}, p50 {statistics.median(waits) * 1000:.1f} ms, "
          f"p99 {pct(waits, 0.99) * 1000:.1f} ms, max {max(waits) * 1000:.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--engines", default="local,ray")
    ap.add_argument("--actors", type=int, default=None)
    ap.add_argument("--gpus-per-actor", type=float, default=0.0)
    ap.add_argument("--address", default=None)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--merge-images", type=int, default=200_000)
    ap.add_argument("--folder-plan", action="store_true",
                    help="also: the folder not ingested, `ingest` against a file plan")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="semtriage-archive-") as tmp:
        if args.n:
            run_engines(args, Path(tmp))
        if args.n and args.folder_plan:
            folder_plan(args, Path(tmp))
        if args.merge_images:
            merge_at_scale(args.merge_images, 10_000, Path(tmp), args.model)


if __name__ == "__main__":
    main()
