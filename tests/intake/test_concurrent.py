"""Issue 18, finding 11: two ingests of the same folder at once (two browser tabs, a cron job and
a person) used to crash one of them on ``UNIQUE constraint failed: images.sha256``. Two real
processes, one real database file: both finish, every image is stored once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.store import open_db
from tests.helpers import write_images

ROOT = Path(__file__).resolve().parents[2]


def test_two_ingests_of_one_folder_at_once_both_finish(tmp_path):
    folder = tmp_path / "imgs"
    write_images(folder, 60, size=96)
    for attempt in range(3):
        db = tmp_path / f"t{attempt}.db"
        open_db(db).conn.close()
        cmd = [sys.executable, "-m", "core.cli", "ingest", "--db", str(db), "--no-predict",
               "--workers", "1", str(folder)]
        procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, out + err
            assert "UNIQUE" not in err and "Traceback" not in err, err
        con = open_db(db)
        n, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT sha256) FROM images").fetchone()
        assert n == distinct == 60
        assert con.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 60
