"""`semtriage queue | label | thresholds`: review queues, decisions and routing thresholds."""


from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import click

from core import models, review
from core.cli.common import db_option, emit, friendly, json_option, open_db


@click.command()
@click.argument("name", type=click.Choice(list(review.QUEUE_CHOICES)), default="uncertain")
@db_option
@click.option("-n", "limit", default=20, show_default=True, help="How many images.")
@click.option("--order", type=click.Choice(["margin", "confidence", "entropy", "file", "random"]),
              default=None, help="margin: smallest top-1 − top-2 first; confidence: least confidence "
              "first; entropy: most spread first. Default: the reviewer's saved order of the queue, else "
              "the default for everyone (margin). The blind spot-check is always random.")
@click.option("--save-order", is_flag=True, help="Store --order as the reviewer's own order of this "
              "queue (app too); without --reviewer, as the default for everyone.")
@click.option("--reviewer", default=None, help="Claim the images for this reviewer (as the app does).")
@json_option
@friendly
def queue(db_path: Path, name: str, limit: int, order: str | None, save_order: bool,
          reviewer: str | None, as_json: bool) -> None:
    """List the next images of a review queue (with queue sizes)."""
    db = open_db(db_path)
    if save_order:
        if order is None:
            raise click.UsageError("--save-order needs --order")
        review.set_queue_order(db, name, order, reviewer=reviewer)
    order = order or review.queue_order(db, name, reviewer)
    counts = review.queue_counts(db)
    # without a reviewer, peek with a throw-away name and a zero-length claim
    items = review.next_images(db, name, reviewer or "peek", n=limit, order=order,
                        claim_seconds=300 if reviewer else 0)
    keys: tuple[str, ...] = ("image_id", "path", "pred", "p1", "margin", "queue", "reason")
    if name == review.BLIND_QUEUE:  # the model's answer stays hidden until the reviewer decides
        keys = ("image_id", "path")
    rows = [{k: it[k] for k in keys} for it in items]

    def text() -> str:
        head = "  ".join(f"{q}: {n}" for q, n in counts.items())
        lines = [f"Queues — {head}  (order: {review.ORDER_NAMES[order]})"]
        if name == review.BLIND_QUEUE:
            lines += [f"{r['image_id']:>7}  {r['path']}" for r in rows]
        else:
            lines += [f"{r['image_id']:>7}  {r['pred'] or '-':<12} p={r['p1'] or 0:.2f}  "
                      f"{r['reason'] or ''}  {r['path']}" for r in rows]
        return "\n".join(lines)

    emit(as_json, {"counts": counts, "order": order, "items": rows}, text)


@click.command()
@click.argument("image_id", type=int)
@click.argument("action", type=click.Choice(["accept", "relabel", "several", "unusable", "skip", "undo"]))
@click.argument("label", required=False)
@db_option
@click.option("--reviewer", required=True, help="Who decides (recorded with the label).")
@click.option("--classes", default=None, help="With 'several': the classes present, comma-separated "
              "(at least two), e.g. particles,fibres.")
@click.option("--blind", is_flag=True, help="The decision was made without seeing the model's answer "
              "(the blind spot-check: only such checks measure the auto-accept error rate).")
@json_option
@friendly
def label(db_path: Path, image_id: int, action: str, label: str | None, reviewer: str,
          classes: str | None, blind: bool, as_json: bool) -> None:
    """Decide one image: accept the prediction, relabel CLASS, several (--classes), unusable,
    skip — or undo the reviewer's last decision (IMAGE_ID is then ignored; pass 0)."""
    db = open_db(db_path)
    if action == "undo":
        ev = review.undo_last(db, reviewer)
        if ev is None:
            raise click.ClickException(f"Nothing to undo for reviewer {reviewer!r}")
        cur = review.current_label(db, ev["image_id"])
        emit(as_json, {"undone": ev, "current": cur},
              f"Undid {ev['action']} {ev['label'] or ''} on image {ev['image_id']}; now: "
              f"{cur['label'] if cur else 'unlabelled'}")
        return
    present = [c.strip() for c in classes.split(",") if c.strip()] if classes is not None else None
    ev = review.decide(db, image_id, action, reviewer=reviewer, label=label, classes=present,
                       blind=blind)
    shown = f" ({', '.join(present or [])})" if present else ""
    emit(as_json, ev, f"Image {image_id}: {action} {ev['label'] or ''}{shown} by {reviewer}")


@click.command()
@db_option
@click.option("--accept", type=float, default=None, help="Auto-accept when top-1 p ≥ this.")
@click.option("--mixed-margin", type=float, default=None, help="Mixed when top1−top2 < this …")
@click.option("--mixed-mass", type=float, default=None, help="… and top1+top2 ≥ this.")
@click.option("--cooccur", type=float, default=None, help="Mixed when the second class has p ≥ this.")
@click.option("--class", "cls", default="*", show_default=True, help="Per-class override (top-1 class).")
@json_option
@friendly
def thresholds(db_path: Path, accept: float | None, mixed_margin: float | None, mixed_mass: float | None,
               cooccur: float | None, cls: str, as_json: bool) -> None:
    """Show routing thresholds, or change them (then every prediction is re-routed)."""
    db = open_db(db_path)
    ts = review.get_thresholds(db)
    changes = {k: v for k, v in {"accept": accept, "mixed_margin": mixed_margin,
                                       "mixed_mass": mixed_mass, "cooccur": cooccur}.items() if v is not None}
    counts = None
    if changes:
        review.set_thresholds(db, replace(review.for_class(ts, cls), **changes), cls)
        ts = review.get_thresholds(db)
        if (m := models.active_model(db)) is not None:
            counts = review.reroute(db, m["id"])
    data = {c: asdict(t) for c, t in ts.items()}
    emit(as_json, {"thresholds": data, "queues": counts}, lambda: "\n".join(
        f"{c:<12} accept {t['accept']:.2f}  mixed margin {t['mixed_margin']:.2f}  "
        f"mixed mass {t['mixed_mass']:.2f}  co-occurrence {t['cooccur']:.2f}" for c, t in data.items())
        + (f"\nQueues now: {counts}" if counts else ""))
