"""Particle analysis: detect every particle of an image (classical, our ONNX U-Net or a lab's
ONNX segmenter), measure it (in nm from the image's pixel size), store detections and the
reviewers' corrections as append-only events, size distributions, exports, mask import, and
detectors compared on verified images."""

from core.particles import schema as _schema  # noqa: F401 - registers the migration set
from core.particles.classical import (
    POLARITIES,
    THRESHOLDS,
    ClassicalParams,
    detect_classical,
    flatten,
    split_touching,
)
from core.particles.detectors import (
    CLASSICAL_DEFAULT,
    DEFAULT_DETECTOR,
    METHODS,
    TILE_PIXELS,
    DetectReport,
    active_detector,
    detect_array,
    detect_images,
    ensure_defaults,
    find_detector,
    list_detectors,
    register_detector,
    segmenter_for,
    select_images,
    set_active_detector,
)
from core.particles.evaluate import (
    compare_detector,
    comparison_text,
    evaluate_on,
    metrics_json,
    promote_detector,
    truth_pairs,
    verified_images,
)
from core.particles.export import (
    CSV_COLUMNS,
    FORMATS,
    export_coco,
    export_csv,
    export_masks,
    export_particles,
    export_report,
    image_summaries,
    rle,
)
from core.particles.masks import (
    IMPORT_REVIEWER,
    MASK_SUFFIXES,
    MaskImportReport,
    import_masks,
    is_mask,
    read_mask,
)
from core.particles.matching import IOU_MIN, MatchResult, match, size_errors
from core.particles.measure import COLUMNS, PERIMETER_NOTE, Particle, feret, measure, to_nm
from core.particles.render import EXCLUDED, OUTLINE, SELECTED, Overlay, overlay, particle_at
from core.particles.schema import ACTIONS, SOURCES, VERIFIED_SOURCES, m001_particles, migrations
from core.particles.segmenter import (
    OUTPUT_KINDS,
    SEGMENTER_KEYS,
    ParticleSegmenter,
    instances,
    normalise,
    targets,
)
from core.particles.stats import (
    BY,
    NOT_PARTICLE,
    SizeSet,
    compare_sets,
    describe,
    group_sets,
    histogram,
    populations,
    set_stats,
    size_set,
)
from core.particles.store import (
    EDIT_ACTIONS,
    MACHINE,
    PCOLS,
    add_particle,
    delete_particles,
    history,
    image_state,
    label_image,
    folder_images,
    image_ids_without_particles,
    image_path,
    live_ids,
    particle_images,
    load_scan,
    merge_particles,
    pack_mask,
    particle_rows,
    pixel_size,
    relabel_particles,
    review_queue,
    save_detection,
    save_verified,
    scale_bar_pixel_size,
    segment_from_seed,
    set_pixel_size,
    split_particle,
    undo_last,
    unpack_mask,
    verify_image,
)

__all__ = [
    "ACTIONS", "folder_images", "image_ids_without_particles", "image_path", "particle_images", "EXCLUDED", "OUTLINE", "SELECTED", "Overlay", "overlay", "particle_at", "load_scan", "BY", "CLASSICAL_DEFAULT", "COLUMNS", "CSV_COLUMNS", "DEFAULT_DETECTOR",
    "EDIT_ACTIONS", "FORMATS", "IMPORT_REVIEWER", "IOU_MIN", "MACHINE", "MASK_SUFFIXES",
    "METHODS", "NOT_PARTICLE", "OUTPUT_KINDS", "PCOLS", "PERIMETER_NOTE", "POLARITIES",
    "SEGMENTER_KEYS", "SOURCES", "THRESHOLDS", "TILE_PIXELS", "VERIFIED_SOURCES",
    "ClassicalParams", "DetectReport", "MaskImportReport", "MatchResult", "Particle",
    "ParticleSegmenter", "SizeSet",
    "active_detector", "add_particle", "compare_detector", "compare_sets", "comparison_text",
    "delete_particles", "describe", "detect_array", "detect_classical", "detect_images",
    "ensure_defaults", "evaluate_on", "export_coco", "export_csv", "export_masks",
    "export_particles", "export_report", "feret", "find_detector", "flatten", "group_sets",
    "histogram", "history", "image_state", "image_summaries", "import_masks", "instances",
    "is_mask", "label_image", "list_detectors", "live_ids", "m001_particles", "match",
    "measure", "merge_particles", "metrics_json", "migrations", "normalise", "pack_mask",
    "particle_rows", "pixel_size", "populations", "promote_detector", "read_mask",
    "register_detector", "relabel_particles", "review_queue", "rle", "save_detection",
    "save_verified", "scale_bar_pixel_size", "segment_from_seed", "segmenter_for",
    "select_images", "set_active_detector", "set_pixel_size", "set_stats", "size_errors",
    "size_set", "split_particle", "split_touching", "targets", "to_nm", "truth_pairs",
    "undo_last", "unpack_mask", "verified_images", "verify_image",
]
