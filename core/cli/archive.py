"""`semtriage predict-archive run | merge | status`: predict a whole archive on a Ray cluster
(or in one process) through a work folder, then merge the results into the database."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core import archive, intake, models
from core.cli.common import Bar, db_option, embed_new_images, emit, friendly, json_option, open_db
from core.config import Settings


@click.group("predict-archive")
def predict_archive() -> None:
    """Predict a facility's whole archive on many machines: `run` writes the work list and
    predicts it into result files (Ray or one process), `merge` stores them in the database,
    `status` says where a work folder stands. Each step is resumable."""


@predict_archive.command("run")
@db_option
@click.option("--work-dir", "work_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Work folder on storage every worker mounts at the same path (created).")
@click.option("--model", "model_ref", default=None, help="Model version or id (default: the active one).")
@click.option("--engine", type=click.Choice(archive.ENGINES), default="local", show_default=True,
              help="`ray`: a Ray Data actor pool (needs semtriage[ray]); `local`: this process.")
@click.option("--address", default=None,
              help="Ray cluster to join (`auto`, `ray://head:10001`); default: start a local one.")
@click.option("--actors", type=click.IntRange(min=1), default=None,
              help="Ray actors, one model session each (default: every CPU but one).")
@click.option("--cpus-per-actor", type=click.FloatRange(min=0.1), default=1.0, show_default=True)
@click.option("--gpus-per-actor", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="> 0: each actor runs ONNX Runtime on CUDA (onnxruntime-gpu on the GPU nodes).")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
              help="Files read at once per worker.")
@click.option("--shard-size", type=click.IntRange(min=1), default=archive.DEFAULT_SHARD_SIZE,
              show_default=True, help="Images per shard (one result file each); only when planning.")
@click.option("--folder", "folders", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Images not ingested yet: every image file under this folder (recursively, as "
                   "`semtriage ingest` finds them); the workers also read metadata and thumbnails, "
                   "`merge` stores them. Repeatable.")
@click.option("--files", "file_list", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None,
              help="Like --folder, from a text file: one image file or folder per line (# comments, "
                   "blank lines skipped; relative paths from the list's folder); missing ones are reported.")
@click.option("--redo", is_flag=True, help="Plan every image, not only those the model has not predicted.")
@click.option("--ship-code", is_flag=True,
              help="Upload this semtriage `core` package to the Ray workers (nodes need only its dependencies).")
@json_option
@friendly
def archive_run(db_path: Path, work_dir: Path, model_ref: str | None, engine: str, address: str | None,
        actors: int | None, cpus_per_actor: float, gpus_per_actor: float, threads: int,
        shard_size: int, folders: tuple[Path, ...], file_list: Path | None, redo: bool,
        ship_code: bool, as_json: bool) -> None:
    """Write the work list of the images the model has not predicted — or, with --folder /
    --files, of the image files the database has not stored — (or resume the one in WORK_DIR)
    and predict every shard without a result file. Then run `merge` on the database host.
    Killed at any point, run it again: finished shards are skipped."""
    wd = archive.WorkDir(work_dir)
    fresh = False
    paths: list[Path] | None = None
    if folders or file_list:
        paths = [*folders, *(intake.read_path_list(file_list) if file_list else [])]
    if not wd.exists() or paths is not None or (model_ref and model_ref != wd.manifest().model_version):
        db = open_db(db_path)
        model = models.find_model(db, model_ref) if model_ref else models.active_model(db)
        if model is None:
            raise click.ClickException("No active model: run `semtriage model add MODEL.onnx` first")
        bar = Bar("Planning", not as_json)
        _, fresh = archive.plan(db, work_dir, model, paths=paths, shard_size=shard_size, redo=redo,
                                progress=bar)
        bar.close()
        db.close()
    m = wd.manifest()
    if not as_json:
        if fresh:
            for path, reason in wd.not_taken():
                click.echo(f"  skipped {path}: {reason}", err=True)
        found = ""
        if m.source != "database":
            found = (f" ({m.extra.get('new', 0):,} not stored yet, {m.extra.get('stored_to_predict', 0):,} "
                     f"stored; {m.extra.get('unchanged', 0) - m.extra.get('stored_to_predict', 0):,} "
                     f"stored and predicted, {m.extra.get('not_taken', 0):,} skipped)")
        click.echo(f"{'Planned' if fresh else 'Resuming'} {work_dir}: {m.images:,} images{found}, "
                   f"{sum(1 for n in m.shards if n)} shards, model {m.model_version}", err=True)
    bar = Bar("Predicting", not as_json)
    rep = archive.run(
        work_dir, engine=engine, settings=Settings.from_env(), threads=threads, progress=bar,
        ray_options=archive.RayOptions(address=address, actors=actors, cpus_per_actor=cpus_per_actor,
                                       gpus_per_actor=gpus_per_actor, ship_code=ship_code),
    )
    bar.close()
    emit(as_json, rep.to_json(), f"{rep.summary()}\nNext: semtriage predict-archive merge {work_dir}")


@predict_archive.command("merge")
@click.argument("work_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@db_option
@click.option("--rows", type=click.IntRange(min=1), default=None,
              help="Images per write transaction (default: sized as it goes so that each holds "
                   "the write lock about 30 ms, which keeps reviewers fast).")
@json_option
@friendly
def archive_merge(work_dir: Path, db_path: Path, rows: int | None, as_json: bool) -> None:
    """Store the finished shards of WORK_DIR in the database: each image's SHA-256 checked,
    the images of files not ingested yet stored as `semtriage ingest` stores them,
    predictions upserted in short transactions and routed, unreadable files recorded.
    Resumable; shards still running are merged by the next call."""
    db = open_db(db_path)
    bar = Bar("Merging", not as_json)
    rep = archive.merge(db, work_dir, rows=rows, progress=bar)
    bar.close()
    embedded = embed_new_images(db) if rep.added else None  # as after `semtriage ingest`
    if not as_json:
        for path, reason in rep.failed:
            click.echo(f"  failed {path}: {reason}", err=True)
    emit(as_json, {**rep.to_json(), "embedded": embedded},
         rep.summary() + (f" Similarity view: {embedded} new images embedded." if embedded else ""))
    if rep.failed and not rep.predicted and rep.shards:
        sys.exit(1)


@predict_archive.command("status")
@click.argument("work_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@db_option
@json_option
@friendly
def archive_status(work_dir: Path, db_path: Path, as_json: bool) -> None:
    """Shards and images planned, predicted, unreadable and merged into the database."""
    db = open_db(db_path) if db_path.is_file() else None
    st = archive.status(work_dir, db)
    emit(as_json, st, archive.status_text(st))
