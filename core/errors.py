"""Named errors raised by the engine. The CLI and the pages turn them into messages.

Every message says what failed, shows the bad value, and where it helps, a hint.
"""

from __future__ import annotations

import re
import sqlite3


class SemTriageError(Exception):
    """Base class for every error the engine raises on purpose."""


class InvalidValue(SemTriageError, ValueError):
    """Bad input, refused before anything is written: a reviewer or class name, a queue or
    review order, a threshold outside [0, 1], a regular expression, an option out of range."""


class SettingsError(SemTriageError, ValueError):
    """A ``SEMTRIAGE_*`` environment variable holds a value the setting cannot take."""


class ImageReadError(SemTriageError):
    """An image file could not be decoded (corrupt, truncated, empty, not an image, too big)."""

    def __init__(self, path: str, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"Cannot read {self.path!r}: {reason}")


class MeasurementError(SemTriageError):
    """An image cannot be measured (too small, a blank scan, a model that does not fit): the
    reason in words, naming the image; a batch records it and goes on."""


class MetadataError(SemTriageError):
    """SEM metadata is present but malformed (the image itself may still be usable)."""


class ModelError(SemTriageError):
    """An ONNX model does not fit: unreadable, wrong input rank/shape, class names missing or
    not matching the output size, unknown provider."""


class ProviderError(ModelError):
    """A requested ONNX Runtime execution provider is not available or silently fell back."""


class StoreError(SemTriageError):
    """The database refused an operation: locked too long, not a database, a state that does
    not allow it (the active model cannot be discarded, nothing held out to compare on)."""


class NotFound(StoreError):
    """No row with that id / version / path."""


class ClaimConflict(StoreError):
    """Another reviewer holds an unexpired claim on this image."""


class PathNotAllowed(SemTriageError):
    """A server-side folder outside the configured roots, or an unsafe path in an upload."""


class UploadRejected(SemTriageError):
    """An upload is too big, not an image, or a zip entry is unsafe (zip-slip, symlink)."""


class ExportError(SemTriageError):
    """An export could not be written."""


class Forbidden(SemTriageError):
    """The signed-in user may not do this: an administrators-only action (core/access.py)."""


class TrainingError(SemTriageError):
    """Retraining cannot start or finish: too few labels, a class seen in only one group, ..."""


class Cancelled(SemTriageError):
    """Long work stopped because the user cancelled it; nothing half-done was kept."""


class DependencyMissing(SemTriageError):
    """A feature needs an optional extra that is not installed (e.g. Ray for the ``ray``
    archive engine: ``pip install 'semtriage[ray]'``)."""


# ---------------------------------------------------------------- unexpected errors, in words

_ABS_PATH = re.compile(
    r"(?<![\w.~:/-])(?:[A-Za-z]:[\\/]|/)(?:[^\s'\"/\\:,;()\[\]]+[\\/])+([^\s'\"/\\:,;()\[\]]*)"
)


def hide_paths(text: str) -> str:
    """``text`` with every absolute path (``/srv/x/app.db``, ``C:\\data\\a.tif``) cut to its
    last part (``…/app.db``): where the server keeps its files is for those who run it."""
    return _ABS_PATH.sub(lambda m: "…/" + m.group(1), text)


def explain(e: BaseException, what: str, *, paths: bool = True) -> str:
    """One plain sentence for an error nobody caught: ``what`` failed, and why. A named error
    (:class:`SemTriageError`) is its own message; anything else is said in words with its
    reason (a damaged database, a file the server cannot read, memory) and a pointer to the
    server's log, never a traceback. ``paths=False`` cuts absolute server paths out of it."""
    reason = str(e).strip()
    if isinstance(e, SemTriageError):
        text = f"{what} failed: {reason}"
    else:
        if isinstance(e, sqlite3.DatabaseError):
            why = (f"the database could not be read or written ({reason or type(e).__name__}). "
                   "An administrator can check it: `semtriage backup` runs SQLite's integrity "
                   "check (docs/DEPLOY.md §7)")
        elif isinstance(e, MemoryError):
            why = "the server ran out of memory"
        elif isinstance(e, OSError):
            name = f" ({e.filename})" if e.filename else ""
            why = f"a file could not be read or written: {e.strerror or reason}{name}"
        else:
            why = f"an unexpected {type(e).__name__}" + (f": {reason}" if reason else "")
        text = f"{what} failed: {why}. The details are in the server's log."
    return text if paths else hide_paths(text)
