"""Training data: images read and prepared once, exactly as the engine does at inference
(``core.images.read_image``, data bar cut off, then ``core.images.prepare``), folder-per-class
trees, synthetic images, and stratified splits. numpy only (no torch)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import ImageReadError
from core.files import IMAGE_SUFFIXES
from core.images import WORK_SIDE, prepare, read_image
from core.progress import Progress
from core.synth import write_dataset

# (an image file path or a 2-D float [0, 1] scan with the data bar already cut off, class name)
Item = tuple["str | Path | np.ndarray", str]


INPUT_SIZE = (128, 128)
MEAN = [0.5]
STD = [0.25]


THREADS = 2


def load_inputs(items: Sequence[Item], *, input_size: tuple[int, int] = INPUT_SIZE,
                channels: int = 1, mean: Sequence[float] = MEAN, std: Sequence[float] = STD,
                progress: Progress | None = None) -> tuple[np.ndarray, list[int], list[str]]:
    """Read and prepare every item once: (N, C, H, W) float32, indices of the items kept,
    and a message per item that could not be read (skipped)."""
    out = np.empty((len(items), channels, *input_size), np.float32)
    kept: list[int] = []
    skipped: list[str] = []
    for i, (src, _label) in enumerate(items):
        if isinstance(src, np.ndarray):
            scan = src
        else:
            try:
                scan = read_image(src, max_side=WORK_SIDE).scan
            except ImageReadError as e:
                skipped.append(str(e))
                continue
        if scan.ndim != 2 or min(scan.shape) < 8:
            skipped.append(f"{src if not isinstance(src, np.ndarray) else 'array'}: "
                           f"scan of shape {scan.shape} is too small")
            continue
        out[len(kept)] = prepare(scan, input_size, channels, mean, std)
        kept.append(i)
        if progress is not None and (i % 50 == 49 or i == len(items) - 1):
            progress((i + 1) / len(items), f"read {i + 1}/{len(items)} images")
    return out[: len(kept)], kept, skipped


def stratified_split(labels: Sequence[str], val_fraction: float, seed: int) -> tuple[list[int],
                                                                                     list[int]]:
    """(train indices, val indices): ``val_fraction`` of every class (at least one when the class
    has ≥ 2 items; a class with a single item stays in training), seeded."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(c, []).append(i)
    tr: list[int] = []
    va: list[int] = []
    for c in sorted(by_class):
        idx = np.array(by_class[c])
        rng.shuffle(idx)
        k = round(len(idx) * val_fraction)
        k = min(max(k, 1 if len(idx) >= 2 else 0), len(idx) - 1)
        va.extend(idx[:k].tolist())
        tr.extend(idx[k:].tolist())
    return sorted(tr), sorted(va)


def folder_items(folder: str | Path) -> list[Item]:
    """(path, class) for every image in a folder-per-class tree (``folder/<class>/**/*.tif``).
    Folders whose names start with ``_`` or ``.`` are skipped (e.g. ``_mixed``)."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{str(root)!r} is not a folder")
    items: list[Item] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] not in "_."):
        for f in sorted(sub.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
                items.append((str(f), sub.name))
    return items


def _synthetic_items(folder: Path, n: int, seed: int, classes: Sequence[str], size: int,
                     progress: Progress | None) -> list[Item]:
    gt = write_dataset(folder, n, seed=seed, classes=classes, size=size, fmt="tif",
                       layout="flat", progress=progress, workers=THREADS)
    items: list[Item] = []
    for line in gt.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        items.append((str(folder / rec["file"]), rec["class"]))
    return items
