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


def write_mosaic_tiff(path: Path, side: int, seed: int = 0, dtype: str = "uint16",
                      tile: int = 512) -> Path:
    """A huge SIDE x SIDE zlib-tiled TIFF that compresses to almost nothing (issue 18's memory
    attack: 14000 px, 16-bit = 196 Mpx in ~400 KB), written tile by tile so making it never
    holds the frame: a smooth per-tile background plus one noisy tile (files differ)."""
    import tifffile

    rng = np.random.default_rng(seed)
    n = -(-side // tile)
    top = int(np.iinfo(dtype).max)
    noisy = (int(rng.integers(n)), int(rng.integers(n)))

    def tiles():
        for ty in range(n):
            for tx in range(n):
                v = (ty * 37 + tx * 11 + seed * 101) % 200 + 20
                t = np.full((tile, tile), v * top // 255, dtype=dtype)
                if (ty, tx) == noisy:
                    t = rng.integers(0, top, (tile, tile), endpoint=True).astype(dtype)
                yield t

    tifffile.imwrite(path, tiles(), shape=(side, side), dtype=dtype, tile=(tile, tile),
                     compression="zlib", photometric="minisblack")
    return path
