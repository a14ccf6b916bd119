"""Shared test helpers (fixtures stay in conftest.py): a tiny ONNX model, image files, app
databases, a labelled database for retraining, and real-browser utilities (helpers.browser)."""

from tests.helpers.app import app_db_copy, build_app_db, failures
from tests.helpers.images import FIXTURES, write_images, write_mosaic_tiff
from tests.helpers.models import CLASSES, build_tiny_model

__all__ = ["CLASSES", "FIXTURES", "app_db_copy", "build_app_db", "build_tiny_model", "failures", "write_images",
           "write_mosaic_tiff"]
