"""Exports of the stored particles: per-particle CSV (``particles.csv``), per-image summary
CSV (``images.csv``), COCO instance segmentation JSON with RLE masks (``coco.json``),
instance-mask images (``masks/<stem>_masks.png``, 16-bit, 0 = background, 1..N) and a one-page
HTML report with the histogram and the D-values (``report.html``). Each export is written aside
and renamed into place, so a failure leaves no half file. Every export takes image ids (a saved
selection's, a dataset export's); :func:`export_for_dataset` writes the particles of a dataset
export's images inside it."""

from __future__ import annotations

import csv
import html
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlite_utils import Database

from core.errors import ExportError, InvalidValue
from core.files import safe_name
from core.particles.stats import describe, histogram, populations, size_set
from core.particles.store import PCOLS, label_image
from core.store import temp_ids

FORMATS = ("csv", "coco", "masks", "report")
CSV_COLUMNS = ("image_sha256", "image_path", "particle_id", "source", "detector_version",
               "centroid_x_px", "centroid_y_px", "area_px", "ecd_px", "ecd_nm", "feret_max_px",
               "feret_max_nm", "feret_min_px", "feret_min_nm", "aspect_ratio", "circularity",
               "solidity", "mean_intensity", "score", "label", "population", "excluded")


def _particles(db: Database, image_ids: Sequence[int] | None) -> list[dict[str, Any]]:
    sql = ("SELECT p.id AS particle_id, p.image_id, i.sha256 AS image_sha256, i.path AS image_path, "
           "p.source, p.detector_version, p.label, " + ", ".join(f"p.{c}" for c in PCOLS) +
           ", COALESCE(pi.pixel_size_m, i.pixel_size_m) AS pixel_size_m FROM particles p "
           "JOIN images i ON i.id = p.image_id LEFT JOIN particle_images pi ON pi.image_id = i.id "
           "WHERE p.removed_event IS NULL")
    if image_ids is not None:
        sql += " AND p.image_id IN " + temp_ids(db, "_pexport", image_ids)
    return list(db.query(sql + " ORDER BY p.image_id, p.id"))


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"Cannot write {str(path)!r}: {e}") from None


def export_csv(db: Database, out: Path, image_ids: Sequence[int] | None = None, *,
               names: tuple[str, str] = ("particles.csv", "images.csv")) -> dict[str, int]:
    """``out/particles.csv`` and ``out/images.csv`` (or ``names``); population = the size
    mixture's index over the exported set (or the reviewer's label when one was given)."""
    rows = _particles(db, image_ids)
    s = size_set(db, image_ids)
    pops = populations(s.d)
    pop_of = dict(zip(s.particle_ids.tolist(), pops["assignment"]))

    def nm(v: float, ps: float | None) -> str:
        return "" if ps is None else f"{v * ps * 1e9:.3f}"

    def write_particles(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(CSV_COLUMNS)
            for r in rows:
                ps = r["pixel_size_m"]
                pop = pop_of.get(r["particle_id"])
                w.writerow([r["image_sha256"], r["image_path"], r["particle_id"], r["source"],
                            r["detector_version"] or "", r["centroid_x_px"], r["centroid_y_px"],
                            r["area_px"], r["ecd_px"], nm(r["ecd_px"], ps), r["feret_max_px"],
                            nm(r["feret_max_px"], ps), r["feret_min_px"], nm(r["feret_min_px"], ps),
                            r["aspect_ratio"], r["circularity"], r["solidity"],
                            "" if r["mean_intensity"] is None else r["mean_intensity"], r["score"],
                            r["label"] or "", "" if pop is None or pop < 0 else pop, r["excluded"]])

    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / names[0], write_particles)
    images = image_summaries(db, image_ids)

    def write_images(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            cols = list(images[0].keys()) if images else ["image_id"]
            w = csv.DictWriter(f, cols)
            w.writeheader()
            w.writerows(images)

    _write_atomic(out / names[1], write_images)
    return {"particles": len(rows), "images": len(images)}


def image_summaries(db: Database, image_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """One row per image with particles: state, counts, exclusions, D-values."""
    sql = ("SELECT i.id AS image_id, i.sha256 AS image_sha256, i.path AS image_path, pi.state, "
           "pi.detector_version, pi.verified_by, pi.n_particles, pi.n_edge, pi.n_databar, "
           "COALESCE(pi.pixel_size_m, i.pixel_size_m) AS pixel_size_m FROM particle_images pi "
           "JOIN images i ON i.id = pi.image_id")
    if image_ids is not None:
        sql += " WHERE i.id IN " + temp_ids(db, "_pexport", image_ids)
    out = []
    for r in list(db.query(sql + " ORDER BY i.id")):
        d = describe(size_set(db, [r["image_id"]]).d)
        r["unit"] = "nm" if r["pixel_size_m"] else "px"
        for k in ("count", "mean", "sd", "d10", "d50", "d90"):
            v = d.get(k)
            r[f"{k}_measured" if k == "count" else k] = "" if v is None else (
                round(v, 3) if isinstance(v, float) else v)
        out.append(r)
    return out


def rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE (column-major run lengths starting with background)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]]))
    counts = runs.tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def export_coco(db: Database, out: Path, image_ids: Sequence[int] | None = None, *,
                name: str = "coco.json", file_names: Mapping[int, str] | None = None
                ) -> dict[str, int]:
    """``out/coco.json`` (or ``name``); ``file_names`` (image id → name) replaces the stored
    path as an image's ``file_name`` (a dataset export: the copy inside it)."""
    ids = image_ids if image_ids is not None else [r[0] for r in db.execute(
        "SELECT image_id FROM particle_images ORDER BY image_id")]
    images, anns = [], []
    for iid in ids:
        im = db.execute("SELECT id, path, width, height FROM images WHERE id = ?", [iid]).fetchone()
        if im is None:
            continue
        fname = file_names.get(im[0], im[1]) if file_names else im[1]
        images.append({"id": im[0], "file_name": fname, "width": im[2], "height": im[3]})
        lab, pids = label_image(db, iid)
        meta = {r[0]: r for r in db.execute(
            "SELECT id, score, source, area_px, x0, y0, x1, y1, excluded FROM particles WHERE "
            "image_id = ? AND removed_event IS NULL", [iid])}
        for k, pid in enumerate(pids, 1):
            r = meta[pid]
            m = lab[r[5]:r[7], r[4]:r[6]] == k
            full = np.zeros(lab.shape, bool)
            full[r[5]:r[7], r[4]:r[6]] = m
            anns.append({"id": pid, "image_id": iid, "category_id": 1, "iscrowd": 0,
                         "segmentation": rle(full), "area": int(m.sum()),
                         "bbox": [r[4], r[5], r[6] - r[4], r[7] - r[5]], "score": r[1],
                         "source": r[2], "excluded": r[8]})
    doc = {"info": {"description": "SEM Triage particles"}, "images": images, "annotations": anns,
           "categories": [{"id": 1, "name": "particle"}]}
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / name, lambda t: t.write_text(json.dumps(doc), encoding="utf-8"))
    return {"images": len(images), "annotations": len(anns)}


def export_masks(db: Database, out: Path, image_ids: Sequence[int] | None = None) -> dict[str, int]:
    """16-bit PNG instance masks (Cellpose style, what ``import-masks`` reads back)."""
    ids = image_ids if image_ids is not None else [r[0] for r in db.execute(
        "SELECT image_id FROM particle_images ORDER BY image_id")]
    (out / "masks").mkdir(parents=True, exist_ok=True)
    n = 0
    for iid in ids:
        row = db.execute("SELECT path FROM images WHERE id = ?", [iid]).fetchone()
        if row is None:
            continue
        lab, pids = label_image(db, iid)
        if len(pids) > 65535:
            raise ExportError(f"image {iid} has {len(pids)} particles; a 16-bit mask holds 65,535")
        stem = safe_name(Path(row[0]).stem)
        _write_atomic(out / "masks" / f"{stem}_masks.png",
                      lambda t, lab=lab: Image.fromarray(lab.astype(np.uint16)).save(t, format="PNG"))
        n += 1
    return {"masks": n}


def _svg_histogram(h: dict[str, list[float]], unit: str) -> str:
    edges, frac = h["edges"], h["fraction"]
    if not edges:
        return "<p>No particles.</p>"
    W, H, pad = 640, 240, 30
    top = max(frac) or 1
    lo, hi = edges[0], edges[-1]
    sx = lambda v: pad + (v - lo) / (hi - lo) * (W - 2 * pad)
    bars = "".join(
        f'<rect x="{sx(a):.1f}" y="{H - pad - f / top * (H - 2 * pad):.1f}" '
        f'width="{max(0.5, sx(b) - sx(a) - 1):.1f}" height="{f / top * (H - 2 * pad):.1f}" fill="#4a7ab5"/>'
        for a, b, f in zip(edges[:-1], edges[1:], frac))
    axis = (f'<text x="{pad}" y="{H - 8}" font-size="11">{lo:.1f}</text>'
            f'<text x="{W - pad - 30}" y="{H - 8}" font-size="11">{hi:.1f} {unit}</text>')
    return f'<svg width="{W}" height="{H}" xmlns="http://www.w3.org/2000/svg">{bars}{axis}</svg>'


def export_report(db: Database, out: Path, image_ids: Sequence[int] | None = None,
                  title: str = "Particle size report") -> dict[str, int]:
    """One self-contained HTML page (inline SVG histogram; user text escaped)."""
    s = size_set(db, image_ids)
    d = describe(s.d)
    pops = populations(s.d)
    h = histogram(s.d, bins=30)
    unit = s.unit
    warn = ("" if unit == "nm" else "<p style='color:#a00'><b>Pixel size unknown</b>: sizes are "
            "in pixels. Set it per image or folder (semtriage particles pixel-size).</p>")
    rows = "".join(
        f"<tr><td>{html.escape(k.upper())}</td><td>{d[k]:.2f} {unit}</td><td>"
        + (f"{d[k + '_ci'][0]:.2f} – {d[k + '_ci'][1]:.2f}" if d.get(k + "_ci") else "–")
        + "</td></tr>" for k in ("d10", "d50", "d90") if k in d)
    pop_rows = "".join(f"<li>population {p['population']}: median {p['median']:.2f} {unit}, "
                       f"{p['count']} particles ({p['share']:.0%})</li>" for p in pops["populations"])
    body = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:720px;margin:2em auto}}td{{padding:2px 10px}}</style>
</head><body><h1>{html.escape(title)}</h1>{warn}
<p>{d.get('count', 0)} particles measured in {s.n_images} image(s); left out: {s.n_edge} cut by the
image edge, {s.n_databar} cut by the data bar, {s.n_not_particle} marked not a particle,
{s.n_unknown_scale} in images of unknown pixel size.</p>
<p>Mean {d.get('mean', float('nan')):.2f} {unit}, SD {d.get('sd', float('nan')):.2f} {unit}
(equivalent-circle diameter).</p>
<table><tr><th></th><th>value</th><th>bootstrap 95 % CI</th></tr>{rows}</table>
<h2>Number-weighted histogram</h2>{_svg_histogram(h, unit)}
<h2>Populations (Gaussian mixture on log size)</h2><ul>{pop_rows or '<li>–</li>'}</ul>
</body></html>"""
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out / "report.html", lambda t: t.write_text(body, encoding="utf-8"))
    return {"particles": int(d.get("count", 0))}


def export_particles(db: Database, out: str | Path, fmt: str = "csv",
                     image_ids: Sequence[int] | None = None) -> dict[str, int]:
    if fmt not in FORMATS:
        raise InvalidValue(f"export format {fmt!r}: expected one of {FORMATS}")
    o = Path(out)
    if o.exists() and not o.is_dir():
        raise ExportError(f"Export target {str(o)!r} is a file; give a folder")
    writers: dict[str, Callable[[Database, Path, Sequence[int] | None], dict[str, int]]] = {
        "csv": export_csv, "coco": export_coco, "masks": export_masks, "report": export_report}
    return writers[fmt](db, o, image_ids)


DATASET_FILES = ("particles.csv", "particles-images.csv", "particles-coco.json")


def images_with_particles(db: Database, image_ids: Sequence[int]) -> list[int]:
    """Those of ``image_ids`` that have at least one current particle, in order."""
    have = {r[0] for r in db.execute(
        "SELECT DISTINCT image_id FROM particles WHERE removed_event IS NULL")}
    return sorted({int(i) for i in image_ids} & have)


def export_for_dataset(db: Database, folder: Path, exported: Mapping[int, str]) -> dict[str, Any]:
    """The particles of a dataset export's images (``exported``: image id → the image's path
    as the export has it) beside its manifest, in ``folder``: ``particles.csv`` (the columns
    of :func:`export_csv`; join it to the manifest on ``image_sha256``),
    ``particles-images.csv`` (per image) and ``particles-coco.json`` (``file_name`` = the
    image's path in the export) — of the images that have particles; header-only / empty when
    none has. Files, not a folder: an ImageFolder export takes every folder for a class.
    Returns the files (relative to ``folder``) and counts."""
    ids = images_with_particles(db, list(exported))
    csv_counts = export_csv(db, folder, ids, names=(DATASET_FILES[0], DATASET_FILES[1]))
    coco = export_coco(db, folder, ids, name=DATASET_FILES[2],
                       file_names={i: exported[i] for i in ids})
    return {"files": list(DATASET_FILES), "images": len(ids), "particles": csv_counts["particles"],
            "annotations": coco["annotations"]}
