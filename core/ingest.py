"""Ingest and predict: folders of SEM images into the store, with predictions and queues.

Both are idempotent and resumable. Work is committed batch by batch (one transaction per
batch of images, their files, predictions and labels together), so a process killed at any
point leaves whole batches behind; running the same command again skips what is stored
(``files`` remembers path, size and mtime; images are keyed by SHA-256) and finishes the rest.

Decoding runs in worker threads while the main thread runs the model and writes, so on a
CPU the model is not what waits (see bench/ingest_predict.py).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlite_utils import Database

from core.config import IMAGE_SUFFIXES, NFFA_CLASSES, Settings
from core.errors import ImageReadError, PathNotAllowed
from core.imageio import SemImage, read_image, sha256_file, thumbnail_jpeg
from core.labels import import_labels, random_key, sync_auto_labels
from core.model import Classifier, entropy
from core.routing import decide_queue, for_class, get_thresholds
from core.store import now_iso, write_tx

Progress = Callable[[int, int, str], None]
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class IngestReport:
    scanned: int = 0
    added: int = 0
    duplicates: int = 0
    unchanged: int = 0
    ignored: int = 0
    predicted: int = 0
    labelled: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [
            f"{self.added} added",
            f"{self.duplicates} duplicates",
            f"{self.unchanged} unchanged",
            f"{len(self.failed)} failed",
        ]
        if self.predicted:
            parts.append(f"{self.predicted} predicted")
        if self.labelled:
            parts.append(f"{self.labelled} labels imported")
        if self.ignored:
            parts.append(f"{self.ignored} non-image files ignored")
        return f"{self.scanned} files: " + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        return d


def _timer(timings: dict[str, float], key: str, t0: float) -> float:
    t = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + (t - t0)
    return t


def check_allowed(path: str | Path, roots: Sequence[str | Path]) -> Path:
    """Resolve ``path`` (symlinks too) and refuse it unless it lies under one of ``roots``."""
    p = Path(path).expanduser().resolve()
    for r in roots:
        rr = Path(r).expanduser().resolve()
        if p == rr or rr in p.parents:
            return p
    raise PathNotAllowed(
        f"Folder {str(path)!r} is outside the allowed roots {[str(r) for r in roots]}. "
        "Hint: set SEMTRIAGE_ROOTS to include it."
    )


def find_images(paths: Iterable[str | Path]) -> tuple[list[Path], int, list[tuple[str, str]]]:
    """(image files, number of non-image files ignored, failures) under ``paths``, recursively,
    in a stable (sorted) order. A file named explicitly that is not an image type is a failure;
    non-image files inside a folder are only counted."""
    files: list[Path] = []
    ignored = 0
    failed: list[tuple[str, str]] = []
    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            for dirpath, dirnames, names in os.walk(p, followlinks=False):
                dirnames.sort()
                for n in sorted(names):
                    f = Path(dirpath) / n
                    if f.suffix.lower() in IMAGE_SUFFIXES and not n.startswith("._"):
                        files.append(f.resolve())
                    else:
                        ignored += 1
        elif p.is_file():
            if p.suffix.lower() in IMAGE_SUFFIXES:
                files.append(p.resolve())
            else:
                failed.append((str(p), (f"not an image type ({p.suffix or 'no extension'}); "
                                        f"expected one of {', '.join(IMAGE_SUFFIXES)}")))
        else:
            failed.append((str(p), "no such file or folder"))
    # the same file named twice (or via two paths) is looked at once
    seen: set[Path] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]
    return unique, ignored, failed


def pipelined(items: Iterable[T], fn: Callable[[T], R], workers: int, depth: int) -> Iterator[tuple[T, R | BaseException]]:
    """``fn`` over ``items`` in ``workers`` threads, results in input order, at most ``depth``
    in flight (memory stays bounded for a million files). Exceptions are yielded, not raised."""
    if workers <= 1:
        for it in items:
            try:
                yield it, fn(it)
            except Exception as e:  # noqa: BLE001 — handed back to the caller per item
                yield it, e
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="semtriage-load") as ex:
        q: deque[tuple[T, Future[R]]] = deque()
        for it in items:
            q.append((it, ex.submit(fn, it)))
            if len(q) >= depth:
                yield _result(*q.popleft())  # type: ignore[arg-type]
        while q:
            yield _result(*q.popleft())  # type: ignore[arg-type]


def _result(it: T, fut: Future[R]) -> tuple[T, R | BaseException]:
    try:
        return it, fut.result()
    except Exception as e:  # noqa: BLE001
        return it, e


@dataclass
class _Loaded:
    path: Path
    size: int
    mtime: float
    sha: str
    img: SemImage | None
    thumb: bytes | None
    x: np.ndarray | None
    t: dict[str, float]


def _load(path: Path, clf: Classifier | None, settings: Settings, *, decode: bool = True) -> _Loaded:
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    st = path.stat()
    sha = sha256_file(path)
    t0 = _timer(t, "hash", t0)
    if not decode:
        return _Loaded(path, st.st_size, st.st_mtime, sha, None, None, None, t)
    img = read_image(path, max_pixels=settings.max_pixels)
    t0 = _timer(t, "decode", t0)
    scan = img.scan
    thumb = thumbnail_jpeg(scan, settings.thumb_px)
    x = clf.prepare(scan) if clf is not None else None
    _timer(t, "preprocess", t0)
    return _Loaded(path, st.st_size, st.st_mtime, sha, img, thumb, x, t)


def _reason(e: BaseException) -> str:
    if isinstance(e, ImageReadError):
        return e.reason
    if isinstance(e, PermissionError):
        return "permission denied"
    if isinstance(e, FileNotFoundError):
        return "file vanished while reading"
    if isinstance(e, OSError):
        return f"cannot read: {e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def _prediction_rows(
    db: Database, clf: Classifier, model_id: int, items: list[tuple[int, str]], probs: np.ndarray
) -> list[tuple[Any, ...]]:
    ts = get_thresholds(db)
    names = clf.class_names
    ent = entropy(probs)
    stamp = now_iso()
    rows = []
    for (image_id, sha), p, h in zip(items, probs, ent):
        order = np.argsort(-p, kind="stable")
        i1 = int(order[0])
        i2 = int(order[1]) if len(order) > 1 else None
        p1 = float(p[i1])
        p2 = float(p[i2]) if i2 is not None else 0.0
        c1 = names[i1]
        c2 = names[i2] if i2 is not None else None
        queue, reason = decide_queue(c1, p1, c2, p2, for_class(ts, c1))
        rows.append((
            image_id, model_id, c1, p1, c2, p2, p1 - p2, float(h),
            json.dumps([round(float(v), 6) for v in p]), queue, reason, random_key(sha), stamp,
        ))
    return rows


_INSERT_PRED = (
    "INSERT INTO predictions(image_id, model_id, pred, p1, second, p2, margin, entropy, probs, "
    "queue, reason, rnd, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(image_id, model_id) DO UPDATE SET pred = excluded.pred, p1 = excluded.p1, "
    "second = excluded.second, p2 = excluded.p2, margin = excluded.margin, "
    "entropy = excluded.entropy, probs = excluded.probs, queue = excluded.queue, "
    "reason = excluded.reason, created_at = excluded.created_at"
)


def _mark_done(db: Database, image_ids: list[int]) -> None:
    db.conn.executemany(
        "UPDATE predictions SET done = 1 WHERE image_id = ? AND EXISTS (SELECT 1 FROM current_labels c "
        "WHERE c.image_id = predictions.image_id AND c.source != 'auto')",
        [(i,) for i in image_ids],
    )


def _record_failures(db: Database, failed: list[tuple[str, str]]) -> None:
    stamp = now_iso()
    db.conn.executemany(
        "INSERT INTO ingest_errors(path, reason, at) VALUES (?, ?, ?) "
        "ON CONFLICT(path) DO UPDATE SET reason = excluded.reason, at = excluded.at",
        [(p, r, stamp) for p, r in failed],
    )


def group_key(path: Path, roots: Sequence[Path], labels_from_folders: bool = False) -> str | None:
    """The source group of an image, for leak-free splits: its folder relative to the ingest
    root (``run3/specimenA``), so same-named folders in different places stay apart. With
    folder labels the class folder is not a group: the folder above it is, if any."""
    parent = path.parent
    if labels_from_folders:
        parent = parent.parent
    for r in roots:
        if parent == r or r in parent.parents:
            rel = parent.relative_to(r).as_posix()
            return f"{r.name}/{rel}" if rel != "." else (None if labels_from_folders else r.name)
    return parent.name or None


def folder_label(path: Path, known: Sequence[str]) -> str:
    """The parent folder's name as a label, matched case-insensitively to a known class."""
    name = path.parent.name.strip()
    lookup = {k.lower(): k for k in known}
    return lookup.get(name.lower(), name)


def ingest(
    db: Database,
    paths: Iterable[str | Path],
    *,
    classifier: Classifier | None = None,
    model_id: int | None = None,
    labels_from_folders: bool = False,
    settings: Settings | None = None,
    progress: Progress | None = None,
    workers: int = 2,
) -> IngestReport:
    """Ingest image files and folders (recursively). With a classifier (and its registered
    ``model_id``) every new image is predicted and routed in the same pass."""
    settings = settings or Settings()
    if classifier is not None and model_id is None:
        raise ValueError("ingest with a classifier needs its model_id (see core.registry.register_model)")
    rep = IngestReport()
    t_start = time.perf_counter()
    paths = list(paths)
    roots = sorted((Path(p).expanduser().resolve() for p in paths if Path(p).is_dir()),
                   key=lambda r: -len(r.parts))
    files, rep.ignored, pre_failed = find_images(paths)
    rep.failed += pre_failed
    rep.scanned = len(files) + len(pre_failed)
    known = list(classifier.class_names if classifier else []) + NFFA_CLASSES
    timings = rep.timings
    total = len(files)

    # What is already stored unchanged (same path, size, mtime)?
    stored: dict[str, tuple[int, float, int]] = {}
    for i in range(0, total, 500):
        chunk = [str(f) for f in files[i : i + 500]]
        marks = ",".join("?" * len(chunk))
        for path, size, mtime, image_id in db.execute(
            f"SELECT path, size_bytes, mtime, image_id FROM files WHERE path IN ({marks})", chunk
        ):
            stored[path] = (size, mtime, image_id)
    todo: list[Path] = []
    labels: list[tuple[int, str]] = []
    for f in files:
        s = stored.get(str(f))
        if s is not None:
            try:
                st = f.stat()
            except OSError:
                st = None
            if st is not None and st.st_size == s[0] and abs(st.st_mtime - s[1]) < 1e-6:
                rep.unchanged += 1
                if labels_from_folders:
                    labels.append((s[2], folder_label(f, known)))
                continue
        todo.append(f)
    done = rep.unchanged
    if progress:
        progress(done, total, f"{rep.unchanged} already stored")

    batch: list[_Loaded] = []
    dups: list[tuple[_Loaded, int]] = []
    failed: list[tuple[str, str]] = []
    pending_sha: dict[str, _Loaded] = {}

    def flush() -> None:
        nonlocal batch, dups, failed, labels
        t0 = time.perf_counter()
        probs = None
        if classifier is not None and batch:
            probs = classifier.run(np.stack([b.x for b in batch]))  # type: ignore[misc]
            t0 = _timer(timings, "inference", t0)
        stamp = now_iso()
        with write_tx(db, "storing ingested images"):
            ids: list[tuple[int, str]] = []
            for b in batch:
                img = b.img
                assert img is not None
                cur = db.execute(
                    "INSERT INTO images(sha256, path, name, size_bytes, width, height, bit_depth, "
                    "raw_dtype, pages, instrument, pixel_size_m, pixel_size_source, databar_px, "
                    "databar_source, metadata, warnings, thumb, group_key, added_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        b.sha, str(b.path), b.path.name, b.size, img.width, img.height,
                        img.bit_depth, img.raw_dtype, img.pages, img.instrument, img.pixel_size_m,
                        img.pixel_size_source, img.databar_px, img.databar_source,
                        json.dumps(img.metadata, default=str), json.dumps(img.warnings),
                        b.thumb, group_key(b.path, roots, labels_from_folders), stamp,
                    ],
                )
                assert cur.lastrowid is not None
                ids.append((cur.lastrowid, b.sha))
            by_sha = {sha: i for i, sha in ids}
            file_rows = [(str(b.path), i, b.size, b.mtime, stamp) for b, (i, _) in zip(batch, ids)]
            dup_ids = [known_id or by_sha.get(d.sha) or _image_id(db, d.sha) or 0 for d, known_id in dups]
            file_rows += [(str(d.path), i, d.size, d.mtime, stamp) for (d, _), i in zip(dups, dup_ids)]
            db.conn.executemany(
                "INSERT INTO files(path, image_id, size_bytes, mtime, seen_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(path) DO UPDATE SET image_id = excluded.image_id, "
                "size_bytes = excluded.size_bytes, mtime = excluded.mtime, seen_at = excluded.seen_at",
                file_rows,
            )
            db.conn.executemany("DELETE FROM ingest_errors WHERE path = ?", [(r[0],) for r in file_rows])
            if probs is not None and classifier is not None and model_id is not None:
                db.conn.executemany(_INSERT_PRED, _prediction_rows(db, classifier, model_id, ids, probs))
                rep.predicted += len(ids)
            if labels_from_folders:
                labels += [(i, folder_label(b.path, known)) for b, (i, _) in zip(batch, ids)]
                labels += [(i, folder_label(d.path, known)) for (d, _), i in zip(dups, dup_ids)]
            if labels:
                rep.labelled += import_labels(db, labels)
            _record_failures(db, failed)
        _timer(timings, "database", t0)
        rep.added += len(batch)
        rep.duplicates += len(dups)
        rep.failed += failed
        batch, dups, failed, labels = [], [], [], []
        pending_sha.clear()

    def load(p: Path) -> _Loaded:
        return _load(p, classifier, settings)

    for path, res in pipelined(todo, load, workers, depth=max(4, settings.batch_size * 2)):
        done += 1
        if isinstance(res, BaseException):
            failed.append((str(path), _reason(res)))
        else:
            for k, v in res.t.items():
                timings[k] = timings.get(k, 0.0) + v
            existing = _image_id(db, res.sha)
            if existing is not None:
                dups.append((res, existing))
            elif res.sha in pending_sha:
                dups.append((res, 0))
            else:
                pending_sha[res.sha] = res
                batch.append(res)
        if len(batch) >= settings.batch_size or len(dups) + len(failed) >= 256:
            flush()
        if progress and (done % 8 == 0 or done == total):
            progress(done, total, path.name)
    flush()
    if classifier is not None and model_id is not None:
        t0 = time.perf_counter()
        sync_auto_labels(db, model_id)
        _timer(timings, "database", t0)
    timings["total"] = time.perf_counter() - t_start
    return rep


def _image_id(db: Database, sha: str) -> int | None:
    row = db.execute("SELECT id FROM images WHERE sha256 = ?", [sha]).fetchone()
    return int(row[0]) if row else None


@dataclass
class PredictReport:
    predicted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return f"{self.predicted} predicted, {len(self.failed)} failed"

    def to_json(self) -> dict[str, Any]:
        return {
            "predicted": self.predicted,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "timings": self.timings,
        }


def pending_count(db: Database, model_id: int) -> int:
    """Stored images without a prediction from ``model_id``: all images less its predictions
    (one per image, each naming a stored image), from the trigger-kept counts (migration m006)."""
    images = db.execute("SELECT n FROM row_counts WHERE tbl = 'images'").fetchone()
    predicted = db.execute(
        "SELECT COALESCE(SUM(n), 0) FROM pred_counts WHERE model_id = ?", [model_id]
    ).fetchone()[0]
    return (images[0] if images else 0) - predicted


def predict_pending(
    db: Database,
    classifier: Classifier,
    model_id: int,
    *,
    redo: bool = False,
    settings: Settings | None = None,
    progress: Progress | None = None,
    workers: int = 2,
) -> PredictReport:
    """Predict every stored image that has no prediction from ``model_id`` (all, with
    ``redo``), re-reading the files; then route and, when ``model_id`` is the active model,
    sync auto labels (a model tried out with ``semtriage predict --model`` must not replace
    the active model's auto labels). Resumable."""
    settings = settings or Settings()
    rep = PredictReport()
    t_start = time.perf_counter()
    timings = rep.timings
    where = "" if redo else (
        "AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.image_id = i.id AND p.model_id = ?)"
    )
    total = db.execute(
        f"SELECT COUNT(*) FROM images i WHERE 1 {where}", [] if redo else [model_id]
    ).fetchone()[0]

    def rows() -> Iterator[tuple[int, str, str]]:
        last = 0
        while True:
            chunk = db.execute(
                f"SELECT i.id, i.path, i.sha256 FROM images i WHERE i.id > ? {where} "
                "ORDER BY i.id LIMIT 512",
                [last] if redo else [last, model_id],
            ).fetchall()
            if not chunk:
                return
            yield from chunk
            last = chunk[-1][0]

    def load(row: tuple[int, str, str]) -> tuple[np.ndarray, dict[str, float]]:
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        img = read_image(row[1], max_pixels=settings.max_pixels)
        t0 = _timer(t, "decode", t0)
        x = classifier.prepare(img.scan)
        _timer(t, "preprocess", t0)
        return x, t

    batch: list[tuple[int, str]] = []
    xs: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []

    def flush() -> None:
        nonlocal batch, xs, failed
        t0 = time.perf_counter()
        probs = classifier.run(np.stack(xs)) if xs else None
        t0 = _timer(timings, "inference", t0)
        with write_tx(db, "storing predictions"):
            if probs is not None:
                db.conn.executemany(_INSERT_PRED, _prediction_rows(db, classifier, model_id, batch, probs))
                _mark_done(db, [i for i, _ in batch])
            _record_failures(db, failed)
        _timer(timings, "database", t0)
        rep.predicted += len(batch)
        rep.failed += failed
        batch, xs, failed = [], [], []

    # materialise ids lazily but from a snapshot: rows() pages by id, so new predictions
    # written by flush() do not disturb the cursor
    stream = pipelined(rows(), load, workers, depth=max(4, settings.batch_size * 2))
    for done, (row, res) in enumerate(stream, start=1):
        if isinstance(res, BaseException):
            failed.append((row[1], _reason(res)))
        else:
            x, t = res
            for k, v in t.items():
                timings[k] = timings.get(k, 0.0) + v
            batch.append((row[0], row[2]))
            xs.append(x)
        if len(batch) >= settings.batch_size or len(failed) >= 256:
            flush()
        if progress and (done % 8 == 0 or done == total):
            progress(done, total, Path(row[1]).name)
    flush()
    t0 = time.perf_counter()
    if db.execute("SELECT 1 FROM models WHERE id = ? AND active = 1", [model_id]).fetchone():
        sync_auto_labels(db, model_id)
    _timer(timings, "database", t0)
    timings["total"] = time.perf_counter() - t_start
    return rep
