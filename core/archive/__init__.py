"""Archive: predict a facility's whole archive on many machines while the SQLite database
stays the one place of record. The driver writes the work list into fixed shards of a work
folder (:func:`plan`); workers — one process (``local``) or a Ray Data actor pool (``ray``) —
read, hash and predict the files with the code of `semtriage predict`, one result file per
finished shard (:func:`run`); one :func:`merge` on the database host checks each image's
SHA-256 and upserts the predictions in short transactions. A plan may also be of files the
database has not stored (folders, file lists: ``plan(..., paths=...)``): the workers then read
them as `semtriage ingest` does (metadata, thumbnail) and the merge stores the images first.
Resumable at every step.
"""

from core.archive.engines import ENGINES, WINDOW, RayOptions, RunReport, default_actors, run
from core.archive.merge import (
    MERGE_ROWS,
    NOT_TAKEN_SHARD,
    MergeReport,
    archive_migrations,
    m001_archive_shards,
    merge,
    merged_shards,
    model_for,
    status,
    status_text,
)
from core.archive.workdir import (
    DEFAULT_SHARD_SIZE,
    FORMAT,
    MANIFEST,
    NOT_TAKEN_SCHEMA,
    READ_FORMATS,
    WORK_SCHEMA,
    Manifest,
    ShardWriter,
    WorkDir,
    plan,
    result_schema,
    shard_name,
)
from core.archive.worker import ArchivePredictor

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "ENGINES",
    "FORMAT",
    "MANIFEST",
    "MERGE_ROWS",
    "NOT_TAKEN_SCHEMA",
    "NOT_TAKEN_SHARD",
    "READ_FORMATS",
    "WINDOW",
    "WORK_SCHEMA",
    "ArchivePredictor",
    "Manifest",
    "MergeReport",
    "RayOptions",
    "RunReport",
    "ShardWriter",
    "WorkDir",
    "archive_migrations",
    "default_actors",
    "m001_archive_shards",
    "merge",
    "merged_shards",
    "model_for",
    "plan",
    "result_schema",
    "run",
    "shard_name",
    "status",
    "status_text",
]
