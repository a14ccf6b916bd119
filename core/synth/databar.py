"""The instrument data bar drawn on synthetic micrographs: a black strip with a scale bar and
text along the bottom."""


from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont


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
