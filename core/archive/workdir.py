"""The work folder of an archive run — the only thing the database host and the workers share.

::

    DIR/manifest.json            what is predicted with which model, the shards and their sizes
    DIR/model/<name>.onnx        a copy of the model (with its sidecar and card), checked by SHA-256
    DIR/work/shard-00000.parquet the work list: shard, row, image id, path, sha256 at ingest
                                 (image id 0: a file not stored yet, with its source group)
    DIR/work/not-taken.parquet   files of a file plan that could not be taken (path, reason)
    DIR/results/shard-00000.parquet  one file per finished shard: probabilities or the reason,
                                 and for a file not stored yet its images row and thumbnail

The driver writes the work list (:func:`plan`) from the database — the stored images a model
has not predicted — or from folders and file lists (``paths``: what `semtriage ingest` would
read and has not stored; the workers then also ingest them); workers never open the
database. A result file is written under a temporary name and renamed when its shard is
complete (:class:`ShardWriter`), so a result file is always whole and a shard either has one
or is done again; ``manifest.json`` is written last, so a folder without one is no plan yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlite_utils import Database

from core.errors import InvalidValue, ModelError, StoreError
from core.files import sha256_file
from core.intake import find_images, group_key, source_roots, stored_files
from core.models import card_path
from core.progress import Progress, counted
from core.store import now_iso

# 2: file plans (image id 0 rows, the images row and thumbnail in the results); a format-1
# folder (database plans only) reads as before, its missing columns as nulls
FORMAT = 2
READ_FORMATS = (1, 2)
MANIFEST = "manifest.json"
DEFAULT_SHARD_SIZE = 10_000

WORK_SCHEMA = pa.schema([
    ("shard", pa.int32()),
    ("row", pa.int32()),
    ("image_id", pa.int64()),
    ("path", pa.string()),
    ("sha256", pa.string()),
    ("group_key", pa.string()),  # of a file not stored yet (image id 0), as ingest derives it
])

NOT_TAKEN_SCHEMA = pa.schema([("path", pa.string()), ("reason", pa.string())])


def result_schema(k: int) -> pa.Schema:
    """A result file: per work row the SHA-256 of the bytes read, the K calibrated
    probabilities (null when the file could not be read) or the reason, and the provider;
    for a file not stored yet (image id 0) read, also its ``images`` row (JSON of
    :data:`core.intake.IMAGE_COLUMNS` less the thumbnail), the thumbnail and the file's mtime."""
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
        ("image", pa.string()),
        ("thumb", pa.binary()),
        ("mtime", pa.float64()),
    ])


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.parquet"


@dataclass
class Manifest:
    """``DIR/manifest.json``: the run's identity (``work_id``), the model (version, SHA-256, the
    copy's file name, class names), the size of every shard, where the work list came from
    (``database`` or ``files``) and, for a file plan, what the planner found (``extra``)."""

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

    @property
    def not_taken_path(self) -> Path:
        return self.root / "work" / "not-taken.parquet"

    def not_taken(self) -> list[tuple[str, str]]:
        """Files of a file plan the planner could not take (missing, not an image, …), with
        the reason; empty for a database plan."""
        if not self.not_taken_path.is_file():
            return []
        t = pq.read_table(self.not_taken_path, schema=NOT_TAKEN_SCHEMA)
        return list(zip(t.column("path").to_pylist(), t.column("reason").to_pylist()))

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
            if d.get("format") not in READ_FORMATS:
                raise InvalidValue(f"{str(p)!r}: format {d.get('format')!r}, expected one of "
                                   f"{list(READ_FORMATS)}: plan and run with one SEM Triage version")
            m = d["model"]
            known = {"format", "work_id", "created_at", "source", "model", "shards", "images"}
            return Manifest(
                work_id=str(d["work_id"]), model_version=str(m["version"]),
                model_sha256=str(m["sha256"]), model_file=str(m["file"]),
                class_names=[str(c) for c in m["class_names"]],
                shards=[int(n) for n in d["shards"]], created_at=str(d["created_at"]),
                source=str(d.get("source", "database")),
                extra={k: v for k, v in d.items() if k not in known},
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
    card = card_path(src)
    if card.is_file():  # and the card: its familiarity block makes the unfamiliarity scores
        shutil.copyfile(card, card_path(dest_dir / src.name))
    return src.name


def plan(
    db: Database,
    root: str | Path,
    model: dict[str, Any],
    *,
    paths: Sequence[str | Path] | None = None,
    allowed_roots: Sequence[str | Path] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    redo: bool = False,
    progress: Progress | None = None,
) -> tuple[Manifest, bool]:
    """The work list of ``model`` (a registered model's row), in shards of ``shard_size``, with
    a copy of the model, under ``root``. Without ``paths``: every stored image it has no
    prediction for (every image with ``redo``). With ``paths`` (folders, read recursively, and
    files — what `semtriage ingest` takes, found the same way, ``allowed_roots`` as there):
    every image file the database has not stored (image id 0: the workers ingest it, the merge
    stores it; a copy of a stored image is recognised there by its SHA-256), and the stored,
    unchanged ones the model has not predicted (all with ``redo``), as database rows; what
    cannot be taken (missing, not an image) is kept in ``work/not-taken.parquet``.
    A folder that already holds a plan is resumed as it is — for the same model and paths
    only. Returns (manifest, whether it was planned now)."""
    wd = WorkDir(root)
    if shard_size < 1:
        raise InvalidValue(f"Shard size {shard_size!r} must be at least 1")
    sources = None if paths is None else [str(Path(p).expanduser().absolute()) for p in paths]
    key = None if sources is None else hashlib.sha256("\n".join(sources).encode()).hexdigest()
    if wd.exists():
        m = wd.manifest()
        if m.model_sha256 != model["sha256"]:
            raise StoreError(
                f"{str(wd.root)!r} holds a run of model {m.model_version!r}, not {model['version']!r}; "
                "give another --work-dir for another model")
        if key is not None and m.extra.get("sources_sha256") != key:
            what = ("the stored images" if m.source == "database"
                    else f"other files ({', '.join(m.extra.get('sources', [])[:3])}…)")
            raise StoreError(f"{str(wd.root)!r} holds a run over {what}; give another --work-dir "
                             "for these files, or none to resume it")
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
    extra: dict[str, Any] = {}
    if paths is None or sources is None:
        where = "" if redo else (
            "AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.image_id = i.id AND p.model_id = ?)")
        args: list[Any] = [] if redo else [model["id"]]
        total = db.execute(f"SELECT COUNT(*) FROM images i WHERE 1 {where}", args).fetchone()[0]
        chunks: Iterable[list[tuple[Any, ...]]] = _shards(db, where, args, shard_size)
    else:
        rows, not_taken, extra = _file_rows(db, list(paths), model, redo, allowed_roots)
        extra.update(sources=sources[:20], sources_sha256=key)
        table = pa.table({"path": [p for p, _ in not_taken], "reason": [r for _, r in not_taken]},
                         schema=NOT_TAKEN_SCHEMA)
        _write_atomic(table, wd.not_taken_path)
        total = len(rows)
        chunks = (rows[i : i + shard_size] for i in range(0, total, shard_size))
    sizes: list[int] = []
    for chunk in chunks:
        s = len(sizes)
        cols = list(zip(*chunk))
        table = pa.table({
            "shard": pa.array([s] * len(chunk), pa.int32()),
            "row": pa.array(range(len(chunk)), pa.int32()),
            "image_id": pa.array(cols[0], pa.int64()),
            "path": pa.array(cols[1], pa.string()),
            "sha256": pa.array(cols[2], pa.string()),
            "group_key": pa.array(cols[3], pa.string()),
        }, schema=WORK_SCHEMA)
        _write_atomic(table, wd.work(s))
        sizes.append(len(chunk))
        counted(progress, sum(sizes), total, f"work list shard {s}")
    m = Manifest(
        work_id=uuid.uuid4().hex, model_version=str(model["version"]),
        model_sha256=str(model["sha256"]), model_file=model_file,
        class_names=list(model["class_names"]), shards=sizes, created_at=now_iso(),
        source="database" if paths is None else "files", extra=extra,
    )
    tmp = wd.manifest_path.with_name(f"{MANIFEST}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(m.to_json(), indent=1), encoding="utf-8")
    os.replace(tmp, wd.manifest_path)
    return m, True


def _shards(db: Database, where: str, args: list[Any], size: int) -> Iterator[list[tuple[Any, ...]]]:
    last, rows = 0, []
    while True:
        chunk = db.execute(
            f"SELECT i.id, i.path, i.sha256 FROM images i WHERE i.id > ? {where} ORDER BY i.id LIMIT 2048",
            [last, *args],
        ).fetchall()
        for r in chunk:
            rows.append((*r, None))
            if len(rows) == size:
                yield rows
                rows = []
        if not chunk:
            break
        last = chunk[-1][0]
    if rows:
        yield rows


def _file_rows(db: Database, paths: list[str | Path], model: dict[str, Any], redo: bool,
               allowed_roots: Sequence[str | Path] | None,
               ) -> tuple[list[tuple[Any, ...]], list[tuple[str, str]], dict[str, Any]]:
    """The work rows of a file plan in the order ingest reads the files — (0, path, None, source
    group) for a file to ingest, (image id, path, stored SHA-256, None) for a stored unchanged
    file the model still has to predict (one per image) — the files not taken, and counts."""
    roots = source_roots(paths)
    files, ignored, not_taken = find_images(paths, allowed_roots)
    todo, unchanged = stored_files(db, files)
    ids = sorted({i for _, i in unchanged})
    where = "" if redo else (
        " AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.image_id = i.id AND p.model_id = ?)")
    wanted: dict[int, str] = {}
    for k in range(0, len(ids), 500):
        chunk = ids[k : k + 500]
        wanted.update(db.execute(
            f"SELECT i.id, i.sha256 FROM images i WHERE i.id IN ({','.join('?' * len(chunk))}){where}",
            [*chunk, *([] if redo else [model["id"]])]).fetchall())
    new = set(todo)
    stored = dict(unchanged)
    rows: list[tuple[Any, ...]] = []
    taken: set[int] = set()
    for f in files:
        if f in new:
            rows.append((0, str(f), None, group_key(f, roots)))
        elif (i := stored[f]) in wanted and i not in taken:
            taken.add(i)
            rows.append((i, str(f), wanted[i], None))
    counts = {"scanned": len(files) + len(not_taken), "ignored": ignored, "new": len(todo),
              "unchanged": len(unchanged), "stored_to_predict": len(taken),
              "not_taken": len(not_taken)}
    return rows, not_taken, counts


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
                                   "provider", "ood", "unfamiliar", "image", "thumb", "mtime")]
        for (shard, row, image_id, path, sha, probs, error, provider, ood, why, image, thumb,
             mtime) in zip(*cols):
            s = int(shard)
            got = self.rows.get(s)
            if got is None or int(row) in got:
                continue  # another run's shard, or a row a retried task answered again
            got[int(row)] = (int(row), int(image_id), str(path), str(sha) or None,
                             None if error else np.asarray(probs, np.float32),
                             str(error) or None, str(provider),
                             None if error or not np.isfinite(ood) else float(ood), str(why) or None,
                             str(image or "") or None, bytes(thumb) if thumb else None,
                             float(mtime) if image else None)
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
            "image": pa.array(cols[9], pa.string()),
            "thumb": pa.array(cols[10], pa.binary()),
            "mtime": pa.array(cols[11], pa.float64()),
        }, schema=result_schema(k))
        _write_atomic(table, self.wd.result(shard))
        self.written.append(shard)

    @property
    def incomplete(self) -> list[int]:
        return sorted(self.rows)
