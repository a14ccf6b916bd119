"""Export the accepted labels as a dataset, and the predictions as a report.

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

Split
-----
Stratified per class with a seeded RNG (same seed and same labels → same split). Integer targets
per split come from the fractions by largest remainder; a class with ≥ 3 images gets at least
one image in every split with a non-zero fraction. Images sharing ``images.group_key`` (their
source folder: one specimen / session, where near-copies live) are kept in the same split:
within a class, groups are placed whole, largest first, into the split furthest below its
target, preferring the split the same group went to in another class. Only when that leaves a
required split empty is a group broken up — the smallest group of several images first, and
its images still fill one split before spilling into the next — so leakage is as small as the
class counts allow. (With ``--labels-from-folders`` the group is the class folder itself: one
group per class, which is then split image by image.)
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import errno
import hashlib
import itertools
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import zipfile
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sqlite_utils import Database

from core.errors import ExportError, NotFound
from core.labels import SPECIAL_LABELS
from core.routing import current_reason, get_thresholds
from core.store import now_iso
from core.uploads import safe_file_name, safe_name

EXPORT_FORMATS = ("csv", "jsonl", "imagefolder", "hf")
SPLIT_NAMES = ("train", "validation", "test")
MANIFEST_COLUMNS = (
    "path",
    "sha256",
    "label",
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
CHUNK_ROWS = 1000
COPY_CHUNK = 1 << 20
_TEXT_SUFFIXES = (".csv", ".json", ".jsonl", ".txt", ".md")

Progress = Callable[[int, int, str], None]


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

    def summary(self) -> str:
        classes = ", ".join(f"{k} {v}" for k, v in sorted(self.per_class.items()))
        s = f"{self.count} images exported as {self.format} to {self.out} ({classes})"
        if self.per_split:
            s += "; split " + ", ".join(f"{k} {sum(v.values())}" for k, v in self.per_split.items())
        if self.skipped:
            s += f"; {len(self.skipped)} skipped"
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
        }


# ---------------------------------------------------------------- selection


def _where(
    include_auto: bool, include_special: bool, classes: Sequence[str] | None
) -> tuple[str, list[Any]]:
    sources = ["human", "import"] + (["auto"] if include_auto else [])
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


@contextlib.contextmanager
def _snapshot(db: Database) -> Iterator[None]:
    """A read transaction: every query inside sees the same state of the database."""
    conn = db.conn
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


# Keyset paging over current_labels must walk it by image id (its rowid) and stop at the page
# size; left to itself SQLite selects every matching label through the source index and sorts
# them, for each page: quadratic (93 s for 100k labels, bench/scale.py). NOT INDEXED still
# allows the rowid range.
_BY_ID = "NOT INDEXED "


def _paged(
    db: Database, sql: str, params: list[Any], key: str = "c.image_id"
) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` (which must contain ``{after}``) in chunks, keyset-paged on ``key``
    (the first column), so a million rows never sit in memory at once."""
    last = -1
    while True:
        rows = db.execute(
            sql.format(after=f"{key} > ?") + f" ORDER BY {key} LIMIT {CHUNK_ROWS}", [*params, last]
        ).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


# ---------------------------------------------------------------- split


def _check_fractions(split: Sequence[float]) -> tuple[float, float, float]:
    try:
        fr = tuple(float(x) for x in split)
    except (TypeError, ValueError):
        raise ExportError(
            f"Split {split!r} must be three numbers (train, validation, test)"
        ) from None
    if len(fr) != 3 or any(not (x >= 0) or x == float("inf") for x in fr) or sum(fr) <= 0:
        raise ExportError(
            f"Split {split!r} must be three non-negative numbers with a positive sum, "
            "e.g. (0.8, 0.1, 0.1)"
        )
    total = sum(fr)
    return (fr[0] / total, fr[1] / total, fr[2] / total)


def split_targets(n: int, fractions: Sequence[float]) -> list[int]:
    """Integer images per split for a class of ``n`` (largest remainder); with ``n`` ≥ 3 every
    split with a non-zero fraction gets at least one where the count allows."""
    raw = [f * n for f in fractions]
    t = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda k: (-(raw[k] - t[k]), k))
    for k in order[: n - sum(t)]:
        t[k] += 1
    nonzero = [k for k, f in enumerate(fractions) if f > 0]
    if n >= 3 and n >= len(nonzero):
        for k in nonzero:
            if t[k] == 0:
                donor = max(range(len(t)), key=lambda j: (t[j], -j))
                t[donor] -= 1
                t[k] += 1
    return t


def assign_splits(
    labels: Sequence[str],
    groups: Sequence[str | None],
    fractions: Sequence[float],
    seed: int = 0,
) -> list[int]:
    """Split index (into ``fractions``) for each item, stratified per label, with items of the
    same group kept together where the counts allow (see the module doc). ``None`` groups are
    items on their own. Deterministic for a given seed and input."""
    by_class: dict[str, dict[str, list[int]]] = {}
    for i, (lab, g) in enumerate(zip(labels, groups)):
        key = f"\x00{i}" if g is None else str(g)
        by_class.setdefault(lab, {}).setdefault(key, []).append(i)
    out = [0] * len(labels)
    group_split: dict[str, int] = {}  # first split each group went to (kept across classes)
    for lab in sorted(by_class):
        rng = random.Random(f"{seed}\x00{lab}")
        grouped = by_class[lab]
        n = sum(len(v) for v in grouped.values())
        targets = split_targets(n, fractions)
        required = [k for k, t in enumerate(targets) if t >= 1]
        keys = sorted(grouped)
        rng.shuffle(keys)
        units: list[tuple[str, list[int]]] = [(k, grouped[k]) for k in keys]
        while True:
            units.sort(key=lambda u: -len(u[1]))  # stable: ties keep the seeded order
            placed = _greedy(units, targets, group_split)
            counts = [0] * len(targets)
            for (_, items), k in zip(units, placed):
                counts[k] += len(items)
            if all(counts[k] >= 1 for k in required):
                break
            multi = [u for u in units if len(u[1]) > 1]
            if not multi:
                break
            victim = min(multi, key=lambda u: len(u[1]))  # smallest group of several first
            units.remove(victim)
            items = list(victim[1])
            rng.shuffle(items)
            units += [(victim[0], [i]) for i in items]
        for (gkey, items), k in zip(units, placed):
            group_split.setdefault(gkey, k)
            for i in items:
                out[i] = k
    return out


def _greedy(
    units: list[tuple[str, list[int]]], targets: list[int], prefer: dict[str, int]
) -> list[int]:
    deficit = list(targets)
    local: dict[str, int] = {}
    placed = []
    for gkey, items in units:
        size = len(items)
        want = local.get(gkey, prefer.get(gkey))
        if want is not None and deficit[want] >= size and targets[want] > 0:
            k = want
        else:
            k = max(range(len(deficit)), key=lambda j: (targets[j] > 0, deficit[j], -j))
        local[gkey] = k  # pieces of a broken group fill this split before spilling over
        deficit[k] -= size
        placed.append(k)
    return placed


# ---------------------------------------------------------------- files


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _SourceError(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _copy_hashed(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` byte for byte (times kept) and return the SHA-256 of what was
    written. A source that cannot be read raises :class:`_SourceError`; a destination that
    cannot be written (disk full) raises :class:`ExportError` — that ends the export."""
    h = hashlib.sha256()
    try:
        fi = open(src, "rb")  # noqa: SIM115 — closed below
    except OSError as e:
        raise _SourceError(_why(e)) from None
    try:
        try:
            fo = open(dst, "xb")  # noqa: SIM115
        except OSError as e:
            raise ExportError(f"Cannot write {str(dst)!r}: {e.strerror or e}") from None
        with fo:
            while True:
                try:
                    chunk = fi.read(COPY_CHUNK)
                except OSError as e:
                    raise _SourceError(_why(e)) from None
                if not chunk:
                    break
                h.update(chunk)
                try:
                    fo.write(chunk)
                except OSError as e:
                    raise ExportError(f"Cannot write {str(dst)!r}: {e.strerror or e}") from None
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    finally:
        fi.close()
    with contextlib.suppress(OSError):
        shutil.copystat(src, dst)
    return h.hexdigest()


def _why(e: OSError) -> str:
    if isinstance(e, FileNotFoundError):
        return "source file missing"
    if isinstance(e, PermissionError):
        return "source file not readable (permission denied)"
    return f"source file cannot be read: {e.strerror or e}"


def _changed(got: str, sha: str) -> str:
    return f"source file changed since ingest (sha256 {got[:12]}… ≠ recorded {sha[:12]}…)"


class _Sources:
    """Where an image's bytes can be found: its recorded path, then its duplicates."""

    def __init__(self, db: Database):
        self.db = db

    def candidates(
        self, image_id: int, path: str, size: int | None, mtime: float | None
    ) -> Iterator[tuple[str, int | None, float | None]]:
        yield path, size, mtime
        yield from self.db.execute(
            "SELECT path, size_bytes, mtime FROM files WHERE image_id = ? AND path != ? ORDER BY path",
            [image_id, path],
        ).fetchall()

    def copy(self, image_id: int, path: str, sha: str, dst: Path) -> tuple[str | None, str]:
        """Copy the first candidate whose bytes hash to ``sha``; (used path, '') or (None, why)."""
        first_reason = ""
        for cand, _, _ in self.candidates(image_id, path, None, None):
            try:
                got = _copy_hashed(Path(cand), dst)
            except _SourceError as e:
                first_reason = first_reason or e.reason
                continue
            if got == sha:
                return cand, ""
            dst.unlink(missing_ok=True)
            first_reason = first_reason or _changed(got, sha)
        return None, first_reason

    def check(
        self,
        image_id: int,
        path: str,
        sha: str,
        size: int | None,
        mtime: float | None,
        verify: bool,
    ) -> tuple[str | None, str]:
        first_reason = ""
        for cand, csize, cmtime in self.candidates(image_id, path, size, mtime):
            try:
                st = os.stat(cand)
                if (
                    not verify
                    and csize is not None
                    and cmtime is not None
                    and st.st_size == csize
                    and abs(st.st_mtime - cmtime) < 1e-6
                ):
                    return cand, ""
                got = sha256_of(cand)
            except OSError as e:
                first_reason = first_reason or _why(e)
                continue
            if got == sha:
                return cand, ""
            first_reason = first_reason or _changed(got, sha)
        return None, first_reason


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


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2`` with
    ``RENAME_EXCHANGE``). False where the platform or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28, musl
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _lock(path: Path) -> int | None:
    """Hold an advisory lock on ``path`` (a folder or file) for as long as the returned file
    descriptor is open; the kernel drops it when the process dies, however it dies."""
    try:
        import fcntl
    except ImportError:  # Windows: no locks; leftovers are then judged by age alone
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


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
            fd = _lock(p)
        except OSError:  # held by a live export, or gone meanwhile
            continue
        try:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        finally:
            _unlock(fd)
        removed.append(p)
    return removed


def _install(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` folder to ``out``, replacing a previous export."""
    _prepare_target(out, None)  # the folder may have changed during a long export
    if out.exists() and _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous export
        return
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{out.name}.old-", dir=out.parent))
        old.rmdir()
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


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


class _Manifest:
    """A streaming csv or jsonl writer for manifest rows."""

    def __init__(self, path: Path, fmt: str, columns: Sequence[str]):
        self.path = path
        self.fmt = fmt
        self.columns = list(columns)
        self.fh: TextIO = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        if fmt == "csv":
            self.writer = csv.writer(self.fh)
            self.writer.writerow(self.columns)

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "csv":
            self.writer.writerow(["" if row.get(c) is None else row.get(c) for c in self.columns])
        else:
            self.fh.write(
                json.dumps({c: row.get(c) for c in self.columns}, ensure_ascii=False) + "\n"
            )

    def close(self) -> None:
        self.fh.close()


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
) -> ExportReport:
    """Export the current labels to ``out_dir`` as ``fmt`` (see the module doc).

    ``classes`` restricts the export to those labels. ``split`` = (train, validation, test)
    fractions; ``seed`` fixes it. ``verify`` hashes every source for manifest-only formats
    too (copied files are always hashed). Raises :class:`ExportError` when there is nothing to
    export or ``out_dir`` holds something other than a previous export.
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
    out.parent.mkdir(parents=True, exist_ok=True)
    where, params = _where(include_auto, include_special, classes)
    copy_files = fmt in ("imagefolder", "hf")

    _remove_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.partial-", dir=out.parent))
    held: list[int | None] = [_lock(tmp)]
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
            rep = _write_rows(
                db, tmp, fmt, where, params, ids, splits, dirs, root or "", verify, progress, total
            )
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
                    "created_at": now_iso(),
                },
                indent=1,
            ),
            encoding="utf-8",
        )
        if zip_path is not None:
            if progress:
                progress(total, total, f"writing {zip_path.name}")
            fd, name = tempfile.mkstemp(prefix=f"{zip_path.name}.partial-", dir=out.parent)
            os.close(fd)
            zip_tmp = Path(name)
            held.append(_lock(zip_tmp))
            _write_zip(tmp, zip_tmp, out.name)
        _install(tmp, out)
        if zip_path is not None and zip_tmp is not None:
            os.replace(zip_tmp, zip_path)
            rep.zip_path = zip_path
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if zip_tmp is not None:
            zip_tmp.unlink(missing_ok=True)
        raise
    finally:
        for lock in held:
            _unlock(lock)
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
            "c.source, c.model_version, c.prob, c.updated_at, f.size_bytes, f.mtime "
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
                rep.count += 1
                rep.per_class[label] = rep.per_class.get(label, 0) + 1
                if rep.per_split is not None and split_name is not None:
                    ps = rep.per_split.setdefault(split_name, {})
                    ps[label] = ps.get(label, 0) + 1
            if progress and (pos % 16 == 0 or pos == total):
                progress(pos, total, os.path.basename(path))
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


# ---------------------------------------------------------------- predictions report


def predictions_report(
    db: Database,
    out_path: str | Path,
    *,
    fmt: str = "csv",
    model_id: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Every image with its prediction from ``model_id`` (default: the active model) — class,
    p1, margin, entropy, the full probability vector (``p_<class>`` columns in csv, a dict
    ``probs`` in jsonl), queue and reason — and its current label and label source. Images
    without a prediction from that model are listed with empty prediction fields. Written
    atomically (a temporary sibling renamed into place)."""
    if fmt not in ("csv", "jsonl"):
        raise ExportError(f"Unknown report format {fmt!r}; expected csv or jsonl")
    out = Path(out_path).expanduser().absolute()
    if out.is_dir():
        raise ExportError(
            f"Report path {str(out)!r} is a folder; give a file name such as "
            f"{str(out / ('predictions.' + fmt))!r}"
        )
    with _snapshot(db):
        if model_id is None:
            row = db.execute(
                "SELECT id, version, class_names FROM models WHERE active = 1"
            ).fetchone()
            if row is None:
                raise ExportError(
                    "No active model: register one with `semtriage model add PATH`, "
                    "or name the model to report on"
                )
        else:
            row = db.execute(
                "SELECT id, version, class_names FROM models WHERE id = ?", [model_id]
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"No model with id {model_id!r}; see `semtriage models` for the list"
                )
        mid, version, names_json = row
        names: list[str] = json.loads(names_json)
        fixed = [
            "path",
            "sha256",
            "model_version",
            "pred",
            "p1",
            "second",
            "p2",
            "margin",
            "entropy",
            "queue",
            "reason",
            "label",
            "label_source",
        ]
        prob_cols = [f"p_{n}" for n in names]
        total = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f"{out.name}.partial-", dir=out.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            m = _Manifest(tmp, fmt, fixed + prob_cols if fmt == "csv" else fixed + ["probs"])
            ts = get_thresholds(db)
            try:
                for done, r in enumerate(
                    _paged(
                        db,
                        "SELECT i.id, i.path, i.sha256, p.pred, p.p1, p.second, p.p2, p.margin, "
                        "p.entropy, p.probs, p.queue, p.reason, c.label, c.source FROM images i "
                        "LEFT JOIN predictions p ON p.image_id = i.id AND p.model_id = ? "
                        "LEFT JOIN current_labels c ON c.image_id = i.id WHERE {after}",
                        [mid],
                        key="i.id",
                    ),
                    start=1,
                ):
                    (
                        _,
                        path,
                        sha,
                        pred,
                        p1,
                        second,
                        p2,
                        margin,
                        ent,
                        probs,
                        queue,
                        reason,
                        label,
                        lsource,
                    ) = r
                    rec: dict[str, Any] = {
                        "path": path,
                        "sha256": sha,
                        "model_version": version if pred else None,
                        "pred": pred,
                        "p1": p1,
                        "second": second,
                        "p2": p2,
                        "margin": margin,
                        "entropy": ent,
                        "queue": queue,
                        "reason": (current_reason(ts, pred, p1, second, p2)
                                   if pred is not None else reason),
                        "label": label,
                        "label_source": lsource,
                    }
                    vec = json.loads(probs) if probs else None
                    if fmt == "csv":
                        for col, v in zip(prob_cols, vec or [None] * len(names)):
                            rec[col] = v
                    else:
                        rec["probs"] = dict(zip(names, vec)) if vec else None
                    m.write(rec)
                    if progress and (done % 256 == 0 or done == total):
                        progress(done, total, os.path.basename(path))
            finally:
                m.close()
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return out
