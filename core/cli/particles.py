"""`semtriage particles …`: detect, import masks, retrain, detectors, stats, export, saved
selections, pixel size, verify / undo and the review queue — every part of particle analysis
without the app.

torch loads only when ``particles train`` runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from core import particles as P
from core import training
from core.cli.common import Bar, db_option, emit, friendly, json_option, open_db
from core.config import MODELS_DIR, Settings
from core.errors import InvalidValue


@click.group()
def particles() -> None:
    """Particle analysis: detect, measure (nm), review, learn from corrections, export."""


@particles.command("detect")
@click.argument("image_ids", nargs=-1, type=int)
@click.option("--all", "all_images", is_flag=True, help="Every stored image.")
@click.option("--class", "cls", default=None, help="Images of this class (label, else prediction).")
@click.option("--method", type=click.Choice(P.METHODS), default=None,
              help="model or classical (default: the active detector).")
@click.option("--detector", "version", default=None, help="A registered detector version.")
@click.option("--redo", is_flag=True, help="Replace earlier detections (never verified images).")
@db_option
@json_option
@friendly
def particles_detect(image_ids: tuple[int, ...], all_images: bool, cls: str | None, method: str | None,
           version: str | None, redo: bool, db_path: Path, as_json: bool) -> None:
    """Detect and measure the particles of stored images. Verified images are never touched."""
    db = open_db(db_path)
    ids = P.select_images(db, image_ids, all_images=all_images, cls=cls)
    bar = Bar("detect", not as_json)
    rep = P.detect_images(db, ids, method=method, version=version, redo=redo, progress=bar)
    bar.close()
    emit(as_json, rep.to_json(), rep.summary())
    unknown = db.execute(
        "SELECT count(*) FROM particle_images pi JOIN images i ON i.id = pi.image_id WHERE "
        "pi.pixel_size_m IS NULL AND i.pixel_size_m IS NULL").fetchone()[0]
    if unknown and not as_json:
        click.echo(f"Warning: {unknown} image(s) have no pixel size: their sizes are in px. "
                   "Set it with `semtriage particles pixel-size NM_PER_PX IMAGE_ID...`.", err=True)


@particles.command("import-masks")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@db_option
@json_option
@friendly
def particles_import_masks(folder: Path, db_path: Path, as_json: bool) -> None:
    """Import images with Cellpose-style masks beside them (<stem>_masks.tif/.png) as verified."""
    db = open_db(db_path)
    bar = Bar("import", not as_json)
    rep = P.import_masks(db, folder, settings=Settings.from_env(), progress=bar)
    bar.close()
    emit(as_json, rep.to_json(), rep.summary())


@particles.command("train")
@click.option("--from-db", "from_db", is_flag=True, required=True,
              help="Train on the verified images of the database (required).")
@click.option("--synthetic", type=click.IntRange(min=0), default=60, show_default=True,
              help="Synthetic images added to the training set.")
@click.option("--seconds", type=click.FloatRange(min=5), default=240.0, show_default=True,
              help="Training time budget.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the candidate's ONNX goes (default data/models/particles/).")
@db_option
@json_option
@friendly
def particles_train(from_db: bool, synthetic: int, seconds: float, out_dir: Path | None, db_path: Path,
          as_json: bool) -> None:
    """Train a candidate detector from verified images; compare it on held-out ones."""
    db = open_db(db_path)
    res = training.retrain_particles(db, out_dir or MODELS_DIR / "particles", synthetic=synthetic,
                                     seconds=seconds, progress=Bar("train", not as_json))
    emit(as_json, res, lambda: (
        f"Candidate {res['version']} (inactive), trained on {res['trained_on']} verified image(s) + "
        f"{synthetic} synthetic, {res['steps']} steps in {res['seconds']} s.\n"
        + P.comparison_text({"images": res["held_out"], "held_out": True,
                             "candidate": res["version"], "active": res["active"],
                             "candidate_metrics": res["candidate_metrics"],
                             "active_metrics": res["active_metrics"]})
        + f"\nPromote with: semtriage particles detector promote {res['version']}"))


@particles.group("detector")
def particles_detector() -> None:
    """List, add, promote and compare particle detectors."""


@particles_detector.command("list")
@db_option
@json_option
@friendly
def particles_detector_list(db_path: Path, as_json: bool) -> None:
    db = open_db(db_path)
    P.ensure_defaults(db)
    ds = P.list_detectors(db)
    for d in ds:
        d.pop("card", None)
    emit(as_json, ds, lambda: "\n".join(
        f"{'*' if d['active'] else ' '} {d['id']:>3}  {d['version']:<32} {d['kind']:<9} {d['path'] or ''}"
        for d in ds))


@particles_detector.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--activate", is_flag=True)
@db_option
@json_option
@friendly
def particles_detector_add(path: Path, activate: bool, db_path: Path, as_json: bool) -> None:
    """Register a lab's ONNX segmenter (README: particle detector metadata contract)."""
    d = P.register_detector(open_db(db_path), path=path, activate=activate)
    d.pop("card", None)
    emit(as_json, d, f"Registered {d['version']}" + (" — active" if d["active"] else ""))


@particles_detector.command("promote")
@click.argument("version")
@db_option
@json_option
@friendly
def particles_detector_promote(version: str, db_path: Path, as_json: bool) -> None:
    """Make a detector the active one (used by `detect` from now on)."""
    d = P.promote_detector(open_db(db_path), version)
    emit(as_json, {"active": d["version"]}, f"{d['version']} is now the active particle detector")


@particles_detector.command("compare")
@click.argument("version")
@db_option
@json_option
@friendly
def particles_detector_compare(version: str, db_path: Path, as_json: bool) -> None:
    """A detector against the active one on its held-out verified images (F1, D50 error)."""
    res = P.compare_detector(open_db(db_path), version)
    emit(as_json, res, lambda: P.comparison_text(res))


def _selection_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--selection", "selection", default=None, metavar="NAME",
                        help="Only the images of this saved selection (`particles selection list`).")(fn)


@particles.command("stats")
@click.option("--by", type=click.Choice(P.BY), default=None,
              help="One row per folder / class / image / saved selection.")
@_selection_option
@db_option
@json_option
@friendly
def particles_stats(by: str | None, selection: str | None, db_path: Path, as_json: bool) -> None:
    """Size distribution (ECD): count, mean, SD, D10/D50/D90 with bootstrap 95 % CI, populations."""
    db = open_db(db_path)
    ids = P.selection_images(db, selection) if selection else None
    sets: dict[str, list[int] | None]
    if by:
        sets = dict(P.group_sets(db, by, ids))
    else:
        sets = {P.find_selection(db, selection)["name"] if selection else "all": ids}
    out = {k: P.set_stats(db, ids) for k, ids in sets.items()}

    def text() -> str:
        lines = []
        for k, s in out.items():
            if not s.get("count"):
                lines.append(f"{k}: no particles")
                continue
            u = s["unit"]
            ci = s.get("d50_ci") or [float("nan")] * 2
            lines.append(
                f"{k}: {s['count']} particles in {s['images']} image(s); mean {s['mean']:.2f} {u}, "
                f"SD {s['sd']:.2f}; D10 {s['d10']:.2f}, D50 {s['d50']:.2f} (95 % CI {ci[0]:.2f}–"
                f"{ci[1]:.2f}), D90 {s['d90']:.2f} {u}; left out: {s['excluded_edge']} edge, "
                f"{s['excluded_databar']} data bar, {s['not_particles']} not particles"
                + (f", {s['unknown_scale']} of unknown scale" if s["unknown_scale"] else ""))
            if u == "px":
                lines.append("  Warning: pixel size unknown — sizes in pixels")
            for p in s.get("populations", []):
                lines.append(f"  population {p['population']}: median {p['median']:.2f} {u}, "
                             f"{p['count']} ({p['share']:.0%})")
        return "\n".join(lines)

    emit(as_json, out, text)


@particles.command("export")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(P.FORMATS), default="csv", show_default=True)
@_selection_option
@db_option
@json_option
@friendly
def particles_export(out: Path, fmt: str, selection: str | None, db_path: Path, as_json: bool) -> None:
    """particles.csv + images.csv, coco.json (RLE), masks/*_masks.png or report.html into OUT."""
    db = open_db(db_path)
    ids = P.selection_images(db, selection) if selection else None
    res = P.export_particles(db, out, fmt, ids)
    emit(as_json, res, f"Exported {fmt} to {out}: " + ", ".join(f"{v} {k}" for k, v in res.items()))


@particles.command("pixel-size")
@click.argument("nm_per_px", type=float)
@click.argument("image_ids", nargs=-1, type=int)
@click.option("--folder", default=None, help="Every image whose folder (group key) is this.")
@click.option("--reviewer", default="cli", show_default=True)
@db_option
@json_option
@friendly
def particles_pixel_size(nm_per_px: float, image_ids: tuple[int, ...], folder: str | None, reviewer: str,
               db_path: Path, as_json: bool) -> None:
    """Set the pixel size (nm per pixel) of images or a folder; 0 clears it."""
    db = open_db(db_path)
    ids = list(image_ids)
    if folder:
        ids += [r[0] for r in db.execute("SELECT id FROM images WHERE group_key = ?", [folder])]
    if not ids:
        raise InvalidValue("give image ids or --folder")
    n = P.set_pixel_size(db, ids, nm_per_px * 1e-9 if nm_per_px else None, reviewer=reviewer)
    emit(as_json, {"images": n}, f"Pixel size set on {n} image(s)")


@particles.command("verify")
@click.argument("image_id", type=int)
@click.option("--reviewer", required=True)
@click.option("--undo", "undo", is_flag=True, help="Undo the image's last edit instead.")
@db_option
@json_option
@friendly
def particles_verify(image_id: int, reviewer: str, undo: bool, db_path: Path, as_json: bool) -> None:
    """Accept an image's particles as verified (or --undo its last edit)."""
    db = open_db(db_path)
    if undo:
        ev = P.undo_last(db, image_id, reviewer=reviewer)
        emit(as_json, {"undone": ev}, f"Undid {ev['action']}" if ev else "Nothing to undo")
        return
    P.verify_image(db, image_id, reviewer=reviewer)
    emit(as_json, {"verified": image_id}, f"Image {image_id} verified by {reviewer}")


@particles.command("queue")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@db_option
@json_option
@friendly
def particles_queue(limit: int, db_path: Path, as_json: bool) -> None:
    """Images to check, worst first (low scores, likely merges, odd sizes)."""
    rows = P.review_queue(open_db(db_path), limit)
    emit(as_json, rows, lambda: "\n".join(
        f"{r['image_id']:>6}  priority {r['priority']:.2f}  {r['n_particles']:>5} particles  {r['name']}"
        for r in rows) or "Nothing to review")


@particles.group("selection")
def particles_selection() -> None:
    """Saved selections: named sets of images for `stats --selection` and `export --selection`."""


@particles_selection.command("save")
@click.argument("name")
@click.argument("image_ids", nargs=-1, type=int)
@click.option("--folder", default=None, help="The images of this folder (group key).")
@click.option("--class", "cls", default=None, help="The images of this class (label, else prediction).")
@click.option("--reviewer", default="cli", show_default=True, help="Who made it (recorded).")
@db_option
@json_option
@friendly
def particles_selection_save(name: str, image_ids: tuple[int, ...], folder: str | None,
                             cls: str | None, reviewer: str, db_path: Path, as_json: bool) -> None:
    """Save the images matching every criterion given (IDs, --folder, --class) as NAME."""
    s = P.save_selection(open_db(db_path), name, list(image_ids), folder=folder, cls=cls,
                         reviewer=reviewer)
    emit(as_json, s, f"Saved selection {s['name']!r}: {s['images']} image(s) ({s['how']}), "
                     f"{s['with_particles']} with particles")


@particles_selection.command("list")
@db_option
@json_option
@friendly
def particles_selection_list(db_path: Path, as_json: bool) -> None:
    """Every saved selection: images, how many have particles, who made it and how."""
    rows = P.list_selections(open_db(db_path))
    emit(as_json, rows, lambda: "\n".join(
        f"{r['name']:<24} {r['images']:>6} images ({r['with_particles']} with particles)  "
        f"by {r['created_by']}, {r['created_at'][:16]}: {r['how']}" for r in rows)
        or "No saved selections")


@particles_selection.command("delete")
@click.argument("name")
@db_option
@json_option
@friendly
def particles_selection_delete(name: str, db_path: Path, as_json: bool) -> None:
    """Delete a saved selection (its images and particles stay)."""
    res = P.delete_selection(open_db(db_path), name)
    emit(as_json, res, f"Deleted selection {res['deleted']!r} ({res['images']} image(s))")
