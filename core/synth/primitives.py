"""Drawing primitives of the synthetic micrographs: blurs, noise (fractal, Worley), and
stamps of discs, capsules and polygons into a height / yield canvas."""


from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image


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
