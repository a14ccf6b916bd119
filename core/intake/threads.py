"""Work in threads with bounded memory: results in input order, at most ``depth`` in flight
(decoding in workers while the caller runs the model and writes)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


def _timer(timings: dict[str, float], key: str, t0: float) -> float:
    t = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + (t - t0)
    return t


class ByteBudget:
    """Bytes of decoded images held at once, across worker threads: :meth:`hold` waits until
    ``n`` more fit under ``limit``. A request of ``limit`` or more waits until nothing else is
    held and then holds everything: a huge image is decoded alone, never refused."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, int(limit))
        self.held = 0
        self.peak = 0  # the most held at once (for tests and benches)
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, n: int) -> Iterator[None]:
        n = min(max(0, int(n)), self.limit)
        with self._cond:
            while self.held and self.held + n > self.limit:
                self._cond.wait()
            self.held += n
            self.peak = max(self.peak, self.held)
        try:
            yield
        finally:
            with self._cond:
                self.held -= n
                self._cond.notify_all()


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
    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="semtriage-load")
    q: deque[tuple[_T, Future[_R]]] = deque()
    try:
        for it in items:
            q.append((it, ex.submit(fn, it)))
            if len(q) >= depth:
                yield _result(*q.popleft())  # type: ignore[arg-type]
        while q:
            yield _result(*q.popleft())  # type: ignore[arg-type]
    finally:
        # the caller stopped early (cancelled, an error, a signal): what has not started never
        # does; what runs finishes its one file (every read is bounded by the file's size)
        ex.shutdown(wait=True, cancel_futures=True)


def _result(it: _T, fut: Future[_R]) -> tuple[_T, _R | BaseException]:
    try:
        return it, fut.result()
    except Exception as e:  # noqa: BLE001
        return it, e
