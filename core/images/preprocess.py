"""The one preprocessing path between a decoded SEM image and a classifier input.

Training (core.training) and inference (core.models.Classifier) both call :func:`prepare`, so the model
sees at run time exactly what it saw in training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image


def resize(scan: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float image to ``size`` = (height, width), antialiased (PIL bilinear)."""
    h, w = size
    if scan.shape == (h, w):
        return scan.astype(np.float32, copy=False)
    img = Image.fromarray(np.ascontiguousarray(scan, dtype=np.float32), mode="F")
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def prepare(
    scan: np.ndarray,
    size: tuple[int, int],
    channels: int = 1,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.25,),
) -> np.ndarray:
    """Turn a 2-D float32 image in [0, 1] (data bar already cropped) into a (C, H, W) input.

    Grey images are repeated over ``channels``; ``mean``/``std`` are per channel (a single
    value is used for every channel).
    """
    if scan.ndim != 2:
        raise ValueError(f"expected a 2-D grey image, got shape {scan.shape}")
    x = resize(scan, size)
    x = np.repeat(x[None, :, :], channels, axis=0)
    m = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
    if m.shape[0] not in (1, channels) or s.shape[0] not in (1, channels):
        raise ValueError(f"mean/std must have 1 or {channels} values, got {mean!r}/{std!r}")
    return ((x - m) / s).astype(np.float32)
