"""`semtriage agreement …`: the agreement report, overlap rules, gold images, adjudication."""

from __future__ import annotations

from pathlib import Path

import click

from core import agreement
from core.cli.common import db_option, emit, friendly, json_option, open_db
from core.review import QUEUES


@click.group(invoke_without_command=True)
@db_option
@click.option("--bootstrap", "n_boot", default=agreement.BOOTSTRAP, show_default=True,
              help="Bootstrap resamples for the 95 % intervals.")
@json_option
@click.pass_context
@friendly
def agreement_group(ctx: click.Context, db_path: Path, n_boot: int, as_json: bool) -> None:
    """How far reviewers agree: Krippendorff's alpha overall and per class, Cohen's kappa per
    reviewer pair (95 % bootstrap intervals), the confusion between reviewers, and each
    reviewer's accuracy against adjudicated labels and gold images."""
    if ctx.invoked_subcommand is not None:
        return
    rep = agreement.agreement_report(open_db(db_path), n_boot=n_boot)
    emit(as_json, rep, lambda: agreement.report_text(rep))


@agreement_group.command("overlap")
@db_option
@click.option("--rate", type=float, default=None, help="Share of decided images shown to more reviewers (0.1 = 10 %).")
@click.option("--reviewers", type=int, default=2, show_default=True, help="Reviewers per overlap image, the first included.")
@click.option("--queue", type=click.Choice(QUEUES), default=None, help="The rule applies to this queue only.")
@click.option("--class", "cls", default=None, help="The rule applies to this class (the first reviewer's label) only.")
@click.option("--clear", is_flag=True, help="Remove the rule of this scope.")
@json_option
@friendly
def agreement_overlap(db_path: Path, rate: float | None, reviewers: int, queue: str | None, cls: str | None,
            clear: bool, as_json: bool) -> None:
    """Show the overlap rules, or set one (class before queue before every image)."""
    db = open_db(db_path)
    if clear:
        agreement.clear_overlap(db, agreement.scope_of(queue, cls))
    elif rate is not None:
        agreement.set_overlap(db, rate, reviewers=reviewers, queue=queue, cls=cls)
    status = agreement.overlap_status(db)
    emit(as_json, status, lambda: "\n".join(
        [f"{r['scope']:<20} {r['rate']:.0%} of images to {r['reviewers']} reviewers" for r in status["rules"]]
        or ["No overlap rule: every image gets one reviewer."])
        + f"\n{status['chosen']} images chosen, {status['complete']} complete, {status['waiting']} waiting")


@agreement_group.command("gold")
@click.argument("image_id", type=int, required=False)
@db_option
@click.option("--label", default=None, help="The known answer (default: the image's current human label).")
@click.option("--remove", is_flag=True, help="No longer use IMAGE_ID as gold.")
@click.option("--rate", type=float, default=None, help="Share of handed-out images that are gold probes.")
@click.option("--by", "marked_by", default="admin", show_default=True, help="Who marks it (recorded).")
@json_option
@friendly
def agreement_gold(db_path: Path, image_id: int | None, label: str | None, remove: bool, rate: float | None,
         marked_by: str, as_json: bool) -> None:
    """List gold images, mark IMAGE_ID as gold (--label CLASS), --remove it, or set the --rate."""
    db = open_db(db_path)
    if rate is not None:
        agreement.set_gold_rate(db, rate)
    if image_id is not None:
        if remove:
            if not agreement.unmark_gold(db, image_id):
                raise click.ClickException(f"Image {image_id} is not a gold image")
        else:
            agreement.mark_gold(db, image_id, label, marked_by=marked_by)
    rows = agreement.gold_images(db)
    emit(as_json, {"rate": agreement.gold_rate(db), "images": rows}, lambda: "\n".join(
        [f"Gold rate {agreement.gold_rate(db):.0%}; {len(rows)} gold images"]
        + [f"{r['image_id']:>7}  {r['label']:<12} {r['answers']} answers  {r['name']}" for r in rows]))


@agreement_group.command("disputes")
@db_option
@json_option
@friendly
def agreement_disputes(db_path: Path, as_json: bool) -> None:
    """Overlap images whose reviewers disagree, waiting for adjudication."""
    rows = agreement.disputes(open_db(db_path))
    emit(as_json, rows, lambda: "\n".join(
        [f"{len(rows)} open disagreements"]
        + [f"{d['image_id']:>7}  " + ", ".join(f"{r}: {lab}" for r, lab in d["ratings"].items()) for d in rows]))


@agreement_group.command("adjudicate")
@click.argument("image_id", type=int)
@click.argument("label")
@db_option
@click.option("--reviewer", required=True, help="The adjudicator (recorded with the label).")
@json_option
@friendly
def agreement_adjudicate(db_path: Path, image_id: int, label: str, reviewer: str, as_json: bool) -> None:
    """Settle the disagreement on IMAGE_ID with LABEL (a class, several or unusable)."""
    ev = agreement.adjudicate(open_db(db_path), image_id, label, reviewer=reviewer)
    emit(as_json, ev, f"Image {image_id}: adjudicated {label} by {reviewer}")
