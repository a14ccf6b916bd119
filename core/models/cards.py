"""Model cards: ``<name>.card.json`` beside ``<name>.onnx`` — what a model was trained on, how
it was tested, its calibration. Written by training, stored with a registered model, shown by
the CLI and the app. One contract: :func:`read_card` gives the card or None when there is
none, and raises :class:`~core.errors.ModelError` for a card that cannot be read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import ModelError


def card_path(model_path: str | Path) -> Path:
    """Where the card of ``model_path`` lives: ``<stem>.card.json`` beside it."""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


def read_card(model_path: str | Path) -> dict[str, Any] | None:
    """The card beside ``model_path``, or None when it has none. A card that is not a JSON
    object raises :class:`ModelError` naming the file."""
    cp = card_path(model_path)
    if not cp.is_file():
        return None
    try:
        card = json.loads(cp.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"Model card {str(cp)!r} cannot be read: {e}") from None
    if not isinstance(card, dict):
        raise ModelError(f"Model card {str(cp)!r} must hold a JSON object")
    return card


def require_card(model_path: str | Path) -> dict[str, Any]:
    """:func:`read_card`, raising :class:`ModelError` when there is no card."""
    card = read_card(model_path)
    if card is None:
        raise ModelError(f"No model card {str(card_path(model_path))!r} beside {str(model_path)!r}")
    return card


def write_card(model_path: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` beside ``model_path``; returns the card's path."""
    cp = card_path(model_path)
    cp.write_text(json.dumps(card, indent=2, default=str) + "\n", encoding="utf-8")
    return cp
