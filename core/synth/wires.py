"""Synthetic fibre and nanowire micrographs whose orientations and diameters are known pixel by
pixel: the training and test data of the fibre measurements (core/fibres).

A scene has one to three *populations* of directions (a mean angle and a spread, or isotropic),
and wires drawn from them: straight or curved, single or in bundles of parallel neighbours,
crossing each other, of varied diameter (log-normal around the population's), sparse or dense,
electrospun mats in depth layers (with beads on some fibres) or nanowires lying on a substrate.
The secondary-electron rendering and the camera are those of every synthetic micrograph
(blur, contrast, gamma, shot noise, scan lines, charging; a data bar on some).

Angles follow the fibre convention of core/fibres: degrees in [0, 180), counter-clockwise from
the image x axis *as the image is displayed* (row 0 at the top), i.e. ``atan2(-Δrow, Δcol)``.

    img, truth = generate_wires(7, 256)
    truth["angle_deg"]   # (H, W) float32: the direction of the wire on top, NaN off wires
    truth["mask"]        # (H, W) bool: wire pixels (the data bar rows are False)
    truth["diameter_px"] # (H, W) float32: the diameter of the wire on top, NaN off wires
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from core.synth.databar import _draw_databar
from core.synth.micrograph import SYNTH_VERSION, _seed_for
from core.synth.primitives import _capsules, _loguniform, _polyline_pieces, _random_path
from core.synth.render import _camera, _render_se
from core.synth.scene import _Scene, _substrate

WIRE_KINDS = ("fibres", "nanowires")


def _populations(rng: np.random.Generator, n_pop: int | None) -> list[dict[str, float]]:
    """1–3 populations of directions: mean angle (deg), spread (deg SD; inf = isotropic), weight."""
    if n_pop is None:
        n_pop = int(rng.choice([1, 1, 1, 2, 2, 3]))
    pops = []
    base = rng.uniform(0, 180)
    for i in range(n_pop):
        if rng.random() < (0.25 if n_pop == 1 else 0.1):
            spread = math.inf  # a random mat
        else:
            spread = float(_loguniform(rng, 2.0, 35.0))
        angle = (base + (0 if i == 0 else rng.uniform(25, 155))) % 180
        pops.append({"angle_deg": float(angle), "spread_deg": spread,
                     "weight": float(rng.uniform(0.3, 1.0) if i else 1.0)})
    total = sum(p["weight"] for p in pops)
    for p in pops:
        p["weight"] = p["weight"] / total
    return pops


def _draw_angle(rng: np.random.Generator, pop: dict[str, float]) -> float:
    if not math.isfinite(pop["spread_deg"]):
        return float(rng.uniform(0, 180))
    return float((pop["angle_deg"] + rng.normal(0, pop["spread_deg"])) % 180)


def generate_wires(seed: int, size: int = 256, *, kind: str | None = None,
                   populations: list[dict[str, float]] | None = None,
                   n_populations: int | None = None, diameter_px: float | None = None,
                   density: float | None = None, curvature: float | None = None,
                   databar: bool | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """One synthetic fibre / nanowire micrograph (``size`` × ``size`` uint8) and its truth.

    ``kind``: 'fibres' (electrospun mats: thick, layered, beads on some) or 'nanowires' (thin,
    stiff, lying on a substrate, bundles); None → either. ``populations``: a list of
    ``{"angle_deg", "spread_deg", "weight"}`` (spread ``inf`` = isotropic); None → 1–3 random.
    ``diameter_px``, ``density`` (≈ 1 normal), ``curvature`` (0 straight … 0.3 wavy): None →
    random. ``databar``: None → on ~25 % of images.

    The truth dict: ``kind``, ``populations``, ``pixel_size_m``, ``databar_px``, ``seed``,
    ``size``, ``generator``, ``wire_diameters_px`` (one per wire, before beads), and the
    arrays ``mask`` (bool), ``angle_deg`` and ``diameter_px`` (float32, NaN off wires) over the
    whole frame (rows of the data bar are off wires).
    """
    if kind is not None and kind not in WIRE_KINDS:
        raise ValueError(f"Unknown wire kind {kind!r}; expected one of {', '.join(WIRE_KINDS)}")
    if size < 32:
        raise ValueError(f"size must be at least 32 px, got {size!r}")
    rng = _seed_for(SYNTH_VERSION, "wires", int(seed), size, kind)
    kind = kind or str(rng.choice(WIRE_KINDS))
    pops = populations if populations is not None else _populations(rng, n_populations)
    weights = np.array([p["weight"] for p in pops], float)
    weights = weights / weights.sum()
    S = size
    sc = _Scene(size=S, rows=S, rng=rng)
    fibres = kind == "fibres"
    if fibres:
        diam = float(diameter_px or _loguniform(rng, 3.0, 20.0))
        sc.set_scale(_loguniform(rng, 80e-9, 5e-6), diam)
    else:
        diam = float(diameter_px or _loguniform(rng, 2.5, 12.0))
        sc.set_scale(_loguniform(rng, 10e-9, 300e-9), diam)
        _substrate(sc)
    dens = float(density if density is not None else _loguniform(rng, 0.4, 1.6))
    wig = float(curvature if curvature is not None else
                (rng.uniform(0.0, 0.05) if rng.random() < 0.6 else rng.uniform(0.05, 0.3)))
    beads = fibres and rng.random() < 0.25
    n_layers = int(rng.integers(1, 4)) if fibres else 1
    # wires cover ≈ dens × 90 % of the frame in fibre mats (before overlaps), ≈ dens × 15 %
    # for nanowires
    length_each = 1.2 * S
    mean_len = length_each * (1.0 if fibres else 0.4)
    n_total = max(2, int(dens * (0.9 if fibres else 0.15) * S * S / (diam * mean_len)))
    n_total = min(n_total, 600)
    cols: list[list[np.ndarray]] = [[] for _ in range(8)]  # ax ay bx by r z yield angle
    wire_d: list[float] = []
    i = 0
    while i < n_total:
        pop = pops[int(rng.choice(len(pops), p=weights))]
        phi = _draw_angle(rng, pop)
        bundle = 1 if rng.random() > (0.15 if fibres else 0.3) else int(rng.integers(2, 6))
        cx, cy = rng.uniform(-0.1 * S, 1.1 * S), rng.uniform(-0.1 * S, 1.1 * S)
        layer = int(rng.integers(0, n_layers))
        length = length_each * (1.0 if fibres else _loguniform(rng, 0.08, 1.0))
        r = diam / 2 * math.exp(rng.normal(0, 0.2))
        wire_wig = wig * rng.uniform(0.5, 1.5) / max(1.0, diam / 8)
        step = max(4.0, diam)
        base_pts = None
        for b in range(bundle):
            th = -math.radians(phi)  # image coordinates: y down
            if base_pts is None:
                x0 = cx - math.cos(th) * length / 2
                y0 = cy - math.sin(th) * length / 2
                base_pts = _random_path(rng, x0, y0, th, length, step, wire_wig)
                pts = base_pts
            else:  # a bundle: parallel neighbours, side by side
                off = b * 2.1 * r * (1 if b % 2 else -1) * 0.5 * (1 + b // 2)
                nx, ny = -math.sin(th), math.cos(th)
                pts = base_pts + np.array([nx * off, ny * off], np.float32)
            pc = _polyline_pieces(pts, max(4.0, 1.5 * r))
            if len(pc) == 0:
                continue
            rb = r * math.exp(rng.normal(0, 0.05))
            piece_phi = np.degrees(np.arctan2(-(pc[:, 3] - pc[:, 1]), pc[:, 2] - pc[:, 0])) % 180
            z = -layer * diam * 0.9 + rng.uniform(0, 0.3 * rb)
            yv = rng.uniform(0.45, 0.7) if fibres else rng.uniform(0.5, 0.85)
            for c, v in enumerate((pc[:, 0], pc[:, 1], pc[:, 2], pc[:, 3])):
                cols[c].append(v)
            cols[4].append(np.full(len(pc), rb, np.float32))
            cols[5].append(np.full(len(pc), z, np.float32))
            cols[6].append(np.full(len(pc), yv, np.float32))
            cols[7].append(piece_phi.astype(np.float32))
            wire_d.append(2 * rb)
            if beads and rng.random() < 0.4:
                k = rng.integers(0, len(pc), max(1, len(pc) // 15))
                for c, v in enumerate((pc[k, 0], pc[k, 1], pc[k, 0], pc[k, 1])):
                    cols[c].append(v)
                cols[4].append(np.full(len(k), rb * rng.uniform(1.6, 2.4), np.float32))
                cols[5].append(np.full(len(k), z, np.float32))
                cols[6].append(np.full(len(k), 0.6, np.float32))
                cols[7].append(np.full(len(k), np.nan, np.float32))  # a bead has no direction
            i += 1
    ax, ay, bx, by, rr, zz, yy, aa = (np.concatenate(c) for c in cols)
    zz = zz - zz.min() + 0.01
    layer_h = np.zeros((S, S), np.float32)
    ymap = np.zeros((S, S), np.float32)
    _capsules(layer_h, ax, ay, bx, by, rr, rr, z=zz, ymap=ymap, yvals=yy)
    angle = np.full((S, S), np.nan, np.float32)
    _capsules(np.zeros((S, S), np.float32), ax, ay, bx, by, rr, rr, z=zz, ymap=angle, yvals=aa)
    dmap = np.full((S, S), np.nan, np.float32)
    _capsules(np.zeros((S, S), np.float32), ax, ay, bx, by, rr, rr, z=zz, ymap=dmap,
              yvals=(2 * rr).astype(np.float32))
    on = layer_h > 0
    if fibres:  # the mat: little is seen below the deepest fibres
        sc.H = np.where(on, layer_h, -diam * n_layers * 0.8).astype(np.float32)
        sc.Y = np.where(on, ymap, 0.2).astype(np.float32)
    else:
        sc.add_layer(layer_h, ymap)
    sig = _render_se(sc)
    img = _camera(sig, rng, 0.0)
    pixel_size = float(sc.pixel_size_m or 1e-8)
    if databar is None:
        databar = bool(rng.random() < 0.25)
    bar_px = _draw_databar(img, rng, pixel_size) if databar else 0
    mask = on.copy()
    angle[~on] = np.nan
    dmap[~on] = np.nan
    if bar_px:
        mask[S - bar_px:] = False
        angle[S - bar_px:] = np.nan
        dmap[S - bar_px:] = np.nan
    truth: dict[str, Any] = {
        "kind": kind,
        "populations": pops,
        "pixel_size_m": pixel_size,
        "databar_px": bar_px,
        "seed": int(seed),
        "size": S,
        "generator": f"{SYNTH_VERSION}-wires",
        "beads": bool(beads),
        "curvature": wig,
        "density": dens,
        "wire_diameters_px": [round(float(d), 3) for d in wire_d],
        "mask": mask,
        "angle_deg": angle,
        "diameter_px": dmap,
    }
    return img, truth
