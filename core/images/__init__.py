"""Images: decode any SEM image file (:func:`read_image` → :class:`SemImage`; the stored values
at full resolution: :func:`read_frame` → :class:`RawFrame`), the instrument's metadata (FEI,
Zeiss, ImageJ: pixel size, data bar), the data-bar heuristic, grey-level windowing (robust
percentiles; the reviewer's own window / level), display images and thumbnails, the Review
page's closer look (zoom windows, panning, scale bar), and the one preprocessing path into a
model."""

from core.images.databar import MAX_DATABAR_FRACTION, annotation_boxes, detect_databar
from core.images.levels import (
    apply_window,
    block_mean,
    percentile_window,
    value_range,
    wide_blur,
    window,
)
from core.images.metadata import format_length, metadata_rows, scale_text
from core.images.preprocess import prepare, resize
from core.images.read import WORK_SIDE, RawFrame, SemImage, decode_bytes, read_frame, read_image
from core.images.render import (
    ZOOM_LEVELS,
    ScaleBar,
    ZoomWindow,
    click_zoom,
    crop_around,
    encode_png,
    fit_png,
    length_label,
    magnify,
    nice_length,
    pan,
    scale_bar,
    thumbnail_jpeg,
    to_uint8,
    zoom_png,
    zoom_window,
)

__all__ = [
    "MAX_DATABAR_FRACTION",
    "WORK_SIDE",
    "ZOOM_LEVELS",
    "RawFrame",
    "ScaleBar",
    "SemImage",
    "ZoomWindow",
    "annotation_boxes",
    "apply_window",
    "block_mean",
    "click_zoom",
    "crop_around",
    "decode_bytes",
    "detect_databar",
    "encode_png",
    "fit_png",
    "format_length",
    "length_label",
    "magnify",
    "metadata_rows",
    "nice_length",
    "pan",
    "percentile_window",
    "prepare",
    "read_frame",
    "read_image",
    "resize",
    "scale_bar",
    "scale_text",
    "thumbnail_jpeg",
    "to_uint8",
    "value_range",
    "wide_blur",
    "window",
    "zoom_png",
    "zoom_window",
]
