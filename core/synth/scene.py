"""The scene a synthetic micrograph is drawn in: a height field (pixels), a material-yield map
and the ground truth collected while the class painters draw."""


from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.synth.primitives import _fractal, _noise


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
