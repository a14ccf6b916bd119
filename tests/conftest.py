"""Shared fixtures: tiny real ONNX classifiers built in code, real image files, real SQLite.
The code behind them lives in tests/helpers/."""


from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import FIXTURES, build_tiny_model, write_images


@pytest.fixture
def tiny_model(tmp_path):
    """Factory: ``tiny_model(name="m", classes=..., kind="logits"|"probabilities", ...)`` → path."""

    def make(name: str = "tiny", **kw) -> Path:
        return build_tiny_model(tmp_path / "models" / f"{name}.onnx", **kw)

    return make


@pytest.fixture
def image_folder(tmp_path) -> Path:
    folder = tmp_path / "images"
    write_images(folder)
    return folder


@pytest.fixture
def sem_fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"real SEM fixtures absent: {FIXTURES} (shared/fixtures/sem-tiff)")
    return FIXTURES
