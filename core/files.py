"""Files: content hashes, what kind of image a file is by its first bytes, names safe on every
file system, and folders installed in one atomic step.

Shared by image reading (``core.images``), uploads and ingest (``core.intake``) and exports
(``core.datasets``): one table of image magic bytes, one SHA-256.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
import unicodedata
from pathlib import Path

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")
# magic bytes -> image kind
IMAGE_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
)
SUFFIX_KIND = {
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
}
assert set(SUFFIX_KIND) == set(IMAGE_SUFFIXES)


_UNSAFE_CHARS = set('/\\:*?"<>|')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
MAX_NAME_BYTES = 200


# ---------------------------------------------------------------- content


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a regular file's bytes, read in chunks, never more than the size the file
    had when opened: a FIFO, a device (``/dev/zero`` behind an image name) or a file that keeps
    growing raises OSError instead of reading forever (opened non-blocking, so a FIFO with no
    writer does not hang the open either). OSError propagates."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe, device or socket)", os.fspath(path))
        h = hashlib.sha256()
        left = st.st_size
        while left > 0:
            chunk = fh.read(min(left, 1 << 20))
            if not chunk:
                break
            h.update(chunk)
            left -= len(chunk)
        if left > 0 or fh.read(1):
            raise OSError(errno.EAGAIN, "the file changed size while it was read", os.fspath(path))
        return h.hexdigest()


HEAD_BYTES = 32
"""How many first bytes :func:`sniff_kind` wants (a BMP is told by its first 18)."""
_BMP_DIB_SIZES = (12, 16, 40, 52, 56, 64, 108, 124)  # BITMAPCOREHEADER … BITMAPV5HEADER


def sniff_kind(head: bytes) -> str | None:
    """The image kind the first bytes announce (TIFF, PNG, JPEG, BMP), or None. A BMP needs
    more than its 2-byte ``BM``: zero reserved bytes and a known DIB header size (so a text
    file starting with "BM" is not an image)."""
    for magic, kind in IMAGE_MAGIC:
        if head.startswith(magic):
            if kind == "BMP" and not _bmp_header(head):
                return None
            return kind
    return None


def _bmp_header(head: bytes) -> bool:
    if len(head) < 18 or head[6:10] != b"\0\0\0\0":
        return False
    return int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES


# ---------------------------------------------------------------- names


def safe_name(name: str, default: str = "file") -> str:
    """One path component, safe on Linux, macOS and Windows: unsafe characters (separators,
    ``:*?"<>|``, control, format/bidi-override characters) become ``_``; leading dots and
    spaces, trailing dots and spaces go; reserved device names get a ``_`` prefix; at most
    200 UTF-8 bytes (the suffix is kept). Unicode letters are kept (NFC-normalised)."""
    s = unicodedata.normalize("NFC", str(name))
    s = "".join(
        "_" if (ch in _UNSAFE_CHARS or unicodedata.category(ch).startswith("C")) else ch for ch in s
    )
    s = s.strip().lstrip(".").strip().rstrip(". ")
    if not s:
        return default
    if _RESERVED.match(s):
        s = "_" + s
    if len(s.encode("utf-8")) > MAX_NAME_BYTES:
        stem, suffix = os.path.splitext(s)
        if len(suffix.encode("utf-8")) > 16:
            stem, suffix = s, ""
        budget = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
        stem = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore").rstrip(". ")
        s = (stem or default) + suffix
    return s


def safe_file_name(name: str, default_stem: str = "upload") -> str:
    """:func:`safe_name` that keeps the file's suffix (``...png`` → ``upload.png``, not ``png``)."""
    out = safe_name(name, default=default_stem)
    suffix = Path(name).suffix
    if suffix and Path(out).suffix.lower() != suffix.lower():
        stem = safe_name(name[: -len(suffix)], default=default_stem)
        out = safe_name(stem + "." + safe_name(suffix[1:], default="_"), default=default_stem)
    return out


# ---------------------------------------------------------------- atomic folders


def exchange(a: Path, b: Path) -> bool:
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


def lock(path: Path) -> int | None:
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


def unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def install_dir(tmp: Path, out: Path) -> None:
    """Rename the finished folder ``tmp`` to ``out`` in one step, replacing what ``out`` held
    (swapped atomically where the platform can, else two renames); ``out`` always holds the
    old folder or the new one."""
    if out.exists() and exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the previous folder
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
