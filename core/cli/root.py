"""`semtriage` — the command line over core. Each command opens the database, calls core and
prints the result (``--json`` for machine-readable output); core's named errors become
one-line messages with a non-zero exit code.

Command groups live in their own modules of this package (``models.py``: ``semtriage
model …``) and are added to :data:`cli` here.
"""

from __future__ import annotations

import click

from core.cli.agreement import agreement_group
from core.cli.archive import predict_archive
from core.cli.collection import backup, demo, export, ingest, init, predict, stats
from core.cli.fibres import fibres_group
from core.cli.label_issues import issues
from core.cli.models import model
from core.cli.particles import particles
from core.cli.reviewing import label, queue, thresholds
from core.cli.similarity import similar
from core.cli.training import card, synth, train
from core.config import Settings
from core.errors import SettingsError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="semtriage")
def cli() -> None:
    """SEM Triage: sort and label SEM images with a classifier and review queues.

    Typical use: `semtriage init`, `semtriage model add MODEL.onnx`, `semtriage ingest FOLDER`,
    then review in the app (`streamlit run app.py`) or with `semtriage queue` / `semtriage label`,
    and `semtriage export OUT`.
    """
    try:  # a bad SEMTRIAGE_* variable: one line, before any command reads the settings
        Settings.from_env()
    except SettingsError as e:
        raise click.ClickException(str(e)) from None


for command in (init, ingest, predict, queue, label, export, stats, model, thresholds, demo,
                backup, issues, synth, train, card, particles, fibres_group,
                predict_archive, similar):
    cli.add_command(command)
cli.add_command(agreement_group, name="agreement")


def main() -> None:
    cli(prog_name="semtriage")


if __name__ == "__main__":
    main()
