"""Merging a work folder's results into the database — on the database host, the one place of
record. Each image's answer is kept only when the SHA-256 of the bytes the worker read is the
one stored for that image (a file changed or replaced since it was ingested is reported, not
predicted); predictions are upserted (one per image and model, whatever ran twice) in short
transactions (about 30 ms of the write lock each: ``core.store.Pacer``) that yield to
people's writes between them, so reviewers keep
labelling while a million predictions arrive; a shard is marked merged in the transaction of
its last rows (table ``archive_shards``), so a killed merge resumes at the first unmerged
shard. The unreadable files land in ``ingest_errors`` by path and reason, as ingest's do.
A file plan's files not stored yet are stored first, as `semtriage ingest` stores them (its
``images`` row and thumbnail as the worker read them, the ``files`` row; a file whose SHA-256
is stored already — a copy, or a batch merged before a kill — only gets its ``files`` row,
and its image a prediction if it has none of this model). Finally auto-accepted labels follow
the routing when the model is the active one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
from sqlite_utils import Database

from core.archive.workdir import Manifest, WorkDir
from core.errors import ModelError
from core.intake import insert_images, record_failures, store_files, store_predictions
from core.models import active_model
from core.progress import Progress, counted
from core.review import sync_auto_labels
from core.store import Pacer, migrate, migration_set, now_iso, write_tx

archive_migrations = migration_set("semtriage.archive")


@archive_migrations()
def m001_archive_shards(db: Database) -> None:
    db.execute(
        """
        CREATE TABLE archive_shards (
            work_id TEXT NOT NULL,
            shard INTEGER NOT NULL,
            model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
            predicted INTEGER NOT NULL,
            failed INTEGER NOT NULL,
            merged_at TEXT NOT NULL,
            PRIMARY KEY (work_id, shard)
        )
        """
    )


MERGE_ROWS = 500
NOT_TAKEN_SHARD = -1  # the archive_shards row saying a file plan's not-taken files were reported


@dataclass
class MergeReport:
    shards: int = 0  # merged by this call
    already: int = 0  # merged before
    waiting: int = 0  # no result file yet
    predicted: int = 0
    added: int = 0  # images stored from files the database did not have (a file plan)
    duplicates: int = 0  # files whose image (by SHA-256) was stored already
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    longest_tx_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.predicted / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        added = (f"{self.added:,} new images stored ({self.duplicates:,} files were copies of "
                 "stored images), " if self.added or self.duplicates else "")
        return (f"{added}{self.predicted:,} predictions merged from {self.shards} shards "
                f"({self.already} merged before, {self.waiting} not finished), "
                f"{len(self.failed):,} failed; {self.rate:,.0f} predictions/s, "
                f"longest write {self.longest_tx_s * 1000:.0f} ms")

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        d["rate"] = round(self.rate, 1)
        return d


def model_for(db: Database, m: Manifest) -> dict[str, Any]:
    """The registered model a work folder's manifest names (by its file's SHA-256)."""
    rows = list(db.query("SELECT id, version, class_names FROM models WHERE sha256 = ?",
                         [m.model_sha256]))
    if not rows:
        raise ModelError(
            f"This database has no model with the SHA-256 of {m.model_version!r} that the work "
            "folder was planned with: merge into the database it was planned from, or register "
            "the model first (`semtriage model add`)")
    return rows[0]


def merged_shards(db: Database, work_id: str) -> set[int]:
    return {int(r[0]) for r in db.execute(
        "SELECT shard FROM archive_shards WHERE work_id = ? AND shard >= 0", [work_id])}


def merge(
    db: Database,
    root: str | Path,
    *,
    rows: int | None = None,
    progress: Progress | None = None,
) -> MergeReport:
    """Merge every finished, not yet merged shard of the work folder ``root`` into ``db`` (see
    the module doc). Safe to run while workers are still busy (what is not finished waits for
    the next merge) and to run again after a kill. ``rows``: images per write transaction;
    by default sized as it goes (from MERGE_ROWS) so each holds the lock about
    ``core.store.BULK_HOLD_S``."""
    wd = WorkDir(root)
    m = wd.manifest()
    migrate(db)  # archive_shards, on a database opened before this package was imported
    model = model_for(db, m)
    model_id = int(model["id"])
    names = list(m.class_names)
    rep = MergeReport()
    t_start = time.perf_counter()
    before = merged_shards(db, m.work_id)
    todo = [s for s in wd.done(m) if s not in before]
    rep.already = len(before)
    rep.waiting = sum(1 for s, n in enumerate(m.shards) if n and s not in before and s not in todo)
    total = sum(m.shards[s] for s in todo)
    done = 0
    pacer = Pacer(rows, least=rows, most=rows) if rows else Pacer(MERGE_ROWS)  # rows: fixed
    if m.source != "database" and not db.execute(
            "SELECT 1 FROM archive_shards WHERE work_id = ? AND shard = ?",
            [m.work_id, NOT_TAKEN_SHARD]).fetchone():
        not_taken = wd.not_taken()  # reported (not stored: ingest keeps no such files either) once
        with write_tx(db, "merging archive predictions"):
            db.execute("INSERT INTO archive_shards(work_id, shard, model_id, predicted, failed, "
                       "merged_at) VALUES (?, ?, ?, 0, ?, ?)",
                       [m.work_id, NOT_TAKEN_SHARD, model_id, len(not_taken), now_iso()])
        rep.failed += not_taken
    for s in todo:
        table = wd.read_result(s, len(names))
        n = len(table)
        n_pred = n_fail = 0
        i = 0
        while i == 0 or i < n:
            size = pacer.size
            part = table.slice(i, size).to_pydict()
            i += size
            last = i >= n
            with write_tx(db, "merging archive predictions", pacer=pacer):
                stamp = now_iso()
                ok, failed = _check(db, part)
                new_ok, new_failed, added, copies = _store_new(db, model_id, part, stamp)
                ok += new_ok
                failed += new_failed
                if ok:
                    store_predictions(db, model_id, names, [(o[0], o[1]) for o in ok],
                                      np.stack([o[2] for o in ok]), ood=[o[3] for o in ok],
                                      unfamiliar=[o[4] for o in ok])
                record_failures(db, failed)
                n_pred += len(ok)
                n_fail += len(failed)
                if last:
                    db.execute(
                        "INSERT INTO archive_shards(work_id, shard, model_id, predicted, failed, "
                        "merged_at) VALUES (?, ?, ?, ?, ?, ?)",
                        [m.work_id, s, model_id, n_pred, n_fail, stamp])
            rep.longest_tx_s = max([rep.longest_tx_s, *pacer.held[-1:]])  # BEGIN to COMMIT
            rep.predicted += len(ok)
            rep.added += added
            rep.duplicates += copies
            rep.failed += failed
            done += len(part["row"])
            counted(progress, done, total, f"shard {s}")
        rep.shards += 1
    if rep.shards:
        active = active_model(db)
        if active is not None and active["id"] == model_id:
            sync_auto_labels(db, model_id)
    rep.seconds = time.perf_counter() - t_start
    return rep


_Ok = tuple[int, str, np.ndarray, float | None, str | None]


def _check(db: Database, part: dict[str, list[Any]]) -> tuple[list[_Ok], list[tuple[str, str]]]:
    """Split the batch's rows of stored images into predictions to store (the bytes read are
    the stored image) and failures (path, reason)."""
    rows = [k for k, i in enumerate(part["image_id"]) if i]
    ids = [part["image_id"][k] for k in rows]
    marks = ",".join("?" * len(ids))
    stored = dict(db.execute(f"SELECT id, sha256 FROM images WHERE id IN ({marks})", ids).fetchall()
                  ) if ids else {}
    ok: list[_Ok] = []
    failed: list[tuple[str, str]] = []
    for k in rows:
        image_id, path, sha, probs, error = (part[c][k] for c in ("image_id", "path", "sha256",
                                                                  "probs", "error"))
        if error is not None:
            failed.append((path, error))
        elif image_id not in stored:
            failed.append((path, f"image {image_id} is no longer in the database; not stored"))
        elif sha != stored[image_id]:
            reason = (f"the file changed since it was ingested (SHA-256 {str(sha)[:12]}… read, "
                      f"{stored[image_id][:12]}… stored); not predicted — ingest it again")
            failed.append((path, reason))
        else:
            ok.append((int(image_id), str(sha), np.asarray(probs, np.float32), part["ood"][k],
                       part["unfamiliar"][k]))
    return ok, failed


def _store_new(db: Database, model_id: int, part: dict[str, list[Any]], stamp: str) -> tuple[
        list[_Ok], list[tuple[str, str]], int, int]:
    """Store the batch's files not stored when planned, as ingest does: a new SHA-256 becomes
    an image, every file read a ``files`` row; returns the predictions to store (one per image
    that has none of this model), the failures, and the images added and files that were copies."""
    rows = [k for k, i in enumerate(part["image_id"]) if not i]
    read = [k for k in rows if part["image"][k] is not None]
    shas = list({part["sha256"][k] for k in read})
    known: dict[str, int] = {}
    for j in range(0, len(shas), 500):
        chunk = shas[j : j + 500]
        known.update(db.execute(f"SELECT sha256, id FROM images WHERE sha256 IN "
                                f"({','.join('?' * len(chunk))})", chunk).fetchall())
    ids = list(known.values())
    predicted = {int(r[0]) for r in db.execute(
        f"SELECT image_id FROM predictions WHERE model_id = ? AND image_id IN ({','.join('?' * len(ids))})",
        [model_id, *ids])} if ids else set()
    ok: list[_Ok] = []
    failed: list[tuple[str, str]] = []
    file_rows: list[tuple[str, int, int, float, str]] = []
    added = copies = 0
    for k in rows:
        path, sha, error = part["path"][k], part["sha256"][k], part["error"][k]
        if part["image"][k] is None:
            failed.append((path, error or "unreadable"))
            continue
        rec = json.loads(part["image"][k])
        image_id = known.get(sha)
        if image_id is None:
            image_id = known[sha] = insert_images(db, [{**rec, "thumb": part["thumb"][k]}], stamp)[0]
            added += 1
        else:
            copies += 1
        file_rows.append((path, image_id, rec["size_bytes"], part["mtime"][k], stamp))
        if error is not None:  # read, but the model's output was unusable: stored, reported
            failed.append((path, error))
        elif image_id not in predicted:
            predicted.add(image_id)
            ok.append((image_id, str(sha), np.asarray(part["probs"][k], np.float32), part["ood"][k],
                       part["unfamiliar"][k]))
    store_files(db, file_rows)
    return ok, failed, added, copies


def status(root: str | Path, db: Database | None = None) -> dict[str, Any]:
    """Where a work folder stands: shards and images planned, predicted (result files),
    unreadable — by path and reason, with a file plan's files not taken — and, with ``db``,
    merged into that database."""
    wd = WorkDir(root)
    m = wd.manifest()
    done = wd.done(m)
    k = len(m.class_names)
    not_taken = wd.not_taken()
    failed: list[tuple[str, str]] = []
    providers: set[str] = set()
    for s in done:
        t = wd.read_result(s, k).select(["path", "error", "provider"])
        bad = t.filter(pc.is_valid(t.column("error")))
        failed += zip(bad.column("path").to_pylist(), bad.column("error").to_pylist())
        providers.update(str(p) for p in t.column("provider").unique().to_pylist())
    planned = [s for s, n in enumerate(m.shards) if n]
    out: dict[str, Any] = {
        "work_dir": str(wd.root), "work_id": m.work_id, "model": m.model_version,
        "created_at": m.created_at, "source": m.source, "shards": len(planned), "images": m.images,
        "shards_predicted": len(done), "images_predicted": sum(m.shards[s] for s in done),
        "unreadable": len(failed), "providers": sorted(providers),
        "failed": [{"path": p, "reason": r} for p, r in [*not_taken, *failed]],
    }
    if m.source != "database":
        out["files"] = {c: m.extra[c] for c in ("scanned", "new", "unchanged", "stored_to_predict",
                                                "not_taken", "ignored") if c in m.extra}
    if db is not None:
        migrate(db)
        merged = merged_shards(db, m.work_id)
        out["shards_merged"] = len(merged)
        out["images_merged"] = sum(m.shards[s] for s in merged if s < len(m.shards))
    return out


def status_text(st: dict[str, Any], *, show: int = 20) -> str:
    """``status`` in lines; the first ``show`` failures by path and reason."""
    lines = [
        f"{st['work_dir']}: model {st['model']}, {st['images']:,} images in {st['shards']} shards",
    ]
    if "files" in st:
        f = st["files"]
        lines.append(f"  files:     {f.get('new', 0):,} not stored yet, {f.get('stored_to_predict', 0):,} "
                     f"stored to predict, {f.get('unchanged', 0):,} stored unchanged, "
                     f"{f.get('not_taken', 0):,} not taken")
    lines.append(
        f"  predicted: {st['shards_predicted']}/{st['shards']} shards, "
        f"{st['images_predicted']:,} images ({st['unreadable']:,} unreadable)"
        + (f" on {', '.join(st['providers'])}" if st["providers"] else ""))
    if "shards_merged" in st:
        lines.append(f"  merged:    {st['shards_merged']}/{st['shards']} shards, "
                     f"{st['images_merged']:,} images")
    for f in st["failed"][:show]:
        lines.append(f"  failed {f['path']}: {f['reason']}")
    if len(st["failed"]) > show:
        lines.append(f"  … and {len(st['failed']) - show:,} more (--json lists them all)")
    return "\n".join(lines)
