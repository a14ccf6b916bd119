"""Real labelled micrographs through the product: what the default model does to them, and what
the guard (familiarity flag + provisional auto-accept) holds back.

    .venv/bin/python bench/real_sem.py [--folder ../shared/real-sem] [--model data/models/default.onnx]

A fresh database, ``semtriage init`` + ``ingest`` of the folder (as the README's first steps),
then against the folder's categories (``manifest.tsv``): accuracy, queue by queue; how many
labels were written without a person (auto labels) and how many of those are wrong; and, for
comparison, what the routing without the guard would have auto-accepted (p1 ≥ accept and not
mixed: the product before issue 13). Never trains on the folder.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import intake, models, review, store
from core.config import DEFAULT_MODEL
from core.models import auroc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", type=Path, default=ROOT.parent / "shared" / "real-sem")
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    a = ap.parse_args()
    manifest = a.folder / "manifest.tsv"
    if not manifest.is_file():
        print(f"no {manifest}: nothing to measure")
        return
    truth = {str((a.folder / r["file"]).resolve()): r["category"]
             for r in csv.DictReader(manifest.open(encoding="utf-8"), delimiter="\t")}
    with tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        db = store.open_db(Path(tmp) / "t.db")
        m = models.register_model(db, a.model, activate=True)
        clf = models.Classifier(m["path"])
        t0 = time.perf_counter()
        rep = intake.ingest(db, [a.folder], classifier=clf, model_id=m["id"])
        secs = time.perf_counter() - t0
        rows = db.execute(
            "SELECT i.path, p.pred, p.p1, p.p2, p.second, p.queue, p.ood, p.unfamiliar, c.source "
            "FROM predictions p JOIN images i ON i.id = p.image_id "
            "LEFT JOIN current_labels c ON c.image_id = p.image_id WHERE p.model_id = ?",
            [m["id"]]).fetchall()
        cert = review.certification(db, m["id"])
        t = review.get_thresholds(db)["*"]
    rows = [r for r in rows if str(Path(r[0]).resolve()) in truth]
    n = len(rows)
    ok = [truth[str(Path(r[0]).resolve())] == r[1] for r in rows]
    print(f"{a.model.name} ({m['version']}) on {n} real micrographs of {a.folder.name} "
          f"({rep.summary()}, {secs:.1f} s)")
    print(f"accuracy: {sum(ok)}/{n} ({sum(ok) / max(n, 1):.0%}) right")
    print(f"model state: {cert.state}")
    by_q: Counter[str] = Counter()
    right_q: Counter[str] = Counter()
    for r, k in zip(rows, ok):
        by_q[r[5]] += 1
        right_q[r[5]] += int(k)
    for q in ("auto", "mixed", "uncertain"):
        name = "confident" if q == "auto" else q
        print(f"  {name:<10} {by_q[q]:>3} images, {right_q[q]:>3} right")
    auto = [(r, k) for r, k in zip(rows, ok) if r[8] == "auto"]
    print(f"auto labels written (no person): {len(auto)}, wrong: {sum(not k for _, k in auto)}")
    unf = [(r, k) for r, k in zip(rows, ok) if r[7]]
    print(f"flagged unfamiliar: {len(unf)} of {n}; {sum(not k for _, k in unf)} of them predicted "
          f"wrong (of {n - sum(ok)} wrong in all)")
    wrong_scores = [r[6] for r, k in zip(rows, ok) if not k and r[6] is not None]
    right_scores = [r[6] for r, k in zip(rows, ok) if k and r[6] is not None]
    if wrong_scores and right_scores:
        print(f"AUROC of the unfamiliarity score, wrong vs right predictions: "
              f"{auroc(wrong_scores, right_scores):.2f}")
    old = [(r, k) for r, k in zip(rows, ok)
           if review.decide_queue(r[1], r[2], r[4], r[3], t)[0] == "auto"]
    print(f"without the guard (p1 ≥ {t.accept:.2f}, not mixed, labels written at once): "
          f"{len(old)} auto-accepted, {sum(not k for _, k in old)} of them wrong")


if __name__ == "__main__":
    main()
