"""Running the pending shards of a work folder: ``local`` (one process, :class:`ArchivePredictor`
called directly) or ``ray`` (Ray Data: the driver's work list as blocks, the predictor as an
actor pool in ``map_batches``, one ONNX Runtime session per actor). Both stream the
workers' answers into :class:`ShardWriter`, which writes each shard's result file when the
shard is whole, so killing the driver or a worker at any point loses at most the shards in
flight; running again does only the shards without a result file.

Ray is an optional extra (``pip install 'semtriage[ray]'``), imported only by the ``ray``
engine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.archive.workdir import Manifest, ShardWriter, WorkDir
from core.archive.worker import ArchivePredictor
from core.config import Settings
from core.errors import DependencyMissing, InvalidValue, SemTriageError
from core.progress import Progress, counted

ENGINES = ("local", "ray")
WINDOW = 64  # shards per Ray Data execution (the work list the driver holds at once)


@dataclass
class RunReport:
    engine: str
    shards: int = 0  # shards predicted by this run
    skipped: int = 0  # shards that already had a result file
    images: int = 0
    failed: int = 0
    seconds: float = 0.0
    startup_s: float = 0.0  # until the first answers came back (Ray: cluster and actor start)
    providers: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.images:,} images in {self.shards} shards on {self.engine} "
                f"({', '.join(self.providers) or 'nothing to run'}): {self.failed:,} unreadable, "
                f"{self.skipped} shards already done, {self.images_per_s:.1f} images/s "
                f"({self.startup_s:.1f} s until the first answers)")

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "images_per_s": round(self.images_per_s, 2)}


@dataclass
class RayOptions:
    """``address``: an existing cluster (``auto``, ``ray://host:10001``) or None for a local
    one (or the one this process already started); ``actors``: the pool size (None: every CPU
    but one, over ``cpus_per_actor``, at least 1 — the Parquet reads need a CPU too);
    ``gpus_per_actor`` > 0 puts each actor on a GPU with CUDA; ``ship_code`` sends this
    ``core`` package to the workers (nodes then need only the dependencies)."""

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    ship_code: bool = False


def run(
    root: str | Path,
    *,
    engine: str = "local",
    settings: Settings | None = None,
    ray_options: RayOptions | None = None,
    threads: int = 2,
    progress: Progress | None = None,
) -> RunReport:
    """Predict every pending shard of the work folder ``root`` (see :func:`core.archive.plan`)
    with ``engine``; each finished shard is one result file. Workers read the image paths as
    stored, so on a cluster the archive and the work folder must be mounted at the same paths
    on every node."""
    if engine not in ENGINES:
        raise InvalidValue(f"Engine {engine!r}: expected one of {', '.join(ENGINES)}")
    settings = settings or Settings()
    wd = WorkDir(root)
    m = wd.manifest()
    wd.clear_partial()
    pending = wd.pending(m)
    rep = RunReport(engine=engine, skipped=len(wd.done(m)))
    total = sum(m.shards[s] for s in pending)
    writer = ShardWriter(wd, m, pending)
    t0 = time.perf_counter()
    seen: set[str] = set()
    if pending:
        done = 0
        batches = (_local(wd, m, pending, settings, threads) if engine == "local"
                   else _ray(wd, m, pending, settings, threads, ray_options or RayOptions()))
        for batch in batches:
            if not rep.startup_s:
                rep.startup_s = time.perf_counter() - t0
            new, finished = writer.add(batch)
            done += new
            rep.shards += len(finished)
            seen.update(str(p) for p in set(batch["provider"]))
            counted(progress, done, total, f"{len(writer.written)}/{len(pending)} shards")
        if writer.incomplete:  # a worker lost rows: nothing half-written, the next run redoes them
            raise SemTriageError(
                f"{len(writer.incomplete)} shards came back incomplete ({writer.incomplete[:5]}…); "
                "their results were not written — run again to redo them")
    rep.seconds = time.perf_counter() - t0
    rep.providers = sorted(seen)
    for s in writer.written:
        t = wd.read_result(s, len(m.class_names)).column("error")
        rep.images += len(t)
        rep.failed += len(t) - t.null_count
    return rep


def _predictor_args(wd: WorkDir, m: Manifest, settings: Settings, threads: int,
                    gpu: bool) -> dict[str, Any]:
    return {"model_path": str(wd.model_path(m).resolve()), "model_sha256": m.model_sha256,
            "gpu": gpu, "threads": threads, "batch_size": settings.batch_size,
            "max_pixels": settings.max_pixels, "thumb_px": settings.thumb_px}


def _local(wd: WorkDir, m: Manifest, shards: list[int], settings: Settings, threads: int):  # type: ignore[no-untyped-def]
    predictor = ArchivePredictor(**_predictor_args(wd, m, settings, threads, gpu=False))
    step = max(settings.batch_size * 8, 256)
    for s in shards:
        table = wd.read_work(s)
        for i in range(0, len(table), step):
            part = table.slice(i, step)
            yield predictor({c: part.column(c).to_numpy(zero_copy_only=False) for c in part.column_names})


def default_actors(cpus: float, cpus_per_actor: float) -> int:
    """Every CPU but one (the Parquet reads and the driver need it), at least one actor."""
    return max(1, int((cpus - 1) // max(cpus_per_actor, 1e-9)))


def _ray(wd: WorkDir, m: Manifest, shards: list[int], settings: Settings, threads: int,  # type: ignore[no-untyped-def]
         opts: RayOptions):
    try:
        import ray
        import ray.data
    except ImportError:
        raise DependencyMissing("The ray engine needs Ray: pip install 'semtriage[ray]' "
                         "(or use --engine local)") from None
    started = False
    if not ray.is_initialized():
        env: dict[str, Any] = {}
        if opts.ship_code:  # this core package, uploaded to every worker
            env["py_modules"] = [str(Path(__file__).resolve().parents[1])]
        elif opts.address is None:
            # a local cluster runs this checkout's code, installed or not
            here = str(Path(__file__).resolve().parents[2])
            env["env_vars"] = {"PYTHONPATH": os.pathsep.join(
                [here, *filter(None, [os.environ.get("PYTHONPATH")])])}
        ray.init(address=opts.address, runtime_env=env or None, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours counts images; Ray's would interleave with it
        gpu = opts.gpus_per_actor > 0
        actors = opts.actors or default_actors(float(ray.cluster_resources().get("CPU", 1)),
                                               opts.cpus_per_actor)
        # The driver hands the work list over itself (a block per shard) rather than through
        # read_parquet: that needs no read tasks beside the actors (two 1-CPU actors and the
        # Parquet reads dead-locked on 2 CPUs) and meets no file-system probing in threads
        # (Ray 2.60's fsspec check races where aiohttp is absent). A window of shards at a
        # time keeps the driver's memory bounded for any archive.
        for i in range(0, len(shards), WINDOW):
            tables = [wd.read_work(s) for s in shards[i : i + WINDOW]]
            ds = ray.data.from_arrow(tables).map_batches(
                ArchivePredictor,
                fn_constructor_kwargs=_predictor_args(wd, m, settings, threads, gpu),
                batch_size=settings.batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=opts.cpus_per_actor,
                num_gpus=opts.gpus_per_actor or None,
            )
            yield from ds.iter_batches(batch_size=None, batch_format="numpy")
    finally:
        if started:
            ray.shutdown()
