"""Real micrographs through ingest with the shipped default model: nothing is auto-labelled
while the model is provisional, every prediction carries an unfamiliarity score, and images
unlike the training data are flagged with the reason — also from the CLI."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from core.cli import cli
from core.config import DEFAULT_MODEL
from core.intake import ingest
from core.models import Classifier, register_model
from core.review import certification
from core.store import open_db

SHARED = Path(__file__).resolve().parents[3] / "shared"
REAL = SHARED / "real-sem"
FIXTURES = SHARED / "fixtures" / "sem-tiff"


@pytest.mark.skipif(not REAL.is_dir(), reason="../shared/real-sem is not present")
def test_real_micrographs_are_never_auto_labelled_by_the_provisional_default_model(tmp_path):
    db = open_db(tmp_path / "r.db")
    m = register_model(db, DEFAULT_MODEL, activate=True)
    rep = ingest(db, [REAL], classifier=Classifier(m["path"]), model_id=m["id"])
    assert rep.predicted >= 50, rep.summary()
    assert certification(db).state == "provisional"
    assert db.execute("SELECT COUNT(*) FROM current_labels").fetchone()[0] == 0
    rows = db.execute("SELECT queue, ood, unfamiliar FROM predictions").fetchall()
    assert all(ood is not None for _, ood, _ in rows)
    flagged = [(q, why) for q, ood, why in rows if why]
    assert len(flagged) >= len(rows) // 4  # measured: 35 of 59
    assert all(q == "uncertain" and "unlike anything" in why for q, why in flagged)
    # the flag is the score crossing 1
    assert all((ood >= 1) == bool(why) for _, ood, why in rows)


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures/sem-tiff is not present")
def test_cli_says_provisional_and_records_a_forced_threshold(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "cli.db")

    def run(*args):
        res = runner.invoke(cli, [*args, "--db", db], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res

    run("init")
    run("ingest", str(FIXTURES))
    out = run("stats").output
    assert "PROVISIONAL" in out and "at least 149 more" in out and "unfamiliar:" in out
    rec = json.loads(run("thresholds", "--recommend", "--json").stdout)
    assert rec["applied"] is False and rec["recommendations"]["*"]["threshold"] is None
    assert rec["certification"]["state"] == "provisional"
    forced = run("thresholds", "--accept", "0.8", "--force", "--note", "tried", "--json")
    cert = json.loads(forced.stdout)["certification"]
    assert cert["state"] == "forced" and cert["scopes"]["*"]["note"] == "tried"
    assert "FORCED" in run("stats").output
    assert "PROVISIONAL" in run("thresholds", "--revoke").output
    bad = runner.invoke(cli, ["thresholds", "--apply", "--db", db])
    assert bad.exit_code != 0 and "--apply goes with --recommend" in bad.output
