"""Peak memory and time of retraining on the database's labels — numbers, no pass/fail.

    .venv/bin/python bench/retrain_memory.py [--labels 5000] [--epochs 1] [--family cnn]

Writes ``--labels`` synthetic micrographs in a folder-per-class tree (once, into
bench/out/retrain/<n>/, in specimen folders of 50 so that whole groups are held out), ingests
them with the default model and their folder names as imported labels, then runs
``semtriage train --from-db`` in a child process and prints its wall time and peak resident
memory (the child's ``ru_maxrss``), beside the size of the prepared inputs alone
(labels × 1 × 128 × 128 float32): the part that grows with the reference set.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import synth
from core.config import DEFAULT_MODEL
from core.intake import ingest
from core.models import model_classifier, register_model
from core.store import open_db

SPECIMEN = 50  # images per specimen folder


def build(root: Path, n: int) -> Path:
    """The labelled database (built once per size)."""
    db_path = root / "labels.db"
    if db_path.is_file():
        return db_path
    shutil.rmtree(root, ignore_errors=True)
    tree = root / "images"
    synth.write_dataset(tree, n, seed=7, layout="folders", workers=2)
    for cls_dir in [d for d in tree.iterdir() if d.is_dir() and not d.name.startswith("_")]:
        for k, f in enumerate(sorted(cls_dir.glob("*.tif"))):  # specimen folders of SPECIMEN
            dest = cls_dir / f"specimen{k // SPECIMEN:03d}"
            dest.mkdir(exist_ok=True)
            f.rename(dest / f.name)
    tmp = db_path.with_suffix(".partial")
    db = open_db(tmp)
    model = register_model(db, DEFAULT_MODEL, activate=True)
    rep = ingest(db, [tree], classifier=model_classifier(model), model_id=model["id"],
                 labels_from_folders=True)
    assert not rep.failed, rep.failed[:3]
    db.conn.close()
    tmp.rename(db_path)
    return db_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--family", default="cnn", choices=["cnn", "texture", "best"])
    a = ap.parse_args()

    root = ROOT / "bench" / "out" / "retrain" / str(a.labels)
    t0 = time.perf_counter()
    db_path = build(root, a.labels)
    print(f"labelled database: {a.labels:,} images ({time.perf_counter() - t0:.0f} s to build or "
          "find)")
    version = f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    out = root / f"{version}.onnx"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "core.cli", "train", "--from-db", "--db", str(db_path),
         "--family", a.family, "--epochs", str(a.epochs), "--out", str(out),
         "--version", version],
        cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(proc.stdout[-2000:], proc.stderr[-2000:])
        raise SystemExit(f"train --from-db failed ({proc.returncode})")
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    inputs_mb = a.labels * 128 * 128 * 4 / 2**20
    print(f"train --from-db ({a.family}, {a.epochs} epoch{'s' if a.epochs > 1 else ''}): "
          f"{wall:.1f} s wall, peak RSS {peak_mb:,.0f} MB")
    print(f"  prepared inputs alone: {inputs_mb:,.0f} MB "
          f"({inputs_mb / a.labels * 1024:.0f} KB per labelled image)")


if __name__ == "__main__":
    main()
