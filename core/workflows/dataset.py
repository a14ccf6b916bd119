"""A dataset export with what other domains know about its images: the labels
(core.datasets) and, on request, the particles of the exported images (core.particles)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlite_utils import Database

from core.datasets import ExportReport, ExtraWriter, export_labels
from core.particles import export_for_dataset


def export_dataset(db: Database, out_dir: str | Path, *, particles: bool = False,
                   **options: Any) -> ExportReport:
    """:func:`core.datasets.export_labels` with ``options``; ``particles`` also writes, beside
    the manifest, ``particles.csv``, ``particles-images.csv`` and ``particles-coco.json`` of the
    exported images that have particles (listed in the report and the export's marker)."""
    extras: dict[str, ExtraWriter] = {"particles": export_for_dataset} if particles else {}
    return export_labels(db, out_dir, extras=extras or None, **options)
