"""Particle analysis: detect every particle of an image (classical, our ONNX U-Net or a lab's
ONNX segmenter), measure it (in nm from the image's pixel size), store detections and the
reviewers' corrections as append-only events, size distributions, exports, mask import."""

from core.particles.classical import (
    POLARITIES,
    THRESHOLDS,
    ClassicalParams,
    detect_classical,
    flatten,
    split_touching,
)
from core.particles.matching import IOU_MIN, MatchResult, match, size_errors
from core.particles.measure import COLUMNS, PERIMETER_NOTE, Particle, feret, measure, to_nm
from core.particles.segmenter import (
    OUTPUT_KINDS,
    SEGMENTER_KEYS,
    ParticleSegmenter,
    instances,
    normalise,
    targets,
)

__all__ = [
    "COLUMNS",
    "IOU_MIN",
    "OUTPUT_KINDS",
    "PERIMETER_NOTE",
    "POLARITIES",
    "SEGMENTER_KEYS",
    "THRESHOLDS",
    "ClassicalParams",
    "MatchResult",
    "Particle",
    "ParticleSegmenter",
    "detect_classical",
    "feret",
    "flatten",
    "instances",
    "match",
    "measure",
    "normalise",
    "size_errors",
    "split_touching",
    "targets",
    "to_nm",
]
