"""The learned orientation estimator: a small CNN trained by core.training.fibre_net on
synthetic wire images only (core.synth.generate_wires), run through ONNX Runtime.

Input: square tiles covering the scan (as many as its aspect needs, overlapping), each resized
to ``input_size`` and standardised by its own mean and SD (:func:`net_tiles`, the one path of
training and inference). Outputs per tile: 36 logits of the orientation histogram of wire
pixels (5° bins over [0, 180), softmax → a distribution) and one logit of the aligned
fraction at the training tolerance. The tiles' histograms and fractions are averaged; the
dominant direction and order parameter come from the histogram with the gradient method's
circular statistics. At another tolerance than the model's, the aligned fraction is the
histogram's mass within the tolerance (no coherency test).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.config import MODELS_DIR
from core.errors import MeasurementError, ModelError
from core.fibres.circular import dominant_direction, fraction_within, order_parameter
from core.fibres.measure import STORED_BINS, FibreParams, FibreResult, check_image
from core.images import resize
from core.models import OnnxSession

NET_INPUT = 96
FIBRE_MODEL = MODELS_DIR / "fibres-orientation.onnx"
FIBRE_MODEL_KIND = "fibre-orientation"


def net_tiles(scan: np.ndarray, size: int = NET_INPUT) -> np.ndarray:
    """(k, 1, size, size) float32: square tiles of side min(h, w) covering the scan along its
    long side (evenly spaced, overlapping), resized and standardised one by one."""
    a = np.asarray(scan, np.float32)
    h, w = a.shape
    side = min(h, w)
    k = math.ceil(max(h, w) / side - 1e-6)
    starts = np.linspace(0, max(h, w) - side, k).round().astype(int) if k > 1 else [0]
    out = []
    for s in starts:
        tile = a[s:s + side, :side] if h > w else a[:side, s:s + side]
        out.append(standardise(resize(tile, (size, size))))
    return np.stack(out)[:, None]


def standardise(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean()) / (x.std() + 1e-3)).astype(np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class OrientationNet(OnnxSession):
    """The ONNX orientation estimator. Refuses a model that is not one (metadata ``kind``)."""

    def __init__(self, path: str | Path = FIBRE_MODEL, **kw: Any):
        super().__init__(path, **kw)
        if self.metadata.get("kind") != FIBRE_MODEL_KIND:
            raise ModelError(f"Model {str(self.path)!r} is not a fibre orientation model "
                             f"(metadata kind = {self.metadata.get('kind')!r}, expected "
                             f"{FIBRE_MODEL_KIND!r})")
        self.input_size = int(self.metadata.get("input_size", NET_INPUT))
        self.bins = int(self.metadata.get("bins", STORED_BINS))
        self.tolerance_deg = float(self.metadata.get("tolerance_deg", 15.0))
        self.version = str(self.metadata.get("version", self.path.stem))
        out = self.outputs[0].shape
        if len(out) != 2 or (isinstance(out[1], int) and out[1] != self.bins + 1):
            raise ModelError(f"Model {str(self.path)!r}: output shape {out}, expected "
                             f"[batch, {self.bins + 1}]")

    def predict(self, tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per tile: the histogram (k, bins) and the aligned fraction (k,)."""
        z = self.run_batches(tiles)
        return softmax(z[:, : self.bins]), 1.0 / (1.0 + np.exp(-z[:, self.bins]))


def measure_learned(net: OrientationNet, scan: np.ndarray, pixel_size_m: float | None = None,
                    params: FibreParams | None = None, *, name: str = "image") -> FibreResult:
    """Dominant direction, order parameter and aligned fraction by the learned estimator
    (no diameters: that is the gradient method's segmentation)."""
    t0 = time.perf_counter()
    params = params or FibreParams()
    a = check_image(scan, name)
    h, w = a.shape
    res = FibreResult("learned", "ok", w, h, pixel_size_m, tolerance_deg=params.tolerance_deg)
    if float(a.max() - a.min()) < 1.0 / 255:
        res.status = "no signal"
        res.warnings.append("blank scan: less than one grey level of variation")
        return res
    try:
        hists, fracs = net.predict(net_tiles(a, net.input_size))
    except Exception as e:  # noqa: BLE001 - ONNX Runtime's errors are not ours; name the image
        raise MeasurementError(f"{name}: the orientation model failed: {e}") from None
    hist = hists.mean(axis=0)
    if len(hist) != STORED_BINS:
        hist = np.interp(np.linspace(0, len(hist), STORED_BINS, endpoint=False),
                         np.arange(len(hist)), hist)
        hist = hist / hist.sum()
    theta0 = dominant_direction(hist)
    res.histogram = [round(float(v), 6) for v in hist]
    res.dominant_deg = theta0
    res.order_parameter = order_parameter(hist, theta0)
    if abs(params.tolerance_deg - net.tolerance_deg) < 1e-9:
        res.aligned_fraction = float(fracs.mean())
    else:
        res.aligned_fraction = fraction_within(hist, theta0, params.tolerance_deg)
        res.warnings.append(f"tolerance {params.tolerance_deg:g}° differs from the model's "
                            f"{net.tolerance_deg:g}°: aligned fraction from the histogram")
    res.seconds = time.perf_counter() - t0
    return res
