"""Safe intake of browser uploads: plain image files and zip archives of them.

The app may be served on a lab network, so every upload is treated as hostile:

* a file is kept only when its suffix **and** its first bytes say it is a TIFF (incl. BigTIFF),
  PNG, JPEG or BMP, and the suffix and the content agree;
* names are sanitised (:func:`core.files.safe_name`): no path separators, no ``..``, no control or
  bidi-override characters, no leading dot, no Windows-reserved names; unicode is kept;
  an existing name gets a ``_1``, ``_2``… suffix (never overwritten);
* one upload larger than ``max_bytes`` is refused before anything is written;
* a zip is extracted entry by entry, keeping its folder structure (each component sanitised,
  so ``--labels-from-folders`` works on an uploaded archive). Refused per entry: absolute
  paths, drive letters, backslashes, ``..`` (zip-slip), symlinks and other non-regular
  entries, encrypted entries, non-image types, entries over the size budget. Refused as a
  whole: an archive that is not a readable zip, has more than ``max_files`` entries, or
  declares more than the upload's byte budget of images (zip bombs: the bytes are counted
  again while extracting, since declared sizes can lie). An entry that expands more than
  ``max_ratio`` times (a 1 MB zip writing 1 GiB) is refused. ``__MACOSX/`` folders and
  ``.DS_Store`` / ``Thumbs.db`` (OS litter) are passed over silently;
* one call (one upload, however many archives) writes at most ``max_total_bytes``, and never
  leaves less than ``reserve_bytes`` free on the disk: uploads sit beside the database, and a
  full disk would block every label write. Folders left empty by refusals are removed;
* every written path is checked, resolved, to lie inside ``dest_dir``.

Bad content never raises: each problem comes back as ``(name, reason)``. Only misuse (a
``dest_dir`` that is not a folder, a non-positive limit) raises :class:`UploadRejected`.
"""


from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import IO, BinaryIO

import tifffile
from PIL import BmpImagePlugin, ImageFile, JpegImagePlugin, PngImagePlugin

from core.errors import UploadRejected
from core.files import (
    HEAD_BYTES,
    IMAGE_SUFFIXES,
    SUFFIX_KIND,
    safe_file_name,
    safe_name,
    sniff_kind,
)

CHUNK = 1 << 20
ZIP_SUFFIX = ".zip"
MAX_RATIO = 50
"""Largest expansion of one zip entry (uncompressed / compressed size). SEM images barely
compress (noise; TIFFs often carry their own LZW / zlib): real archives stay under 5."""
RESERVE_BYTES = 1 << 30
"""Free disk space an upload must leave on the upload folder's disk (for the database)."""


_IGNORED_NAMES = {".ds_store", "thumbs.db", "desktop.ini"}


_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_image(name: str, head: bytes) -> str | None:
    """None when ``name``'s suffix and ``head`` agree on a supported image type, else why not."""
    suffix = Path(name).suffix.lower()
    want = SUFFIX_KIND.get(suffix)
    if want is None:
        return (
            f"not an image type ({suffix or 'no extension'}); expected one of "
            f"{', '.join(IMAGE_SUFFIXES)} or {ZIP_SUFFIX}"
        )
    got = sniff_kind(head)
    if got is None:
        return f"content is not a {want} image (no {want} signature at its start)"
    if got != want:
        return f"content is a {got} image but the name says {suffix}"
    return None


def _image_pixels(path: Path) -> int | None:
    """Width x height from the header (no decoding), or None when it cannot be told."""
    try:
        with open(path, "rb") as fh:
            kind = sniff_kind(fh.read(HEAD_BYTES))
        if kind == "TIFF":
            with tifffile.TiffFile(path) as tf:
                shape = tf.pages[0].shape
                return int(shape[0]) * int(shape[1])
        # the plugin class reads the header only and applies no Pillow-wide pixel limit:
        # ours (SEMTRIAGE_MAX_PIXELS) is the one limit, for PNG as for TIFF (core.images)
        plugins: dict[str, type[ImageFile.ImageFile]] = {
            "PNG": PngImagePlugin.PngImageFile, "JPEG": JpegImagePlugin.JpegImageFile,
            "BMP": BmpImagePlugin.BmpImageFile}
        plugin = plugins.get(kind or "")
        if plugin is None:
            return None
        with open(path, "rb") as fh:
            im = plugin(fh)
            return int(im.width) * int(im.height)
    except Exception as e:  # noqa: BLE001 — unreadable headers are judged at ingest
        if type(e).__name__ == "DecompressionBombError":
            return 1 << 62
        return None


class _Budget:
    def __init__(self, max_files: int, max_bytes: int, reserve: int):
        self.files_left = max_files
        self.bytes_left = max_bytes
        self.reserve = reserve

    def room(self, root: Path, n: int) -> str | None:
        """None when ``n`` more bytes fit this upload's budget and the disk's headroom."""
        if n > self.bytes_left:
            return f"over this upload's total of {_mb(self.bytes_left)} still allowed"
        free = shutil.disk_usage(root).free
        if free - n < self.reserve:
            return (f"needs {_mb(n)} but only {_mb(free)} is free on the server, and "
                    f"{_mb(self.reserve)} is kept free for the database")
        return None


def _unique_create(folder: Path, name: str) -> tuple[Path, BinaryIO]:
    """Create ``folder/name`` exclusively; ``stem_1.ext``, ``stem_2.ext``… when taken."""
    stem, suffix = os.path.splitext(name)
    for i in range(100000):
        candidate = folder / (name if i == 0 else f"{stem}_{i}{suffix}")
        try:
            return candidate, open(candidate, "xb")
        except FileExistsError:
            continue
    raise UploadRejected(f"Too many files named {name!r} in {str(folder)!r}")


def _inside(root: Path, path: Path) -> bool:
    rp = path.resolve()
    return rp == root or root in rp.parents


def _copy_limited(src: IO[bytes], dst: IO[bytes], limit: int) -> int:
    """Copy at most ``limit`` bytes; returns the count, or -1 when there was more."""
    n = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return n
        n += len(chunk)
        if n > limit:
            return -1
        dst.write(chunk)


def _as_seekable(data: bytes | BinaryIO, max_bytes: int) -> tuple[BinaryIO | None, int]:
    """A seekable stream over the upload and its size; (None, size) when over ``max_bytes``."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        b = bytes(data)
        return (None if len(b) > max_bytes else io.BytesIO(b)), len(b)
    fh = data
    try:
        seekable = fh.seekable()
    except (AttributeError, OSError, ValueError):
        seekable = False
    if seekable:
        start = fh.tell()
        size = fh.seek(0, io.SEEK_END) - start
        fh.seek(start)
        if size > max_bytes:
            return None, size
        return fh, size
    spool = tempfile.SpooledTemporaryFile(max_size=8 * CHUNK)  # noqa: SIM115 — returned
    n = _copy_limited(fh, spool, max_bytes)  # type: ignore[arg-type]
    if n < 0:
        spool.close()
        return None, max_bytes + 1
    spool.seek(0)
    return spool, n  # type: ignore[return-value]


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 100_000 else f"{n:,} bytes"


def save_uploads(
    files: Iterable[tuple[str, bytes | BinaryIO]],
    dest_dir: str | Path,
    *,
    max_bytes: int,
    max_files: int = 10000,
    max_pixels: int | None = None,
    max_total_bytes: int | None = None,
    max_ratio: float = MAX_RATIO,
    reserve_bytes: int = RESERVE_BYTES,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Save uploaded ``(name, content)`` pairs under ``dest_dir``; returns (saved image paths,
    rejected ``(name, reason)``). Zip archives are extracted safely (see the module doc).

    ``max_bytes``: largest single upload (file or zip). ``max_files``: most images saved by this
    call and most entries in one zip. ``max_pixels``: images whose header says more pixels
    are refused. ``max_total_bytes``: most bytes this call writes, all archives together
    (default 4 x ``max_bytes``). ``max_ratio``: largest expansion of one zip entry.
    ``reserve_bytes``: free space left on the disk whatever happens.
    """
    if max_bytes is None or int(max_bytes) <= 0:
        raise UploadRejected(f"max_bytes must be a positive number of bytes, got {max_bytes!r}")
    if int(max_files) <= 0:
        raise UploadRejected(f"max_files must be positive, got {max_files!r}")
    dest = Path(dest_dir)
    if dest.exists() and not dest.is_dir():
        raise UploadRejected(f"Upload folder {str(dest)!r} exists and is not a folder")
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UploadRejected(
            f"Cannot create the upload folder {str(dest)!r}: {e.strerror or e}"
        ) from None
    root = dest.resolve()
    total_limit = int(max_total_bytes) if max_total_bytes else 4 * int(max_bytes)
    saved: list[Path] = []
    rejected: list[tuple[str, str]] = []
    budget = _Budget(int(max_files), total_limit, int(reserve_bytes))

    for raw_name, data in files:
        shown = str(raw_name)
        # browsers may send "C:\fakepath\x.tif" or a relative path: keep the last component
        base = re.split(r"[\\/]", shown)[-1]
        stream, size = _as_seekable(data, int(max_bytes))
        if stream is None:
            rejected.append(
                (shown, f"{_mb(size)} is over the upload limit of {_mb(int(max_bytes))}")
            )
            continue
        try:
            if base.lower().endswith(ZIP_SUFFIX):
                s, r = _extract_zip(
                    shown, stream, root, budget, max_pixels, float(max_ratio), int(max_files)
                )
                saved += s
                rejected += r
            else:
                path_or_why = _save_plain(base, stream, root, budget, int(max_bytes), max_pixels)
                if isinstance(path_or_why, Path):
                    saved.append(path_or_why)
                else:
                    rejected.append((shown, path_or_why))
        finally:
            if stream is not data:  # ours (a copy or a spool), not the caller's file
                stream.close()
    remove_empty_folders(root, keep_root=not created)
    return saved, rejected


def remove_empty_folders(root: Path, *, keep_root: bool = False) -> None:
    """Remove the folders under ``root`` (and ``root`` unless ``keep_root``) that hold
    nothing, deepest first."""
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(t[0])):
        if keep_root and Path(dirpath) == root:
            continue
        with contextlib.suppress(OSError):  # only an empty folder goes
            os.rmdir(dirpath)


def _save_plain(
    base: str, stream: BinaryIO, root: Path, budget: _Budget, max_bytes: int, max_pixels: int | None
) -> Path | str:
    """Save one plain image upload; its path, or the reason it was refused."""
    if budget.files_left <= 0:
        return "over the limit of files per upload"
    head = stream.read(HEAD_BYTES)
    stream.seek(-len(head), io.SEEK_CUR)
    why = _check_image(base, head)
    if why:
        return why
    start = stream.tell()
    size = stream.seek(0, io.SEEK_END) - start
    stream.seek(start)
    why = budget.room(root, size)
    if why:
        return why
    try:
        path, out = _unique_create(root, safe_file_name(base))
    except OSError as e:
        return f"cannot be written: {e.strerror or e}"
    try:
        with out:
            n = _copy_limited(stream, out, max_bytes)
    except OSError as e:
        path.unlink(missing_ok=True)
        return f"cannot be written: {e.strerror or e}"
    if n < 0:
        path.unlink(missing_ok=True)
        return f"over the upload limit of {_mb(max_bytes)}"
    why = _pixels_problem(path, max_pixels)
    if why:
        path.unlink(missing_ok=True)
        return why
    budget.files_left -= 1
    budget.bytes_left -= n
    return path


def _pixels_problem(path: Path, max_pixels: int | None) -> str | None:
    if not max_pixels:
        return None
    px = _image_pixels(path)
    if px is not None and px > max_pixels:
        return (
            f"{px:,} pixels is over the limit of {max_pixels:,}"
            if px < (1 << 62)
            else ("image header announces a decompression bomb")
        )
    return None


def _entry_parts(name: str) -> list[str] | str:
    """The sanitised path components of a zip entry name, or the reason it is refused."""
    if "\x00" in name:
        return "refused: NUL character in the entry name"
    if "\\" in name:
        return "refused: backslash in the entry path (zip-slip guard)"
    if name.startswith("/"):
        return "refused: absolute path in the archive (zip-slip guard)"
    if _DRIVE.match(name):
        return "refused: drive letter in the entry path (zip-slip guard)"
    raw = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in raw):
        return "refused: '..' in the entry path (zip-slip guard)"
    if not raw:
        return "refused: empty entry name"
    parts = [safe_name(p, default="_") for p in raw]
    parts[-1] = safe_file_name(raw[-1])
    return parts


def _extract_zip(
    shown: str,
    stream: BinaryIO,
    root: Path,
    budget: _Budget,
    max_pixels: int | None,
    max_ratio: float,
    max_entries: int,
) -> tuple[list[Path], list[tuple[str, str]]]:
    saved: list[Path] = []
    rejected: list[tuple[str, str]] = []
    try:
        zf = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, ValueError,
            EOFError) as e:
        return [], [(shown, f"not a readable zip archive: {e}")]
    with zf:
        try:
            infos = zf.infolist()
        except Exception as e:  # noqa: BLE001
            return [], [(shown, f"not a readable zip archive: {e}")]
        if len(infos) > max_entries:
            return [], [
                (shown, f"{len(infos):,} entries in the archive; the limit is {max_entries:,}")
            ]
        declared = sum(
            i.file_size
            for i in infos
            if not i.is_dir() and Path(i.filename).suffix.lower() in SUFFIX_KIND
        )
        if declared > budget.bytes_left:
            msg = (
                f"declares {_mb(declared)} of images uncompressed; this upload may write "
                f"{_mb(budget.bytes_left)} more (zip-bomb guard)"
            )
            return [], [(shown, msg)]
        why = budget.room(root, declared)
        if why:
            return [], [(shown, why)]
        for info in infos:
            label = f"{shown}:{info.filename}"
            if info.is_dir():
                continue
            first = info.filename.split("/")[0]
            if first == "__MACOSX" or info.filename.rsplit("/", 1)[-1].lower() in _IGNORED_NAMES:
                continue
            parts = _entry_parts(info.filename)
            if isinstance(parts, str):
                rejected.append((label, parts))
                continue
            mode = (info.external_attr >> 16) & 0xFFFF
            if stat.S_ISLNK(mode):
                rejected.append((label, "refused: symbolic link in the archive"))
                continue
            if mode and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                rejected.append((label, "refused: not a regular file (device, pipe or socket)"))
                continue
            if info.flag_bits & 0x1:
                rejected.append((label, "refused: encrypted entry"))
                continue
            if Path(parts[-1]).suffix.lower() not in SUFFIX_KIND:
                rejected.append((label, _check_image(parts[-1], b"") or "not an image type"))
                continue
            if budget.files_left <= 0:
                rejected.append((label, "over the limit of files per upload"))
                continue
            if info.file_size > max_ratio * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                rejected.append((label, (
                    f"refused: expands {ratio:,.0f} times ({_mb(info.compress_size)} to "
                    f"{_mb(info.file_size)}); the limit is {max_ratio:g} times (zip-bomb guard)")))
                continue
            if info.file_size > budget.bytes_left:
                rejected.append((label, f"over this upload's size budget ({_mb(budget.bytes_left)} left)"))
                continue
            folder = root.joinpath(*parts[:-1])
            if not _inside(root, folder):
                rejected.append((label, "refused: would land outside the upload folder"))
                continue
            try:
                with zf.open(info) as src:
                    head = src.read(HEAD_BYTES)
                    why = _check_image(parts[-1], head)
                    if why:
                        rejected.append((label, why))
                        continue
                    folder.mkdir(parents=True, exist_ok=True)
                    if not _inside(root, folder):
                        rejected.append((label, "refused: would land outside the upload folder"))
                        continue
                    path, out = _unique_create(folder, parts[-1])
                    if not _inside(root, path):  # cannot happen: every component is sanitised
                        out.close()
                        path.unlink(missing_ok=True)
                        rejected.append((label, "refused: would land outside the upload folder"))
                        continue
                    limit = min(info.file_size, budget.bytes_left)
                    try:
                        with out:
                            out.write(head)
                            n = _copy_limited(src, out, limit - len(head))
                    except BaseException:
                        path.unlink(missing_ok=True)
                        raise
            except (
                zipfile.BadZipFile,
                zlib.error,
                EOFError,
                OSError,
                NotImplementedError,
                RuntimeError,
                ValueError,
            ) as e:
                rejected.append((label, f"cannot be extracted (corrupt or unsupported entry): {e}"))
                continue
            if n < 0:
                path.unlink(missing_ok=True)
                rejected.append((label, "refused: more data than the archive declares (zip bomb)"))
                continue
            budget.bytes_left -= n + len(head)
            why = _pixels_problem(path, max_pixels)
            if why:
                path.unlink(missing_ok=True)
                rejected.append((label, why))
                continue
            budget.files_left -= 1
            saved.append(path)
    return saved, rejected
