"""The `semtriage` command line (click), a thin layer over core: :data:`cli` and its commands,
one module per group of commands (:mod:`core.cli.root` adds them).
"""

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
from core.cli.particles import (
    particles,
    particles_detect,
    particles_detector,
    particles_detector_add,
    particles_detector_compare,
    particles_detector_list,
    particles_detector_promote,
    particles_export,
    particles_import_masks,
    particles_pixel_size,
    particles_queue,
    particles_stats,
    particles_train,
    particles_verify,
)
from core.cli.reviewing import label, queue, thresholds
from core.cli.root import cli, main
from core.cli.training import card, card_summary, synth, train

__all__ = [
    "Bar",
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
    "particles",
    "particles_detect",
    "particles_detector",
    "particles_detector_add",
    "particles_detector_compare",
    "particles_detector_list",
    "particles_detector_promote",
    "particles_export",
    "particles_import_masks",
    "particles_pixel_size",
    "particles_queue",
    "particles_stats",
    "particles_train",
    "particles_verify",
    "predict",
    "queue",
    "stats",
    "synth",
    "thresholds",
    "train",
]
