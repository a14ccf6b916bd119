"""One painter per NFFA class: each draws its objects or surface into the scene (particles,
wires and fibres, films, patterned lattices, porous sponges, powder, tips, MEMS, biological)."""


from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from core.synth.primitives import (
    _blur,
    _capsules,
    _fractal,
    _loguniform,
    _noise,
    _polygons,
    _polyline_pieces,
    _random_path,
    _smoothstep,
    _stamp,
    _worley,
)
from core.synth.scene import _Scene

# Whether a class paints a whole surface (a mixed image shows it beside / under the other one)
# or objects that lie on whatever surface is there.
SURFACES = ("films", "patterned", "porous", "fibres", "mems", "tips")
OBJECTS = ("particles", "nanowires", "powder", "biological")


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
