"""Uploads once saved (:func:`core.intake.save_uploads`): ingested from their own folder, as
a background job in the app, and then tidied — a file recognised as a copy of a stored image
or one that could not be read does not stay on the server's disk.

An upload folder is its own root: links inside it are never followed out (uploads hold none,
save_uploads writes regular files only). Interrupted uploads (the server stopped half-way)
are found again by :func:`unfinished_uploads` and finished by running :func:`ingest_upload`
on the same folder: what was stored is skipped, the rest goes on.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from sqlite_utils import Database

from core.access import User
from core.config import Settings
from core.files import IMAGE_SUFFIXES
from core.intake.pipeline import IngestReport, ingest
from core.intake.uploads import remove_empty_folders
from core.models import Classifier
from core.progress import Progress
from core.store import write_tx


def ingest_upload(
    db: Database,
    folder: str | Path,
    *,
    classifier: Classifier | None = None,
    model_id: int | None = None,
    labels_from_folders: bool = False,
    settings: Settings | None = None,
    progress: Progress | None = None,
    by: User | None = None,
    replace_labels: bool = False,
) -> IngestReport:
    """Ingest every image saved under the upload ``folder`` (files inside a zip's class
    folders take their folder's name as a label with ``labels_from_folders``, recorded as
    ``import:<by.name>``; files at the top never do), then delete the files that were
    duplicates of stored images or failed, and the folders they leave empty."""
    root = Path(folder).resolve()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    nested = [p for p in files if p.parent != root]
    flat = [p for p in files if p.parent == root]
    who = by.name if by is not None and by.name else "upload"
    total = IngestReport()
    for group, labels in ((nested, labels_from_folders), (flat, False)):
        if not group:
            continue
        rep = ingest(db, group, classifier=classifier, model_id=model_id,
                     labels_from_folders=labels, settings=settings, progress=progress,
                     allowed_roots=[root], importer=f"import:{who}", replace_labels=replace_labels, by=by)
        _add(total, rep)
    discard_copies(db, root, total.duplicate_paths + [p for p, _ in total.failed])
    return total


def discard_copies(db: Database, root: Path, paths: list[str]) -> int:
    """Delete the files ``paths`` that lie under ``root`` and the database's memory of them as
    files (their image, stored from another file, stays); returns how many went."""
    mine = [p for p in dict.fromkeys(paths) if root in Path(p).resolve().parents]
    with write_tx(db, "forgetting duplicate uploads"):
        db.conn.executemany("DELETE FROM files WHERE path = ? AND path NOT IN "
                            "(SELECT path FROM images)", [(p,) for p in mine])
    n = 0
    for p in mine:
        with contextlib.suppress(FileNotFoundError):
            Path(p).unlink()
            n += 1
    remove_empty_folders(root)
    return n


def unfinished_uploads(db: Database, uploads_dir: str | Path) -> list[Path]:
    """Upload folders under ``uploads_dir`` holding image files the database does not know
    (an ingest that stopped part-way), oldest first."""
    base = Path(uploads_dir)
    if not base.is_dir():
        return []
    out = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        for f in folder.rglob("*"):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                known = db.execute("SELECT 1 FROM files WHERE path = ? UNION ALL "
                                   "SELECT 1 FROM ingest_errors WHERE path = ? LIMIT 1",
                                   [str(f.resolve()), str(f.resolve())]).fetchone()
                if known is None:
                    out.append(folder)
                    break
    return out


def _add(total: IngestReport, rep: IngestReport) -> None:
    for name in ("scanned", "added", "duplicates", "unchanged", "ignored", "predicted",
                 "labelled", "labels_kept", "auto_labelled"):
        setattr(total, name, getattr(total, name) + getattr(rep, name))
    total.failed += rep.failed
    total.duplicate_paths += rep.duplicate_paths
    for q, n in rep.routed.items():
        total.routed[q] = total.routed.get(q, 0) + n
    for k, v in rep.timings.items():
        total.timings[k] = total.timings.get(k, 0.0) + v
