"""Datasets: leak-free groups of near-copies and held-out splits, train / validation / test
splits, dataset exports (CSV / JSONL manifests, ImageFolder, Hugging Face imagefolder) and the
predictions report.
"""

from core.datasets.copies import COPY_CHUNK
from core.datasets.exports import (
    EXPORT_FORMATS,
    MANIFEST_COLUMNS,
    MARKER,
    STALE_AFTER_S,
    ZIP_COMMENT,
    ExportReport,
    ExtraWriter,
    export_counts,
    export_labels,
    export_maker,
    may_replace_export,
)
from core.datasets.groups import (
    CHUNK,
    MAX_DISTANCE_LIMIT,
    dhash,
    group_holdout,
    group_report,
    hamming,
    image_groups,
    image_hashes,
    near_duplicate_pairs,
    pattern_key,
)
from core.datasets.manifest import CHUNK_ROWS
from core.datasets.report import predictions_report
from core.datasets.splits import SPLIT_NAMES, assign_splits, split_targets

__all__ = [
    "CHUNK",
    "CHUNK_ROWS",
    "COPY_CHUNK",
    "EXPORT_FORMATS",
    "MANIFEST_COLUMNS",
    "MARKER",
    "MAX_DISTANCE_LIMIT",
    "SPLIT_NAMES",
    "STALE_AFTER_S",
    "ZIP_COMMENT",
    "ExportReport",
    "ExtraWriter",
    "assign_splits",
    "dhash",
    "export_counts",
    "export_labels",
    "export_maker",
    "group_holdout",
    "group_report",
    "hamming",
    "image_groups",
    "image_hashes",
    "may_replace_export",
    "near_duplicate_pairs",
    "pattern_key",
    "predictions_report",
    "split_targets",
]
