"""Work in threads with bounded memory: results in input order, at most ``depth`` in flight
(decoding in workers while the caller runs the model and writes)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


def _timer(timings: dict[str, float], key: str, t0: float) -> float:
    t = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + (t - t0)
    return t


def pipelined(items: Iterable[_T], fn: Callable[[_T], _R], workers: int,
              depth: int) -> Iterator[tuple[_T, _R | BaseException]]:
    """``fn`` over ``items`` in ``workers`` threads, results in input order, at most ``depth``
    in flight (memory stays bounded for a million files). Exceptions are yielded, not raised."""
    if workers <= 1:
        for it in items:
            try:
                yield it, fn(it)
            except Exception as e:  # noqa: BLE001 — handed back to the caller per item
                yield it, e
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="semtriage-load") as ex:
        q: deque[tuple[_T, Future[_R]]] = deque()
        for it in items:
            q.append((it, ex.submit(fn, it)))
            if len(q) >= depth:
                yield _result(*q.popleft())  # type: ignore[arg-type]
        while q:
            yield _result(*q.popleft())  # type: ignore[arg-type]


def _result(it: _T, fut: Future[_R]) -> tuple[_T, _R | BaseException]:
    try:
        return it, fut.result()
    except Exception as e:  # noqa: BLE001
        return it, e
