"""`semtriage queue | label | thresholds`: review queues, decisions and routing thresholds."""


from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import click

from core import agreement, models, review
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
    # with a reviewer: overlap and gold probes mixed in, as in the app (core.agreement)
    items = (agreement.next_images(db, name, reviewer, n=limit, order=order) if reviewer else
             review.next_images(db, name, "peek", n=limit, order=order, claim_seconds=0))
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
        ev = agreement.undo_last(db, reviewer)
        if ev is None:
            raise click.ClickException(f"Nothing to undo for reviewer {reviewer!r}")
        cur = review.current_label(db, ev["image_id"])
        emit(as_json, {"undone": ev, "current": cur},
              f"Undid {ev['action']} {ev['label'] or ''} on image {ev['image_id']}; now: "
              f"{cur['label'] if cur else 'unlabelled'}")
        return
    present = [c.strip() for c in classes.split(",") if c.strip()] if classes is not None else None
    ev = agreement.decide(db, image_id, action, reviewer=reviewer, label=label, classes=present,
                          blind=blind)  # an answer to a gold probe is kept apart
    shown = f" ({', '.join(present or [])})" if present else ""
    emit(as_json, ev, f"Image {image_id}: {action} {ev['label'] or ''}{shown} by {reviewer}")


@click.command()
@db_option
@click.option("--accept", type=float, default=None,
              help="Confident when top-1 p ≥ this (auto labels only once certified, or with --force).")
@click.option("--mixed-margin", type=float, default=None, help="Mixed when top1−top2 < this …")
@click.option("--mixed-mass", type=float, default=None, help="… and top1+top2 ≥ this.")
@click.option("--cooccur", type=float, default=None, help="Mixed when the second class has p ≥ this.")
@click.option("--class", "cls", default="*", show_default=True, help="Per-class override (top-1 class).")
@click.option("--recommend", is_flag=True,
              help="Recommend accept thresholds from this lab's held-out human labels (what the "
                   "Models page does); with --apply, certify them.")
@click.option("--target-error", type=float, default=models.DEFAULT_TARGET, show_default=True,
              help="Largest error of auto-accepted labels to certify, as a fraction (0.02 = 2 %).")
@click.option("--global-only", is_flag=True, help="With --recommend: no per-class thresholds.")
@click.option("--apply", is_flag=True, help="With --recommend: certify, store and re-route.")
@click.option("--force", is_flag=True,
              help="With --accept: let the model auto-accept at that threshold WITHOUT "
                   "certification (an override, recorded with --note).")
@click.option("--revoke", is_flag=True, help="Take back the certification / override of --class.")
@click.option("--note", default=None, help="Why (recorded with --force / --revoke).")
@json_option
@friendly
def thresholds(db_path: Path, accept: float | None, mixed_margin: float | None, mixed_mass: float | None,
               cooccur: float | None, cls: str, recommend: bool, target_error: float,
               global_only: bool, apply: bool, force: bool, revoke: bool, note: str | None,
               as_json: bool) -> None:
    """Show routing thresholds and whether the active model may auto-accept, change them (then
    every prediction is re-routed), recommend / certify them from held-out human labels, or
    force one (an override, recorded)."""
    db = open_db(db_path)
    active = models.active_model(db)
    if (recommend or force or revoke) and active is None:
        raise click.ClickException("No active model: register one with `semtriage model add PATH`")
    if apply and not recommend:
        raise click.UsageError("--apply goes with --recommend")
    if force and accept is None:
        raise click.UsageError("--force needs --accept P")
    if recommend:
        assert active is not None
        rep = review.certify(db, active["id"], target=target_error, per_class=not global_only,
                             apply=apply)
        recs = rep.recommendations
        lines = [(f"{rep.held_out} held-out human labels (the model did not train on them); "
                  f"target ≤ {target_error:.1%} error at 95 % confidence.")]
        lines += [f"{c:<12} {'-' if r.threshold is None else f'{r.threshold:.3f}':>6}  {r.reason}"
                  for c, r in recs.items()]
        lines += ["", rep.certification.summary()]
        if rep.queues:
            lines.append(f"Queues now: {rep.queues}")
        elif not apply:
            lines.append("Nothing changed: add --apply to certify.")
        emit(as_json, rep.to_json(), "\n".join(lines))
        return
    if revoke:
        assert active is not None
        revoked = review.revoke(db, cls, active["id"], note=note)
        emit(as_json, revoked.to_json(), revoked.summary())
        return
    ts = review.get_thresholds(db)
    changes = {k: v for k, v in {"accept": accept, "mixed_margin": mixed_margin,
                                       "mixed_mass": mixed_mass, "cooccur": cooccur}.items() if v is not None}
    counts = None
    if force:
        assert accept is not None and active is not None
        review.force_threshold(db, accept, cls, active["id"], note=note)
        changes.pop("accept")
    if changes:
        review.set_thresholds(db, replace(review.for_class(ts, cls), **changes), cls)
    if changes or force:
        ts = review.get_thresholds(db)
        if active is not None:
            counts = review.reroute(db, active["id"])
    data: dict[str, Any] = {c: asdict(t) for c, t in ts.items()}
    cert = review.certification(db, active["id"]) if active is not None else None
    emit(as_json, {"thresholds": data, "queues": counts,
                   "certification": cert.to_json() if cert else None}, lambda: "\n".join(
        f"{c:<12} accept {t['accept']:.2f}  mixed margin {t['mixed_margin']:.2f}  "
        f"mixed mass {t['mixed_mass']:.2f}  co-occurrence {t['cooccur']:.2f}" for c, t in data.items())
        + (f"\nQueues now: {counts}" if counts else "")
        + (f"\n{cert.summary()}" if cert else ""))
