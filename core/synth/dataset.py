"""Synthetic datasets on disk: images (TIFF with ImageJ resolution tags, or PNG) and a
``ground_truth.jsonl``, written in parallel processes, byte-for-byte deterministic; and a
contact sheet of every class."""


from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, ImageDraw, PngImagePlugin

from core.progress import Progress
from core.synth.databar import _font
from core.synth.micrograph import CLASSES, SYNTH_VERSION, _seed_for, generate, mix_pairs
from core.synth.painters import _BUILDERS


def save_image(img: np.ndarray, path: str | Path, pixel_size_m: float) -> Path:
    """Write a uint8 image as TIFF (ImageJ resolution tags in µm) or PNG (pHYs + text chunk),
    byte-for-byte deterministic."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        px_um = pixel_size_m * 1e6
        tifffile.imwrite(path, img, resolution=(1.0 / px_um, 1.0 / px_um), imagej=True,
                         metadata={"unit": "um"})
    elif suffix == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_text("pixel_size_m", repr(float(pixel_size_m)))
        info.add_text("Software", f"semtriage {SYNTH_VERSION}")
        dpi = 0.0254 / pixel_size_m
        Image.fromarray(img).save(path, pnginfo=info, dpi=(dpi, dpi))
    else:
        raise ValueError(f"Unsupported image format {path.suffix!r}; use .tif or .png")
    return path


def plan_dataset(n: int, *, seed: int = 0, classes: Sequence[str] | None = None,
                 mixed_fraction: float = 0.0) -> list[tuple[str, str | None, int]]:
    """The (class, mix_with, image seed) of each image of a dataset — balanced over classes."""
    classes = list(classes or CLASSES)
    for c in classes:
        if c not in _BUILDERS:
            raise ValueError(f"Unknown class {c!r}; expected one of {', '.join(CLASSES)}")
    if not 0.0 <= mixed_fraction <= 1.0:
        raise ValueError(f"mixed_fraction must be in [0, 1], got {mixed_fraction!r}")
    pairs = mix_pairs(classes)
    rng = _seed_for("plan", seed, n, ",".join(classes), mixed_fraction)
    n_mixed = round(n * mixed_fraction) if pairs else 0
    is_mixed = np.zeros(n, bool)
    is_mixed[rng.choice(n, n_mixed, replace=False)] = True
    seeds = rng.integers(0, 2**31 - 1, n)
    plan: list[tuple[str, str | None, int]] = []
    k_single = k_mixed = 0
    for i in range(n):
        if is_mixed[i]:
            a, b = pairs[k_mixed % len(pairs)]
            k_mixed += 1
            plan.append((a, b, int(seeds[i])))
        else:
            plan.append((classes[k_single % len(classes)], None, int(seeds[i])))
            k_single += 1
    return plan


def _write_one(job: tuple[str, int, str, str | None, int, int, bool | None, str, str]) -> str:
    """Generate and save one image of a dataset; its ground-truth line (JSON)."""
    out, i, cls, mix, s, size, databar, fmt, layout = job
    img, truth = generate(cls, s, size, databar=databar, mix_with=mix)
    name = f"{i:05d}_{cls}" + (f"+{mix}" if mix else "")
    if layout == "flat":
        rel = f"{name}.{fmt}"
    elif layout == "blind":  # nothing in the name gives the class away (the demo's reviewers)
        rel = f"sem_{i:05d}.{fmt}"
    elif mix:
        rel = f"_mixed/{name}.{fmt}"
    else:
        rel = f"{cls}/{i:05d}.{fmt}"
    (Path(out) / rel).parent.mkdir(parents=True, exist_ok=True)
    save_image(img, Path(out) / rel, truth["pixel_size_m"])
    return json.dumps({"file": rel, **truth}, sort_keys=True)


def write_dataset(out_dir: str | Path, n: int, *, seed: int = 0,
                  classes: Sequence[str] | None = None, size: int = 256,
                  mixed_fraction: float = 0.0, fmt: str = "tif", layout: str = "flat",
                  databar: bool | None = None, progress: Progress | None = None,
                  workers: int = 1) -> Path:
    """Write ``n`` images and ``ground_truth.jsonl`` (one JSON object per image) to ``out_dir``.

    ``layout='flat'``: ``00012_films.tif``; ``'folders'``: ``films/00012.tif`` — mixed
    images go to ``_mixed/00012_particles+fibres.tif`` (folder-per-class readers skip folders
    starting with ``_``); ``'blind'``: ``sem_00012.tif``, the class only in the ground truth. ``workers`` > 1 generates in that many processes (same files: every
    image has its own seed). Returns the path of ``ground_truth.jsonl``.
    """
    if fmt not in ("tif", "png"):
        raise ValueError(f"fmt must be 'tif' or 'png', got {fmt!r}")
    if layout not in ("flat", "folders", "blind"):
        raise ValueError(f"layout must be 'flat', 'folders' or 'blind', got {layout!r}")
    if n < 0:
        raise ValueError(f"n must be ≥ 0, got {n!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_dataset(n, seed=seed, classes=classes, mixed_fraction=mixed_fraction)
    jobs = [(str(out), i, cls, mix, s, size, databar, fmt, layout)
            for i, (cls, mix, s) in enumerate(plan)]
    lines: list[str] = []

    def done(line: str) -> None:
        lines.append(line)
        k = len(lines)
        if progress is not None and (k % 10 == 0 or k == n):
            progress(k / max(n, 1), f"{k}/{n} images")

    if workers > 1 and n >= 4 * workers and "fork" in multiprocessing.get_all_start_methods():
        # fork: workers need no re-import of the caller's main module (spawn would) and only
        # run numpy / Pillow code
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            for line in pool.map(_write_one, jobs, chunksize=8):
                done(line)
    else:
        for job in jobs:
            done(_write_one(job))
    gt = out / "ground_truth.jsonl"
    gt.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return gt


def read_ground_truth(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``ground_truth.jsonl`` (or of the one in a dataset folder)."""
    p = Path(path)
    if p.is_dir():
        p = p / "ground_truth.jsonl"
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line]


def contact_sheet(path: str | Path, *, classes: Sequence[str] | None = None, per_class: int = 6,
                  seed: int = 0, size: int = 256, mixed: bool = True) -> Path:
    """A PNG grid: one row per class (plus rows of mixed pairs), ``per_class`` images each."""
    rows: list[tuple[str, str | None]] = [(c, None) for c in (classes or CLASSES)]
    if mixed:
        rows += list(mix_pairs(classes))
    sheet = Image.new("L", (per_class * (size + 4) + 150, len(rows) * (size + 4)), 40)
    draw = ImageDraw.Draw(sheet)
    for r, (c, mix) in enumerate(rows):
        draw.text((4, r * (size + 4) + size // 2), c + (f"\n+ {mix}" if mix else ""), fill=255,
                  font=_font(16))
        for k in range(per_class):
            img, _ = generate(c, seed * 1000 + k, size, mix_with=mix)
            sheet.paste(Image.fromarray(img), (150 + k * (size + 4), r * (size + 4)))
    path = Path(path)
    sheet.save(path)
    return path
