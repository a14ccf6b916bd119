"""The work folder of an archive run — the only thing the database host and the workers share.

::

    DIR/manifest.json            what is predicted with which model, the shards and their sizes
    DIR/model/<name>.onnx        a copy of the model (and its sidecar), checked by SHA-256
    DIR/work/shard-00000.parquet the work list: shard, row, image id, path, sha256 at ingest
    DIR/results/shard-00000.parquet  one file per finished shard: probabilities or the reason

The driver writes the work list from the database (:func:`plan`); workers never open the
database. A result file is written under a temporary name and renamed when its shard is
complete (:class:`ShardWriter`), so a result file is always whole and a shard either has one
or is done again; ``manifest.json`` is written last, so a folder without one is no plan yet.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlite_utils import Database

from core.errors import InvalidValue, ModelError, StoreError
from core.files import sha256_file
from core.progress import Progress, counted
from core.store import now_iso

FORMAT = 1
MANIFEST = "manifest.json"
DEFAULT_SHARD_SIZE = 10_000

WORK_SCHEMA = pa.schema([
    ("shard", pa.int32()),
    ("row", pa.int32()),
    ("image_id", pa.int64()),
    ("path", pa.string()),
    ("sha256", pa.string()),
])


def result_schema(k: int) -> pa.Schema:
    """A result file: per work row the SHA-256 of the bytes read, the K calibrated
    probabilities (null when the file could not be read) or the reason, and the provider."""
    return pa.schema([
        ("row", pa.int32()),
        ("image_id", pa.int64()),
        ("path", pa.string()),
        ("sha256", pa.string()),
        ("probs", pa.list_(pa.float32(), k)),
        ("error", pa.string()),
        ("provider", pa.string()),
        ("ood", pa.float32()),  # unfamiliarity, as `semtriage predict` stores it
        ("unfamiliar", pa.string()),
    ])


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.parquet"


@dataclass
class Manifest:
    """``DIR/manifest.json``: the run's identity (``work_id``), the model (version, SHA-256, the
    copy's file name, class names) and the size of every shard."""

    work_id: str
    model_version: str
    model_sha256: str
    model_file: str
    class_names: list[str]
    shards: list[int]  # images per shard, shard i at index i
    created_at: str
    source: str = "database"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> int:
        return sum(self.shards)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "work_id": self.work_id, "created_at": self.created_at,
            "source": self.source,
            "model": {"version": self.model_version, "sha256": self.model_sha256,
                      "file": self.model_file, "class_names": self.class_names},
            "shards": self.shards, "images": self.images, **self.extra,
        }


class WorkDir:
    """Paths and reads of one work folder (see the module doc)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def work(self, shard: int) -> Path:
        return self.root / "work" / shard_name(shard)

    def result(self, shard: int) -> Path:
        return self.root / "results" / shard_name(shard)

    def model_path(self, m: Manifest) -> Path:
        return self.root / "model" / m.model_file

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> Manifest:
        p = self.manifest_path
        if not p.is_file():
            raise InvalidValue(
                f"{str(self.root)!r} is no archive work folder (no {MANIFEST}); start one with "
                "`semtriage predict-archive run --work-dir DIR`")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
            if d.get("format") != FORMAT:
                raise InvalidValue(f"{str(p)!r}: format {d.get('format')!r}, expected {FORMAT}")
            m = d["model"]
            return Manifest(
                work_id=str(d["work_id"]), model_version=str(m["version"]),
                model_sha256=str(m["sha256"]), model_file=str(m["file"]),
                class_names=[str(c) for c in m["class_names"]],
                shards=[int(n) for n in d["shards"]], created_at=str(d["created_at"]),
                source=str(d.get("source", "database")),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise InvalidValue(f"{str(p)!r} is not a readable manifest: {type(e).__name__}: {e}") from None

    def done(self, m: Manifest) -> list[int]:
        """Shards with a (whole) result file."""
        return [s for s in range(len(m.shards)) if self.result(s).is_file()]

    def pending(self, m: Manifest) -> list[int]:
        """Shards still to predict (no result file), except empty ones."""
        return [s for s, n in enumerate(m.shards) if n and not self.result(s).is_file()]

    def read_work(self, shard: int) -> pa.Table:
        return pq.read_table(self.work(shard), schema=WORK_SCHEMA)

    def read_result(self, shard: int, k: int) -> pa.Table:
        return pq.read_table(self.result(shard), schema=result_schema(k))

    def clear_partial(self) -> None:
        """Remove result files a killed writer left under their temporary names."""
        folder = self.root / "results"
        if folder.is_dir():
            for p in folder.glob("*.tmp-*"):
                p.unlink(missing_ok=True)


def _write_atomic(table: pa.Table, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _copy_model(src: Path, dest_dir: Path) -> str:
    dest_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest_dir / src.name)
    for side in (src.with_suffix(".json"), src.with_name(src.name + ".json")):
        if side.is_file():  # the sidecar (class names typed at upload) travels with it
            shutil.copyfile(side, dest_dir / side.name)
            break
    return src.name


def plan(
    db: Database,
    root: str | Path,
    model: dict[str, Any],
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    redo: bool = False,
    progress: Progress | None = None,
) -> tuple[Manifest, bool]:
    """The work list of ``model`` (a registered model's row): every stored image it has no
    prediction for (every image with ``redo``), in shards of ``shard_size``, with a copy of
    the model, under ``root``. A folder that already holds a plan is resumed as it is — for
    the same model only. Returns (manifest, whether it was planned now)."""
    wd = WorkDir(root)
    if shard_size < 1:
        raise InvalidValue(f"Shard size {shard_size!r} must be at least 1")
    if wd.exists():
        m = wd.manifest()
        if m.model_sha256 != model["sha256"]:
            raise StoreError(
                f"{str(wd.root)!r} holds a run of model {m.model_version!r}, not {model['version']!r}; "
                "give another --work-dir for another model")
        return m, False
    src = Path(model["path"])
    if not src.is_file():
        raise ModelError(f"The file of model {model['version']!r} is missing: {str(src)!r}")
    if sha256_file(src) != model["sha256"]:
        raise ModelError(f"{str(src)!r} changed after it was registered as model {model['version']!r}; "
                         "register the new file as a new model")
    for sub in ("work", "results", "model"):  # what a planner killed before the manifest left
        shutil.rmtree(wd.root / sub, ignore_errors=True)
    model_file = _copy_model(src, wd.root / "model")
    where = "" if redo else (
        "AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.image_id = i.id AND p.model_id = ?)")
    args: list[Any] = [] if redo else [model["id"]]
    total = db.execute(f"SELECT COUNT(*) FROM images i WHERE 1 {where}", args).fetchone()[0]
    sizes: list[int] = []
    for rows in _shards(db, where, args, shard_size):
        s = len(sizes)
        cols = list(zip(*rows))
        table = pa.table({
            "shard": pa.array([s] * len(rows), pa.int32()),
            "row": pa.array(range(len(rows)), pa.int32()),
            "image_id": pa.array(cols[0], pa.int64()),
            "path": pa.array(cols[1], pa.string()),
            "sha256": pa.array(cols[2], pa.string()),
        }, schema=WORK_SCHEMA)
        _write_atomic(table, wd.work(s))
        sizes.append(len(rows))
        counted(progress, sum(sizes), total, f"work list shard {s}")
    m = Manifest(
        work_id=uuid.uuid4().hex, model_version=str(model["version"]),
        model_sha256=str(model["sha256"]), model_file=model_file,
        class_names=list(model["class_names"]), shards=sizes, created_at=now_iso(),
    )
    tmp = wd.manifest_path.with_name(f"{MANIFEST}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(m.to_json(), indent=1), encoding="utf-8")
    os.replace(tmp, wd.manifest_path)
    return m, True


def _shards(db: Database, where: str, args: list[Any], size: int) -> Iterator[list[tuple[int, str, str]]]:
    last, rows = 0, []
    while True:
        chunk = db.execute(
            f"SELECT i.id, i.path, i.sha256 FROM images i WHERE i.id > ? {where} ORDER BY i.id LIMIT 2048",
            [last, *args],
        ).fetchall()
        for r in chunk:
            rows.append(tuple(r))
            if len(rows) == size:
                yield rows
                rows = []
        if not chunk:
            break
        last = chunk[-1][0]
    if rows:
        yield rows


class ShardWriter:
    """Collects worker answers (batches of :func:`core.archive.predict_batch`'s columns, in any
    order, a row possibly twice after a retried task) and writes each shard's result file as
    soon as every row of the shard has arrived. Returns from :meth:`add` the shards written."""

    def __init__(self, wd: WorkDir, m: Manifest, shards: list[int]):
        self.wd = wd
        self.k = len(m.class_names)
        self.expected = {s: m.shards[s] for s in shards}
        self.rows: dict[int, dict[int, tuple[Any, ...]]] = {s: {} for s in shards}
        self.written: list[int] = []

    def add(self, batch: dict[str, Any]) -> tuple[int, list[int]]:
        """Take one batch of answers; returns (new rows, shards finished by it)."""
        new = 0
        finished = []
        cols = [batch[c] for c in ("shard", "row", "image_id", "path", "sha256", "probs", "error",
                                   "provider", "ood", "unfamiliar")]
        for shard, row, image_id, path, sha, probs, error, provider, ood, why in zip(*cols):
            s = int(shard)
            got = self.rows.get(s)
            if got is None or int(row) in got:
                continue  # another run's shard, or a row a retried task answered again
            got[int(row)] = (int(row), int(image_id), str(path), str(sha) or None,
                             None if error else np.asarray(probs, np.float32),
                             str(error) or None, str(provider),
                             None if error or not np.isfinite(ood) else float(ood), str(why) or None)
            new += 1
            if len(got) == self.expected[s]:
                self._write(s)
                finished.append(s)
        return new, finished

    def _write(self, shard: int) -> None:
        got = self.rows.pop(shard)
        rows = [got[r] for r in sorted(got)]
        cols = list(zip(*rows))
        k = self.k
        flat = np.concatenate([p if p is not None else np.zeros(k, np.float32) for p in cols[4]])
        mask = pa.array([p is None for p in cols[4]])
        probs = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), k, mask=mask)
        table = pa.table({
            "row": pa.array(cols[0], pa.int32()),
            "image_id": pa.array(cols[1], pa.int64()),
            "path": pa.array(cols[2], pa.string()),
            "sha256": pa.array(cols[3], pa.string()),
            "probs": probs,
            "error": pa.array(cols[5], pa.string()),
            "provider": pa.array(cols[6], pa.string()),
            "ood": pa.array(cols[7], pa.float32()),
            "unfamiliar": pa.array(cols[8], pa.string()),
        }, schema=result_schema(k))
        _write_atomic(table, self.wd.result(shard))
        self.written.append(shard)

    @property
    def incomplete(self) -> list[int]:
        return sorted(self.rows)
