"""`semtriage fibres measure | export | compare | train`: fibre / nanowire orientation,
alignment and diameters (core.fibres)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from core import fibres, training
from core.cli.common import Bar, db_option, emit, friendly, json_option, open_db
from core.config import Settings


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "—" if v is None else format(v, spec)


def _line(r: dict[str, Any]) -> str:
    if r["status"] == "error":
        return f"{r['image_id']:>6}  {r['method']:<8} error: {r['error']}"
    unit = r["diameter_unit"]
    d = r["diameter_median_nm"] if unit == "nm" else r["diameter_median_px"]
    return (f"{r['image_id']:>6}  {r['method']:<8} {r['status']:<9} θ₀ {_fmt(r['dominant_deg'], '6.1f')}°"
            f"  S {_fmt(r['order_parameter'])}  aligned {_fmt(r['aligned_fraction'])}"
            f" (±{r['tolerance_deg']:g}°)  coherency {_fmt(r['coherency'])}"
            f"  D50 {_fmt(d, '.1f')} {unit}  {Path(r['image_path']).name}")


@click.group("fibres")
def fibres_group() -> None:
    """Fibres and nanowires: dominant direction, order parameter, aligned fraction, diameters.

    Angles are degrees in [0, 180), counter-clockwise from the image x axis as the image is
    displayed (row 0 at the top). See the README, "Fibres and nanowires".
    """


@fibres_group.command("measure")
@db_option
@click.argument("image_ids", nargs=-1, type=int)
@click.option("--all", "all_images", is_flag=True, help="Every image in the database.")
@click.option("--class", "cls", default=None,
              help="Images whose label (else the active model's prediction) is this class.")
@click.option("--method", type=click.Choice(["gradient", "learned", "both"]), default="gradient",
              show_default=True, help="Structure tensor (gradient), the ONNX estimator, or both.")
@click.option("--tolerance", default=15.0, show_default=True,
              help="Aligned fraction: degrees either side of the dominant direction.")
@click.option("--sigma", default=None, type=float,
              help="Structure-tensor window SD in px (default: half the median fibre diameter).")
@click.option("--min-coherency", default=0.2, show_default=True,
              help="Below this coherency a wire pixel has no direction (not aligned).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Orientation model for --method learned (default: shipped).")
@click.option("--redo", is_flag=True, help="Measure again images already measured.")
@json_option
@friendly
def fibres_measure(db_path: Path, image_ids: tuple[int, ...], all_images: bool, cls: str | None,
                   method: str, tolerance: float, sigma: float | None, min_coherency: float,
                   model_path: Path | None, redo: bool, as_json: bool) -> None:
    """Measure IMAGE_ID... (or --all, or --class C) and store the results. An image that
    cannot be measured is reported with its reason; the others go on."""
    db = open_db(db_path)
    params = fibres.FibreParams(sigma=sigma, tolerance_deg=tolerance, min_coherency=min_coherency)
    ids = fibres.select_images(db, image_ids, all_images=all_images, cls=cls)
    methods = ["gradient", "learned"] if method == "both" else [method]
    reports = {}
    for m in methods:
        bar = Bar(f"fibres ({m})", not as_json)
        try:
            reports[m] = fibres.measure_images(db, ids, method=m, params=params,
                                               model_path=model_path, redo=redo,
                                               max_pixels=Settings.from_env().max_pixels,
                                               progress=bar)
        finally:
            bar.close()
    rows = fibres.fibre_results(db, image_ids=ids)
    rows = [r for r in rows if r["method"] in methods]
    failed = sum(len(r.failed) for r in reports.values())

    def text() -> str:
        lines = [_line(r) for r in rows]
        for m, rep in reports.items():
            lines.append(f"{m}: {rep.measured} measured, {rep.skipped} already measured, "
                         f"{rep.no_fibres} without fibres, {len(rep.failed)} failed")
        if any(r["diameter_unit"] == "px" and r["status"] == "ok" and r["method"] == "gradient"
               for r in rows):
            lines.append("warning: pixel size unknown for some images: their diameters are in px")
        return "\n".join(lines) if ids else "No images matched."

    emit(as_json, {"reports": {m: r.as_dict() for m, r in reports.items()}, "results": rows},
         text)
    if ids and failed and all(r.measured + r.skipped == 0 for r in reports.values()):
        raise click.ClickException(f"No image could be measured ({failed} failed)")


@fibres_group.command("export")
@db_option
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--method", type=click.Choice(["gradient", "learned"]), default=None,
              help="Only this method's rows (default: every method).")
@json_option
@friendly
def fibres_export(db_path: Path, out: Path, method: str | None, as_json: bool) -> None:
    """Write OUT/fibres.csv: one row per measured image and method."""
    path = fibres.export_fibres(open_db(db_path), out, method=method)
    n = sum(1 for _ in path.open(encoding="utf-8")) - 1
    emit(as_json, {"path": str(path), "rows": n}, f"Wrote {n} rows to {path}")


@fibres_group.command("compare")
@db_option
@click.option("--method", type=click.Choice(["gradient", "learned"]), default="gradient",
              show_default=True)
@click.option("--folder", "folders", multiple=True, help="Only these folders (repeatable).")
@json_option
@friendly
def fibres_compare(db_path: Path, method: str, folders: tuple[str, ...], as_json: bool) -> None:
    """Compare source folders (e.g. two spinning conditions): mean ± SD per folder."""
    groups = fibres.compare_folders(open_db(db_path), method=method, folders=folders)

    def text() -> str:
        if not groups:
            return "No measured images (run `semtriage fibres measure` first)."
        lines = []
        for g in groups:
            s, a, d = g["order_parameter"], g["aligned_fraction"], g["diameter_median"]
            lines.append(f"{g['folder']}: {g['images']} images  S {_fmt(s['mean'])} ± "
                         f"{_fmt(s['sd'])}  aligned {_fmt(a['mean'])} ± {_fmt(a['sd'])}  "
                         f"D50 {_fmt(d['mean'], '.1f')} ± {_fmt(d['sd'], '.1f')} "
                         f"{g['diameter_unit']}  mean direction "
                         f"{_fmt(g['mean_direction_deg'], '.1f')}°")
        return "\n".join(lines)

    emit(as_json, groups, text)


@fibres_group.command("train")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="ONNX file to write (default: data/models/fibres-orientation.onnx).")
@click.option("--n", "n_train", default=2000, show_default=True, help="Synthetic images.")
@click.option("--epochs", default=12, show_default=True)
@click.option("--seed", default=0, show_default=True)
@json_option
@friendly
def fibres_train(out: Path | None, n_train: int, epochs: int, seed: int, as_json: bool) -> None:
    """Train the learned orientation estimator on synthetic wire images and export it (one
    .onnx file and its .card.json)."""
    bar = Bar("training the fibre orientation model", not as_json)
    try:
        net, info = training.train_fibre_net(n_train, max(100, n_train // 6), epochs, seed,
                                             progress=bar)
    finally:
        bar.close()
    path = training.export_fibre_net(net, out or fibres.FIBRE_MODEL, info)
    emit(as_json, {"path": str(path), **info["validation"]},
         f"Wrote {path} (validation {info['validation']})")
