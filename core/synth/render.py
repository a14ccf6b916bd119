"""From scene to signal: secondary-electron rendering (tilt yield, edge effect, detector
shading, cavities), a tilted stage, and the camera / instrument (blur, gain, noise, scan lines,
charging)."""


from __future__ import annotations

import math

import numpy as np
from PIL import Image

from core.synth.primitives import _blur, _loguniform, _noise, _resize, _smoothstep
from core.synth.scene import _Scene


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
