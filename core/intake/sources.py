"""Where images come from: folders and files named by a user (checked against the allowed
roots), the image files under them, and what their place says — the source group (for
leak-free splits) and, with folder labels, the class."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from core.errors import InvalidValue, PathNotAllowed
from core.files import IMAGE_SUFFIXES


def _under(p: Path, roots: Sequence[str | Path]) -> bool:
    for r in roots:
        rr = Path(r).expanduser().resolve()
        if p == rr or rr in p.parents:
            return True
    return False


def check_allowed(path: str | Path, roots: Sequence[str | Path]) -> Path:
    """Resolve ``path`` (symlinks too) and refuse it unless it lies under one of ``roots``."""
    p = Path(path).expanduser().resolve()
    if _under(p, roots):
        return p
    raise PathNotAllowed(
        f"Folder {str(path)!r} is outside the allowed roots {[str(r) for r in roots]}. "
        "Hint: set SEMTRIAGE_ROOTS to include it."
    )


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _not_regular(f: Path, roots: Sequence[str | Path] | None) -> tuple[Path | None, str | None]:
    """(the resolved path, None) for a regular file (a symbolic link is followed, and its
    target must be a regular file inside ``roots`` too); else (None, why not). The reason
    names the file as found, never where a link points nor what it holds."""
    try:
        if stat.S_ISLNK(os.lstat(f).st_mode):
            target = f.resolve(strict=True)
            if roots is not None and not _under(target, roots):
                return None, ("a symbolic link to a file outside the allowed roots "
                              "(SEMTRIAGE_ROOTS); not read")
        else:
            target = f.resolve()
        mode = os.stat(target).st_mode
    except (OSError, RuntimeError):  # dangling link, a loop, vanished, no permission
        return None, "cannot be read (missing, a broken symbolic link, or no permission)"
    if not stat.S_ISREG(mode):
        what = next((w for test, w in _KINDS if test(mode)), "not a regular file")
        return None, f"not a regular file ({what}); only image files are read"
    return target, None


def find_images(paths: Iterable[str | Path], roots: Sequence[str | Path] | None = None,
                ) -> tuple[list[Path], int, list[tuple[str, str]]]:
    """(image files, number of non-image files ignored, failures) under ``paths``, recursively,
    in a stable (sorted) order. A file named explicitly that is not an image type is a failure;
    non-image files inside a folder are only counted. Only regular files are taken: a FIFO, a
    device or a socket with an image name is a failure, and so is a symbolic link whose target
    lies outside ``roots`` (when given: the app's ``SEMTRIAGE_ROOTS``), checked file by file."""
    files: list[Path] = []
    ignored = 0
    failed: list[tuple[str, str]] = []

    def take(f: Path) -> None:
        target, why = _not_regular(f, roots)
        if target is None:
            failed.append((str(f), why or "not a regular file"))
        else:
            files.append(target)

    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            for dirpath, dirnames, names in os.walk(p, followlinks=False):
                dirnames.sort()
                for n in sorted(names):
                    f = Path(dirpath) / n
                    if f.suffix.lower() in IMAGE_SUFFIXES and not n.startswith("._"):
                        take(f)
                    else:
                        ignored += 1
        elif p.exists() or p.is_symlink():
            if p.suffix.lower() in IMAGE_SUFFIXES:
                take(p)
            else:
                failed.append((str(p), (f"not an image type ({p.suffix or 'no extension'}); "
                                        f"expected one of {', '.join(IMAGE_SUFFIXES)}")))
        else:
            failed.append((str(p), "no such file or folder"))
    # the same file named twice (or via two paths) is looked at once
    seen: set[Path] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]
    return unique, ignored, failed


def read_path_list(list_file: str | Path) -> list[Path]:
    """The paths of a file list: one file or folder per line (UTF-8); blank lines and lines
    starting with ``#`` are skipped, surrounding spaces dropped, and a relative path is taken
    relative to the list's own folder. Whether each exists is :func:`find_images`' to say."""
    p = Path(list_file).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidValue(f"Cannot read the file list {str(list_file)!r}: {e}. "
                           "Expected a UTF-8 text file, one path per line") from None
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            q = Path(line).expanduser()
            out.append(q if q.is_absolute() else p.parent / q)
    return out


def source_roots(paths: Iterable[str | Path]) -> list[Path]:
    """The folders among ``paths``, resolved, deepest first: what :func:`group_key` measures an
    image's place from."""
    return sorted((Path(p).expanduser().resolve() for p in paths if Path(p).is_dir()),
                  key=lambda r: -len(r.parts))


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
