"""Synthetic SEM micrographs with ground truth: drawing primitives, the scene and one painter
per class, secondary-electron rendering and the camera, the data bar, one micrograph
(:func:`generate`) and datasets on disk (:func:`write_dataset`).
"""

from core.synth.dataset import (
    contact_sheet,
    plan_dataset,
    read_ground_truth,
    save_image,
    write_dataset,
)
from core.synth.micrograph import CLASSES, MIX_PAIRS, SYNTH_VERSION, generate, mix_pairs
from core.synth.painters import OBJECTS, SURFACES
from core.synth.particles import (
    GOLD_SIZES_NM,
    LOOKS,
    PARTICLE_SYNTH_VERSION,
    SHAPES,
    particle_micrograph,
    write_particle_dataset,
)
from core.synth.wires import WIRE_KINDS, generate_wires

__all__ = [
    "CLASSES",
    "GOLD_SIZES_NM",
    "LOOKS",
    "MIX_PAIRS",
    "OBJECTS",
    "PARTICLE_SYNTH_VERSION",
    "SHAPES",
    "SURFACES",
    "SYNTH_VERSION",
    "WIRE_KINDS",
    "contact_sheet",
    "generate",
    "generate_wires",
    "mix_pairs",
    "particle_micrograph",
    "plan_dataset",
    "read_ground_truth",
    "save_image",
    "write_dataset",
    "write_particle_dataset",
]
