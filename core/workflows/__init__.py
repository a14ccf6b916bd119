"""Workflows that span the engine's domains: making a model active (predict what it has not
seen, re-route, sync auto labels), building the demo database, and a dataset export with the
particles of its images.
"""

from core.workflows.dataset import export_dataset
from core.workflows.demo import (
    DEMO_SEED,
    REFERENCE_EVERY,
    build_demo,
    demo_belongs_in,
    use_default_model,
)
from core.workflows.lifecycle import promote

__all__ = [
    "DEMO_SEED",
    "REFERENCE_EVERY",
    "build_demo",
    "demo_belongs_in",
    "export_dataset",
    "promote",
    "use_default_model",
]
