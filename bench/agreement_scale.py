"""Agreement at scale: the cost overlap and gold probes add to the Review page's hot path, and
the adjudication queue and agreement report, on a large database.

    .venv/bin/python bench/agreement_scale.py [--images 200000] [--decided 50000] [--reps 100]

Builds (in bench/out/agreement/, rebuilt each run) N images with predictions of one 10-class
model in bulk, ``--decided`` human decisions by 5 reviewers (label_events + current_labels as
core.review.decide leaves them), then an overlap rule of 10 % for 2 reviewers: the chosen
images get their second rating (one in five disagreeing, half of those adjudicated), a few
still wait. 50 gold images, gold rate 2 %. Then times, p50 / p95 / max over ``--reps``:
core.review.next_images (the plain queue) against core.agreement.next_images (queue + probes)
for a reviewer with nothing to do and one with an overlap image waiting, decide + undo,
disputes, adjudication_queue, and agreement_report. Prints numbers; asserts nothing. Goal
(ok / MISSED): the Review page's next images with probes p95 <= 5 ms more than without.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import agreement, review
from core.config import NFFA_CLASSES
from core.store import now_iso, open_db, write_tx

OUT = ROOT / "bench" / "out" / "agreement"
REVIEWERS = [f"reviewer{i}" for i in range(5)]


def build(path: Path, n_images: int, n_decided: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    db = open_db(path)
    stamp = now_iso()
    k = len(NFFA_CLASSES)
    with write_tx(db):
        db.execute("INSERT INTO models(id, version, path, sha256, class_names, added_at, active) "
                   "VALUES (1, 'bench', 'bench.onnx', 'x', ?, ?, 1)", [json.dumps(NFFA_CLASSES), stamp])
        db.conn.executemany(
            "INSERT INTO images(id, sha256, path, name, size_bytes, width, height, bit_depth, raw_dtype, added_at) "
            "VALUES (?, ?, ?, ?, 1000, 64, 64, 8, 'uint8', ?)",
            [(i, hashlib.sha256(str(i).encode()).hexdigest(), f"/a/{i}.png", f"{i}.png", stamp)
             for i in range(1, n_images + 1)])
        logits = rng.normal(0, 2, (n_images, k))
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        order = np.argsort(-p, axis=1)
        rows = []
        for i in range(n_images):
            a, b = order[i, 0], order[i, 1]
            p1, p2 = float(p[i, a]), float(p[i, b])
            q = "auto" if p1 >= 0.7 else ("mixed" if p1 - p2 < 0.15 else "uncertain")
            rows.append((i + 1, NFFA_CLASSES[a], p1, NFFA_CLASSES[b], p2, p1 - p2, 1.0,
                         json.dumps([round(float(x), 4) for x in p[i]]), q, "bench",
                         int(rng.integers(0, 2**31)), stamp))
        db.conn.executemany(
            "INSERT INTO predictions(image_id, model_id, pred, p1, second, p2, margin, entropy, probs, "
            "queue, reason, done, rnd, created_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)", rows)
    decided = rng.choice(np.arange(1, n_images + 1), n_decided, replace=False)
    labels = rng.integers(0, k, n_decided)
    who = rng.integers(0, len(REVIEWERS), n_decided)
    with write_tx(db):
        agreement.set_overlap(db, 0.10, reviewers=2)
        for img, lab, r in zip(decided.tolist(), labels.tolist(), who.tolist()):
            cur = db.execute(
                "INSERT INTO label_events(image_id, label, action, source, reviewer, model_id, model_version, "
                "created_at) VALUES (?, ?, 'relabel', 'human', ?, 1, 'bench', ?)",
                [img, NFFA_CLASSES[lab], REVIEWERS[r], stamp])
            db.execute("INSERT INTO current_labels(image_id, label, action, source, reviewer, event_id, "
                       "model_version, updated_at) VALUES (?, ?, 'relabel', 'human', ?, ?, 'bench', ?)",
                       [img, NFFA_CLASSES[lab], REVIEWERS[r], cur.lastrowid, stamp])
        db.execute("UPDATE predictions SET done = 1 WHERE image_id IN (SELECT image_id FROM current_labels)")
        agreement.sync_overlap(db, 1)
        items = db.execute("SELECT image_id, first_reviewer FROM overlap_items ORDER BY image_id").fetchall()
        waiting = items[-20:]  # these wait for their second reviewer
        for j, (img, first) in enumerate(items[:-20]):
            second = REVIEWERS[(REVIEWERS.index(first) + 1 + j % 4) % len(REVIEWERS)]
            lab = db.execute("SELECT label FROM current_labels WHERE image_id = ?", [img]).fetchone()[0]
            if j % 5 == 0:
                lab = NFFA_CLASSES[(NFFA_CLASSES.index(lab) + 1) % k]
            db.execute("INSERT INTO assignments(image_id, reviewer, kind, assigned_at) VALUES (?, ?, 'overlap', ?)",
                       [img, second, stamp])
            review.decide(db, img, "relabel", reviewer=second, label=lab)
            if j % 10 == 0:
                agreement.adjudicate(db, img, lab, reviewer="adjudicator")
        for img in decided[:50].tolist():
            agreement.mark_gold(db, int(img), marked_by="admin")
        agreement.set_gold_rate(db, 0.02)
    assert waiting
    db.conn.close()


def timed(fn: Callable[[], object], reps: int) -> dict[str, float]:
    t = []
    for _ in range(reps):
        s = time.perf_counter()
        fn()
        t.append((time.perf_counter() - s) * 1000)
    t.sort()
    return {"p50": statistics.median(t), "p95": t[min(len(t) - 1, int(0.95 * len(t)))], "max": t[-1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200_000)
    ap.add_argument("--decided", type=int, default=50_000)
    ap.add_argument("--reps", type=int, default=100)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "bench.db"
    t0 = time.perf_counter()
    build(path, args.images, args.decided)
    print(f"built {args.images:,} images, {args.decided:,} decisions in {time.perf_counter() - t0:.0f} s")
    db = open_db(path)
    st = agreement.overlap_status(db)
    print(f"overlap images {st['chosen']:,} ({st['waiting']} waiting), "
          f"open disagreements {len(agreement.disputes(db)):,}, gold {len(agreement.gold_images(db))}")
    waiting_for = "fresh-reviewer"  # decided nothing: every waiting overlap image is for them
    res = {
        "review.next_images n=2 (plain)": timed(lambda: review.next_images(db, "uncertain", "idle", n=2), args.reps),
        "agreement.next_images n=2, no probe due": timed(
            lambda: agreement.next_images(db, "mixed", REVIEWERS[0], n=2), args.reps),
        "agreement.next_images n=2, overlap waiting": timed(
            lambda: agreement.next_images(db, "all", waiting_for, n=2), args.reps),
        "agreement.disputes": timed(lambda: agreement.disputes(db), max(3, args.reps // 20)),
        "agreement.adjudication_queue n=1": timed(
            lambda: agreement.adjudication_queue(db, "adjudicator2"), max(3, args.reps // 20)),
        "agreement.agreement_report": timed(lambda: agreement.agreement_report(db), 3),
    }
    item = agreement.next_images(db, "uncertain", "decider", n=1)[0]

    def decide_undo() -> None:
        agreement.decide(db, item["image_id"], "accept", reviewer="decider")
        agreement.undo_last(db, "decider")

    res["agreement.decide + undo_last"] = timed(decide_undo, args.reps)
    for name, r in res.items():
        print(f"{name:<45} p50 {r['p50']:8.2f} ms  p95 {r['p95']:8.2f} ms  max {r['max']:8.2f} ms")
    extra = res["agreement.next_images n=2, no probe due"]["p95"] - res["review.next_images n=2 (plain)"]["p95"]
    print(f"probes add {extra:.2f} ms at p95 to the next images: {'ok' if extra <= 5 else 'MISSED'} (goal <= 5 ms)")


if __name__ == "__main__":
    main()
