"""Ingest: folders of SEM images into the store, predicted and routed in the same pass.

Both are idempotent and resumable. Work is committed batch by batch (one transaction per
batch of images, their files, predictions and labels together), so a process killed at any
point leaves whole batches behind; running the same command again skips what is stored
(``files`` remembers path, size and mtime; images are keyed by SHA-256) and finishes the rest.

Decoding runs in worker threads while the main thread runs the model and writes, so on a
CPU the model is not what waits (see bench/ingest_predict.py).
"""


from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.access import User, require_admin
from core.config import NFFA_CLASSES, Settings
from core.intake.loading import IMAGE_COLUMNS, LoadedFile, image_record, load_file
from core.intake.predict import _reason, record_failures, store_predictions
from core.intake.sources import find_images, folder_label, group_key, source_roots
from core.intake.threads import ByteBudget, _timer, pipelined
from core.models import NON_FINITE_REASON, Classifier, finite_rows
from core.progress import Progress, counted
from core.review import import_labels, sync_auto_labels
from core.store import now_iso, write_tx


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
    duplicate_paths: list[str] = field(default_factory=list)  # files whose image was stored already
    labels_kept: int = 0  # images whose own label a folder name would have replaced
    # where this run's new images went: images per queue (auto = labelled by the model, reaching
    # a person only through the spot-checks)
    routed: dict[str, int] = field(default_factory=dict)
    # of the confident (auto queue) ones, how many the model was allowed to label: none while it
    # is provisional (core.review.certification); the rest wait as confident (unverified)
    auto_labelled: int = 0

    def routing_summary(self) -> str:
        """'25 auto-labelled by the model (…), 10 to the uncertain queue, 7 to the mixed queue'."""
        if not self.routed:
            return ""
        parts = []
        n = self.routed.get("auto", 0)
        if labelled := min(n, self.auto_labelled):
            parts.append(f"{labelled} auto-labelled by the model (they reach a person only through "
                         "the spot-check queues)")
        if n - labelled:
            parts.append(f"{n - labelled} confident but unverified (not labelled: the model's "
                         "auto-accept is not certified on this lab's images; confirm them on Grid "
                         "confirm)")
        parts += [f"{self.routed[q]} to the {q} queue" for q in ("uncertain", "mixed") if self.routed.get(q)]
        return "; ".join(parts)

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
        if self.labels_kept:
            parts.append(f"{self.labels_kept} images kept their own label (not replaced by "
                         "the folder name)")
        if self.ignored:
            parts.append(f"{self.ignored} non-image files ignored")
        text = f"{self.scanned} files: " + ", ".join(parts)
        return text + (f". Routed: {self.routing_summary()}" if self.routed else "")

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        return d


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
    allowed_roots: Sequence[str | Path] | None = None,
    importer: str = "import",
    replace_labels: bool = False,
    by: User | None = None,
) -> IngestReport:
    """Ingest image files and folders (recursively). With a classifier (and its registered
    ``model_id``) every new image is predicted and routed in the same pass. With
    ``allowed_roots`` (the app: ``SEMTRIAGE_ROOTS``) a symbolic link found inside is followed only to a file
    under one of them. Only regular files are read (see :func:`core.intake.find_images`).

    Folder labels are recorded under ``importer`` (the app: ``import:<who uploaded>``) and
    never replace an image's existing label unless ``replace_labels``, which only an
    administrator (``by``) may ask for."""
    settings = settings or Settings()
    if replace_labels and labels_from_folders:
        require_admin(by, "replace existing labels with folder names")
    if classifier is not None and model_id is None:
        raise ValueError("ingest with a classifier needs its model_id (see core.models.register_model)")
    rep = IngestReport()
    t_start = time.perf_counter()
    paths = list(paths)
    roots = source_roots(paths)
    files, rep.ignored, pre_failed = find_images(paths, allowed_roots)
    rep.failed += pre_failed
    rep.scanned = len(files) + len(pre_failed)
    known = list(classifier.class_names if classifier else []) + NFFA_CLASSES
    timings = rep.timings
    total = len(files)

    todo, unchanged = stored_files(db, files)
    rep.unchanged = len(unchanged)
    labels: list[tuple[int, str]] = []
    if labels_from_folders:
        labels += [(image_id, folder_label(f, known)) for f, image_id in unchanged]
    done = rep.unchanged
    counted(progress, done, total, f"{rep.unchanged} already stored")

    batch: list[LoadedFile] = []
    dups: list[tuple[LoadedFile, int]] = []
    failed: list[tuple[str, str]] = []
    pending_sha: dict[str, LoadedFile] = {}

    def flush() -> None:
        nonlocal batch, dups, failed, labels
        t0 = time.perf_counter()
        probs = ood = None
        unfamiliar: list[str | None] = []
        if classifier is not None and batch:
            probs, ood = classifier.assess(np.stack([b.x for b in batch]))  # type: ignore[misc]
            unfamiliar = [
                classifier.unfamiliar_reason(None if ood is None else float(ood[k]),
                                             pixel_size_m=b.img.pixel_size_m if b.img else None,
                                             instrument=b.img.instrument if b.img else None)
                for k, b in enumerate(batch)
            ]
            t0 = _timer(timings, "inference", t0)
        stamp = now_iso()
        with write_tx(db, "storing ingested images", bulk=True):
            # another ingest of the same files may have stored some since they were looked up
            # (two at once: the write lock orders them, this re-check under it makes them copies)
            raced = [(b, _image_id(db, b.sha)) for b in batch]
            dups += [(b, i) for b, i in raced if i is not None]
            batch = [b for b, i in raced if i is None]
            if probs is not None:
                fresh = np.array([i is None for _, i in raced], dtype=bool)
                probs = probs[fresh]
                ood = ood[fresh] if ood is not None else None
                unfamiliar = [u for u, f in zip(unfamiliar, fresh) if f]
            keys = [group_key(b.path, roots, labels_from_folders) for b in batch]
            new_ids = insert_images(db, [image_record(b, k) for b, k in zip(batch, keys)], stamp)
            ids = [(i, b.sha) for i, b in zip(new_ids, batch)]
            by_sha = {sha: i for i, sha in ids}
            file_rows = [(str(b.path), i, b.size, b.mtime, stamp) for b, (i, _) in zip(batch, ids)]
            dup_ids = [known_id or by_sha.get(d.sha) or _image_id(db, d.sha) or 0 for d, known_id in dups]
            file_rows += [(str(d.path), i, d.size, d.mtime, stamp) for (d, _), i in zip(dups, dup_ids)]
            store_files(db, file_rows)
            if probs is not None and classifier is not None and model_id is not None:
                ok = finite_rows(probs)
                failed += [(str(b.path), NON_FINITE_REASON) for b, good in zip(batch, ok) if not good]
                keep = [i for i, good in zip(ids, ok) if good]
                store_predictions(db, model_id, classifier.class_names, keep, probs[ok],
                                  ood=None if ood is None else np.asarray(ood)[ok],
                                  unfamiliar=[u for u, good in zip(unfamiliar, ok) if good])
                rep.predicted += len(keep)
                if keep:
                    marks = ",".join("?" * len(keep))
                    for q, n in db.execute(
                        f"SELECT queue, COUNT(*) FROM predictions WHERE model_id = ? AND image_id IN ({marks}) "
                        "GROUP BY queue", [model_id, *(i for i, _ in keep)]):
                        rep.routed[q] = rep.routed.get(q, 0) + n
            if labels_from_folders:
                labels += [(i, folder_label(b.path, known)) for b, (i, _) in zip(batch, ids)]
                labels += [(i, folder_label(d.path, known)) for (d, _), i in zip(dups, dup_ids)]
            if labels:
                kept: list[int] = []
                rep.labelled += import_labels(db, labels, reviewer=importer,
                                              replace=replace_labels, kept=kept)
                rep.labels_kept += len(set(kept))
            record_failures(db, failed)
        _timer(timings, "database", t0)
        rep.added += len(batch)
        rep.duplicates += len(dups)
        rep.duplicate_paths += [str(d.path) for d, _ in dups]
        rep.failed += failed
        batch, dups, failed, labels = [], [], [], []
        pending_sha.clear()

    budget = ByteBudget(settings.decode_mb * 2**20)

    def load(p: Path) -> LoadedFile:
        return load_file(p, classifier, max_pixels=settings.max_pixels, thumb_px=settings.thumb_px,
                         budget=budget)

    batch_size = min(settings.batch_size, classifier.info.max_batch) if classifier else settings.batch_size
    for path, res in pipelined(todo, load, workers, depth=max(2, batch_size * 2)):
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
        if len(batch) >= batch_size or len(dups) + len(failed) >= 256:
            flush()
        if done % 8 == 0 or done == total:
            counted(progress, done, total, path.name)
    flush()
    if classifier is not None and model_id is not None:
        t0 = time.perf_counter()
        rep.auto_labelled = sync_auto_labels(db, model_id)["added"]
        _timer(timings, "database", t0)
    timings["total"] = time.perf_counter() - t_start
    return rep


def stored_files(db: Database, files: Sequence[Path]) -> tuple[list[Path], list[tuple[Path, int]]]:
    """Split ``files`` into those to read and those stored unchanged (the same path, size and
    modification time in ``files``), the latter with their image id; order kept."""
    stored: dict[str, tuple[int, float, int]] = {}
    for i in range(0, len(files), 500):
        chunk = [str(f) for f in files[i : i + 500]]
        marks = ",".join("?" * len(chunk))
        for path, size, mtime, image_id in db.execute(
            f"SELECT path, size_bytes, mtime, image_id FROM files WHERE path IN ({marks})", chunk
        ):
            stored[path] = (size, mtime, image_id)
    todo: list[Path] = []
    unchanged: list[tuple[Path, int]] = []
    for f in files:
        s = stored.get(str(f))
        if s is not None:
            try:
                st = f.stat()
            except OSError:
                st = None
            if st is not None and st.st_size == s[0] and abs(st.st_mtime - s[1]) < 1e-6:
                unchanged.append((f, s[2]))
                continue
        todo.append(f)
    return todo, unchanged


_INSERT_IMAGE = (f"INSERT INTO images({', '.join(IMAGE_COLUMNS)}, added_at) "
                 f"VALUES ({', '.join('?' * (len(IMAGE_COLUMNS) + 1))})")


def insert_images(db: Database, records: Sequence[dict[str, Any]], stamp: str) -> list[int]:
    """Insert the ``images`` rows ``records`` (:func:`core.intake.image_record`), added at
    ``stamp``; returns their ids in order. Inside the caller's transaction."""
    ids = []
    for r in records:
        cur = db.execute(_INSERT_IMAGE, [*(r[c] for c in IMAGE_COLUMNS), stamp])
        assert cur.lastrowid is not None
        ids.append(int(cur.lastrowid))
    return ids


def store_files(db: Database, rows: Sequence[tuple[str, int, int, float, str]]) -> None:
    """Remember files (path, image id, size, mtime, seen at) — a path seen again points at its
    new image — and forget their earlier read failures. Inside the caller's transaction."""
    db.conn.executemany(
        "INSERT INTO files(path, image_id, size_bytes, mtime, seen_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(path) DO UPDATE SET image_id = excluded.image_id, "
        "size_bytes = excluded.size_bytes, mtime = excluded.mtime, seen_at = excluded.seen_at",
        rows,
    )
    db.conn.executemany("DELETE FROM ingest_errors WHERE path = ?", [(r[0],) for r in rows])


def _image_id(db: Database, sha: str) -> int | None:
    row = db.execute("SELECT id FROM images WHERE sha256 = ?", [sha]).fetchone()
    return int(row[0]) if row else None
