"""Real image files made here, and the real instrument TIFFs in shared/ when present."""


from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "sem-tiff"


def write_images(folder: Path, n: int = 12, *, size: int = 48, seed: int = 0, fmt: str = "png") -> list[Path]:
    """n real grey image files of varied brightness (so the tiny model spreads them over queues)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        level = (i + 0.5) / n
        a = np.clip(rng.normal(level, 0.05, (size, size)), 0, 1)
        p = folder / f"img_{i:03d}.{fmt}"
        Image.fromarray((a * 255).astype(np.uint8)).save(p)
        out.append(p)
    return out
