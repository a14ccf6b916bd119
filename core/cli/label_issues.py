"""`semtriage issues find | list`: likely mislabelled reference images."""


from __future__ import annotations

from pathlib import Path

import click

from core import training
from core.cli.common import Bar, db_option, emit, friendly, json_option, open_db


@click.group()
def issues() -> None:
    """Likely mislabelled reference images (confident learning on out-of-fold predictions)."""


@issues.command("find")
@db_option
@click.option("--folds", default=5, show_default=True, help="Group-aware cross-validation folds.")
@click.option("--pattern", default=None, help="File-name regex whose first group names the specimen.")
@click.option("--group-by", "grouping", type=click.Choice(list(training.GROUPINGS)), default="auto",
              show_default=True, help="What keeps related images in one fold: folders (sub-folder, "
              "pattern, near-copies), near-copies (pattern and near-copies only), auto (folders, "
              "near-copies when the folders leave fewer than 2 groups).")
@json_option
@friendly
def issues_find(db_path: Path, folds: int, pattern: str | None, grouping: str, as_json: bool) -> None:
    """Find likely mislabelled images among the human / imported labels and store them as a
    review queue (replacing the previous run's open issues)."""
    bar = Bar("finding label issues", not as_json)
    try:
        rep = training.find_issues(open_db(db_path), folds=folds, pattern=pattern,
                                   progress=bar, grouping=grouping)
    finally:
        bar.close()
    emit(as_json, rep.to_json(), rep.summary)


@issues.command("list")
@db_option
@click.option("-n", "limit", default=20, show_default=True, help="How many issues.")
@click.option("--offset", default=0, show_default=True, help="Skip this many first.")
@json_option
@friendly
def issues_list(db_path: Path, limit: int, offset: int, as_json: bool) -> None:
    """List open label issues, most likely wrong first (score = out-of-fold probability of the
    given label). Resolve them in the app's Reference set page, or relabel with `semtriage label`."""
    db = open_db(db_path)
    rows = training.issue_queue(db, limit, offset)
    counts, run = training.issue_counts(db), training.last_run(db)

    def text() -> str:
        if run is None:
            return "No label-issue run yet: `semtriage issues find`."
        head = (f"Label issues — open {counts['open']}, kept {counts['kept']}, relabelled "
                f"{counts['relabelled']} (run {run['run_at']})")
        lines = [head]
        lines += [f"{r['image_id']:>7}  {r['given']:<12} → {r['suggested']:<12} score {r['score']:.3f}  "
                  f"{r['path']}" for r in rows]
        return "\n".join(lines)

    emit(as_json, {"counts": counts, "last_run": run, "items": rows}, text)
