"""Intake: images into the store — safe uploads (files, zip archives), the files under allowed
folders, ingest (hash, decode, thumbnail, predict, route, pipelined and resumable), and
prediction: :func:`predict_files` without a database, :func:`store_predictions` its one writer.
"""

from core.intake.pipeline import IngestReport, ingest
from core.intake.predict import (
    FilePrediction,
    PredictReport,
    pending_count,
    predict_files,
    predict_pending,
    random_key,
    record_failures,
    store_predictions,
)
from core.intake.sources import check_allowed, find_images, folder_label, group_key
from core.intake.threads import pipelined
from core.intake.uploads import CHUNK, ZIP_SUFFIX, save_uploads

__all__ = [
    "CHUNK",
    "ZIP_SUFFIX",
    "FilePrediction",
    "IngestReport",
    "PredictReport",
    "check_allowed",
    "find_images",
    "folder_label",
    "group_key",
    "ingest",
    "pending_count",
    "pipelined",
    "predict_files",
    "predict_pending",
    "random_key",
    "record_failures",
    "save_uploads",
    "store_predictions",
]
