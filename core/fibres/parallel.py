"""Two cores for one image: scipy.ndimage and scikit-image's skeletonize let go of the GIL, so
independent steps of one measurement (the two derivatives, the three tensor window means, the
skeleton beside the distance transform) run side by side in one shared pool of two threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

WORKERS = 2
_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="fibres")
        return _POOL


def side_by_side(fn: Callable[[_T], _R], items: Iterable[_T]) -> list[_R]:
    """``[fn(x) for x in items]``, the calls spread over the pool (the first in this thread)."""
    xs = list(items)
    if len(xs) < 2:
        return [fn(x) for x in xs]
    later = [_pool().submit(fn, x) for x in xs[1:]]
    first = fn(xs[0])
    return [first, *(f.result() for f in later)]


def both(f: Callable[[], Any], g: Callable[[], Any]) -> tuple[Any, Any]:
    """``(f(), g())`` with ``g`` in the pool while ``f`` runs here."""
    fut = _pool().submit(g)
    return f(), fut.result()
