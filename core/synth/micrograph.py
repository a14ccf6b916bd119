"""Deterministic synthetic SEM micrographs with ground truth.

Every image is built the way a secondary-electron (SE) image forms:

1. a **height field** (in pixels) and a **material yield** map are built per class
   (spheres, cylinders, faceted grains, Voronoi grains, periodic lattices, sponges, ...);
2. the SE signal is **rendered** from them: tilt-angle yield (sec θ of the local slope),
   the SE *edge effect* on convex edges, directional shading and shadows from a side-mounted
   (Everhart-Thornley) detector, darkening inside cavities; a tilted stage is projected
   (occlusion, visible side walls);
3. the **instrument** adds depth-of-field blur, brightness/contrast/gamma, shot noise,
   horizontal scan-line noise, occasionally charging streaks, and on ~30 % of images a
   data bar (black strip, white scale bar and text) along the bottom.

Same ``(class, seed, size, options)`` → identical pixels. Ground truth: class(es), pixel size,
particle centres and diameters, data-bar height, seed.

    img, truth = generate("particles", seed=7)
    write_dataset("data/demo", 300, seed=0, mixed_fraction=0.1)
"""


from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from core.config import NFFA_CLASSES
from core.synth.databar import _draw_databar
from core.synth.painters import _BUILDERS, _TILT_P, SURFACES
from core.synth.primitives import _noise
from core.synth.render import _camera, _render_se, _tilt_project
from core.synth.scene import _Scene, _substrate

SYNTH_VERSION = "synth-v1"
CLASSES: tuple[str, ...] = tuple(NFFA_CLASSES)  # every NFFA class has a generator


# Deliberately mixed images: (first, second) — objects of one class on / beside the other.
MIX_PAIRS: tuple[tuple[str, str], ...] = (
    ("particles", "fibres"),
    ("particles", "films"),
    ("nanowires", "patterned"),
    ("particles", "powder"),
    ("particles", "patterned"),
    ("nanowires", "films"),
    ("particles", "porous"),
    ("nanowires", "fibres"),
    ("powder", "films"),
    ("biological", "porous"),
    ("particles", "nanowires"),
    ("films", "patterned"),
)


def _seed_for(*parts: object) -> np.random.Generator:
    words = [zlib.crc32(str(p).encode()) for p in parts]
    return np.random.default_rng(np.random.SeedSequence(words))


def generate(cls: str, seed: int, size: int = 256, *, databar: bool | None = None,
             mix_with: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """One synthetic SEM micrograph (``size`` × ``size`` uint8) and its ground truth.

    ``databar``: None → drawn on ~30 % of images; ``mix_with``: a second class whose
    objects / surface share the image. The truth dict has ``class``, ``classes`` (two for a
    mixed image), ``mixed``, ``pixel_size_m``, ``databar_px``, ``particles`` (centre x, y in
    px, ``d_px``, ``d_nm`` — only particles whose centre lies in the scan area), ``seed``,
    ``size``, ``tilt_deg``, ``variants``.
    """
    for c in (cls, mix_with):
        if c is not None and c not in _BUILDERS:
            raise ValueError(f"Unknown class {c!r}; expected one of {', '.join(CLASSES)}")
    if mix_with == cls:
        raise ValueError(f"mix_with must differ from the class, got {cls!r} twice")
    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size!r}")
    rng = _seed_for(SYNTH_VERSION, cls, mix_with, int(seed), size)
    classes = [cls] if mix_with is None else [cls, mix_with]
    tilt = 0.0
    if "particles" not in classes:
        p = max(_TILT_P.get(c, 0.0) for c in classes)
        if rng.random() < p:
            tilt = float(rng.uniform(20.0, 52.0))
    rows = size if tilt == 0 else math.ceil(size / math.cos(math.radians(tilt))) + size // 8
    sc = _Scene(size=size, rows=rows, rng=rng, tilt_deg=tilt, mixing=mix_with is not None)

    surfaces = [c for c in classes if c in SURFACES]
    objects = [c for c in classes if c not in SURFACES]
    # in a mixed image both classes must be plain to see
    amount = 1.0 if mix_with is None else float(rng.uniform(1.1, 1.5))
    if len(surfaces) == 2:  # two surfaces side by side, meeting along a wavy boundary
        _BUILDERS[surfaces[0]](sc, 1.0)
        H0, Y0 = sc.H, sc.Y
        sc.H = np.zeros_like(H0)
        sc.Y = np.full_like(Y0, 0.35)
        _BUILDERS[surfaces[1]](sc, 1.0)
        frac = rng.uniform(0.4, 0.6)
        split = _noise(rng, rows, size, size / 2) * 0.3
        th = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:rows, 0:size].astype(np.float32)
        proj = ((xx - size / 2) * math.cos(th) + (yy - rows / 2) * math.sin(th)) / size
        m = proj + split * 0.5 < (frac - 0.5)
        sc.H = np.where(m, H0, sc.H)
        sc.Y = np.where(m, Y0, sc.Y)
    elif surfaces:
        _BUILDERS[surfaces[0]](sc, 1.0)
    else:
        _substrate(sc)
    for c in objects:
        _BUILDERS[c](sc, amount)

    sig = _render_se(sc)
    if tilt > 0:
        sig = _tilt_project(sig, sc.H, tilt, size)
    img = _camera(sig, rng, tilt)
    pixel_size = float(sc.pixel_size_m or 1e-8)
    if databar is None:
        databar = bool(rng.random() < 0.3)
    bar_px = _draw_databar(img, rng, pixel_size) if databar else 0
    scan_rows = size - bar_px
    particles = [p for p in sc.particles if p["y"] < scan_rows - 0.5]
    truth: dict[str, Any] = {
        "class": cls,
        "classes": classes,
        "mixed": mix_with is not None,
        "pixel_size_m": pixel_size,
        "databar_px": bar_px,
        "particles": particles if "particles" in classes else [],
        "n_particles": len(particles) if "particles" in classes else 0,
        "seed": int(seed),
        "size": size,
        "tilt_deg": round(tilt, 2),
        "variants": sc.variants,
        "generator": SYNTH_VERSION,
    }
    return img, truth


def mix_pairs(classes: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """The mixed-image pairs whose classes are both in ``classes`` (all by default)."""
    allowed = set(classes or CLASSES)
    return [p for p in MIX_PAIRS if p[0] in allowed and p[1] in allowed]
