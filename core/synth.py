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

import json
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from core.config import NFFA_CLASSES

SYNTH_VERSION = "synth-v1"
CLASSES: tuple[str, ...] = tuple(NFFA_CLASSES)  # every NFFA class has a generator

# Whether a class paints a whole surface (a mixed image shows it beside / under the other one)
# or objects that lie on whatever surface is there.
SURFACES = ("films", "patterned", "porous", "fibres", "mems", "tips")
OBJECTS = ("particles", "nanowires", "powder", "biological")

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

ProgressFn = Callable[[float, str], None]


# ----------------------------------------------------------------------------- small helpers


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


@lru_cache(maxsize=256)
def _taps(sigma_centi: int) -> np.ndarray:
    sigma = sigma_centi / 100.0
    r = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float32)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def _blur_axis(a: np.ndarray, w: np.ndarray, axis: int) -> np.ndarray:
    r = len(w) // 2
    n = a.shape[axis]
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="reflect" if n > r else "edge")
    out = np.zeros_like(a)
    for k, wk in enumerate(w):
        sl = p[k : k + n] if axis == 0 else p[:, k : k + n]
        out += wk * sl
    return out


def _resize(a: np.ndarray, w: int, h: int, resample: Image.Resampling) -> np.ndarray:
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
    return np.array(img.resize((w, h), resample), dtype=np.float32)


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur, reflecting at the borders; large sigmas go through a smaller image."""
    a = a.astype(np.float32, copy=False)
    if sigma < 0.3:
        return a
    if sigma > 2.0:
        h, w = a.shape
        f = math.ceil(sigma / 1.5)
        sh, sw = max(2, h // f), max(2, w // f)
        small = _resize(a, sw, sh, Image.Resampling.BOX)
        small = _blur(small, sigma / f)
        return _resize(small, w, h, Image.Resampling.BILINEAR)
    w = _taps(round(sigma * 100))
    return _blur_axis(_blur_axis(a, w, 0), w, 1)


def _noise(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Smooth random field, zero mean, unit std, correlation length ~``scale`` px."""
    gh = max(2, round(h / scale) + 2)
    gw = max(2, round(w / scale) + 2)
    g = rng.standard_normal((gh, gw), dtype=np.float32)
    r = _resize(g, w, h, Image.Resampling.BICUBIC)
    r -= r.mean()
    return r / (r.std() + 1e-6)


def _fractal(rng: np.random.Generator, h: int, w: int, scale: float, octaves: int = 4,
             persistence: float = 0.5) -> np.ndarray:
    out = np.zeros((h, w), np.float32)
    amp = 1.0
    for _ in range(octaves):
        if scale < 1.0:
            break
        out += amp * _noise(rng, h, w, scale)
        amp *= persistence
        scale /= 2.0
    return out / (out.std() + 1e-6)


def _worley(rng: np.random.Generator, h: int, w: int, cell: float, jitter: float = 1.0):
    """Voronoi on a jittered grid: (F1, F2 distances in px, cell id, number of ids)."""
    c = max(2, round(cell))
    gh, gw = -(-h // c), -(-w // c)
    sy = (np.arange(gh + 2, dtype=np.float32)[:, None] - 0.5
          + jitter * (rng.random((gh + 2, gw + 2), dtype=np.float32) - 0.5)) * c
    sx = (np.arange(gw + 2, dtype=np.float32)[None, :] - 0.5
          + jitter * (rng.random((gh + 2, gw + 2), dtype=np.float32) - 0.5)) * c
    yy = (np.arange(gh)[:, None, None, None] * c + np.arange(c)[None, :, None, None]).astype(
        np.float32)
    xx = (np.arange(gw)[None, None, :, None] * c + np.arange(c)[None, None, None, :]).astype(
        np.float32)
    f1 = np.full((gh, c, gw, c), np.inf, np.float32)
    f2 = np.full((gh, c, gw, c), np.inf, np.float32)
    ids = np.zeros((gh, c, gw, c), np.int32)
    base = (np.arange(gh)[:, None] * (gw + 2) + np.arange(gw)[None, :]).astype(np.int32)
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            syb = sy[di : di + gh, dj : dj + gw][:, None, :, None]
            sxb = sx[di : di + gh, dj : dj + gw][:, None, :, None]
            d2 = (yy - syb) ** 2 + (xx - sxb) ** 2
            closer = d2 < f1
            f2 = np.minimum(f2, np.maximum(f1, d2))
            f1 = np.minimum(f1, d2)
            ids = np.where(closer, (base + di * (gw + 2) + dj)[:, None, :, None], ids)
    f1 = np.sqrt(f1.reshape(gh * c, gw * c)[:h, :w])
    f2 = np.sqrt(f2.reshape(gh * c, gw * c)[:h, :w])
    return f1, f2, ids.reshape(gh * c, gw * c)[:h, :w], (gh + 2) * (gw + 2)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


_BUCKETS = np.unique(np.round(2.0 * 1.2 ** np.arange(32)).astype(np.int64))
_BUCKETS = _BUCKETS[_BUCKETS <= 600]


def _stamp(canvas: np.ndarray, cx: np.ndarray, cy: np.ndarray, half: np.ndarray,
           fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
           ymap: np.ndarray | None = None, yvals: np.ndarray | None = None) -> None:
    """Max-composite many small objects into ``canvas`` (vectorised per patch size).

    ``fn(idx, dx, dy)`` gives heights for objects ``idx`` at offsets (dx, dy) from their
    centres, shape (n, K, K), ``-inf`` outside the object. Where an object ends up on top,
    ``ymap`` gets its ``yvals``.
    """
    H, W = canvas.shape
    cx = np.asarray(cx, np.float32)
    cy = np.asarray(cy, np.float32)
    half = np.asarray(half, np.float32)
    visible = (cx + half >= 0) & (cx - half < W) & (cy + half >= 0) & (cy - half < H)
    b = np.minimum(np.searchsorted(_BUCKETS, half), len(_BUCKETS) - 1)
    for bi in np.unique(b[visible]):
        k = int(_BUCKETS[bi])
        sel_all = np.nonzero((b == bi) & visible)[0]
        per = max(1, 400_000 // (2 * k + 1) ** 2)
        off = np.arange(-k, k + 1, dtype=np.int32)
        offf = off.astype(np.float32)
        for s in range(0, len(sel_all), per):
            idx = sel_all[s : s + per]
            fx, fy = np.floor(cx[idx]), np.floor(cy[idx])
            ix = fx.astype(np.int32)[:, None, None] + off[None, None, :]
            iy = fy.astype(np.int32)[:, None, None] + off[None, :, None]
            dx = offf[None, None, :] - (cx[idx] - fx)[:, None, None]
            dy = offf[None, :, None] - (cy[idx] - fy)[:, None, None]
            h = fn(idx, dx, dy)
            inside = np.isfinite(h) & (ix >= 0) & (ix < W) & (iy >= 0) & (iy < H)
            if not inside.any():
                continue
            ixs = np.broadcast_to(ix, h.shape)[inside]
            iys = np.broadcast_to(iy, h.shape)[inside]
            hv = h[inside]
            np.maximum.at(canvas, (iys, ixs), hv)
            if ymap is not None and yvals is not None:
                top = hv >= canvas[iys, ixs] - 1e-6
                yv = np.broadcast_to(yvals[idx][:, None, None], h.shape)[inside]
                ymap[iys[top], ixs[top]] = yv[top]


def _capsules(canvas: np.ndarray, ax, ay, bx, by, ra, rb, z=0.0, hs=1.0,
              ymap: np.ndarray | None = None, yvals=None) -> None:
    """Tapered round rods from a to b (radius ra → rb), height z + hs·√(r² − d²).

    A rod of zero length is a sphere cap. Long rods should be cut into pieces
    (:func:`_polyline_pieces`) so that the patches stay small.
    """
    ax, ay, bx, by = (np.asarray(v, np.float32) for v in (ax, ay, bx, by))
    n = ax.shape[0]
    ra = np.broadcast_to(np.asarray(ra, np.float32), (n,))
    rb = np.broadcast_to(np.asarray(rb, np.float32), (n,))
    z = np.broadcast_to(np.asarray(z, np.float32), (n,))
    hs = np.broadcast_to(np.asarray(hs, np.float32), (n,))
    cx, cy = (ax + bx) / 2, (ay + by) / 2
    ex, ey = bx - ax, by - ay
    L2 = ex * ex + ey * ey + 1e-6
    half = np.ceil(np.sqrt(L2) / 2 + np.maximum(ra, rb) + 1)
    yv = None if yvals is None else np.broadcast_to(np.asarray(yvals, np.float32), (n,))

    def fn(idx, dx, dy):
        e_x, e_y = ex[idx][:, None, None], ey[idx][:, None, None]
        px = dx + e_x / 2
        py = dy + e_y / 2
        t = np.clip((px * e_x + py * e_y) / L2[idx][:, None, None], 0.0, 1.0)
        qx, qy = px - t * e_x, py - t * e_y
        d2 = qx * qx + qy * qy
        r = ra[idx][:, None, None] + (rb[idx] - ra[idx])[:, None, None] * t
        r2 = r * r
        h = z[idx][:, None, None] + hs[idx][:, None, None] * np.sqrt(np.maximum(r2 - d2, 0.0))
        return np.where(d2 < r2, h, -np.inf)

    _stamp(canvas, cx, cy, half, fn, ymap, yv)


def _polyline_pieces(pts: np.ndarray, max_len: float = 10.0) -> np.ndarray:
    """Cut a polyline (m, 2) into segments no longer than ``max_len``: (k, 4) = ax ay bx by."""
    pts = np.asarray(pts, np.float32)
    if len(pts) < 2:
        return np.zeros((0, 4), np.float32)
    p0, p1 = pts[:-1], pts[1:]
    n = np.maximum(1, np.ceil(np.hypot(*(p1 - p0).T) / max_len)).astype(np.int64)
    seg = np.repeat(np.arange(len(p0)), n)
    k = np.arange(seg.size) - np.repeat(np.cumsum(n) - n, n)
    t0 = (k / n[seg]).astype(np.float32)[:, None]
    t1 = ((k + 1) / n[seg]).astype(np.float32)[:, None]
    d = (p1 - p0)[seg]
    return np.concatenate([p0[seg] + d * t0, p0[seg] + d * t1], axis=1)


def _random_path(rng: np.random.Generator, x0: float, y0: float, theta: float, length: float,
                 step: float, wiggle: float) -> np.ndarray:
    n = max(2, int(length / step) + 1)
    dth = np.cumsum(rng.normal(0.0, wiggle, n - 1))
    th = theta + dth - dth.mean()
    xs = x0 + np.concatenate([[0.0], np.cumsum(step * np.cos(th))])
    ys = y0 + np.concatenate([[0.0], np.cumsum(step * np.sin(th))])
    return np.stack([xs, ys], axis=1).astype(np.float32)


def _polygons(canvas: np.ndarray, cx, cy, radius, n_sides, rng: np.random.Generator,
              irregular: float, slope, top, ymap: np.ndarray | None = None, yvals=None,
              z=0.0) -> None:
    """Faceted grains: convex polygons whose height rises with slope ``slope`` from every edge
    up to a flat top at ``top`` — each facet has its own normal, hence its own brightness."""
    cx = np.asarray(cx, np.float32)
    n = cx.shape[0]
    m = int(n_sides)
    radius = np.asarray(radius, np.float32)
    ang = np.sort(rng.uniform(0, 2 * np.pi, (n, m)), axis=1)
    if irregular < 1.0:  # more regular: evenly spaced angles, jittered
        base = np.linspace(0, 2 * np.pi, m, endpoint=False)[None, :]
        jitter = irregular * (ang - ang.mean(1, keepdims=True))
        ang = base + rng.uniform(0, 2 * np.pi, (n, 1)) + jitter
    nx = np.cos(ang).astype(np.float32)
    ny = np.sin(ang).astype(np.float32)
    rho = (radius[:, None] * (1.0 - irregular * 0.35 * rng.random((n, m)))).astype(np.float32)
    slope = np.broadcast_to(np.asarray(slope, np.float32), (n,))
    top = np.broadcast_to(np.asarray(top, np.float32), (n,))
    z = np.broadcast_to(np.asarray(z, np.float32), (n,))
    fslope = (slope[:, None] * (0.6 + 0.8 * rng.random((n, m)))).astype(np.float32)
    yv = None if yvals is None else np.broadcast_to(np.asarray(yvals, np.float32), (n,))

    def fn(idx, dx, dy):
        d = (rho[idx][:, :, None, None] - nx[idx][:, :, None, None] * dx[:, None]
             - ny[idx][:, :, None, None] * dy[:, None])
        h = (d * fslope[idx][:, :, None, None]).min(axis=1)
        mind = d.min(axis=1)
        h = np.minimum(h, top[idx][:, None, None]) + z[idx][:, None, None]
        return np.where(mind > 0, h, -np.inf)

    _stamp(canvas, cx, np.asarray(cy, np.float32), np.ceil(radius + 1), fn, ymap, yv)


# ----------------------------------------------------------------------------- the scene


@dataclass
class _Scene:
    size: int  # width and height of the output image
    rows: int  # rows of the (world) height field; > size when the stage is tilted
    rng: np.random.Generator
    tilt_deg: float = 0.0
    pixel_size_m: float | None = None
    feature_px: float = 12.0  # typical feature size: scale of cavity and shadow effects
    H: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.float32))
    Y: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.float32))
    particles: list[dict[str, float]] = field(default_factory=list)
    variants: dict[str, str] = field(default_factory=dict)
    mixing: bool = False  # another class shares the image

    def __post_init__(self) -> None:
        self.H = np.zeros((self.rows, self.size), np.float32)
        self.Y = np.full((self.rows, self.size), 0.35, np.float32)

    def set_scale(self, physical_m: float, px: float, feature_px: float | None = None) -> None:
        """Set the pixel size (once: the first builder decides the magnification)."""
        if self.pixel_size_m is None:
            self.pixel_size_m = float(np.clip(physical_m / max(px, 0.5), 3e-10, 5e-6))
            self.feature_px = float(feature_px if feature_px is not None else px)

    def add_layer(self, layer: np.ndarray, ymap: np.ndarray) -> None:
        """Objects lying on the current surface."""
        on = layer > 0
        self.H = self.H + layer
        self.Y = np.where(on, ymap, self.Y)


def _substrate(sc: _Scene) -> None:
    """A neutral support for objects: polished wafer, carbon tape, or a slightly rough foil."""
    rng = sc.rng
    kind = rng.choice(["wafer", "tape", "foil"], p=[0.45, 0.35, 0.2])
    R, S = sc.rows, sc.size
    if kind == "wafer":
        sc.H = 0.3 * _noise(rng, R, S, 40.0)
        sc.Y[:] = rng.uniform(0.2, 0.35)
    elif kind == "tape":
        sc.H = 0.6 * _fractal(rng, R, S, 16.0, 3)
        sc.Y = (rng.uniform(0.12, 0.22) + 0.03 * _noise(rng, R, S, 6.0)).astype(np.float32)
    else:
        sc.H = 0.5 * _fractal(rng, R, S, 24.0, 4) + 0.25 * _noise(rng, R, S, 2.0)
        sc.Y[:] = rng.uniform(0.2, 0.32)
    sc.variants.setdefault("substrate", str(kind))


# ----------------------------------------------------------------------------- class builders


def _b_particles(sc: _Scene, amount: float) -> None:
    rng, S, R = sc.rng, sc.size, sc.rows
    # in a mixed image: plenty of particles of a size that reads as particles
    dmed = _loguniform(rng, 6.0, 40.0) if sc.mixing else _loguniform(rng, 5.0, 90.0)
    spread = rng.uniform(0.04, 0.3)
    cover = rng.uniform(0.18, 0.4) if sc.mixing else rng.uniform(0.08, 0.3)
    sc.set_scale(_loguniform(rng, 5e-9, 5e-6), dmed)
    mode = str(rng.choice(["uniform", "clustered", "monolayer"], p=[0.5, 0.3, 0.2]))
    if mode == "monolayer" and dmed > 25:
        mode = "uniform"
    if mode == "monolayer":
        pitch = dmed * rng.uniform(1.02, 1.5)
        rot = rng.uniform(0, np.pi)
        span = int(1.5 * max(S, R) / pitch) + 2
        i, j = np.meshgrid(np.arange(-span, span), np.arange(-span, span))
        u = (i + 0.5 * (j % 2)) * pitch
        v = j * pitch * math.sqrt(3) / 2
        x = S / 2 + u * math.cos(rot) - v * math.sin(rot)
        y = R / 2 + u * math.sin(rot) + v * math.cos(rot)
        keep = (x > -dmed) & (x < S + dmed) & (y > -dmed) & (y < R + dmed)
        x, y = x[keep].ravel(), y[keep].ravel()
        patch = _noise(rng, R, S, S / 3) > rng.uniform(-1.0, 0.3)
        xi = np.clip(x.astype(int), 0, S - 1)
        yi = np.clip(y.astype(int), 0, R - 1)
        keep = patch[yi, xi] & (rng.random(x.shape) > rng.uniform(0.0, 0.1))
        x = x[keep] + rng.normal(0, 0.08 * pitch, keep.sum())
        y = y[keep] + rng.normal(0, 0.08 * pitch, keep.sum())
        n = len(x)
        if n > 1500:
            pick = rng.choice(n, 1500, replace=False)
            x, y, n = x[pick], y[pick], 1500
    else:
        n = int(np.clip(cover * S * R / (np.pi * dmed**2 / 4), 5, 600))
        if mode == "clustered":
            nc = max(1, int(n / rng.uniform(4, 25)))
            ccx, ccy = rng.uniform(0, S, nc), rng.uniform(0, R, nc)
            which = rng.integers(0, nc, n)
            spreadc = dmed * np.sqrt(n / nc) * rng.uniform(0.35, 0.7)
            x = ccx[which] + rng.normal(0, spreadc, n)
            y = ccy[which] + rng.normal(0, spreadc, n)
        else:
            x, y = rng.uniform(-dmed / 2, S + dmed / 2, n), rng.uniform(-dmed / 2, R + dmed / 2, n)
    d = np.clip(dmed * np.exp(rng.normal(0, spread, n)), 2.0, 0.7 * S).astype(np.float32)
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    inside = (x >= 0) & (x < S) & (y >= 0) & (y < 0.85 * R)
    if inside.sum() < 2:  # a particle image shows particles
        k = min(n, 2)
        x[:k] = rng.uniform(0.1 * S, 0.9 * S, k)
        y[:k] = rng.uniform(0.1 * R, 0.8 * R, k)
    layer = np.zeros((R, S), np.float32)
    ymap = np.zeros((R, S), np.float32)
    ybase = rng.uniform(0.45, 0.85)
    yv = np.clip(ybase + rng.normal(0, 0.04, n), 0.2, 1.0).astype(np.float32)
    hs = rng.uniform(0.55, 1.0)
    if rng.random() < 0.2 and dmed > 8:  # faceted crystals (cubes, octahedra seen from above)
        sides = int(rng.choice([4, 6, 3, 5]))
        sc.variants["particles"] = f"faceted-{sides}"
        _polygons(layer, x, y, d / 2, sides, rng, irregular=0.15, slope=rng.uniform(0.8, 2.0),
                  top=d * 0.35 * hs, ymap=ymap, yvals=yv)
    else:
        sc.variants["particles"] = mode
        _capsules(layer, x, y, x, y, d / 2, d / 2, hs=hs, ymap=ymap, yvals=yv)
    sc.add_layer(layer, ymap)
    px_nm = (sc.pixel_size_m or 1e-9) * 1e9
    for xi, yi, di in zip(x.tolist(), y.tolist(), d.tolist(), strict=True):
        if 0 <= xi < S and 0 <= yi < R:
            sc.particles.append({"x": round(xi, 2), "y": round(yi, 2), "d_px": round(di, 2),
                                 "d_nm": round(di * px_nm, 3)})


def _wire_layer(sc: _Scene, amount: float, fibres: bool) -> None:
    rng, S, R = sc.rng, sc.size, sc.rows
    layer = np.zeros((R, S), np.float32)
    ymap = np.zeros((R, S), np.float32)
    if fibres:
        diam = _loguniform(rng, 5.0, 36.0)
        sc.set_scale(_loguniform(rng, 80e-9, 20e-6), diam)
        n_layers = int(rng.integers(2, 4))
        per_layer = max(2, int(rng.uniform(0.35, 0.8) * S / diam * amount))
        per_layer = min(per_layer, 18)
        aligned = rng.random() < 0.3
        theta0 = rng.uniform(0, np.pi)
        beads = rng.random() < 0.2
        wiggle = rng.uniform(0.0, 0.08) if rng.random() < 0.5 else rng.uniform(0.05, 0.2)
        ax: list[np.ndarray] = []
        ay: list[np.ndarray] = []
        bx: list[np.ndarray] = []
        by: list[np.ndarray] = []
        rr: list[np.ndarray] = []
        zz: list[np.ndarray] = []
        yy: list[np.ndarray] = []
        for li in range(n_layers):
            depth = -(n_layers - 1 - li) * diam * rng.uniform(0.7, 1.1)
            for _ in range(per_layer):
                th = theta0 + rng.normal(0, 0.2) if aligned else rng.uniform(0, np.pi)
                cxp, cyp = rng.uniform(0, S), rng.uniform(0, R)
                length = 1.6 * max(S, R)
                x0 = cxp - math.cos(th) * length / 2
                y0 = cyp - math.sin(th) * length / 2
                step = max(4.0, diam)
                pts = _random_path(rng, x0, y0, th, length, step, wiggle / max(1.0, diam / 10))
                pc = _polyline_pieces(pts, max(6.0, diam * 0.8))
                r = diam / 2 * math.exp(rng.normal(0, 0.25))
                for lst, col in ((ax, 0), (ay, 1), (bx, 2), (by, 3)):
                    lst.append(pc[:, col])
                rr.append(np.full(len(pc), r, np.float32))
                zz.append(np.full(len(pc), depth + rng.uniform(0, 0.4 * r), np.float32))
                yy.append(np.full(len(pc), rng.uniform(0.45, 0.7), np.float32))
                if beads and rng.random() < 0.5:
                    k = rng.integers(0, len(pc), max(1, len(pc) // 12))
                    for lst, col in ((ax, 0), (ay, 1), (bx, 2), (by, 3)):
                        lst.append(pc[k, col])
                    rr.append(np.full(len(k), r * rng.uniform(1.5, 2.2), np.float32))
                    zz.append(np.full(len(k), depth + rng.uniform(0, 0.4 * r), np.float32))
                    yy.append(np.full(len(k), 0.6, np.float32))
        cat = [np.concatenate(v) for v in (ax, ay, bx, by, rr, zz, yy)]
        cat[5] = cat[5] - cat[5].min()
        _capsules(layer, cat[0], cat[1], cat[2], cat[3], cat[4], cat[4], z=cat[5] + 0.01,
                  ymap=ymap, yvals=cat[6])
        sc.variants["fibres"] = ("aligned" if aligned else "random") + ("-beads" if beads else "")
        # The mat: almost nothing is seen below the deepest fibres.
        sc.H = sc.H - diam * n_layers * 0.8
        sc.Y = sc.Y * 0.6
        sc.add_layer(layer, ymap)
        return
    # nanowires: thin, long, stiff, lying on a surface, often with a catalyst tip
    diam = _loguniform(rng, 4.0 if sc.mixing else 2.0, 14.0)
    sc.set_scale(_loguniform(rng, 10e-9, 400e-9), diam)
    n = max(3, int(rng.uniform(8, 60) * amount * (6.0 / diam) ** 0.5))
    aligned = rng.random() < 0.3
    theta0 = rng.uniform(0, np.pi)
    tipped = rng.random() < 0.35
    ax, ay, bx, by, rr, zz, yy = [], [], [], [], [], [], []
    tips = []
    yw = rng.uniform(0.5, 0.85)
    for i in range(n):
        length = min(diam * _loguniform(rng, 12, 70), 1.6 * S)
        th = theta0 + rng.normal(0, 0.15) if aligned else rng.uniform(0, 2 * np.pi)
        x0, y0 = rng.uniform(-0.2 * S, 1.2 * S), rng.uniform(-0.2 * R, 1.2 * R)
        pts = _random_path(rng, x0, y0, th, length, max(6.0, length / 6), rng.uniform(0, 0.06))
        pc = _polyline_pieces(pts, max(6.0, 2.5 * diam))
        r = diam / 2 * math.exp(rng.normal(0, 0.15))
        for lst, col in ((ax, 0), (ay, 1), (bx, 2), (by, 3)):
            lst.append(pc[:, col])
        rr.append(np.full(len(pc), r, np.float32))
        zz.append(np.full(len(pc), i * 0.02 * r, np.float32))
        yy.append(np.full(len(pc), yw + rng.normal(0, 0.03), np.float32))
        if tipped:
            tips.append((pts[-1, 0], pts[-1, 1], r * rng.uniform(1.2, 1.6), i * 0.02 * r))
    cat = [np.concatenate(v) for v in (ax, ay, bx, by, rr, zz, yy)]
    _capsules(layer, cat[0], cat[1], cat[2], cat[3], cat[4], cat[4], z=cat[5] + 0.01,
              ymap=ymap, yvals=cat[6])
    if tips:
        t = np.array(tips, np.float32)
        _capsules(layer, t[:, 0], t[:, 1], t[:, 0], t[:, 1], t[:, 2], t[:, 2], z=t[:, 3],
                  ymap=ymap, yvals=np.float32(min(1.0, yw + 0.15)))
    sc.variants["nanowires"] = ("aligned" if aligned else "random") + ("-tipped" if tipped else "")
    sc.add_layer(layer, ymap)


def _b_nanowires(sc: _Scene, amount: float) -> None:
    _wire_layer(sc, amount, fibres=False)


def _b_fibres(sc: _Scene, amount: float) -> None:
    _wire_layer(sc, amount, fibres=True)


def _b_films(sc: _Scene, amount: float) -> None:
    rng, S, R = sc.rng, sc.size, sc.rows
    kind = str(rng.choice(["grains", "cracks", "smooth", "granular", "section"],
                          p=[0.28, 0.22, 0.2, 0.18, 0.12]))
    if (sc.tilt_deg or sc.mixing) and kind == "section":
        kind = "grains"
    sc.variants["films"] = kind
    if kind == "grains":
        cell = _loguniform(rng, 6, 45)
        sc.set_scale(_loguniform(rng, 20e-9, 3e-6), cell)
        f1, f2, ids, nid = _worley(rng, R, S, cell)
        g = rng.random(nid, dtype=np.float32)
        groove = _smoothstep((f2 - f1) / rng.uniform(1.5, 4.0))
        tiltx = (rng.random(nid, dtype=np.float32) - 0.5)[ids]
        tilty = (rng.random(nid, dtype=np.float32) - 0.5)[ids]
        yy, xx = np.mgrid[0:R, 0:S].astype(np.float32)
        facet = rng.uniform(0.0, 0.35) * (tiltx * (xx % cell) + tilty * (yy % cell))
        sc.H = cell * (rng.uniform(0.04, 0.12) * groove + 0.05 * g[ids]) + facet
        contrast = rng.uniform(0.05, 0.3)  # channelling contrast between grains
        sc.Y = (rng.uniform(0.3, 0.45) + contrast * (g[ids] - 0.5)).astype(np.float32)
    elif kind == "cracks":
        cell = _loguniform(rng, 25, 140)
        sc.set_scale(_loguniform(rng, 1e-6, 200e-6), cell)
        f1, f2, ids, nid = _worley(rng, R, S, cell)
        w = rng.uniform(1.2, 4.0) * (1 + 0.5 * _noise(rng, R, S, cell / 2).clip(-1, 1))
        crack = (f2 - f1) < w
        # not every boundary has cracked
        keep = (rng.random(nid) < rng.uniform(0.6, 1.0))[ids] | (_noise(rng, R, S, cell) > 0.3)
        crack &= keep
        curl = rng.uniform(0.0, 2.0) * np.exp(-(f2 - f1) / (0.15 * cell))
        sc.H = 0.4 * _fractal(rng, R, S, 12.0, 3) + curl
        sc.H = np.where(crack, -rng.uniform(6, 15), sc.H).astype(np.float32)
        sc.Y = np.where(crack, 0.05, rng.uniform(0.25, 0.4)).astype(np.float32)
        sc.feature_px = max(6.0, cell / 6)
    elif kind == "smooth":
        sc.set_scale(_loguniform(rng, 2e-9, 200e-9), 10)
        sc.H = 0.6 * _fractal(rng, R, S, 50.0, 3)
        sc.Y[:] = rng.uniform(0.25, 0.4)
        nd = int(rng.integers(3, 40))
        dx, dy = rng.uniform(0, S, nd), rng.uniform(0, R, nd)
        dr = np.array([_loguniform(rng, 1.5, 10) for _ in range(nd)], np.float32)
        pits = np.zeros((R, S), np.float32)
        _capsules(pits, dx, dy, dx, dy, dr, dr, hs=rng.uniform(0.5, 1.2))
        sc.H = sc.H - pits  # pinholes
        if rng.random() < 0.5:  # scratches
            for _ in range(int(rng.integers(1, 4))):
                th = rng.uniform(0, np.pi)
                pts = _random_path(rng, rng.uniform(0, S), rng.uniform(0, R), th, 1.5 * S, 20, 0.01)
                pts = pts - np.array([math.cos(th), math.sin(th)], np.float32) * 0.75 * S
                pc = _polyline_pieces(pts, 8)
                sc_l = np.zeros((R, S), np.float32)
                rw = rng.uniform(0.8, 2.5)
                _capsules(sc_l, pc[:, 0], pc[:, 1], pc[:, 2], pc[:, 3], rw, rw, hs=0.6)
                sc.H = sc.H - sc_l
        sc.feature_px = 6.0
    elif kind == "granular":
        cell = _loguniform(rng, 3, 10)
        sc.set_scale(_loguniform(rng, 5e-9, 200e-9), cell)
        f1, f2, ids, nid = _worley(rng, R, S, cell, jitter=0.9)
        dome = np.sqrt(np.clip(1.0 - (f1 / (0.5 * (f1 + f2) + 1e-3)) ** 2, 0, 1))
        g = rng.random(nid, dtype=np.float32)
        sc.H = cell * 0.5 * dome * (0.7 + 0.6 * g[ids]) + 2.0 * _fractal(rng, R, S, 40.0, 2)
        sc.Y = (0.3 + 0.05 * g[ids]).astype(np.float32)
        sc.feature_px = cell
    else:  # cross-section: vacuum | film | substrate, seen edge-on
        sc.set_scale(_loguniform(rng, 2e-9, 100e-9), 10)
        t0 = int(R * rng.uniform(0.15, 0.45))
        t1 = t0 + int(R * rng.uniform(0.15, 0.45))
        yy = np.arange(R, dtype=np.float32)[:, None]
        edge = (3.0 * _noise(rng, 1, S, 20.0)).astype(np.float32)
        col = (2.0 * _noise(rng, 1, S, rng.uniform(2, 8))).astype(np.float32)  # columnar grains
        colmap = np.broadcast_to(col, (R, S))
        film = (yy >= t0 + edge) & (yy < t1)
        sub = yy >= t1
        H = (np.where(film, 20.0 + colmap, 0.0)
             + np.where(sub, 18.0 + 0.5 * _noise(rng, R, S, 3), 0.0))
        H = H + np.where(~film & ~sub, -30.0, 0.0)
        sc.H = H.astype(np.float32)
        sc.Y = np.where(film, rng.uniform(0.4, 0.7), np.where(sub, rng.uniform(0.25, 0.4), 0.05)
                        ).astype(np.float32)
        sc.feature_px = 8.0


def _lattice_distance(xx, yy, pitch, rot, hexagonal):
    """Distance (px) from every pixel to the nearest lattice site, and that site's (i, j)."""
    c, s = math.cos(rot), math.sin(rot)
    u = (xx * c + yy * s) / pitch
    v = (-xx * s + yy * c) / pitch
    if not hexagonal:
        iu, iv = np.round(u), np.round(v)
        d = np.hypot(u - iu, v - iv) * pitch
        return d, iu, iv
    h = math.sqrt(3.0)
    vv = v / h
    iu1, iv1 = np.round(u), np.round(vv)
    d1 = np.hypot(u - iu1, (vv - iv1) * h)
    iu2, iv2 = np.round(u - 0.5), np.round(vv - 0.5)
    d2 = np.hypot(u - 0.5 - iu2, (vv - 0.5 - iv2) * h)
    first = d1 <= d2
    return (np.where(first, d1, d2) * pitch, np.where(first, iu1, iu2 + 1000),
            np.where(first, iv1, iv2))


def _b_patterned(sc: _Scene, amount: float) -> None:
    rng, S, R = sc.rng, sc.size, sc.rows
    kind = str(rng.choice(["pillars", "holes", "lines", "squares"], p=[0.35, 0.25, 0.25, 0.15]))
    pitch = _loguniform(rng, 10, 64)
    sc.set_scale(_loguniform(rng, 100e-9, 20e-6), pitch, feature_px=pitch / 2)
    rot = rng.uniform(0, np.pi) if rng.random() < 0.5 else rng.normal(0, 0.05)
    hexagonal = kind in ("pillars", "holes") and rng.random() < 0.5
    duty = rng.uniform(0.25, 0.42)
    height = pitch * rng.uniform(0.25, 1.2)
    edge_w = rng.uniform(0.4, 1.6)
    yy, xx = np.mgrid[0:R, 0:S].astype(np.float32)
    if kind == "lines":
        c, s = math.cos(rot), math.sin(rot)
        u = (xx * c + yy * s) / pitch
        d = np.abs(u - np.round(u)) * pitch
        prof = _smoothstep((duty * pitch - d) / edge_w + 0.5)
        iu = np.round(u)
        iv = np.zeros_like(iu)
    elif kind == "squares":
        c, s = math.cos(rot), math.sin(rot)
        u = (xx * c + yy * s) / pitch
        v = (-xx * s + yy * c) / pitch
        iu, iv = np.round(u), np.round(v)
        d = np.maximum(np.abs(u - iu), np.abs(v - iv)) * pitch
        prof = _smoothstep((duty * pitch - d) / edge_w + 0.5)
    else:
        d, iu, iv = _lattice_distance(xx, yy, pitch, rot, hexagonal)
        prof = _smoothstep((duty * pitch - d) / edge_w + 0.5)
        if kind == "pillars" and rng.random() < 0.4:  # rounded (lens-like) tops
            prof = prof * np.sqrt(np.clip(1 - (d / (duty * pitch)) ** 2, 0, 1)) ** 0.5
    # defects: a few missing sites
    site = (iu.astype(np.int64) * 7919 + iv.astype(np.int64) * 104729 + int(rng.integers(1 << 20)))
    missing = ((site * 2654435761) % 1000) < int(rng.uniform(0, 25))
    prof = np.where(missing, 0.0, prof)
    if kind == "holes":
        prof = 1.0 - prof
    sc.H = (height * prof + 0.15 * _noise(rng, R, S, 3.0)).astype(np.float32)
    ylo, yhi = rng.uniform(0.22, 0.35), rng.uniform(0.3, 0.6)
    sc.Y = (ylo + (yhi - ylo) * prof).astype(np.float32)
    sc.variants["patterned"] = kind + ("-hex" if hexagonal else "")


def _b_porous(sc: _Scene, amount: float) -> None:
    rng, S, R = sc.rng, sc.size, sc.rows
    kind = str(rng.choice(["sponge", "aao", "foam"], p=[0.5, 0.25, 0.25]))
    sc.variants["porous"] = kind
    if kind == "sponge":
        scale = _loguniform(rng, 5, 30)
        sc.set_scale(_loguniform(rng, 5e-9, 2e-6), scale)
        levels = []
        for _ in range(3):
            levels.append(_fractal(rng, R, S, scale, 3, 0.45))
        t = rng.uniform(-0.3, 0.4)
        H = np.full((R, S), -3.0 * scale, np.float32)
        for li, n1 in enumerate(reversed(levels)):
            z = -scale * (2 - li)
            top = z + scale * 0.8 * np.sqrt(np.clip(n1 - t, 0, None))
            H = np.where(n1 > t, np.maximum(H, top), H)
        sc.H = H
        sc.Y[:] = rng.uniform(0.3, 0.5)
        sc.feature_px = scale
    elif kind == "aao":
        cell = _loguniform(rng, 6, 30)
        sc.set_scale(_loguniform(rng, 20e-9, 200e-9), cell)
        f1, f2, ids, nid = _worley(rng, R, S, cell, jitter=rng.uniform(0.35, 0.7))
        rp = cell * rng.uniform(0.25, 0.42) * (1 + 0.15 * (rng.random(nid) - 0.5))[ids]
        hole = _smoothstep((rp - f1) / 1.2 + 0.5)
        sc.H = (-cell * 1.5 * hole + 0.3 * _noise(rng, R, S, 4)).astype(np.float32)
        sc.Y[:] = rng.uniform(0.3, 0.45)
        sc.feature_px = cell / 2
    else:  # open-cell foam: spherical voids cut by the surface, deeper voids inside them
        cell = _loguniform(rng, 12, 70)
        sc.set_scale(_loguniform(rng, 100e-9, 50e-6), cell)
        f1, f2, ids, nid = _worley(rng, R, S, cell)
        rr = 0.5 * (f1 + f2)
        wall = (f2 - f1) / 2
        depth = np.sqrt(np.clip(rr**2 - f1**2, 0, None))
        H = -depth * rng.uniform(0.6, 1.0)
        f1b, f2b, _, _ = _worley(rng, R, S, cell / 2.5)
        inner = (f2b - f1b) < rng.uniform(1.5, 3.0)
        H = np.where((wall > rng.uniform(1.0, 2.5)) & ~inner, H, np.minimum(H, -cell * 0.8))
        H = np.where(wall < rng.uniform(0.8, 2.0), 0.0, H)
        sc.H = H.astype(np.float32)
        sc.Y[:] = rng.uniform(0.3, 0.5)
        sc.feature_px = cell / 3


def _b_powder(sc: _Scene, amount: float) -> None:
    rng, S, R = sc.rng, sc.size, sc.rows
    rmed = _loguniform(rng, 5, 36)
    sc.set_scale(_loguniform(rng, 0.5e-6, 100e-6), 2 * rmed)
    spread = rng.uniform(0.35, 0.7)
    cover = rng.uniform(0.3, 0.6) if sc.mixing else rng.uniform(0.5, 1.2)  # leave room
    n = int(np.clip(cover * S * R / (np.pi * rmed**2 * 1.2), 8, 350))
    nc = max(1, int(n / rng.uniform(3, 15)))
    ccx, ccy = rng.uniform(0, S, nc), rng.uniform(0, R, nc)
    which = rng.integers(0, nc, n)
    sprd = rmed * rng.uniform(1.0, 3.0) * np.sqrt(n / nc) ** 0.7
    x = ccx[which] + rng.normal(0, sprd, n)
    y = ccy[which] + rng.normal(0, sprd, n)
    r = np.clip(rmed * np.exp(rng.normal(0, spread, n)), 1.5, 0.3 * S).astype(np.float32)
    order = np.argsort(-r)  # big first, fines stick on top
    x, y, r = x[order], y[order], r[order]
    z = (np.arange(n) / n * rmed * rng.uniform(0.5, 2.0)).astype(np.float32)
    layer = np.zeros((R, S), np.float32)
    ymap = np.zeros((R, S), np.float32)
    yv = np.clip(rng.uniform(0.4, 0.7) + rng.normal(0, 0.06, n), 0.2, 1).astype(np.float32)
    sides = int(rng.integers(5, 9))
    _polygons(layer, x, y, r, sides, rng, irregular=1.0, slope=rng.uniform(0.5, 1.6),
              top=r * rng.uniform(0.4, 0.9), ymap=ymap, yvals=yv, z=z + 0.01)
    # surface roughness on the grains
    rough = 0.08 * rmed * _noise(rng, R, S, max(2.0, rmed / 4))
    layer = np.where(layer > 0, layer + rough, 0.0).astype(np.float32)
    sc.add_layer(np.maximum(layer, 0), ymap)
    sc.feature_px = rmed
    sc.variants["powder"] = f"{sides}-sided"


def _b_tips(sc: _Scene, amount: float) -> None:
    rng, S, R = sc.rng, sc.size, sc.rows
    kind = str(rng.choice(["needle", "pyramid"], p=[0.55, 0.45]))
    sc.variants["tips"] = kind
    # far below, out of focus: a smooth glow, no texture
    yy, xx = np.mgrid[0:R, 0:S].astype(np.float32)
    th = rng.uniform(0, 2 * np.pi)
    ramp = ((xx - S / 2) * math.cos(th) + (yy - R / 2) * math.sin(th)) / S
    sc.H = np.full((R, S), -40.0, np.float32)
    sc.Y = (rng.uniform(0.08, 0.2) * (1 + rng.uniform(0, 0.8) * ramp)).astype(np.float32)
    layer = np.zeros((R, S), np.float32)
    ymap = np.zeros((R, S), np.float32)
    if kind == "needle":
        apex_r = _loguniform(rng, 0.8, 6)
        sc.set_scale(_loguniform(rng, 5e-9, 500e-9), apex_r * 4, feature_px=10)
        th = rng.uniform(0, 2 * np.pi) if rng.random() < 0.5 else rng.normal(-np.pi / 2, 0.3)
        ax_ = S / 2 + rng.uniform(-0.2, 0.2) * S
        ay_ = R / 2 + rng.uniform(-0.2, 0.2) * R
        length = S * rng.uniform(1.0, 1.6)
        bx_ = ax_ - math.cos(th) * length
        by_ = ay_ - math.sin(th) * length
        rbase = rng.uniform(0.15, 0.35) * S
        pts = np.array([[bx_, by_], [ax_, ay_]], np.float32)
        pc = _polyline_pieces(pts, 6.0)
        tt = np.linspace(0, 1, len(pc) + 1, dtype=np.float32)
        curve = rng.uniform(1.0, 2.2)  # concave flanks (etched tips)
        radii = apex_r + (rbase - apex_r) * (1 - tt) ** curve
        _capsules(layer, pc[:, 0], pc[:, 1], pc[:, 2], pc[:, 3], radii[:-1], radii[1:],
                  ymap=ymap, yvals=rng.uniform(0.4, 0.7))
        # surface texture along the shank
        layer = np.where(layer > 0, layer + 0.4 * _noise(rng, R, S, 3.0), 0.0)
    else:  # AFM probe: a cantilever beam carrying a pyramid, seen from above
        half = rng.uniform(0.15, 0.35) * S
        sc.set_scale(_loguniform(rng, 20e-9, 300e-9), half, feature_px=half / 4)
        cx, cy = S / 2 + rng.uniform(-0.15, 0.15) * S, R / 2 + rng.uniform(-0.15, 0.15) * R
        rot = rng.uniform(0, 2 * np.pi)
        width = half * rng.uniform(1.6, 3.0)
        img = Image.new("L", (S, R), 0)
        draw = ImageDraw.Draw(img)
        c, s = math.cos(rot), math.sin(rot)
        L = 2 * S
        tipx, tipy = cx + c * width * 0.3, cy + s * width * 0.3
        corners = [(-L, -width / 2), (width * 0.45, -width / 2), (width * 0.75, 0),
                   (width * 0.45, width / 2), (-L, width / 2)]
        draw.polygon([(cx + u * c - v * s, cy + u * s + v * c) for u, v in corners], fill=255)
        beam = np.asarray(img, np.float32) / 255.0
        beam_h = 8.0
        layer = beam * beam_h
        ymap = np.where(beam > 0, 0.35, 0.0).astype(np.float32)
        sides = 4 if rng.random() < 0.7 else 3
        pyr = np.zeros((R, S), np.float32)
        _polygons(pyr, np.array([tipx]), np.array([tipy]), np.array([half]), sides, rng,
                  irregular=0.0, slope=rng.uniform(1.0, 2.0), top=1e6)
        layer = np.maximum(layer, np.where(pyr > 0, pyr + beam_h, 0.0)).astype(np.float32)
        ymap = np.where(pyr > 0, 0.5, ymap).astype(np.float32)
    sc.add_layer(layer.astype(np.float32), ymap)


def _rect(draw: ImageDraw.ImageDraw, box: Sequence[float], fill: int) -> None:
    """A filled rectangle from any two corners (empty ones are skipped)."""
    x0, y0, x1, y1 = box
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    draw.rectangle([x0, y0, x1, y1], fill=fill)


def _b_mems(sc: _Scene, amount: float) -> None:
    rng, S, R = sc.rng, sc.size, sc.rows
    kind = str(rng.choice(["comb", "gear", "spring", "plate"], p=[0.3, 0.25, 0.2, 0.25]))
    sc.variants["mems"] = kind
    unit = _loguniform(rng, 4, 16)  # finger / beam width in px
    sc.set_scale(_loguniform(rng, 1e-6, 10e-6), unit, feature_px=unit * 2)
    img = Image.new("L", (S, R), 0)
    draw = ImageDraw.Draw(img)
    ox, oy = rng.uniform(-0.2, 0.2) * S, rng.uniform(-0.2, 0.2) * R
    if kind == "comb":
        gap = unit * rng.uniform(0.6, 1.2)
        flen = rng.uniform(0.3, 0.6) * R
        mid = R / 2 + oy
        spine = unit * rng.uniform(2, 4)
        _rect(draw, [-10, mid - flen / 2 - spine, S + 10, mid - flen / 2], 255)
        _rect(draw, [-10, mid + flen / 2, S + 10, mid + flen / 2 + spine], 255)
        x = ox % (2 * (unit + gap)) - 2 * (unit + gap)
        k = 0
        while x < S + unit:
            if k % 2 == 0:
                _rect(draw, [x, mid - flen / 2, x + unit, mid + flen / 2 - gap * 1.5], 255)
            else:
                _rect(draw, [x, mid - flen / 2 + gap * 1.5, x + unit, mid + flen / 2], 255)
            x += unit + gap
            k += 1
    elif kind == "gear":
        for _ in range(int(rng.integers(1, 3))):
            cx, cy = S / 2 + ox * 2, R / 2 + oy * 2
            rg = rng.uniform(0.25, 0.6) * S
            nt = int(rng.integers(10, 30))
            tooth = rng.uniform(0.08, 0.15) * rg
            pts = []
            for i in range(nt * 4):
                a = 2 * np.pi * i / (nt * 4)
                rr = rg + (tooth if (i % 4) in (1, 2) else 0.0)
                pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
            draw.polygon(pts, 255)
            hub = rg * rng.uniform(0.15, 0.3)
            draw.ellipse([cx - hub, cy - hub, cx + hub, cy + hub], 0)
            for i in range(int(rng.integers(0, 7))):
                a = 2 * np.pi * i / 6
                hr = rg * 0.12
                hx, hy = cx + 0.6 * rg * math.cos(a), cy + 0.6 * rg * math.sin(a)
                draw.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], 0)
            ox, oy = rng.uniform(-0.5, 0.5) * S, rng.uniform(-0.5, 0.5) * R
    elif kind == "spring":
        turns = int(rng.integers(3, 9))
        amp = rng.uniform(0.2, 0.4) * S
        x0 = S / 2 + ox - amp / 2
        pitch = (R * 1.2) / turns
        y = -0.1 * R
        for i in range(turns):
            _rect(draw, [x0, y, x0 + amp, y + unit], 255)
            xs = x0 if i % 2 else x0 + amp - unit
            _rect(draw, [xs, y, xs + unit, y + pitch], 255)
            y += pitch
        _rect(draw, [x0 + amp + 3 * unit, -10, S + 10, R + 10], 255)  # proof mass
    else:  # released plate with etch holes, anchored by beams
        px0, py0 = 0.15 * S + ox, 0.15 * R + oy
        px1, py1 = px0 + rng.uniform(0.5, 0.8) * S, py0 + rng.uniform(0.5, 0.8) * R
        _rect(draw, [px0, py0, px1, py1], 255)
        hp = unit * rng.uniform(2.5, 4)
        hs_ = unit * rng.uniform(0.6, 1.2)
        yh = py0 + hp / 2
        while yh < py1 - hp / 3:
            xh = px0 + hp / 2
            while xh < px1 - hp / 3:
                _rect(draw, [xh - hs_ / 2, yh - hs_ / 2, xh + hs_ / 2, yh + hs_ / 2], 0)
                xh += hp
            yh += hp
        for ax_, ay_ in ((px0, py0), (px1, py1)):
            _rect(draw, [ax_ - unit / 2, min(-10.0, ay_), ax_ + unit / 2, ay_], 255)
    mask = np.asarray(img, np.float32) / 255.0
    mask = _blur(mask, 0.6)
    h0 = unit * rng.uniform(1.5, 4.0)
    base = 0.3 * _fractal(rng, R, S, 8.0, 2)  # etched substrate
    sc.H = (base + h0 * mask).astype(np.float32)
    sc.Y = (rng.uniform(0.15, 0.28) + rng.uniform(0.1, 0.25) * mask).astype(np.float32)


def _b_biological(sc: _Scene, amount: float) -> None:
    rng, S, R = sc.rng, sc.size, sc.rows
    kind = str(rng.choice(["rbc", "bacteria", "cells"], p=[0.35, 0.4, 0.25]))
    if sc.mixing and kind == "cells":
        kind = "bacteria"
    sc.variants["biological"] = kind
    layer = np.zeros((R, S), np.float32)
    ymap = np.zeros((R, S), np.float32)
    if kind == "rbc":
        rad = _loguniform(rng, 18 if sc.mixing else 13, 50)
        sc.set_scale(7.5e-6, 2 * rad)
        n = int(np.clip(rng.uniform(0.2, 0.8) * amount * S * R / (np.pi * rad**2), 2, 200))
        x, y = rng.uniform(0, S, n), rng.uniform(0, R, n)
        rr = (rad * np.exp(rng.normal(0, 0.08, n))).astype(np.float32)
        # Evans-Fung biconcave profile, squashed into an ellipse
        asp = rng.uniform(0.75, 1.0, n).astype(np.float32)
        ang = rng.uniform(0, np.pi, n).astype(np.float32)
        zz = (np.arange(n) * 0.05 * rad).astype(np.float32)

        def fn(idx, dx, dy):
            c, s = np.cos(ang[idx])[:, None, None], np.sin(ang[idx])[:, None, None]
            u = (dx * c + dy * s) / rr[idx][:, None, None]
            v = (-dx * s + dy * c) / (rr[idx] * asp[idx])[:, None, None]
            p2 = u * u + v * v
            hgt = (0.1 + 2.0 * p2 - 1.12 * p2 * p2) * np.sqrt(np.clip(1 - p2, 0, 1))
            hgt = hgt * rr[idx][:, None, None] * 0.5 + zz[idx][:, None, None]
            return np.where(p2 < 1, hgt, -np.inf)

        yv = np.clip(rng.uniform(0.35, 0.55) + rng.normal(0, 0.03, n), 0, 1).astype(np.float32)
        _stamp(layer, x, y, np.ceil(rr + 1), fn, ymap, yv)
    elif kind == "bacteria":
        w = _loguniform(rng, 8 if sc.mixing else 3, 20)
        sc.set_scale(0.8e-6, w)
        n = int(np.clip(rng.uniform(0.15, 0.5) * amount * S * R / (w * w * 4), 3, 250))
        nc = max(1, n // int(rng.integers(3, 15)))
        ccx, ccy = rng.uniform(0, S, nc), rng.uniform(0, R, nc)
        which = rng.integers(0, nc, n)
        x = ccx[which] + rng.normal(0, w * 2.5 * math.sqrt(n / nc), n)
        y = ccy[which] + rng.normal(0, w * 2.5 * math.sqrt(n / nc), n)
        ln = (w * rng.uniform(1.5, 4.0, n)).astype(np.float32)
        th = rng.uniform(0, 2 * np.pi, n)
        ax, ay = x - np.cos(th) * ln / 2, y - np.sin(th) * ln / 2
        bx, by = x + np.cos(th) * ln / 2, y + np.sin(th) * ln / 2
        yv = np.clip(rng.uniform(0.4, 0.6) + rng.normal(0, 0.03, n), 0, 1).astype(np.float32)
        _capsules(layer, ax, ay, bx, by, w / 2, w / 2, z=np.arange(n) * 0.1, hs=0.8,
                  ymap=ymap, yvals=yv)
        wrinkle = 0.12 * w * _fractal(rng, R, S, max(1.5, w / 3), 2)
        layer = np.where(layer > 0, layer + wrinkle, 0.0).astype(np.float32)
    else:  # cells spread on a substrate: flat bodies, ruffled membranes, filopodia
        rad = _loguniform(rng, 25, 110)
        sc.set_scale(15e-6, 2 * rad, feature_px=rad / 4)
        n = int(rng.integers(1, 5))
        for _ in range(n):
            cx, cy = rng.uniform(0.1, 0.9) * S, rng.uniform(0.1, 0.9) * R
            yy, xx = np.mgrid[0:R, 0:S].astype(np.float32)
            ang = np.arctan2(yy - cy, xx - cx)
            rim = rad * (1 + 0.25 * np.sin(3 * ang + rng.uniform(0, 6))
                         + 0.15 * np.sin(5 * ang + rng.uniform(0, 6)))
            rho = np.hypot(xx - cx, yy - cy) / rim
            body = np.sqrt(np.clip(1 - rho**2, 0, 1))
            hgt = rad * 0.15 * body + rad * 0.25 * np.clip(1 - rho / 0.35, 0, 1) ** 2
            ruffle = rad * 0.03 * _fractal(rng, R, S, max(2.0, rad / 10), 3)
            hgt = np.where(rho < 1, hgt + ruffle * body, 0.0)
            layer = np.maximum(layer, hgt.astype(np.float32))
            nf = int(rng.integers(8, 30))
            fa = rng.uniform(0, 2 * np.pi, nf)
            fl = rad * rng.uniform(0.3, 1.0, nf)
            pcs = []
            for a, length in zip(fa, fl, strict=True):
                r0 = float(np.interp(a, [-np.pi, np.pi], [rad, rad])) * 0.9
                x0, y0 = cx + r0 * math.cos(a), cy + r0 * math.sin(a)
                pcs.append(_polyline_pieces(_random_path(rng, x0, y0, a, length, 5, 0.15), 8))
            pc = np.concatenate(pcs)
            _capsules(layer, pc[:, 0], pc[:, 1], pc[:, 2], pc[:, 3], 0.9, 0.9)
        ymap = np.where(layer > 0, rng.uniform(0.35, 0.55), 0).astype(np.float32)
    sc.add_layer(layer, ymap)


_BUILDERS: dict[str, Callable[[_Scene, float], None]] = {
    "biological": _b_biological,
    "fibres": _b_fibres,
    "films": _b_films,
    "mems": _b_mems,
    "nanowires": _b_nanowires,
    "particles": _b_particles,
    "patterned": _b_patterned,
    "porous": _b_porous,
    "powder": _b_powder,
    "tips": _b_tips,
}

# Classes whose images are often taken on a tilted stage.
_TILT_P = {"patterned": 0.45, "mems": 0.6, "tips": 0.0, "nanowires": 0.25, "films": 0.15,
           "porous": 0.15, "fibres": 0.15, "powder": 0.15, "biological": 0.2, "particles": 0.0}


# ----------------------------------------------------------------------------- rendering


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """a shifted so that out[y, x] = a[y + dy, x + dx] (edge values repeated)."""
    h, w = a.shape
    dy, dx = max(-h + 1, min(h - 1, dy)), max(-w + 1, min(w - 1, dx))
    p = np.pad(a, ((max(0, -dy), max(0, dy)), (max(0, -dx), max(0, dx))), mode="edge")
    y0, x0 = max(0, dy), max(0, dx)
    return p[y0 : y0 + h, x0 : x0 + w]


def _render_se(sc: _Scene) -> np.ndarray:
    """The secondary-electron signal of the height / yield maps, in the world frame."""
    rng = sc.rng
    H, Y = sc.H, sc.Y
    gy, gx = np.gradient(H)
    alpha = math.radians(sc.tilt_deg)
    norm = np.sqrt(1.0 + gx * gx + gy * gy)
    # tilt-angle yield ~ 1 / cos(angle between normal and beam); the beam comes from the front
    # (+y, the bottom of the image) when the stage is tilted, so front walls light up
    cosb = (math.cos(alpha) - gy * math.sin(alpha)) / norm
    eta = rng.uniform(0.7, 1.1)
    sec = np.clip(cosb, 0.25, 1.0) ** -eta
    # side-mounted detector: faces looking at it are brighter
    az = rng.uniform(0, 2 * np.pi)
    ux, uy = math.cos(az), math.sin(az)
    kd = rng.uniform(0.1, 0.55)
    facing = -(gx * ux + gy * uy) / norm
    sig = Y * sec * (1.0 + kd * facing)
    # edge effect: convex edges (negative curvature) emit from two faces
    Hs = _blur(H, 0.7)
    lap = (_shift(Hs, 1, 0) + _shift(Hs, -1, 0) + _shift(Hs, 0, 1) + _shift(Hs, 0, -1) - 4 * Hs)
    ke = rng.uniform(0.03, 0.1)
    sig = sig + ke * np.clip(-lap, 0.0, 4.0) * (0.5 + Y)
    # cavities: SEs from the bottom of holes and valleys are not collected
    fs = float(np.clip(sc.feature_px, 2.0, 60.0))
    cav = H - _blur(H, fs * rng.uniform(0.6, 1.2))
    kc = rng.uniform(0.5, 1.5)
    sig = sig * np.exp(kc * np.minimum(cav, 0.0) / fs)
    # shadows cast away from the detector
    ks = rng.uniform(0.0, 0.6)
    if ks > 0.05:
        sh = np.zeros_like(H)
        for step in (1, 2, 4, 8, 16):
            if step > 3 * fs:
                break
            occ = _shift(H, round(uy * step), round(ux * step)) - H - step * 0.7
            sh = np.maximum(sh, occ)
        sig = sig * np.exp(-ks * sh / fs)
    return sig.astype(np.float32)


def _tilt_project(img: np.ndarray, H: np.ndarray, tilt_deg: float, out_rows: int) -> np.ndarray:
    """View the world (rows × cols, rendered) from a stage tilted by ``tilt_deg`` about x.

    Screen row of a surface point: (y − y_front)·cos α − h·sin α; the first surface point hit,
    scanning from the front, is what the beam sees (objects hide what lies behind them and
    show their front walls).
    """
    R, W = H.shape
    a = math.radians(tilt_deg)
    y = np.arange(R, dtype=np.float32)[:, None]
    hr = float(np.percentile(H, 50))
    ys = (y - (R - 1)) * math.cos(a) - (H - hr) * math.sin(a) + (out_rows - 1)
    front = ys[::-1]  # k = 0 is the front row
    run = np.minimum.accumulate(front, axis=0)  # non-increasing along k
    big = float(R * 4 + out_rows * 4 + 10)
    keys = (-run + np.arange(W, dtype=np.float32)[None, :] * big).T.ravel()  # columns ascending
    r = np.arange(out_rows, dtype=np.float32)
    q = (-r[None, :] + np.arange(W, dtype=np.float32)[:, None] * big).ravel()
    k = np.searchsorted(keys, q, side="left").reshape(W, out_rows) - np.arange(W)[:, None] * R
    k = np.clip(k, 0, R - 1)
    world_row = (R - 1 - k).T  # (out_rows, W)
    return img[world_row, np.arange(W)[None, :]]


def _camera(sig: np.ndarray, rng: np.random.Generator, tilt_deg: float) -> np.ndarray:
    """Focus, brightness/contrast/gamma, noise, scan lines and charging → uint8."""
    S0, S1 = sig.shape
    # depth of field (far rows blurrier on a tilted stage)
    sigma = _loguniform(rng, 0.3, 1.8)
    img = _blur(sig, sigma)
    if tilt_deg > 0 and rng.random() < 0.6:
        far = _blur(img, rng.uniform(1.0, 2.5))
        wgt = np.linspace(1.0, 0.0, S0, dtype=np.float32)[:, None] ** 1.5
        img = img * (1 - wgt) + far * wgt
    # brightness / contrast as an operator sets them: highlights (edges) may saturate
    lo, hi = np.percentile(img, [rng.uniform(0.1, 3.0), rng.uniform(95.0, 99.9)])
    lo -= rng.uniform(0.0, 0.4) * (hi - lo)
    lo = min(lo, hi * rng.uniform(0.3, 0.6))  # no extreme stretch of a near-uniform scene
    img = (img - lo) / max(hi - lo, 1e-6)
    img = img * rng.uniform(0.8, 1.0) + rng.uniform(-0.02, 0.1)
    # slow brightness drift / uneven illumination
    if rng.random() < 0.4:
        img = img + rng.uniform(0.02, 0.1) * _noise(rng, S0, S1, S0 / 1.5)
    img = np.clip(img, 0.0, 1.0)
    # gamma: mid-tones where an operator puts them (also rescues low-contrast scenes)
    med = float(np.clip(np.median(img), 0.03, 0.97))
    img = img ** (math.log(rng.uniform(0.28, 0.6)) / math.log(med))
    # shot noise (Gaussian approximation of Poisson statistics at dose e-/px)
    dose = _loguniform(rng, 15.0, 400.0)
    img = img + np.sqrt(np.maximum(img, 0.002) / dose) * rng.standard_normal(img.shape,
                                                                                dtype=np.float32)
    # scan lines: per-line offset/gain jitter and noise correlated along the line
    line_sd = rng.uniform(0.0, 0.03)
    img = img * (1 + rng.normal(0, line_sd / 2, (S0, 1))) + rng.normal(0, line_sd, (S0, 1))
    if rng.random() < 0.5:
        streak = rng.standard_normal((S0, max(2, S1 // 8)), dtype=np.float32)
        streak = _resize(streak, S1, S0, Image.Resampling.BILINEAR)
        img = img + rng.uniform(0.005, 0.03) * streak
    # charging: bright streaks running to the right, sometimes a dark band after
    if rng.random() < 0.12:
        xs = np.arange(S1, dtype=np.float32)
        for _ in range(int(rng.integers(1, 8))):
            r0 = int(rng.integers(0, S0))
            hgt = int(rng.integers(1, 3))
            x0 = rng.uniform(-0.3, 0.9) * S1
            lenx = rng.uniform(0.1, 0.6) * S1
            rise = rng.uniform(2.0, 20.0)
            prof = (_smoothstep((xs - x0) / rise) * np.exp(-np.maximum(xs - x0, 0) / lenx))
            img[r0 : r0 + hgt] += rng.uniform(0.1, 0.45) * prof[None, :].astype(np.float32)
        if rng.random() < 0.5:
            r0 = int(rng.integers(0, S0))
            img[r0 : r0 + int(rng.integers(2, 12))] *= rng.uniform(0.4, 0.8)
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- data bar


@lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def _nice_length(max_m: float) -> float:
    e = math.floor(math.log10(max_m))
    for m in (5, 2, 1):
        if m * 10**e <= max_m:
            return m * 10**e
    return 10**e


def _fmt_len(m: float) -> str:
    for unit, f in (("mm", 1e-3), ("um", 1e-6), ("nm", 1e-9)):  # the font has no µ
        if m >= f:
            v = m / f
            return f"{v:g} {unit}"
    return f"{m * 1e9:g} nm"


def _draw_databar(img: np.ndarray, rng: np.random.Generator, pixel_size_m: float) -> int:
    """Paint an instrument data bar over the bottom rows. Returns its height in px."""
    h, w = img.shape
    bh = round(h * rng.uniform(0.06, 0.10))
    bar = Image.new("L", (w, bh), 0)
    d = ImageDraw.Draw(bar)
    white = int(rng.integers(225, 256))
    fs = max(6, int(bh * rng.uniform(0.35, 0.45)))
    font = _font(fs)
    hfw_m = pixel_size_m * w
    length_m = _nice_length(hfw_m * rng.uniform(0.15, 0.3))
    lpx = max(4, round(length_m / pixel_size_m))
    mag = 0.127 / hfw_m  # magnification relative to a 127 mm Polaroid width
    kv = float(rng.choice([1.0, 2.0, 3.0, 5.0, 10.0, 15.0, 20.0, 30.0]))
    wd = rng.uniform(2.0, 15.0)
    style = int(rng.integers(0, 3))
    if style == 0:  # FEI-like: framed cells, scale bar at the right
        d.rectangle([0, 0, w - 1, bh - 1], outline=white)
        cells = [("HV", f"{kv:.2f} kV"), ("mag", f"{mag:,.0f} x"), ("WD", f"{wd:.1f} mm"),
                 ("det", "ETD")]
        cw = int(w * 0.6) // len(cells)
        for i, (k, v) in enumerate(cells):
            x = i * cw
            d.line([x, 0, x, bh - 1], fill=white)
            d.text((x + 2, 1), k, fill=white, font=font)
            d.text((x + 2, bh // 2), v, fill=white, font=font)
        x0 = int(w * 0.62)
        lpx = min(lpx, w - x0 - 6)
        yb = bh // 2 + 1
        d.rectangle([x0, yb, x0 + lpx, yb + max(1, bh // 10)], fill=white)
        d.text((x0, 1), _fmt_len(length_m), fill=white, font=font)
    elif style == 1:  # Zeiss-like: scale bar at the left with ticks, parameters in two rows
        x0 = 4
        lpx = min(lpx, int(w * 0.3))
        yb = int(bh * 0.7)
        d.text((x0, 1), _fmt_len(length_m), fill=white, font=font)
        d.rectangle([x0, yb, x0 + lpx, yb + max(1, bh // 12)], fill=white)
        d.line([x0, yb - bh // 6, x0, yb + bh // 6], fill=white)
        d.line([x0 + lpx, yb - bh // 6, x0 + lpx, yb + bh // 6], fill=white)
        xt = int(w * 0.36)
        d.text((xt, 1), f"EHT = {kv:.2f} kV", fill=white, font=font)
        d.text((xt, bh // 2), f"WD = {wd:.1f} mm", fill=white, font=font)
        d.text((int(w * 0.68), 1), "Signal A = SE2", fill=white, font=font)
        d.text((int(w * 0.68), bh // 2), f"Mag = {mag / 1000:.2f} K X", fill=white, font=font)
    else:  # JEOL-like: one line of text with the scale bar in the middle
        yt = max(0, (bh - fs) // 2 - 1)
        d.text((3, yt), f"SEI  {kv:.1f}kV  X{mag:,.0f}", fill=white, font=font)
        x0 = int(w * 0.5)
        lpx = min(lpx, int(w * 0.22))
        d.rectangle([x0, bh // 2, x0 + lpx, bh // 2 + max(1, bh // 10)], fill=white)
        d.text((x0 + lpx + 4, yt), _fmt_len(length_m), fill=white, font=font)
        d.text((int(w * 0.82), yt), f"WD {wd:.0f}mm", fill=white, font=font)
    img[h - bh :] = np.asarray(bar, np.uint8)
    return bh


# ----------------------------------------------------------------------------- public API


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


def save_image(img: np.ndarray, path: str | Path, pixel_size_m: float) -> Path:
    """Write a uint8 image as TIFF (ImageJ resolution tags in µm) or PNG (pHYs + text chunk),
    byte-for-byte deterministic."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        px_um = pixel_size_m * 1e6
        tifffile.imwrite(path, img, resolution=(1.0 / px_um, 1.0 / px_um), imagej=True,
                         metadata={"unit": "um"})
    elif suffix == ".png":
        from PIL import PngImagePlugin

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
                  databar: bool | None = None, progress: ProgressFn | None = None,
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

    import multiprocessing

    if workers > 1 and n >= 4 * workers and "fork" in multiprocessing.get_all_start_methods():
        from concurrent.futures import ProcessPoolExecutor

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


if __name__ == "__main__":  # pragma: no cover
    import sys

    out = contact_sheet(sys.argv[1] if len(sys.argv) > 1 else "/tmp/synth_sheet.png")
    print(out)
