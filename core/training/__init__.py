"""Training, the only package that imports torch: the CNN (SemNet) and the texture family,
ONNX export with a model card, training recipes (the shipped default model), retraining from
the reviewers' labels on leak-free held-out groups, comparing a candidate with the active
model, and finding likely mislabelled reference images.

The modules that need torch (cnn, texture, onnx_export, recipes) are imported when one of
their names is first used (``core.training.train_arrays``): importing ``core.training`` to
compare, retrain in the background or list label issues does not load torch into the app.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from core.training.bundle import BUNDLE_FORMAT, export_bundle, train_bundle
from core.training.comparison import ECE_BINS, compare, comparison_text, evaluate
from core.training.data import (
    INPUT_SIZE,
    MEAN,
    STD,
    THREADS,
    Item,
    folder_items,
    load_inputs,
    stratified_split,
)
from core.training.from_labels import (
    CALIBRATION_NOTE,
    CHOICE_NOTE,
    FAMILIES,
    FINE_TUNE_LR,
    RetrainOptions,
    RetrainResult,
    retrain,
)
from core.training.holdout import MIN_LABELS, Split, gather_labels, label_summary, plan_split
from core.training.label_issues import (
    C_REG,
    GROUPING_COST,
    GROUPINGS,
    ISSUE_ACTIONS,
    LAST_RUN_KEY,
    MAJORITY,
    MIN_ISSUE_LABELS,
    MIN_PER_CLASS,
    IssueReport,
    find_issues,
    issue_counts,
    issue_queue,
    last_run,
    resolve_issue,
)
from core.training.metrics import classification_report, held_out_metrics, split_counts

if TYPE_CHECKING:
    from core.training.cnn import (
        POOL,
        WIDTHS,
        SemNet,
        TrainResult,
        augment,
        n_parameters,
        train,
        train_arrays,
    )
    from core.training.onnx_export import build_card, export_onnx
    from core.training.recipes import (
        DEFAULT_EPOCHS,
        DEFAULT_MIXED_FRACTION,
        DEFAULT_N_PER_CLASS,
        DEFAULT_SEED,
        DEFAULT_VERSION,
        main,
        train_folder,
        train_from_records,
        train_synthetic,
    )
    from core.training.texture import (
        CHUNK,
        CLIP,
        EPS,
        FEATURE_VERSION,
        GABOR_ORIENTATIONS,
        GABOR_SIZE,
        GABOR_WAVELENGTHS,
        LBP_BINS,
        MIN_SIDE,
        RING,
        SCALES,
        TEXTURE_THREADS,
        TextureNet,
        texture_features,
        train_texture,
    )

# name -> the torch module that defines it
_LAZY = {
    "WIDTHS": "cnn",
    "POOL": "cnn",
    "SemNet": "cnn",
    "n_parameters": "cnn",
    "augment": "cnn",
    "TrainResult": "cnn",
    "train": "cnn",
    "train_arrays": "cnn",
    "FEATURE_VERSION": "texture",
    "SCALES": "texture",
    "MIN_SIDE": "texture",
    "GABOR_WAVELENGTHS": "texture",
    "GABOR_ORIENTATIONS": "texture",
    "GABOR_SIZE": "texture",
    "RING": "texture",
    "LBP_BINS": "texture",
    "CHUNK": "texture",
    "TEXTURE_THREADS": "texture",
    "CLIP": "texture",
    "EPS": "texture",
    "TextureNet": "texture",
    "texture_features": "texture",
    "train_texture": "texture",
    "build_card": "onnx_export",
    "export_onnx": "onnx_export",
    "DEFAULT_N_PER_CLASS": "recipes",
    "DEFAULT_EPOCHS": "recipes",
    "DEFAULT_SEED": "recipes",
    "DEFAULT_VERSION": "recipes",
    "DEFAULT_MIXED_FRACTION": "recipes",
    "train_synthetic": "recipes",
    "train_folder": "recipes",
    "train_from_records": "recipes",
    "main": "recipes",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "BUNDLE_FORMAT",
    "CALIBRATION_NOTE",
    "CHOICE_NOTE",
    "CHUNK",
    "CLIP",
    "C_REG",
    "DEFAULT_EPOCHS",
    "DEFAULT_MIXED_FRACTION",
    "DEFAULT_N_PER_CLASS",
    "DEFAULT_SEED",
    "DEFAULT_VERSION",
    "ECE_BINS",
    "EPS",
    "FAMILIES",
    "FEATURE_VERSION",
    "FINE_TUNE_LR",
    "GABOR_ORIENTATIONS",
    "GABOR_SIZE",
    "GABOR_WAVELENGTHS",
    "GROUPINGS",
    "GROUPING_COST",
    "INPUT_SIZE",
    "ISSUE_ACTIONS",
    "LAST_RUN_KEY",
    "LBP_BINS",
    "MAJORITY",
    "MEAN",
    "MIN_ISSUE_LABELS",
    "MIN_LABELS",
    "MIN_PER_CLASS",
    "MIN_SIDE",
    "POOL",
    "RING",
    "SCALES",
    "STD",
    "TEXTURE_THREADS",
    "THREADS",
    "WIDTHS",
    "IssueReport",
    "Item",
    "RetrainOptions",
    "RetrainResult",
    "SemNet",
    "Split",
    "TextureNet",
    "TrainResult",
    "augment",
    "build_card",
    "classification_report",
    "compare",
    "comparison_text",
    "evaluate",
    "export_bundle",
    "export_onnx",
    "find_issues",
    "folder_items",
    "gather_labels",
    "held_out_metrics",
    "issue_counts",
    "issue_queue",
    "label_summary",
    "last_run",
    "load_inputs",
    "main",
    "n_parameters",
    "plan_split",
    "resolve_issue",
    "retrain",
    "split_counts",
    "stratified_split",
    "texture_features",
    "train",
    "train_arrays",
    "train_bundle",
    "train_folder",
    "train_from_records",
    "train_synthetic",
    "train_texture",
]
