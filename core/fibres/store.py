"""Fibre measurements on the database: choose images (ids, all, a class), measure them by
the gradient or learned method (one short write per image; a failure is stored with its reason
and the batch goes on; re-running measures what is missing), read the results, compare folders,
export ``fibres.csv``."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.errors import ExportError, ImageReadError, InvalidValue, MeasurementError, NotFound
from core.fibres.circular import mean_resultant
from core.fibres.learned import FIBRE_MODEL, OrientationNet, measure_learned
from core.fibres.measure import METHODS, STORED_BINS, FibreParams, FibreResult, measure_gradient
from core.images import SemImage, read_image
from core.progress import Progress, silent
from core.store import migrate, now_iso, write_tx

CSV_COLUMNS = (
    "image_id", "image_sha256", "image_path", "method", "status", "error", "dominant_deg",
    "order_parameter", "coherency", "aligned_fraction", "tolerance_deg", "wire_fraction",
    "diameter_unit", "diameter_n", "diameter_mean_nm", "diameter_sd_nm", "diameter_d10_nm",
    "diameter_median_nm", "diameter_d90_nm", "diameter_mean_px", "diameter_sd_px",
    "diameter_d10_px", "diameter_median_px", "diameter_d90_px", "pixel_size_nm", "sigma_px",
    "model_version", "warnings", "measured_at",
)


@dataclass
class MeasureReport:
    measured: int = 0
    skipped: int = 0  # already measured with this method and these parameters
    no_fibres: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # image_id, path, reason
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_images(db: Database, ids: Sequence[int] = (), *, all_images: bool = False,
                  cls: str | None = None) -> list[int]:
    """Image ids: the given ones (each must exist), every image, or those whose current label
    — else the active model's prediction — is ``cls``."""
    migrate(db)
    if ids:
        wanted = [int(i) for i in ids]
        qs = ",".join("?" * len(wanted))
        found = {r[0] for r in db.execute(f"SELECT id FROM images WHERE id IN ({qs})", wanted)}
        missing = [i for i in wanted if i not in found]
        if missing:
            raise NotFound(f"No image with id {', '.join(map(str, missing))} in this database")
        return wanted
    if cls:
        rows = db.execute(
            """SELECT i.id FROM images i
               LEFT JOIN current_labels c ON c.image_id = i.id
               LEFT JOIN predictions p ON p.image_id = i.id
                    AND p.model_id = (SELECT id FROM models WHERE active = 1)
               WHERE COALESCE(c.label, p.pred) = ? ORDER BY i.id""", [cls]).fetchall()
        return [r[0] for r in rows]
    if all_images:
        return [r[0] for r in db.execute("SELECT id FROM images ORDER BY id")]
    raise InvalidValue("Name images to measure: IMAGE_ID..., --all or --class CLASS")


def _paths(db: Database, image_id: int) -> list[str]:
    row = db.execute("SELECT path FROM images WHERE id = ?", [image_id]).fetchone()
    if row is None:
        raise NotFound(f"No image with id {image_id}")
    others = [r[0] for r in db.execute(
        "SELECT path FROM files WHERE image_id = ? AND path != ? ORDER BY seen_at DESC",
        [image_id, row[0]])]
    return [row[0], *others]


def load_image(db: Database, image_id: int, *, max_pixels: int = 200_000_000) -> SemImage:
    """The image decoded from the first of its known paths that still exists."""
    paths = _paths(db, image_id)
    for p in paths:
        if os.path.exists(p):
            return read_image(p, max_pixels=max_pixels)
    raise ImageReadError(paths[0], "the file is gone (no known path of this image exists)")


def _params_json(method: str, params: FibreParams, model: OrientationNet | None) -> str:
    d = {"method": method, **asdict(params)}
    if model is not None:
        d["model"] = model.version
    return json.dumps(d, sort_keys=True)


def measure_one(img: SemImage, method: str, params: FibreParams,
                model: OrientationNet | None = None, *, keep_arrays: bool = False) -> FibreResult:
    """One decoded image by one method (the scan without its data bar)."""
    name = os.path.basename(img.path) or img.path
    if method == "gradient":
        return measure_gradient(img.scan, img.pixel_size_m, params, name=name,
                                keep_arrays=keep_arrays)
    if method == "learned":
        if model is None:
            raise InvalidValue("The learned method needs the orientation model")
        return measure_learned(model, img.scan, img.pixel_size_m, params, name=name)
    raise InvalidValue(f"Unknown method {method!r}; expected one of {', '.join(METHODS)}")


def _row(image_id: int, res: FibreResult, params_json: str, version: str | None) -> dict[str, Any]:
    px = res.diameters.px
    return {
        "image_id": image_id, "method": res.method, "status": res.status, "error": None,
        "dominant_deg": res.dominant_deg, "order_parameter": res.order_parameter,
        "coherency": res.coherency, "aligned_fraction": res.aligned_fraction,
        "wire_fraction": res.wire_fraction, "tolerance_deg": res.tolerance_deg,
        "sigma_px": res.sigma_px, "pixel_size_m": res.pixel_size_m,
        "diameter_n": res.diameters.n, "diameter_mean_px": px.get("mean"),
        "diameter_sd_px": px.get("sd"), "diameter_d10_px": px.get("d10"),
        "diameter_d50_px": px.get("d50"), "diameter_d90_px": px.get("d90"),
        "histogram": json.dumps(res.histogram), "warnings": json.dumps(res.warnings),
        "params": params_json, "model_version": version, "width": res.width,
        "height": res.height, "seconds": res.seconds, "measured_at": now_iso(),
    }


def measure_images(db: Database, image_ids: Sequence[int], *, method: str = "gradient",
                   params: FibreParams | None = None, model_path: str | Path | None = None,
                   redo: bool = False, max_pixels: int = 200_000_000,
                   progress: Progress = silent) -> MeasureReport:
    """Measure images and store one row per (image, method). An image already measured with
    the same method and parameters is skipped unless ``redo``; a failure (unreadable file, too
    small, model error) is stored with its reason and the batch goes on."""
    if method not in METHODS:
        raise InvalidValue(f"Unknown method {method!r}; expected one of {', '.join(METHODS)}")
    migrate(db)
    params = params or FibreParams()
    model = OrientationNet(model_path or FIBRE_MODEL) if method == "learned" else None
    pj = _params_json(method, params, model)
    version = model.version if model else None
    done = {r[0] for r in db.execute(
        "SELECT image_id FROM fibre_measurements WHERE method = ? AND params = ? "
        "AND status != 'error'", [method, pj])}
    rep = MeasureReport()
    n = len(image_ids)
    for k, image_id in enumerate(image_ids):
        progress(k / max(n, 1), f"image {k + 1}/{n}")
        if not redo and image_id in done:
            rep.skipped += 1
            continue
        try:
            img = load_image(db, image_id, max_pixels=max_pixels)
            res = measure_one(img, method, params, model)
            row = _row(image_id, res, pj, version)
            rep.seconds += res.seconds
            rep.measured += 1
            rep.no_fibres += res.status == "no fibres"
        except (ImageReadError, MeasurementError, InvalidValue) as e:
            row = {"image_id": image_id, "method": method, "status": "error", "error": str(e),
                   "tolerance_deg": params.tolerance_deg, "params": pj,
                   "model_version": version, "measured_at": now_iso()}
            path = getattr(e, "path", None) or _paths(db, image_id)[0]
            rep.failed.append({"image_id": image_id, "path": path, "reason": str(e)})
        with write_tx(db, "storing a fibre measurement"):
            db.execute("DELETE FROM fibre_measurements WHERE image_id = ? AND method = ?",
                       [image_id, method])
            cols = list(row)
            db.execute(f"INSERT INTO fibre_measurements ({', '.join(cols)}) VALUES "
                       f"({', '.join('?' * len(cols))})", [row[c] for c in cols])
    progress(1.0, f"{rep.measured} measured, {len(rep.failed)} failed, {rep.skipped} already done")
    return rep


def _nm(v: float | None, pixel_size_m: float | None) -> float | None:
    return None if v is None or pixel_size_m is None else v * pixel_size_m * 1e9


def fibre_results(db: Database, *, method: str | None = None,
                  image_ids: Sequence[int] = ()) -> list[dict[str, Any]]:
    """Stored measurements joined with their images, newest layout of ``CSV_COLUMNS`` plus
    ``histogram`` (list) and ``folder``."""
    migrate(db)
    where: list[str] = []
    args: list[Any] = []
    if method:
        where.append("f.method = ?")
        args.append(method)
    if image_ids:
        where.append(f"f.image_id IN ({','.join('?' * len(image_ids))})")
        args += [int(i) for i in image_ids]
    sql = ("SELECT f.*, i.sha256, i.path FROM fibre_measurements f JOIN images i "
           "ON i.id = f.image_id" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY f.image_id, f.method")
    cur = db.execute(sql, args)
    names = [d[0] for d in cur.description]
    out = []
    for r in cur.fetchall():
        d = dict(zip(names, r, strict=True))
        ps = d["pixel_size_m"]
        out.append({
            "image_id": d["image_id"], "image_sha256": d["sha256"], "image_path": d["path"],
            "folder": os.path.dirname(d["path"]), "method": d["method"], "status": d["status"],
            "error": d["error"], "dominant_deg": d["dominant_deg"],
            "order_parameter": d["order_parameter"], "coherency": d["coherency"],
            "aligned_fraction": d["aligned_fraction"], "tolerance_deg": d["tolerance_deg"],
            "wire_fraction": d["wire_fraction"],
            "diameter_unit": "nm" if ps is not None else "px", "diameter_n": d["diameter_n"],
            "diameter_mean_nm": _nm(d["diameter_mean_px"], ps),
            "diameter_sd_nm": _nm(d["diameter_sd_px"], ps),
            "diameter_d10_nm": _nm(d["diameter_d10_px"], ps),
            "diameter_median_nm": _nm(d["diameter_d50_px"], ps),
            "diameter_d90_nm": _nm(d["diameter_d90_px"], ps),
            "diameter_mean_px": d["diameter_mean_px"], "diameter_sd_px": d["diameter_sd_px"],
            "diameter_d10_px": d["diameter_d10_px"], "diameter_median_px": d["diameter_d50_px"],
            "diameter_d90_px": d["diameter_d90_px"],
            "pixel_size_nm": None if ps is None else ps * 1e9, "sigma_px": d["sigma_px"],
            "model_version": d["model_version"], "warnings": json.loads(d["warnings"] or "[]"),
            "measured_at": d["measured_at"], "histogram": json.loads(d["histogram"] or "[]"),
        })
    return out


def export_fibres(db: Database, out_dir: str | Path, *, method: str | None = None) -> Path:
    """Write ``OUT/fibres.csv``: one row per measured (image, method) — see ``CSV_COLUMNS``
    (written aside and renamed into place)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"Export folder {str(out)!r} is a file; give a folder")
    out.mkdir(parents=True, exist_ok=True)
    rows = fibre_results(db, method=method)
    target = out / "fibres.csv"
    tmp = target.with_name(target.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "warnings": "; ".join(r["warnings"])})
    os.replace(tmp, target)
    return target


def _stat(values: list[float]) -> dict[str, float | None]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    if v.size == 0:
        return {"mean": None, "sd": None}
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else 0.0}


def compare_folders(db: Database, *, method: str = "gradient",
                    folders: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Per source folder (e.g. one spinning condition each): images measured, mean ± SD of the
    order parameter, aligned fraction and median diameter, the mean dominant direction (doubled
    angles) and the pooled orientation histogram. ``folders``: only these (default: all)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in fibre_results(db, method=method):
        if r["status"] != "ok" or (folders and r["folder"] not in folders):
            continue
        groups.setdefault(r["folder"], []).append(r)
    out = []
    for folder, rs in sorted(groups.items()):
        hist = np.zeros(STORED_BINS)
        for r in rs:
            if len(r["histogram"]) == STORED_BINS:
                hist += np.asarray(r["histogram"])
        mean_dir, strength = mean_resultant(hist)
        units = {r["diameter_unit"] for r in rs}
        unit = "nm" if units == {"nm"} else "px"
        dkey = "diameter_median_nm" if unit == "nm" else "diameter_median_px"
        out.append({
            "folder": folder, "images": len(rs),
            "order_parameter": _stat([r["order_parameter"] for r in rs]),
            "aligned_fraction": _stat([r["aligned_fraction"] for r in rs]),
            "diameter_median": _stat([r[dkey] for r in rs]), "diameter_unit": unit,
            "mean_direction_deg": mean_dir, "direction_strength": strength,
            "histogram": list((hist / hist.sum()) if hist.sum() > 0 else hist),
        })
    return out
