"""Images: decode any SEM image file (:func:`read_image` → :class:`SemImage`), the instrument's
metadata (FEI, Zeiss, ImageJ: pixel size, data bar), the data-bar heuristic, grey-level
windowing, display images and thumbnails, and the one preprocessing path into a model."""

from core.images.databar import MAX_DATABAR_FRACTION, detect_databar
from core.images.levels import window
from core.images.metadata import format_length, metadata_rows, scale_text
from core.images.preprocess import prepare, resize
from core.images.read import SemImage, read_image
from core.images.render import crop_around, encode_png, thumbnail_jpeg, to_uint8

__all__ = [
    "MAX_DATABAR_FRACTION",
    "SemImage",
    "crop_around",
    "detect_databar",
    "encode_png",
    "format_length",
    "metadata_rows",
    "prepare",
    "read_image",
    "resize",
    "scale_text",
    "thumbnail_jpeg",
    "to_uint8",
    "window",
]
