"""`semtriage similar …`: embeddings, nearest neighbours, near-copy clusters, the map's outliers."""

from __future__ import annotations

from pathlib import Path

import click

from core import similarity
from core.cli.common import Bar, db_option, emit, friendly, json_option, open_db
from core.models import active_model


@click.group("similar")
def similar() -> None:
    """Images by similarity: more like this, near-copies, outliers (texture embeddings)."""


@similar.command("build")
@db_option
@click.option("--refit", is_flag=True, help="Fit a new projection on the archive as it is now and "
              "re-embed every image (otherwise only images added since are embedded).")
@click.option("--map/--no-map", "with_map", default=True, show_default=True,
              help="Also lay out the 2-D map (t-SNE of a sample) and mark outliers.")
@click.option("--sample", default=similarity.MAP_SAMPLE, show_default=True, type=int,
              help="Images on the map (a random sample).")
@json_option
@friendly
def similar_build(db_path: Path, refit: bool, with_map: bool, sample: int, as_json: bool) -> None:
    """Embed the images that have no embedding yet, bring the neighbour index up to date and
    (re)build the map. Stopped half-way, a second run goes on where the first stopped."""
    db = open_db(db_path)
    bar = Bar("embedding", not as_json)
    try:
        rep = similarity.embed_archive(db, refit=refit, progress=bar)
    finally:
        bar.close()
    idx = similarity.current_index(db, verify=True)
    out = {"embed": rep.to_json(), "index": {"vectors": idx.n, "kind": idx.kind}, "map": None}
    if with_map:
        bar = Bar("map", not as_json)
        try:
            out["map"] = similarity.build_map(db, sample=sample, progress=bar).to_json()
        finally:
            bar.close()

    def text() -> str:
        lines = [f"{rep.total:,} of {rep.images:,} images embedded ({rep.embedded:,} now"
                 + (f", {rep.without_thumbnail:,} without a readable thumbnail" if rep.without_thumbnail else "")
                 + f") in space {rep.space}" + (" (newly fitted)" if rep.refitted else ""),
                 f"Neighbour index: {idx.n:,} vectors, {'exact' if idx.kind == 'exact' else 'inverted file'}"]
        if out["map"]:
            m = out["map"]
            lines.append(f"Map: {m['points']:,} images, {m['outliers']:,} outliers ({m['seconds']} s)")
        return "\n".join(lines)

    emit(as_json, out, text)


@similar.command("neighbours")
@db_option
@click.argument("image_id", type=int)
@click.option("-k", "k", default=12, show_default=True, help="How many neighbours.")
@json_option
@friendly
def similar_neighbours(db_path: Path, image_id: int, k: int, as_json: bool) -> None:
    """The K images most like IMAGE_ID (cosine similarity of the embeddings), with their labels."""
    db = open_db(db_path)
    m = active_model(db)
    rows = similarity.neighbourhood(db, image_id, k, m["id"] if m else None)
    items = [{"image_id": r["image_id"], "similarity": round(r["similarity"], 4), "name": r["name"],
              "path": r["path"], "label": r["label"], "reviewer": r["reviewer"], "prediction": r["pred"],
              "p1": r["p1"]} for r in rows]

    def text() -> str:
        if not items:
            return f"No other embedded image to compare image {image_id} with."
        return "\n".join(f"{r['image_id']:>8}  {r['similarity']:.3f}  {(r['label'] or '-'):<12} "
                         f"{(r['prediction'] or '-'):<12} {r['path']}" for r in items)

    emit(as_json, items, text)


@similar.command("copies")
@db_option
@click.option("--max-distance", default=6, show_default=True,
              help="Bits (of 64) two thumbnails' difference hashes may differ by.")
@click.option("-n", "limit", default=50, show_default=True, help="How many clusters, largest first.")
@json_option
@friendly
def similar_copies(db_path: Path, max_distance: int, limit: int, as_json: bool) -> None:
    """Clusters of near-copies (the same field saved twice, re-exported, resized)."""
    db = open_db(db_path)
    clusters = similarity.near_copy_clusters(db, max_distance=max_distance, limit=limit)
    info = similarity.describe(db, [i for c in clusters for i in c])
    out = [[{"image_id": i, "name": info[i]["name"], "label": info[i]["label"]} for i in c] for c in clusters]

    def text() -> str:
        if not out:
            return "No near-copies."
        return "\n".join(f"{len(c)} images: " + ", ".join(f"{m['image_id']} {m['name']}" for m in c) for c in out)

    emit(as_json, out, text)


@similar.command("outliers")
@db_option
@json_option
@friendly
def similar_outliers(db_path: Path, as_json: bool) -> None:
    """Images the map marks as outliers (local outlier factor), most isolated first."""
    db = open_db(db_path)
    m = active_model(db)
    df = similarity.map_points(db, m["id"] if m else None)
    df = df[df["outlier"]].sort_values("lof", ascending=False)
    items = [{"image_id": int(r.image_id), "name": r.name, "lof": round(float(r.lof), 3), "label": r.label,
              "prediction": r.prediction} for r in df.itertuples()]

    def text() -> str:
        if not items:
            return "No outliers on the map (or no map yet: `semtriage similar build`)."
        return "\n".join(f"{r['image_id']:>8}  LOF {r['lof']:.2f}  {r['label']:<12} {r['name']}" for r in items)

    emit(as_json, items, text)
