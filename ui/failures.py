"""The last line of the app's error handling: an exception no page caught is said in words —
what failed and why (``core.errors.explain``), never a traceback, server paths only for
administrators — and logged whole on the server. app.py runs every page inside
:func:`failure_boundary`; widget callbacks and fragments, which Streamlit runs outside the
page's run, are wrapped by :func:`guarded`. ``client.showErrorDetails = "type"``
(.streamlit/config.toml) stays the net under both: anything else shows its type only."""


from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any, ParamSpec

import streamlit as st

from core.errors import SemTriageError, explain
from core.jobs import Job
from ui.auth import is_admin
from ui.common import esc, show_error

LOG = logging.getLogger("semtriage.app")
FAILURE_ICON = ":material/report:"  # tells these apart from the errors pages show themselves
P = ParamSpec("P")


def failure_text(e: Exception, what: str) -> str:
    """``e`` in words for this user (Markdown-inert): server paths only for administrators."""
    try:
        admin = is_admin()
    except Exception:  # noqa: BLE001 - who it is cannot be told: say the least
        admin = False
    return esc(explain(e, what, paths=admin))


def show_failure(e: Exception, what: str, where: Any = st, *, logged: bool = False) -> None:
    """``e`` as one plain message on the page; its traceback to the server's log (unless
    ``logged`` already, e.g. by the background job it ended)."""
    if not logged:
        LOG.error("%s failed", what, exc_info=e)
    where.error(failure_text(e, what), icon=FAILURE_ICON)


@contextlib.contextmanager
def failure_boundary(what: str) -> Iterator[None]:
    """What raises inside ends in :func:`show_failure` instead of Streamlit's exception box
    (st.stop, st.rerun and page switches are not errors: they pass)."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - the last line: said in words, logged whole
        show_failure(e, what)


def guarded(what: str) -> Callable[[Callable[P, None]], Callable[P, None]]:
    """:func:`failure_boundary` around a widget callback or a fragment."""
    def wrap(fn: Callable[P, None]) -> Callable[P, None]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> None:
            with failure_boundary(what):
                fn(*args, **kwargs)
        return run
    return wrap


def job_failure_text(job: Job, what: str) -> str:
    """How a failed background job ended, for this user: a named error as it is, anything else
    in words (:func:`failure_text`; the job logged its traceback)."""
    e = job.exception
    if e is None or isinstance(e, SemTriageError):
        return esc(job.error or f"{what} failed")
    return failure_text(e, what)


def show_job_failure(job: Job, what: str) -> None:
    e = job.exception
    if e is None or isinstance(e, SemTriageError):
        show_error(SemTriageError(job.error or f"{what} failed"))
    else:
        show_failure(e, what, logged=True)
