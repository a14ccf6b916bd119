"""Export the accepted labels as a dataset (the predictions report: core/datasets/report.py).

Formats (``EXPORT_FORMATS``)
----------------------------
``csv`` / ``jsonl``  one manifest (``manifest.csv`` / ``manifest.jsonl``) pointing at the source
                     files; ``path`` is relative to the common folder of the exported sources.
``imagefolder``      ``out/[<split>/]<class>/<file>`` — the source files copied byte for byte
                     (torchvision ``ImageFolder``) — plus ``out/manifest.csv``.
``hf``               the Hugging Face ``imagefolder`` layout: ``out/<split>/<file>`` with
                     ``out/<split>/metadata.csv`` (``file_name`` relative to it, ``label`` and the
                     other columns); without a split everything goes to ``train/``.

Which labels
------------
Rows come from ``current_labels``: human and imported labels always; auto-accepted ones with
``include_auto``; the special labels ``several`` / ``unusable`` only with ``include_special``.
The export reads one SQLite snapshot (a read transaction), so labels saved meanwhile by
reviewers never make it half in.

Integrity
---------
Every copied file is hashed while it is copied and must match ``images.sha256``; a source that
vanished or changed since ingest is tried at its other known paths (duplicates in ``files``) and
otherwise lands in ``ExportReport.skipped`` with the reason; the rest goes on. Manifest-only
exports check each source the way ingest does (size and mtime as stored; the hash is computed
only when they differ), or hash every source with ``verify=True``.

Everything is built in a sibling folder ``<out>.partial-XXXX`` and renamed into place at the
end, so an interrupted export never leaves a half-written dataset at ``out``. A previous export
is swapped for the new one in one step (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two
renames), so ``out`` always holds the old export or the new one. A process killed mid-export
(kill -9, power loss) leaves its ``<out>.partial-XXXX`` behind: the next export to ``out``
removes such leftovers, except those a live export still holds (each run keeps an advisory
``flock`` on its partial folder and zip) or made in the last minute. An existing
``out`` is replaced only when it is empty or a previous export (it holds the marker file
``.semtriage-export.json``); anything else raises :class:`ExportError`. ``zip_output`` also
writes ``<out>.zip`` (deflate for manifests, stored for images), built before the rename.

Extras
------
``extras`` (name → writer) adds files of other domains for the exported images, inside the
export before it is installed and within the same snapshot: each writer gets the database, the
folder being built and ``{image id: path}`` of the images exported (the path inside the export
when files are copied, else the source file), writes its files there and returns
``{"files": [relative paths], <counts>}``; the files are listed in ``ExportReport.files`` and
``extras``, and in the marker. (The particles of the exported images:
``core.workflows.export_dataset(..., particles=True)``.)

Splits: core/datasets/splits.py.
"""


from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from core.access import User, require_admin, same_identity
from core.datasets.copies import _Sources
from core.datasets.manifest import _BY_ID, _Manifest, _paged, _snapshot
from core.datasets.splits import SPLIT_NAMES, _check_fractions, assign_splits
from core.errors import ExportError
from core.files import install_dir, lock, safe_file_name, safe_name, unlock
from core.progress import Progress, counted
from core.review import SPECIAL_LABELS
from core.store import HUMAN_SOURCES, now_iso

EXPORT_FORMATS = ("csv", "jsonl", "imagefolder", "hf")

ExtraWriter = Callable[[Database, Path, Mapping[int, str]], dict[str, Any]]


MANIFEST_COLUMNS = (
    "path",
    "sha256",
    "label",
    "classes",
    "reviewer",
    "source",
    "model_version",
    "probability",
    "pixel_size_m",
    "split",
    "original_path",
    "labelled_at",
)


MARKER = ".semtriage-export.json"
ZIP_COMMENT = b"semtriage-export"
_TEXT_SUFFIXES = (".csv", ".json", ".jsonl", ".txt", ".md")


@dataclass
class ExportReport:
    """What an export wrote. ``files`` lists the manifest / metadata files written (not every
    image: walk ``out`` for those); ``skipped`` holds ``(source path, reason)``."""

    out: Path
    format: str
    count: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    per_split: dict[str, dict[str, int]] | None = None
    files: list[Path] = field(default_factory=list)
    zip_path: Path | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    extras: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self) -> str:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(self.per_class.items()))
        s = f"{self.count} images exported as {self.format} to {self.out} ({classes})"
        if self.per_split:
            s += "; split " + ", ".join(f"{k} {sum(v.values())}" for k, v in self.per_split.items())
        if self.skipped:
            s += f"; {len(self.skipped)} skipped"
        for name, res in self.extras.items():
            counts = ", ".join(f"{v} {k}" for k, v in res.items() if isinstance(v, int))
            s += f"; {name}: {counts} ({', '.join(res.get('files', []))})"
        if self.zip_path:
            s += f"; zip {self.zip_path}"
        return s

    def to_json(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "format": self.format,
            "count": self.count,
            "per_class": self.per_class,
            "per_split": self.per_split,
            "files": [str(f) for f in self.files],
            "zip_path": str(self.zip_path) if self.zip_path else None,
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "extras": self.extras,
        }


# ---------------------------------------------------------------- selection


def _where(
    include_auto: bool, include_special: bool, classes: Sequence[str] | None
) -> tuple[str, list[Any]]:
    sources = [*HUMAN_SOURCES] + (["auto"] if include_auto else [])
    sql = f"c.source IN ({','.join('?' * len(sources))})"
    params: list[Any] = list(sources)
    if not include_special:
        sql += f" AND c.label NOT IN ({','.join('?' * len(SPECIAL_LABELS))})"
        params += list(SPECIAL_LABELS)
    if classes is not None:
        sql += f" AND c.label IN ({','.join('?' * len(classes))})"
        params += list(classes)
    return sql, params


def export_counts(
    db: Database, *, include_auto: bool = False, include_special: bool = False
) -> dict[str, int]:
    """Images per class that an export with these options would take (before file checks)."""
    where, params = _where(include_auto, include_special, None)
    return {
        label: n
        for label, n in db.execute(
            f"SELECT c.label, COUNT(*) FROM current_labels c WHERE {where} GROUP BY c.label ORDER BY c.label",
            params,
        ).fetchall()
    }


# ---------------------------------------------------------------- names


class _Names:
    """Unique, safe file names per destination folder (case-insensitively unique, so the
    dataset survives a copy to macOS / Windows). A clash gets the SHA-256 prefix."""

    def __init__(self) -> None:
        self.used: dict[str, set[str]] = {}

    def take(self, folder: str, name: str, sha: str) -> str:
        seen = self.used.setdefault(folder, set())
        base = safe_file_name(name, default_stem="image")
        stem, suffix = os.path.splitext(base)
        tries = itertools.chain(
            (base, f"{sha[:8]}_{base}"),
            (f"{sha[:8]}_{stem}_{i}{suffix}" for i in range(1, 10_000)),
        )
        for cand in tries:
            if cand.casefold() not in seen:
                seen.add(cand.casefold())
                return cand
        raise ExportError(f"Cannot find a free file name for {name!r} in {folder!r}")


def _class_dirs(labels: Sequence[str]) -> dict[str, str]:
    """A safe, distinct folder name per class (``a/b`` → ``a_b``; clashes get ``_2``…)."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for lab in sorted(labels):
        base = safe_name(lab, default="unnamed")
        cand, i = base, 1
        while cand.casefold() in seen:
            i += 1
            cand = f"{base}_{i}"
        seen.add(cand.casefold())
        out[lab] = cand
    return out


def _common_root(running: str | None, path: str) -> str | None:
    parent = os.path.dirname(path)
    if running is None:
        return parent
    if parent == running or parent.startswith(running.rstrip(os.sep) + os.sep):
        return running
    try:
        return os.path.commonpath([running, parent])
    except ValueError:  # different drives
        return ""


# ---------------------------------------------------------------- output folder


def _prepare_target(out: Path, zip_path: Path | None) -> None:
    """Refuse to clobber anything that is not a previous export."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ExportError(
            f"Export target {str(out)!r} exists and is not a folder; choose a new folder"
        )
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ExportError(
            f"Export folder {str(out)!r} is not empty and was not written by an export; "
            "choose a new or empty folder (a previous export there is replaced)"
        )
    if zip_path is not None and (zip_path.exists() or zip_path.is_symlink()):
        ours = False
        if zip_path.is_file() and not zip_path.is_symlink():
            try:
                with zipfile.ZipFile(zip_path) as zf:
                    ours = zf.comment == ZIP_COMMENT
            except (zipfile.BadZipFile, OSError):
                ours = False
        if not ours:
            raise ExportError(
                f"{str(zip_path)!r} exists and was not written by an export; move it or choose another folder"
            )


def export_maker(out: str | Path) -> str | None:
    """Who made the export at ``out``: the name it recorded, ``""`` for an export (or its zip)
    that recorded none, ``None`` when there is no export there."""
    out = Path(out).expanduser().absolute()
    marker, zip_path = out / MARKER, out.with_name(out.name + ".zip")
    if not marker.is_file():
        return "" if zip_path.is_file() else None
    try:
        by = json.loads(marker.read_text(encoding="utf-8")).get("by")
    except (OSError, ValueError, AttributeError):
        by = None
    return by if isinstance(by, str) else ""


def may_replace_export(out: str | Path, by: User | None) -> bool:
    """Whether ``by`` may write an export to ``out``: a new name, their own export, or an
    administrator (``None`` = local use)."""
    maker = export_maker(out)
    return by is None or by.admin or maker is None or (bool(maker) and same_identity(maker, by.name))


def _check_replace(out: Path, by: User | None) -> None:
    """A previous export at ``out`` (or its zip) is replaced only by the person who made it or
    an administrator: exports are shared folders, and one reviewer must not overwrite
    another's under the same name."""
    if may_replace_export(out, by):
        return
    maker = export_maker(out)
    made = f"made by {maker!r}" if maker else "made by someone else"
    require_admin(by, f"replace the export {out.name!r} ({made}); choose another export name")


STALE_AFTER_S = 60.0


def _remove_stale(out: Path) -> list[Path]:
    """Remove what killed exports to ``out`` left beside it: ``<out>.partial-XXXXXXXX`` and
    ``<out>.old-XXXXXXXX`` folders, ``<out>.zip.partial-XXXXXXXX`` files. Spared: those a
    running export holds locked, and those changed in the last minute (a run that has just
    created its folder and not yet locked it). Returns what was removed."""
    name = re.escape(out.name)
    pattern = re.compile(rf"^(?:{name}\.(?:partial|old)|{name}\.zip\.partial)-[a-z0-9_]{{8}}$")
    removed: list[Path] = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return removed
    now = time.time()
    for p in entries:
        if not pattern.match(p.name) or p.is_symlink():
            continue
        try:
            if now - p.stat().st_mtime < STALE_AFTER_S:
                continue
            fd = lock(p)
        except OSError:  # held by a live export, or gone meanwhile
            continue
        try:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        finally:
            unlock(fd)
        removed.append(p)
    return removed


def _write_zip(folder: Path, zip_tmp: Path, arc_root: str) -> None:
    with zipfile.ZipFile(zip_tmp, "w", allowZip64=True) as zf:
        zf.comment = ZIP_COMMENT
        for dirpath, dirnames, names in os.walk(folder):
            dirnames.sort()
            for n in sorted(names):
                if n == MARKER:
                    continue
                p = Path(dirpath) / n
                arc = f"{arc_root}/{p.relative_to(folder).as_posix()}"
                method = (
                    zipfile.ZIP_DEFLATED
                    if p.suffix.lower() in _TEXT_SUFFIXES
                    else zipfile.ZIP_STORED
                )
                zf.write(p, arc, compress_type=method)


# ---------------------------------------------------------------- export


def export_labels(
    db: Database,
    out_dir: str | Path,
    *,
    fmt: str = "csv",
    include_auto: bool = False,
    include_special: bool = False,
    split: tuple[float, float, float] | None = None,
    seed: int = 0,
    zip_output: bool = False,
    classes: list[str] | None = None,
    progress: Progress | None = None,
    verify: bool = False,
    by: User | None = None,
    extras: Mapping[str, ExtraWriter] | None = None,
) -> ExportReport:
    """Export the current labels to ``out_dir`` as ``fmt`` (see the module doc).

    ``classes`` restricts the export to those labels. ``split`` = (train, validation, test)
    fractions; ``seed`` fixes it. ``verify`` hashes every source for manifest-only formats
    too (copied files are always hashed). Raises :class:`ExportError` when there is nothing to
    export or ``out_dir`` holds something other than a previous export, and :class:`Forbidden`
    when ``by`` (the app's user; ``None`` = local use) would replace an export someone else made
    without being an administrator (the export records who made it). ``extras``: writers of
    more files for the exported images (module doc, *Extras*).
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(
            f"Unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}"
        )
    fractions = _check_fractions(split) if split is not None else None
    if classes is not None:
        classes = [str(c) for c in classes]
        if not classes:
            raise ExportError(
                "No classes chosen to export; pick at least one (or none to export all)"
            )
    out = Path(out_dir).expanduser().absolute()
    if out.parent == out:
        raise ExportError(f"Cannot export into {str(out)!r}; choose a folder")
    zip_path = out.with_name(out.name + ".zip") if zip_output else None
    _prepare_target(out, zip_path)
    _check_replace(out, by)
    out.parent.mkdir(parents=True, exist_ok=True)
    where, params = _where(include_auto, include_special, classes)
    copy_files = fmt in ("imagefolder", "hf")

    _remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.partial-", dir=out.parent))
    held: list[int | None] = [lock(tmp)]
    zip_tmp: Path | None = None
    try:
        with _snapshot(db):
            # pass 1: what goes where (labels, groups, common root) — no file I/O
            ids = array("q")
            labs: list[str] = []
            grps: list[str | None] = []
            root: str | None = None
            label_set: set[str] = set()
            for image_id, label, group_key, path in _paged(
                db,
                "SELECT c.image_id, c.label, i.group_key, i.path FROM current_labels c "
                f"{_BY_ID}JOIN images i ON i.id = c.image_id WHERE {where} AND {{after}}",
                params,
            ):
                ids.append(image_id)
                label_set.add(label)
                if fractions is not None:
                    labs.append(label)
                    grps.append(group_key)
                if not copy_files:
                    root = _common_root(root, path)
            total = len(ids)
            if total == 0:
                what = "human or imported" + (" or auto-accepted" if include_auto else "")
                raise ExportError(
                    f"Nothing to export: no {what} labels"
                    + (f" for classes {classes!r}" if classes else "")
                    + ". Hint: review some images first"
                    + ("" if include_auto else ", or include auto-accepted labels")
                )
            splits = (
                bytes(assign_splits(labs, grps, fractions, seed)) if fractions is not None else None
            )
            del labs, grps
            dirs = _class_dirs(sorted(label_set))
            exported: dict[int, str] | None = {} if extras else None
            rep = _write_rows(
                db, tmp, fmt, where, params, ids, splits, dirs, root or "", verify, progress, total,
                exported,
            )
            for name, write in (extras or {}).items():
                counted(progress, total, total, f"writing {name}")
                res = write(db, tmp, exported or {})
                rep.extras[name] = res
                rep.files += [tmp / f for f in res.get("files", [])]
        rep.out = out
        rep.files = [out / f.relative_to(tmp) for f in rep.files]
        (tmp / MARKER).write_text(
            json.dumps(
                {
                    "format": fmt,
                    "count": rep.count,
                    "per_class": rep.per_class,
                    "per_split": rep.per_split,
                    "split": fractions,
                    "seed": seed,
                    "include_auto": include_auto,
                    "include_special": include_special,
                    "classes": classes,
                    "skipped": len(rep.skipped),
                    "extras": rep.extras,
                    "created_at": now_iso(),
                    "by": by.name if by is not None else None,
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        if zip_path is not None:
            counted(progress, total, total, f"writing {zip_path.name}")
            fd, name = tempfile.mkstemp(prefix=f"{zip_path.name}.partial-", dir=out.parent)
            os.close(fd)
            zip_tmp = Path(name)
            held.append(lock(zip_tmp))
            _write_zip(tmp, zip_tmp, out.name)
        _prepare_target(out, None)  # the folder may have changed during a long export
        _check_replace(out, by)
        install_dir(tmp, out)
        if zip_path is not None and zip_tmp is not None:
            os.replace(zip_tmp, zip_path)
            rep.zip_path = zip_path
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if zip_tmp is not None:
            zip_tmp.unlink(missing_ok=True)
        raise
    finally:
        for lock_fd in held:
            unlock(lock_fd)
    return rep


def _write_rows(
    db: Database,
    tmp: Path,
    fmt: str,
    where: str,
    params: list[Any],
    ids: array,
    splits: bytes | None,
    dirs: dict[str, str],
    root: str,
    verify: bool,
    progress: Progress | None,
    total: int,
    exported: dict[int, str] | None = None,
) -> ExportReport:
    rep = ExportReport(out=tmp, format=fmt, per_split={} if splits is not None else None)
    sources = _Sources(db)
    names = _Names()
    manifests: dict[str, _Manifest] = {}
    columns = [c for c in MANIFEST_COLUMNS if splits is not None or c != "split"]

    def manifest(key: str) -> _Manifest:
        if key not in manifests:
            if fmt == "hf":
                p = tmp / key / "metadata.csv"
                cols = ["file_name", "label"] + [
                    c for c in columns if c not in ("path", "label", "split")
                ]
                manifests[key] = _Manifest(p, "csv", cols)
            else:
                name = "manifest.jsonl" if fmt == "jsonl" else "manifest.csv"
                manifests[key] = _Manifest(
                    tmp / name, "jsonl" if fmt == "jsonl" else "csv", columns
                )
            rep.files.append(manifests[key].path)
        return manifests[key]

    made: set[Path] = set()
    pos = 0
    try:
        for row in _paged(
            db,
            "SELECT c.image_id, i.path, i.name, i.sha256, i.pixel_size_m, c.label, c.reviewer, "
            "c.source, c.model_version, c.prob, c.updated_at, f.size_bytes, f.mtime, c.classes "
            f"FROM current_labels c {_BY_ID}JOIN images i ON i.id = c.image_id "
            f"LEFT JOIN files f ON f.path = i.path WHERE {where} AND {{after}}",
            params,
        ):
            (
                image_id,
                path,
                name,
                sha,
                px,
                label,
                reviewer,
                source,
                model_version,
                prob,
                labelled_at,
                fsize,
                fmtime,
                classes,
            ) = row
            while pos < len(ids) and ids[pos] < image_id:
                pos += 1
            if pos >= len(ids) or ids[pos] != image_id:  # cannot happen inside one snapshot
                raise ExportError(
                    f"Labels changed during the export (image {image_id}); run it again"
                )
            split_name = SPLIT_NAMES[splits[pos]] if splits is not None else None
            pos += 1
            if fmt in ("imagefolder", "hf"):
                parts = [split_name] if split_name else []
                if fmt == "imagefolder":
                    parts.append(dirs[label])
                elif not parts:
                    parts = ["train"]
                folder = tmp.joinpath(*parts)
                if folder not in made:
                    folder.mkdir(parents=True, exist_ok=True)
                    made.add(folder)
                fname = names.take("/".join(parts), name or os.path.basename(path), sha)
                used, reason = sources.copy(image_id, path, sha, folder / fname)
                rel = "/".join([*parts, fname])
                key = parts[0] if fmt == "hf" else ""
            else:
                used, reason = sources.check(image_id, path, sha, fsize, fmtime, verify)
                rel = _relative(used or path, root)
                key = ""
            if used is None:
                rep.skipped.append((path, reason))
            else:
                rec = {
                    "path": rel,
                    "sha256": sha,
                    "label": label,
                    # the classes present in a 'several' image (csv: "a;b", jsonl: a list)
                    "classes": json.loads(classes) if classes else None,
                    "reviewer": reviewer,
                    "source": source,
                    "model_version": model_version,
                    "probability": prob,
                    "pixel_size_m": px,
                    "split": split_name,
                    "original_path": used,
                    "labelled_at": labelled_at,
                }
                if fmt == "hf":
                    rec["file_name"] = rel.split("/", 1)[1]
                manifest(key).write(rec)
                if exported is not None:
                    exported[image_id] = rel if fmt in ("imagefolder", "hf") else used
                rep.count += 1
                rep.per_class[label] = rep.per_class.get(label, 0) + 1
                if rep.per_split is not None and split_name is not None:
                    ps = rep.per_split.setdefault(split_name, {})
                    ps[label] = ps.get(label, 0) + 1
            if pos % 16 == 0 or pos == total:
                counted(progress, pos, total, os.path.basename(path))
        if fmt != "hf" and not manifests:
            manifest("")  # every source was skipped: still write the (empty) manifest
    finally:
        for m in manifests.values():
            m.close()
    if rep.per_split is not None:
        rep.per_split = {s: rep.per_split.get(s, {}) for s in SPLIT_NAMES}
    rep.per_class = dict(sorted(rep.per_class.items()))
    return rep


def _relative(path: str, root: str) -> str:
    if root:
        try:
            rel = os.path.relpath(path, root)
        except ValueError:
            rel = ""
        if rel and not rel.startswith(".."):
            return Path(rel).as_posix()
    return Path(path).as_posix()
