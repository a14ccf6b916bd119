"""Predicting images: :func:`predict_files`, which reads files and runs a classifier without
touching any database (what an archive worker runs), and the one writer of its answers,
:func:`store_predictions` (top-2, margin, entropy, queue and reason under the stored
thresholds). :func:`predict_pending` joins them for the images of a database that a model has
not predicted yet: resumable, committed batch by batch."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.config import Settings
from core.errors import ImageReadError
from core.files import sha256_file
from core.images import WORK_SIDE, decode_bytes, read_image
from core.intake.loading import LoadedFile, load_file
from core.intake.threads import ByteBudget, _timer, pipelined
from core.models import NON_FINITE_REASON, Classifier, NonFiniteOutput, active_model, entropy
from core.progress import Progress, counted
from core.review import decide_queue, for_class, get_thresholds, sync_auto_labels
from core.store import now_iso, write_tx


def random_key(sha256: str) -> int:
    """A stable pseudo-random sort key for the 'random' queue order (from the image hash)."""
    return int(sha256[:15], 16)


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


# ---------------------------------------------------------------- without a database


@dataclass
class FilePrediction:
    """One file's answer from :func:`predict_files`: the classifier's calibrated probabilities
    (K,) in its class order, or ``error``, why the file could not be read or prepared."""

    path: str
    probs: np.ndarray | None = None
    error: str | None = None
    ood: float | None = None  # unfamiliarity (≥ 1: unlike the model's training images)
    unfamiliar: str | None = None  # why the image counts as unfamiliar, or None
    sha256: str | None = None  # of the bytes read, with ``hash_files`` (always with ``thumb_px``)
    # with ``thumb_px``: the file as ingest reads it (description, thumbnail; no model input),
    # kept also when the model's output was not finite (ingest stores such an image)
    file: LoadedFile | None = None


def predict_files(
    paths: Iterable[str | Path],
    classifier: Classifier,
    *,
    max_pixels: int = 200_000_000,
    batch_size: int = 32,
    workers: int = 2,
    timings: dict[str, float] | None = None,
    decode_bytes_limit: int = 512 * 2**20,
    hash_files: bool = False,
    thumb_px: int | None = None,
) -> Iterator[FilePrediction]:
    """Read every file of ``paths`` (in ``workers`` threads), prepare it for ``classifier`` and
    run the model in batches of ``batch_size``: one :class:`FilePrediction` per path, in input
    order, streamed batch by batch (``paths`` is read lazily, a bounded number ahead). A file
    that cannot be read is answered with its reason; the rest go on. Touches no database.
    ``timings`` (seconds per stage: decode, preprocess, inference) is added to when given.
    At most ``decode_bytes_limit`` bytes of decoded frames exist at once (a larger image is
    decoded alone); only the model inputs wait for their batch.
    ``hash_files``: also the SHA-256 of each file (``FilePrediction.sha256``), so that a caller
    holding the hash stored at ingest can tell a file that changed since (an archive merge).
    ``thumb_px``: read every file as ingest does (:func:`core.intake.load_file`: hashed,
    thumbnails of this size) and answer it in ``FilePrediction.file`` — an archive worker
    ingesting files the database has not stored; the reasons are then ingest's."""
    times = timings if timings is not None else {}
    budget = ByteBudget(decode_bytes_limit)

    def load(path: str | Path) -> tuple[np.ndarray, tuple[float | None, str | None],
                                        dict[str, float], str | None, LoadedFile | None]:
        if thumb_px is not None:
            f = load_file(Path(path), classifier, max_pixels=max_pixels, thumb_px=thumb_px,
                          budget=budget)
            x, f.x = f.x, None  # the input waits for its batch; the answer keeps the rest
            assert x is not None and f.img is not None
            return x, (f.img.pixel_size_m, f.img.instrument), f.t, f.sha, f
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        with budget.hold(decode_bytes(path, WORK_SIDE)):
            # first: the reader's reasons are the clear ones
            img = read_image(path, max_pixels=max_pixels, max_side=WORK_SIDE)
            t0 = _timer(t, "decode", t0)
            sha = None
            if hash_files:
                sha = sha256_file(path)
                t0 = _timer(t, "hash", t0)
            x = classifier.prepare(img.scan)
            where = (img.pixel_size_m, img.instrument)
            del img  # the frame goes before the next decode may start
        _timer(t, "preprocess", t0)
        return x, where, t, sha, None

    pending: list[FilePrediction] = []
    xs: list[np.ndarray] = []
    ctx: list[tuple[float | None, str | None]] = []
    n_failed = 0

    def answers() -> list[FilePrediction]:
        nonlocal pending, xs, ctx, n_failed
        if xs:
            t0 = time.perf_counter()
            probs, ood = classifier.assess(np.stack(xs))
            _timer(times, "inference", t0)
            ok = iter(zip(probs, ood if ood is not None else [None] * len(probs), ctx))
            for item in pending:
                if item.error is None:
                    row, score, (px, inst) = next(ok)
                    if np.isfinite(row).all():
                        item.probs = row
                        item.ood = None if score is None else float(score)
                        item.unfamiliar = classifier.unfamiliar_reason(item.ood, pixel_size_m=px,
                                                                       instrument=inst)
                    else:
                        item.error = NON_FINITE_REASON
        out, pending, xs, ctx, n_failed = pending, [], [], [], 0
        return out

    batch_size = max(1, min(batch_size, classifier.info.max_batch))
    for path, res in pipelined(paths, load, workers, depth=max(2, batch_size * 2)):
        if isinstance(res, BaseException):
            pending.append(FilePrediction(str(path), error=_reason(res)))
            n_failed += 1
        else:
            x, c, t, sha, f = res
            for k, v in t.items():
                times[k] = times.get(k, 0.0) + v
            pending.append(FilePrediction(str(path), sha256=sha, file=f))
            xs.append(x)
            ctx.append(c)
        if len(xs) >= batch_size or n_failed >= 256:
            yield from answers()
    yield from answers()


# ---------------------------------------------------------------- the one writer


def _prediction_rows(
    db: Database, names: Sequence[str], model_id: int, items: Sequence[tuple[int, str]],
    probs: np.ndarray, ood: Sequence[float | None] | np.ndarray | None, unfamiliar: Sequence[str | None] | None,
) -> list[tuple[Any, ...]]:
    ts = get_thresholds(db)
    ent = entropy(probs)
    stamp = now_iso()
    rows = []
    none: list[None] = [None] * len(items)
    for (image_id, sha), p, h, score, why in zip(items, probs, ent, ood if ood is not None else none,
                                                 unfamiliar if unfamiliar is not None else none):
        order = np.argsort(-p, kind="stable")
        i1 = int(order[0])
        i2 = int(order[1]) if len(order) > 1 else None
        p1 = float(p[i1])
        p2 = float(p[i2]) if i2 is not None else 0.0
        c1 = names[i1]
        c2 = names[i2] if i2 is not None else None
        queue, reason = decide_queue(c1, p1, c2, p2, for_class(ts, c1), why)
        rows.append((
            image_id, model_id, c1, p1, c2, p2, p1 - p2, float(h),
            json.dumps([round(float(v), 6) for v in p]), queue, reason, random_key(sha), stamp,
            None if score is None else round(float(score), 4), why,
        ))
    return rows


_INSERT_PRED = (
    "INSERT INTO predictions(image_id, model_id, pred, p1, second, p2, margin, entropy, probs, "
    "queue, reason, rnd, created_at, ood, unfamiliar) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(image_id, model_id) DO UPDATE SET pred = excluded.pred, p1 = excluded.p1, "
    "second = excluded.second, p2 = excluded.p2, margin = excluded.margin, "
    "entropy = excluded.entropy, probs = excluded.probs, queue = excluded.queue, "
    "reason = excluded.reason, created_at = excluded.created_at, ood = excluded.ood, "
    "unfamiliar = excluded.unfamiliar"
)


def _mark_done(db: Database, image_ids: list[int]) -> None:
    db.conn.executemany(
        "UPDATE predictions SET done = 1 WHERE image_id = ? AND EXISTS (SELECT 1 FROM current_labels c "
        "WHERE c.image_id = predictions.image_id AND c.source != 'auto')",
        [(i,) for i in image_ids],
    )


def store_predictions(
    db: Database,
    model_id: int,
    class_names: Sequence[str],
    items: Sequence[tuple[int, str]],
    probs: np.ndarray,
    *,
    ood: Sequence[float | None] | np.ndarray | None = None,
    unfamiliar: Sequence[str | None] | None = None,
) -> None:
    """Store ``model_id``'s probabilities ``probs`` (N, K, in ``class_names`` order) for the
    images ``items`` = [(image id, sha256), ...]: top-2, margin, entropy, the unfamiliarity
    score ``ood`` and its reason ``unfamiliar`` (an unfamiliar image is routed to *uncertain*),
    and the queue and reason under the stored thresholds, replacing an earlier prediction of
    that model; an image a person already labelled is marked done. One transaction (or the
    caller's)."""
    bad = int((~np.isfinite(probs).all(axis=1)).sum()) if len(probs) else 0
    if bad:  # the callers drop such rows first; a raw IntegrityError helps nobody
        raise NonFiniteOutput(f"{bad} of {len(probs)} predictions of model {model_id} are NaN or "
                              "infinite; nothing was stored")
    with write_tx(db, "storing predictions"):
        db.conn.executemany(_INSERT_PRED, _prediction_rows(db, class_names, model_id, items, probs,
                                                           ood, unfamiliar))
        _mark_done(db, [i for i, _ in items])


def record_failures(db: Database, failed: Sequence[tuple[str, str]]) -> None:
    """Keep the files that could not be read, by path, with the reason (``ingest_errors``);
    a path recorded again gets the new reason and time."""
    stamp = now_iso()
    db.conn.executemany(
        "INSERT INTO ingest_errors(path, reason, at) VALUES (?, ?, ?) "
        "ON CONFLICT(path) DO UPDATE SET reason = excluded.reason, at = excluded.at",
        [(p, r, stamp) for p, r in failed],
    )


# ---------------------------------------------------------------- what a model has not seen


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

    queued: deque[tuple[int, str, str]] = deque()  # rows handed to predict_files, in order

    def paths() -> Iterator[str]:
        for row in rows():
            queued.append(row)
            yield row[1]

    batch: list[tuple[int, str]] = []
    probs: list[np.ndarray] = []
    ood: list[float | None] = []
    unfamiliar: list[str | None] = []
    failed: list[tuple[str, str]] = []

    def flush() -> None:
        nonlocal batch, probs, ood, unfamiliar, failed
        t0 = time.perf_counter()
        with write_tx(db, "storing predictions", bulk=True):
            if batch:
                store_predictions(db, model_id, classifier.class_names, batch, np.stack(probs),
                                  ood=ood, unfamiliar=unfamiliar)
            record_failures(db, failed)
        _timer(timings, "database", t0)
        rep.predicted += len(batch)
        rep.failed += failed
        batch, probs, ood, unfamiliar, failed = [], [], [], [], []

    # rows() pages by id from a snapshot of what is missing, so the predictions flush() writes
    # do not disturb it; predict_files answers in input order, one answer per path
    stream = predict_files(paths(), classifier, max_pixels=settings.max_pixels,
                           batch_size=settings.batch_size, workers=workers, timings=timings,
                           decode_bytes_limit=settings.decode_mb * 2**20)
    for done, res in enumerate(stream, start=1):
        row = queued.popleft()
        if res.probs is None:
            failed.append((row[1], res.error or "unreadable"))
        else:
            batch.append((row[0], row[2]))
            probs.append(res.probs)
            ood.append(res.ood)
            unfamiliar.append(res.unfamiliar)
        if len(batch) >= settings.batch_size or len(failed) >= 256:
            flush()
        if done % 8 == 0 or done == total:
            counted(progress, done, total, Path(row[1]).name)
    flush()
    t0 = time.perf_counter()
    active = active_model(db)
    if active is not None and active["id"] == model_id:
        sync_auto_labels(db, model_id)
    _timer(timings, "database", t0)
    timings["total"] = time.perf_counter() - t_start
    return rep
