"""The `semtriage` command line (click), a thin layer over core: :data:`cli` and its commands,
one module per group of commands (:mod:`core.cli.root` adds them).
"""

from core.cli.archive import archive_merge, archive_run, archive_status, predict_archive
from core.cli.collection import backup, demo, export, ingest, init, predict, stats
from core.cli.common import Bar, db_option, emit, friendly, json_option, open_db
from core.cli.label_issues import issues, issues_find, issues_list
from core.cli.models import (
    model,
    model_activate,
    model_add,
    model_compare,
    model_discard,
    model_list,
    model_promote,
)
from core.cli.reviewing import label, queue, thresholds
from core.cli.root import cli, main
from core.cli.training import card, card_summary, synth, train

__all__ = [
    "Bar",
    "archive_merge",
    "archive_run",
    "archive_status",
    "backup",
    "card",
    "card_summary",
    "cli",
    "db_option",
    "demo",
    "emit",
    "export",
    "friendly",
    "ingest",
    "init",
    "issues",
    "issues_find",
    "issues_list",
    "json_option",
    "label",
    "main",
    "model",
    "model_activate",
    "model_add",
    "model_compare",
    "model_discard",
    "model_list",
    "model_promote",
    "open_db",
    "predict",
    "predict_archive",
    "queue",
    "stats",
    "synth",
    "thresholds",
    "train",
]
