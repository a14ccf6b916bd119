"""The source files of an export: copied byte for byte and hashed while copied, or checked
the way ingest checks them; a file that vanished or changed since ingest is tried at its other
known paths (duplicates in ``files``), otherwise skipped with the reason."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from sqlite_utils import Database

from core.errors import ExportError
from core.files import sha256_file

COPY_CHUNK = 1 << 20


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
                got = sha256_file(cand)
            except OSError as e:
                first_reason = first_reason or _why(e)
                continue
            if got == sha:
                return cand, ""
            first_reason = first_reason or _changed(got, sha)
        return None, first_reason
