"""What the Fibres page shows for one image: the scan, the colour-coded orientation overlay
(hue = direction, brightness = coherency, as OrientationJ), the segmentation with its
skeleton, and the numbers of both methods — computed here so that the page does no image
maths."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlite_utils import Database

from core.fibres.learned import FIBRE_MODEL, OrientationNet
from core.fibres.measure import FibreParams, FibreResult
from core.fibres.orientation import overlay_rgb
from core.fibres.store import load_image, measure_one
from core.images import resize
from core.store import migrate

VIEW_MAX_PX = 1400


@dataclass
class FibreView:
    image_id: int
    name: str
    path: str
    scan_png: bytes
    overlay_png: bytes | None  # None when the image could not be measured
    mask_png: bytes | None
    gradient: FibreResult
    learned: FibreResult | None  # None when the model is absent
    learned_error: str | None = None


def _shrink(a: np.ndarray, max_px: int) -> np.ndarray:
    h, w = a.shape[:2]
    f = max(h, w) / max_px
    if f <= 1:
        return a
    size = (max(1, round(h / f)), max(1, round(w / f)))
    if a.ndim == 2:
        return resize(a.astype(np.float32), size)
    return np.stack([resize(a[..., c].astype(np.float32), size) for c in range(a.shape[2])], -1)


def _png(a: np.ndarray) -> bytes:
    """uint8-range grey (H, W) or RGB (H, W, 3) as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8)).save(buf, format="PNG",
                                                                     compress_level=3)
    return buf.getvalue()


def fibre_view(db: Database, image_id: int, params: FibreParams | None = None, *,
               model_path: str | Path | None = None, max_px: int = VIEW_MAX_PX,
               max_pixels: int = 200_000_000) -> FibreView:
    """Measure one image by both methods (nothing stored) and draw its overlays.
    ImageReadError / MeasurementError when it cannot be read or measured."""
    migrate(db)
    params = params or FibreParams()
    img = load_image(db, image_id, max_pixels=max_pixels)
    scan = img.scan
    grad = measure_one(img, "gradient", params, keep_arrays=True)
    overlay = mask = None
    if grad.field is not None and grad.segmentation is not None:
        overlay = _png(_shrink(overlay_rgb(scan, grad.field).astype(np.float32), max_px))
        grey = np.repeat((np.clip(scan, 0, 1) * 255)[..., None], 3, axis=-1)
        seg = grad.segmentation
        grey[seg.mask] = 0.55 * grey[seg.mask] + 0.45 * np.array([40, 140, 255])
        grey[seg.skeleton] = [255, 60, 40]
        mask = _png(_shrink(grey, max_px))
    learned, err = None, None
    path = Path(model_path or FIBRE_MODEL)
    if path.is_file():
        try:
            learned = measure_one(img, "learned", params, OrientationNet(path))
        except Exception as e:  # noqa: BLE001 - the learned column says why; the rest shows
            err = str(e)
    grad.field = grad.segmentation = None  # the arrays are drawn; keep the view small
    return FibreView(image_id, os.path.basename(img.path), img.path,
                     _png(_shrink(np.clip(scan, 0, 1) * 255, max_px)), overlay, mask, grad,
                     learned, err)


def image_choices(db: Database, cls: str | None = None,
                  limit: int = 2000) -> list[dict[str, Any]]:
    """Images to pick from (id, name, class by label or active model, folder), newest first;
    ``cls``: only that class."""
    migrate(db)
    sql = """SELECT i.id, i.name, i.path, COALESCE(c.label, p.pred) AS cls
             FROM images i
             LEFT JOIN current_labels c ON c.image_id = i.id
             LEFT JOIN predictions p ON p.image_id = i.id
                  AND p.model_id = (SELECT id FROM models WHERE active = 1)"""
    args: list[Any] = []
    if cls:
        sql += " WHERE COALESCE(c.label, p.pred) = ?"
        args.append(cls)
    sql += " ORDER BY i.id DESC LIMIT ?"
    args.append(int(limit))
    return [{"id": r[0], "name": r[1], "folder": os.path.dirname(r[2]), "class": r[3]}
            for r in db.execute(sql, args).fetchall()]
