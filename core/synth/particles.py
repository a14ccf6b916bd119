"""Synthetic particle micrographs with exact instance masks (the particle detector's training
and test data).

Two looks, both as messy as real data:

* ``sem``: bright particles on a darker textured substrate (secondary electrons): spheres,
  faceted grains, bipyramids, rods and irregular lumps; isolated, in dense touching clumps and
  agglomerates; SE edge brightening (sec θ of the surface slope), charging halos around clumps
  and charging streaks, uneven illumination, a few dark pits as distractors;
* ``gold``: dark immunogold spheres of several size classes (6 / 12 / 18 nm) on a bright
  membrane texture, with dark non-particle shadows (larger, softer, irregular) as distractors.

A quarter of the ``sem`` images are *packed*: piles of particles covering the whole field in
several layers (no substrate in sight, as in a powder of SiO2 spheres), lit from one side,
with dark gaps and lower particles in the shade of the top ones (ambient occlusion).

All then get blur, shot noise, scan-line noise, particles cut by the image edge, on about a
third of the images an instrument data bar over the bottom rows, and on some an annotation
box inside the frame (black, white text, over a corner: the instrument's own overlay, which
no data-bar finder removes). Both hide what is under them.

Same ``(seed, size, options)`` → identical pixels. The truth is exact: ``labels`` (int32, the
visible pixels of particle ``k`` are ``k``; 0 is background, distractors and the data bar) and
one record per particle (population, shape, nominal and visible diameters, whether it is cut by
the image edge or the data bar).

    img, truth = particle_micrograph(seed=3)            # uint8 (H, W), dict
    truth["labels"].max() == len(truth["particles"])
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from core.synth.databar import _draw_databar, _font
from core.synth.dataset import save_image
from core.synth.primitives import _blur, _fractal, _noise

PARTICLE_SYNTH_VERSION = "particles-synth-v2"
LOOKS = ("sem", "gold")
SHAPES = ("sphere", "faceted", "bipyramid", "rod", "irregular")
GOLD_SIZES_NM = (6.0, 12.0, 18.0)


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def _rho(shape: str, dx: np.ndarray, dy: np.ndarray, r: float, p: dict[str, Any]) -> np.ndarray:
    """Normalised 'radius' of a shape at offsets (dx, dy): < 1 inside, 0 at the centre."""
    c, s = math.cos(p["angle"]), math.sin(p["angle"])
    u = dx * c + dy * s
    v = -dx * s + dy * c
    if shape == "rod":
        half = r * (p["aspect"] - 1.0)
        uu = np.clip(u, -half, half)
        return np.hypot(u - uu, v) / r
    if shape == "bipyramid":  # a rhombus, blunted: long axis aspect·r
        a = r * p["aspect"]
        return (np.abs(u) / a + np.abs(v) / r) ** 0.85 * 0.9 + 0.1 * np.hypot(u / a, v / r)
    if shape == "faceted":
        n = p["sides"]
        theta = np.arctan2(v, u)
        sector = 2 * math.pi / n
        local = (theta % sector) - sector / 2
        apothem = r * math.cos(math.pi / n)
        return np.hypot(u, v) * np.cos(local) / apothem
    rr = np.hypot(u, v)
    if shape == "irregular":
        theta = np.arctan2(v, u)
        wob = 1.0 + sum(a * np.cos(k * theta + ph) for k, a, ph in p["wobble"])
        return rr / (r * wob)
    return rr / r


def _shape_params(rng: np.random.Generator, shape: str) -> dict[str, Any]:
    p: dict[str, Any] = {"angle": float(rng.uniform(0, math.pi))}
    if shape == "rod":
        p["aspect"] = float(rng.uniform(1.8, 3.5))
    elif shape == "bipyramid":
        p["aspect"] = float(rng.uniform(1.4, 2.0))
    elif shape == "faceted":
        p["sides"] = int(rng.choice([5, 6, 6, 8]))
    elif shape == "irregular":
        p["wobble"] = [(k, float(rng.uniform(0.03, 0.12)), float(rng.uniform(0, 6.3)))
                       for k in (2, 3, 5)]
    return p


def _reach(shape: str, r: float, p: dict[str, Any]) -> float:
    if shape == "rod":
        return r * p["aspect"] + 1
    if shape == "bipyramid":
        return r * p["aspect"] * 1.2 + 1
    if shape == "irregular":
        return r * 1.4 + 1
    return r * 1.25 + 1


def _populations(rng: np.random.Generator, look: str, px_nm: float) -> list[dict[str, Any]]:
    """One to three size populations: median diameter (px), spread (σ of log d), weight."""
    if look == "gold":
        k = int(rng.integers(1, 4))
        sizes = sorted(rng.choice(GOLD_SIZES_NM, k, replace=False).tolist())
        return [{"d_nm": d, "d_px": d / px_nm, "sigma": float(rng.uniform(0.04, 0.09)),
                 "weight": float(rng.uniform(0.5, 1.5)), "shapes": ("sphere",)} for d in sizes]
    k = int(rng.choice([1, 1, 2, 2, 3]))
    d0 = float(np.exp(rng.uniform(math.log(9), math.log(40))))
    pops = []
    for i in range(k):
        d = d0 * (1.6 ** i) if i else d0
        if d > 60:
            break
        kinds = tuple(rng.choice(SHAPES, int(rng.integers(1, 3)), replace=False).tolist())
        pops.append({"d_nm": d * px_nm, "d_px": d, "sigma": float(rng.uniform(0.05, 0.2)),
                     "weight": float(rng.uniform(0.5, 1.5)), "shapes": kinds})
    return pops


def _place(rng: np.random.Generator, h: int, w: int, pops: list[dict[str, Any]],
           coverage: float, clumpiness: float, max_particles: int) -> list[dict[str, Any]]:
    """Particle centres and sizes: isolated ones (little overlap) and touching clumps."""
    weights = np.array([p["weight"] for p in pops])
    weights /= weights.sum()
    mean_area = sum(wt * math.pi * (p["d_px"] / 2) ** 2 for wt, p in zip(weights, pops))
    n = int(min(max_particles, coverage * h * w / mean_area))
    parts: list[dict[str, Any]] = []
    margin = 0.6 * max(p["d_px"] for p in pops)
    # a coarse occupancy grid keeps isolated particles apart
    cell = max(4.0, min(p["d_px"] for p in pops) / 2)
    gh, gw = int(h / cell) + 2, int(w / cell) + 2
    occ = np.zeros((gh, gw), bool)

    def free(x: float, y: float, r: float) -> bool:
        i0, i1 = int((y - r) / cell), int((y + r) / cell) + 1
        j0, j1 = int((x - r) / cell), int((x + r) / cell) + 1
        return not occ[max(0, i0):max(0, i1), max(0, j0):max(0, j1)].any()

    def mark(x: float, y: float, r: float) -> None:
        i0, i1 = int((y - r * 0.8) / cell), int((y + r * 0.8) / cell) + 1
        j0, j1 = int((x - r * 0.8) / cell), int((x + r * 0.8) / cell) + 1
        occ[max(0, i0):max(0, i1), max(0, j0):max(0, j1)] = True

    def new(pi: int) -> dict[str, Any]:
        pop = pops[pi]
        d = float(pop["d_px"] * math.exp(rng.normal(0, pop["sigma"])))
        shape = str(rng.choice(pop["shapes"]))
        return {"population": pi, "shape": shape, "r": max(1.6, d / 2), "d_nominal_px": d,
                "params": _shape_params(rng, shape)}

    tries = 0
    while len(parts) < n and tries < 20 * n + 100:
        tries += 1
        pi = int(rng.choice(len(pops), p=weights))
        if rng.random() < clumpiness:  # a clump: particles touching a seed and each other
            q = new(pi)
            cx, cy = rng.uniform(-margin, w + margin), rng.uniform(-margin, h + margin)
            q.update(x=cx, y=cy)
            members = [q]
            size = int(rng.integers(3, 14))
            for _ in range(size * 3):
                if len(members) >= size or len(parts) + len(members) >= n:
                    break
                a = members[int(rng.integers(len(members)))]
                b = new(int(rng.choice(len(pops), p=weights)))
                ang = rng.uniform(0, 2 * math.pi)
                dist = (a["r"] + b["r"]) * rng.uniform(0.78, 0.98)
                bx, by = a["x"] + dist * math.cos(ang), a["y"] + dist * math.sin(ang)
                if all(math.hypot(bx - m["x"], by - m["y"]) > 0.75 * (b["r"] + m["r"])
                       for m in members):
                    b.update(x=bx, y=by)
                    members.append(b)
            for m in members:
                mark(m["x"], m["y"], m["r"])
            parts.extend(members)
        else:
            q = new(pi)
            x, y = rng.uniform(-margin, w + margin), rng.uniform(-margin, h + margin)
            if free(x, y, q["r"] * 1.05):
                q.update(x=x, y=y)
                mark(x, y, q["r"])
                parts.append(q)
    return parts[:max(n, 0)]


def _draw(h: int, w: int, parts: list[dict[str, Any]], rng: np.random.Generator,
          layers: float = 0.35):
    """Z-buffered heights and the instance labels of what is on top; each particle sits at a
    random height up to ``layers`` × its radius (a pile: about 1)."""
    z = np.zeros((h, w), np.float32)
    labels = np.zeros((h, w), np.int32)
    keep: list[dict[str, Any]] = []
    for p in parts:
        r, pr = p["r"], p["params"]
        reach = _reach(p["shape"], r, pr)
        x0, x1 = math.floor(p["x"] - reach), math.ceil(p["x"] + reach) + 1
        y0, y1 = math.floor(p["y"] - reach), math.ceil(p["y"] + reach) + 1
        cx0, cx1, cy0, cy1 = max(0, x0), min(w, x1), max(0, y0), min(h, y1)
        if cx0 >= cx1 or cy0 >= cy1:
            continue
        yy, xx = np.mgrid[cy0:cy1, cx0:cx1].astype(np.float32)
        rho = _rho(p["shape"], xx - p["x"], yy - p["y"], r, pr)
        inside = rho < 1.0
        if not inside.any():
            continue
        base = float(rng.uniform(0, layers * r))
        height = base + r * np.sqrt(np.clip(1.0 - rho * rho, 0, 1))
        sub = z[cy0:cy1, cx0:cx1]
        top = inside & (height > sub)
        if not top.any():
            continue
        k = len(keep) + 1
        sub[top] = height[top]
        labels[cy0:cy1, cx0:cx1][top] = k
        keep.append(p)
    return z, labels, keep


def _relabel(labels: np.ndarray, parts: list[dict[str, Any]], min_px: int):
    """Drop particles whose visible part is tiny (fully hidden ones vanish); renumber 1..N."""
    counts = np.bincount(labels.ravel(), minlength=len(parts) + 1)
    keep = [i for i in range(1, len(parts) + 1) if counts[i] >= min_px]
    lut = np.zeros(len(parts) + 1, np.int32)
    lut[keep] = np.arange(1, len(keep) + 1, dtype=np.int32)
    return lut[labels], [parts[i - 1] for i in keep]


def _annotation_box(img: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                    scan_h: int) -> tuple[set[int], list[int]]:
    """A black box with lines of white text in a bottom or top corner of the scan (the first
    ``scan_h`` rows); zeroes the labels under it. Returns the ids it cuts and the box
    (y0, y1, x0, x1)."""
    w = img.shape[1]
    bh = max(10, round(scan_h * rng.uniform(0.06, 0.14)))
    bw = max(20, round(w * rng.uniform(0.35, 0.9)))
    x0 = 0 if rng.random() < 0.6 else w - bw
    y0 = scan_h - bh - int(rng.integers(0, max(1, scan_h // 20))) if rng.random() < 0.8 else 0
    y0 = max(0, y0)
    tile = Image.new("L", (bw, bh), int(rng.integers(0, 25)))
    d = ImageDraw.Draw(tile)
    font = _font(max(6, int(bh / (1 if bh < 18 else 2) * 0.7)))
    white = int(rng.integers(200, 256))
    words = ["E Beam", "Spot", "Magn", "WD", "5.00 kV", "3.0", "25000x", "4.9", "HFW", "det",
             "SE", "10 um", "500 nm", "2 um", "Mag = 50.00 K X", "EHT", "Signal A = InLens"]
    rows = 1 if bh < 18 else 2
    for row in range(rows):
        x = 3
        while x < bw - 10:
            t = str(rng.choice(words))
            d.text((x, 1 + row * bh // rows), t, fill=white, font=font)
            x += int(d.textlength(t, font=font)) + int(rng.integers(6, 30))
    if rng.random() < 0.6:  # a scale bar in the box
        xb = int(bw * rng.uniform(0.4, 0.7))
        d.rectangle([xb, bh // 2 - 1, min(bw - 2, xb + int(bw * 0.2)), bh // 2 + 1], fill=white)
    y1, x1 = min(scan_h, y0 + bh), x0 + bw
    img[y0:y1, x0:x1] = np.asarray(tile)[: y1 - y0]
    ring = labels[max(0, y0 - 1):min(scan_h, y1 + 1), max(0, x0 - 1):min(w, x1 + 1)]
    cut = set(np.unique(ring).tolist()) - {0}
    labels[y0:y1, x0:x1] = 0
    return cut, [int(y0), int(y1), int(x0), int(x1)]


def particle_micrograph(
    seed: int,
    size: tuple[int, int] = (384, 512),
    *,
    look: str | None = None,
    databar: bool | None = None,
    coverage: float | None = None,
    clumpiness: float | None = None,
    packed: bool | None = None,
    annotation: bool | None = None,
    max_particles: int = 4000,
) -> tuple[np.ndarray, dict[str, Any]]:
    """One synthetic particle micrograph (uint8, ``size`` = (height, width)) and its truth.

    ``look``: ``sem`` / ``gold`` (None: 70 % sem); ``databar`` (None: a third of images);
    ``coverage``: fraction of the frame covered by particles (None: 0.08–0.45);
    ``clumpiness``: fraction of placements that start a clump (None: 0–0.7);
    ``packed``: a pile covering the field (``sem`` only; None: a quarter of them);
    ``annotation``: a black box with white text inside the frame (None: about one in six).
    """
    h, w = int(size[0]), int(size[1])
    if h < 32 or w < 32:
        raise ValueError(f"size must be at least 32×32, got {size!r}")
    rng = _rng("particles", seed, h, w, look, databar, coverage, clumpiness, packed, annotation)
    look = look or ("sem" if rng.random() < 0.7 else "gold")
    if look not in LOOKS:
        raise ValueError(f"look must be one of {LOOKS}, got {look!r}")
    px_nm = float(rng.uniform(0.6, 1.4)) if look == "gold" else float(
        np.exp(rng.uniform(math.log(1.5), math.log(20.0))))
    pops = _populations(rng, look, px_nm)
    cov = float(rng.uniform(0.08, 0.45) if coverage is None else coverage)
    clump = float(rng.uniform(0.0, 0.7) if clumpiness is None else clumpiness)
    pile = look == "sem" and (bool(rng.random() < 0.25) if packed is None else bool(packed))
    if look == "gold":
        cov, clump = cov * 0.35, clump * 0.4
    if pile:
        for pop in pops:  # powders: round and faceted grains rather than rods
            if rng.random() < 0.7:
                pop["shapes"] = tuple(rng.choice(["sphere", "sphere", "faceted", "irregular"],
                                                 int(rng.integers(1, 3)), replace=False).tolist())
        cov = float(rng.uniform(1.6, 2.6)) if coverage is None else coverage
        clump = 0.95 if clumpiness is None else clump
    parts = _place(rng, h, w, pops, cov, clump, max_particles)
    z, labels, parts = _draw(h, w, parts, rng, layers=1.0 if pile else 0.35)
    fg = labels > 0

    # --- signal
    if look == "sem":
        gy, gx = np.gradient(_blur(z, 0.7))
        sec = np.minimum(np.sqrt(1.0 + gx * gx + gy * gy), 5.0)
        sub_tex = 0.06 * _fractal(rng, h, w, rng.uniform(8, 40)) + 0.03 * _noise(rng, h, w, 2.5)
        m_sub = float(rng.uniform(0.15, 0.35))
        m_par = m_sub + float(rng.uniform(0.12, 0.35))
        contrast = np.ones(len(parts) + 1, np.float32)
        contrast[1:] = rng.uniform(0.75, 1.2, len(parts))
        sig = np.where(fg, m_par * contrast[labels], m_sub + sub_tex)
        sig = sig * sec ** float(rng.uniform(0.5, 0.9))
        sig += 0.06 * fg * _fractal(rng, h, w, rng.uniform(2, 5))  # rough particle surfaces
        side = 0.3 if pile else 0.1  # detector side shading: lit from one side
        ang = float(rng.uniform(0, 2 * math.pi))
        sig += float(rng.uniform(0, side)) * np.clip(math.cos(ang) * gx + math.sin(ang) * gy, -1, 1)
        # shade: gaps and lower particles next to higher ones are darker (fewer SE escape)
        r_med = float(np.median([p["r"] for p in parts])) if parts else 8.0
        occl = np.clip((_blur(z, max(1.5, r_med / 2)) - z) / max(1.0, r_med), 0, 1)
        sig *= 1.0 - float(rng.uniform(0.3, 0.8) if pile else rng.uniform(0, 0.4)) * occl
        # charging halo: a bright glow around clumps
        halo = float(rng.uniform(0.0, 0.18))
        if halo > 0.02:
            sig += halo * _blur(fg.astype(np.float32), float(rng.uniform(3, 10))) * (~fg)
        # dark pits (distractors)
        for _ in range(int(rng.integers(0, 8))):
            px, py, pr = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 12)
            yy, xx = np.ogrid[:h, :w]
            pit = np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / (2 * pr * pr)).astype(np.float32)
            sig -= 0.15 * pit * (~fg)
    else:  # gold: dark spheres on a bright membrane texture, dark shadows as look-alikes
        bright = float(rng.uniform(0.55, 0.8))
        membrane = 0.08 * _fractal(rng, h, w, rng.uniform(15, 60)) + 0.04 * _noise(rng, h, w, 3)
        sig = bright + membrane
        for _ in range(int(rng.integers(2, 14))):  # shadows: soft, larger, irregular, fainter
            px, py = rng.uniform(0, w), rng.uniform(0, h)
            pr = rng.uniform(0.8, 2.5) * max(p["d_px"] for p in pops) / 2
            ax = rng.uniform(0.6, 1.6)
            yy, xx = np.ogrid[:h, :w]
            d2 = ((xx - px) / ax) ** 2 + ((yy - py) * ax) ** 2
            sig -= rng.uniform(0.1, 0.3) * np.exp(-d2 / (2 * pr * pr)).astype(np.float32)
        depth = np.ones(len(parts) + 1, np.float32)
        depth[1:] = rng.uniform(0.35, 0.55, len(parts))
        # dense gold: darker towards the centre (projected thickness)
        thick = np.clip(z / np.maximum(1.0, z.max()), 0, 1)
        sig = np.where(fg, sig - depth[labels] * (0.55 + 0.45 * np.sqrt(thick)), sig)

    # --- instrument: illumination, blur, gain, noise, scan lines
    sig = sig * (1.0 + float(rng.uniform(0, 0.25)) * _noise(rng, h, w, max(h, w) / 1.5))
    sig = _blur(sig.astype(np.float32), float(rng.uniform(0.4, 1.3)))
    lo, hi = np.percentile(sig, [0.5, 99.5])
    sig = (sig - lo) / max(1e-6, hi - lo) * rng.uniform(0.6, 0.9) + rng.uniform(0.03, 0.15)
    noise = float(rng.uniform(0.02, 0.08))
    sig = sig + noise * rng.standard_normal((h, w)).astype(np.float32) * np.sqrt(np.clip(sig, .05, 1))
    sig += float(rng.uniform(0, 0.03)) * rng.standard_normal((h, 1)).astype(np.float32)
    if look == "sem" and rng.random() < 0.3:  # charging streaks to the right of bright rows
        for _ in range(int(rng.integers(1, 4))):
            y0 = int(rng.integers(0, h - 3))
            x0 = int(rng.integers(0, w))
            lane = np.exp(-np.arange(w - x0) / rng.uniform(20, 120)).astype(np.float32)
            sig[y0 : y0 + int(rng.integers(1, 4)), x0:] += rng.uniform(0.1, 0.3) * lane
    img = (np.clip(sig, 0, 1) * 255 + 0.5).astype(np.uint8)

    # --- data bar: hides what lies under it
    bar = bool(rng.random() < 1 / 3) if databar is None else bool(databar)
    bar_px = _draw_databar(img, rng, px_nm * 1e-9) if bar else 0
    if bar_px:
        cut_by_bar = set(np.unique(labels[h - bar_px - 1 : h - bar_px]).tolist()) - {0}
        labels[h - bar_px :] = 0
    else:
        cut_by_bar = set()
    box = bool(rng.random() < 1 / 6) if annotation is None else bool(annotation)
    box_at: list[int] | None = None
    if box:
        cut, box_at = _annotation_box(img, labels, rng, h - bar_px)
        cut_by_bar |= cut
    labels, kept = _relabel(labels, parts, min_px=4)
    # edge flags after relabelling: the particle ids in the border rows/columns
    scan_h = h - bar_px
    edge_ids = set(np.unique(np.concatenate([labels[0], labels[scan_h - 1], labels[:scan_h, 0],
                                             labels[:scan_h, -1]])).tolist()) - {0}
    bar_ids: set[int] = set()
    if cut_by_bar:
        old_ids = {id(parts[i - 1]) for i in cut_by_bar}
        bar_ids = {k for k, p in enumerate(kept, 1) if id(p) in old_ids}
    areas = np.bincount(labels.ravel(), minlength=len(kept) + 1)
    records = []
    for k, p in enumerate(kept, 1):
        excluded = "databar" if k in bar_ids else ("edge" if k in edge_ids else "")
        records.append({"id": k, "population": p["population"], "shape": p["shape"],
                        "x": round(p["x"], 2), "y": round(p["y"], 2),
                        "d_nominal_px": round(p["d_nominal_px"], 3),
                        "area_px": int(areas[k]),
                        "ecd_px": round(2 * math.sqrt(areas[k] / math.pi), 3),
                        "excluded": excluded})
    truth = {"version": PARTICLE_SYNTH_VERSION, "seed": seed, "look": look, "packed": pile,
             "annotation_box": box_at,
             "pixel_size_m": px_nm * 1e-9, "databar_px": bar_px, "labels": labels,
             "populations": [{k: v for k, v in p.items() if k != "shapes"} | {"shapes": list(p["shapes"])}
                             for p in pops],
             "particles": records, "bright_particles": look == "sem"}
    return img, truth


def write_particle_dataset(out: str | Path, n: int, *, seed: int = 0, size: tuple[int, int] = (384, 512),
                           fmt: str = "tif", masks: bool = True, **kw: Any) -> list[dict[str, Any]]:
    """``n`` particle micrographs in ``out`` (TIFF with ImageJ pixel size, or PNG), each with
    its Cellpose-style instance mask ``<stem>_masks.png`` (16-bit; the data bar rows are 0)
    and a ``truth.jsonl`` line (no label image)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        img, truth = particle_micrograph(seed * 1_000_003 + i, size, **kw)
        stem = f"particles_{seed}_{i:04d}"
        save_image(img, out / f"{stem}.{fmt}", truth["pixel_size_m"])
        if masks:
            Image.fromarray(truth["labels"].astype(np.uint16)).save(out / f"{stem}_masks.png")
        rec = {k: v for k, v in truth.items() if k != "labels"} | {"file": f"{stem}.{fmt}"}
        lines.append(rec)
    (out / "truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    return lines
