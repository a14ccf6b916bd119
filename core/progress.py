"""The one progress callback of the engine: ``progress(fraction, message)``.

``fraction`` is the share of the work done, in [0, 1]; ``message`` says in words what is
happening (``"412/1,000 · img_0042.tif"``). Long work takes ``progress: Progress | None``;
a callback may raise (e.g. :class:`core.errors.Cancelled`) to stop the work at that point.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float, str], None]


def silent(fraction: float, message: str) -> None:
    """A progress callback that reports nothing."""


def counted(progress: Progress | None, done: int, total: int, what: str) -> None:
    """Report ``done`` of ``total`` items (``what``: the item just finished, e.g. a file name)
    as a fraction and a ``"done/total · what"`` message."""
    if progress is not None:
        progress(done / total if total > 0 else 1.0, f"{done:,}/{total:,} · {what}")
