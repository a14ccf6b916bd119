"""Issue 18, findings 2 and 3: what lies inside an allowed root is not trusted either. A symbolic
link inside a root to a file outside it is not read (nor its target named, nor its bytes shown);
a FIFO or a link to /dev/zero with an image name fails at once instead of hanging the ingest."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.files import sha256_file
from core.intake import find_images, ingest
from core.store import open_db
from tests.helpers import write_images

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def trap_root(tmp_path):
    """A root holding 3 real images, a link to an image outside the root, a link to
    /etc/passwd, a link to /dev/zero and a FIFO, all named like TIFFs."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_images(root, 3)
    secret = write_images(outside, 1, seed=5)[0]
    os.symlink(secret, root / "escape.png")
    os.symlink("/etc/passwd", root / "passwd.tif")
    os.symlink("/dev/zero", root / "zero.tif")
    os.mkfifo(root / "pipe.tif")
    inside = root / "sub"
    inside.mkdir()
    os.symlink(root / "img_000.png", inside / "alias.png")  # a link that stays inside: fine
    return root, secret


def test_links_out_of_the_roots_and_special_files_are_refused_by_name(trap_root):
    root, secret = trap_root
    files, _ignored, failed = find_images([root], roots=[root])
    assert sorted(f.name for f in files) == ["img_000.png", "img_001.png", "img_002.png"]
    reasons = {Path(p).name: r for p, r in failed}
    assert set(reasons) == {"escape.png", "passwd.tif", "zero.tif", "pipe.tif"}
    assert "outside the allowed roots" in reasons["escape.png"]
    assert "outside the allowed roots" in reasons["passwd.tif"]
    assert "FIFO" in reasons["pipe.tif"]
    for p, r in failed:
        assert str(secret) not in r and "/etc/passwd" not in r and "root:" not in r, (p, r)
        assert Path(p).parent == root, "the failure names the file as found, not its target"


def test_ingest_in_the_app_never_stores_the_outside_image(trap_root, tmp_path):
    root, secret = trap_root
    db = open_db(tmp_path / "t.db")
    t0 = time.monotonic()
    rep = ingest(db, [root], allowed_roots=[root])
    assert time.monotonic() - t0 < 30, "a FIFO or /dev/zero held the ingest up"
    assert rep.added == 3 and len(rep.failed) == 4, rep.summary()
    paths = [r[0] for r in db.execute("SELECT path FROM images UNION SELECT path FROM files")]
    assert str(secret) not in paths and not any("passwd" in p for p in paths)
    errors = " ".join(r[0] for r in db.execute("SELECT reason FROM ingest_errors"))
    assert "root:" not in errors and "/etc/passwd" not in errors


def test_the_cli_finishes_on_a_fifo_and_dev_zero(trap_root, tmp_path):
    root, _ = trap_root
    db = tmp_path / "cli.db"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "core.cli", "ingest", "--db", str(db), "--no-predict",
                        str(root)], check=False, cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert time.monotonic() - t0 < 60
    assert "pipe.tif" in r.stderr and "zero.tif" in r.stderr, r.stderr


def test_hashing_refuses_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "p.tif"
    os.mkfifo(fifo)
    for p in (fifo, Path("/dev/zero")):
        t0 = time.monotonic()
        with pytest.raises(OSError, match="not a regular file"):
            sha256_file(p)
        assert time.monotonic() - t0 < 5
