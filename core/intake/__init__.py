"""Intake: images into the store — safe uploads (files, zip archives), the files under allowed
folders, ingest (hash, decode, thumbnail, predict, route, pipelined and resumable), and
prediction: :func:`predict_files` without a database, :func:`store_predictions` its one writer.
"""

from core.intake.loading import IMAGE_COLUMNS, LoadedFile, image_record, load_file
from core.intake.pipeline import IngestReport, ingest, insert_images, store_files, stored_files
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
from core.intake.received import discard_copies, ingest_upload, unfinished_uploads
from core.intake.sources import (
    check_allowed,
    find_images,
    folder_label,
    group_key,
    read_path_list,
    source_roots,
)
from core.intake.threads import ByteBudget, pipelined
from core.intake.uploads import (
    CHUNK,
    MAX_RATIO,
    RESERVE_BYTES,
    ZIP_SUFFIX,
    remove_empty_folders,
    save_uploads,
)

__all__ = [
    "CHUNK",
    "IMAGE_COLUMNS",
    "MAX_RATIO",
    "RESERVE_BYTES",
    "ZIP_SUFFIX",
    "ByteBudget",
    "FilePrediction",
    "IngestReport",
    "LoadedFile",
    "PredictReport",
    "check_allowed",
    "discard_copies",
    "find_images",
    "folder_label",
    "group_key",
    "image_record",
    "ingest",
    "ingest_upload",
    "insert_images",
    "load_file",
    "pending_count",
    "pipelined",
    "predict_files",
    "predict_pending",
    "random_key",
    "read_path_list",
    "record_failures",
    "remove_empty_folders",
    "save_uploads",
    "source_roots",
    "store_files",
    "store_predictions",
    "stored_files",
    "unfinished_uploads",
]
