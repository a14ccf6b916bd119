"""Long work in a background thread: progress, cancel, result — one job per key at a time.

The app starts a retraining (or a promotion) here and returns at once; every page rerun, in any
browser session, finds the same job by its key and polls its progress. The registry lives in
this process (like ``st.cache_resource``), so a page reload neither starts a second run nor
loses the one running.

    job = start_job("retrain:/data/semtriage.db", "retrain", lambda progress, cancel: work())
    job.fraction, job.message, job.status        # polled by the page
    job.cancel()                                 # work() sees cancel.is_set() and stops

``work(progress, cancel)`` gets a ``progress(fraction, message)`` callback and a
``threading.Event``; it must open its own database connection (one connection per thread).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import Cancelled, SemTriageError
from core.progress import Progress

_LOG = logging.getLogger("semtriage.jobs")

Work = Callable[[Progress, threading.Event], Any]
STATES = ("running", "done", "failed", "cancelled")


@dataclass
class Job:
    key: str
    kind: str
    started: float = field(default_factory=time.time)
    fraction: float = 0.0
    message: str = "starting…"
    status: str = "running"  # one of STATES
    result: Any = None
    error: str | None = None
    exception: Exception | None = None  # what ended a failed job (its traceback is in the log)
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"

    def cancel(self) -> None:
        self.cancel_event.set()
        if self.running:
            self.message = "cancelling…"

    def progress(self, fraction: float, message: str) -> None:
        """The callback handed to the work; raises :class:`Cancelled` once cancelled, so any
        long loop that reports progress stops at its next report."""
        self.fraction = min(1.0, max(0.0, float(fraction)))
        self.message = message
        if self.cancel_event.is_set():
            raise Cancelled("Cancelled by the user")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (tests, CLI); True if it did within ``timeout``."""
        if self.thread is not None:
            self.thread.join(timeout)
        return not self.running


_jobs: dict[str, Job] = {}
_lock = threading.Lock()


def get_job(key: str) -> Job | None:
    """The job last started under ``key`` (running or finished), or None."""
    with _lock:
        return _jobs.get(key)


def forget_job(key: str) -> None:
    """Drop a finished job (the page's "dismiss"); a running one stays."""
    with _lock:
        job = _jobs.get(key)
        if job is not None and not job.running:
            del _jobs[key]


def start_job(key: str, kind: str, work: Work) -> Job:
    """Start ``work`` in a daemon thread under ``key``. When a job with that key is still
    running, return it instead of starting another."""
    with _lock:
        held = _jobs.get(key)
        if held is not None and held.running:
            return held
        job = Job(key=key, kind=kind)
        _jobs[key] = job

    def run() -> None:
        try:
            job.result = work(job.progress, job.cancel_event)
        except Cancelled:
            job.status, job.message = "cancelled", "cancelled; nothing was registered"
        except SemTriageError as e:
            job.status, job.error = ("cancelled" if job.cancel_event.is_set() else "failed"), str(e)
            job.exception = e
        except Exception as e:  # noqa: BLE001 - a crash must end the job, not hang the page
            _LOG.error("job %s (%s) failed", key, kind, exc_info=e)
            job.status, job.error, job.exception = "failed", f"{type(e).__name__}: {e}", e
        else:
            job.status, job.fraction = "done", 1.0
        finally:
            job.finished = time.time()

    job.thread = threading.Thread(target=run, name=f"semtriage-{kind}", daemon=True)
    job.thread.start()
    return job
