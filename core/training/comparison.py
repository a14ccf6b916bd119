"""A candidate against the active model on the same held-out human labels, leaving out any
image the active model trained on: accuracy (+ Wilson 95 %), recall per class, confusion
matrix, ECE, and what auto-accept does at the stored thresholds."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.config import Settings
from core.errors import ImageReadError, StoreError
from core.images import WORK_SIDE, read_image
from core.models import (
    active_model,
    expected_calibration_error,
    get_model,
    model_classifier,
    wilson,
)
from core.progress import Progress
from core.review import GLOBAL, SPECIAL_LABELS, get_thresholds, route
from core.store import HUMAN_SOURCES

ECE_BINS = 15


def evaluate(truth: Sequence[str], probs: np.ndarray, class_names: Sequence[str],
             ts: Any) -> dict[str, Any]:
    """One model on labelled images: accuracy (+ Wilson 95 %), per-class recall, confusion
    matrix (rows = truth, columns = prediction, by name), ECE (15 bins), and what auto-accept
    under the thresholds ``ts`` does: coverage and precision (+ Wilson 95 %)."""
    names = list(class_names)
    p = np.asarray(probs, np.float64).reshape(len(truth), len(names))
    pred = [names[j] for j in p.argmax(1)] if len(p) else []
    ok = np.array([a == b for a, b in zip(pred, truth, strict=True)], bool)
    k, n = int(ok.sum()), len(truth)
    idx = np.array([names.index(t) if t in names else -1 for t in truth], np.int64)
    classes = sorted(set(truth))
    cols = classes + sorted(set(pred) - set(classes))
    cm = np.zeros((len(classes), len(cols)), np.int64)
    for t, q in zip(truth, pred, strict=True):
        cm[classes.index(t), cols.index(q)] += 1
    recall = {c: {"recall": round(float(cm[i, cols.index(c)] / cm[i].sum()), 4) if cm[i].sum()
                  else None, "support": int(cm[i].sum())} for i, c in enumerate(classes)}
    auto = np.array([route(row, names, ts)[0] == "auto" for row in p], bool)
    ka, na = int((ok & auto).sum()), int(auto.sum())
    lo, hi = wilson(k, n)
    alo, ahi = wilson(ka, na)
    return {
        "images": n, "correct": k, "accuracy": round(k / n, 4) if n else None,
        "interval": [round(lo, 4), round(hi, 4)],
        "ece": round(expected_calibration_error(p, idx, ECE_BINS), 4) if n else None,
        "per_class": recall,
        "confusion_matrix": {"rows": classes, "columns": cols, "matrix": cm.tolist()},
        "auto_accept": {"accepted": na, "correct": ka, "coverage": round(na / n, 4) if n else None,
                        "precision": round(ka / na, 4) if na else None,
                        "precision_interval": [round(alo, 4), round(ahi, 4)]},
    }


def _model_probs(db: Database, model: dict[str, Any], image_ids: Sequence[int],
                 settings: Settings, prog: Progress) -> tuple[np.ndarray, list[int]]:
    """``model``'s probabilities on ``image_ids``: stored predictions where present, else a run
    of the model on the files. Returns (probs, positions that could be predicted)."""
    k = len(model["class_names"])
    out = np.zeros((len(image_ids), k), np.float64)
    stored: dict[int, list[float]] = {}
    for chunk in range(0, len(image_ids), 500):
        part = list(image_ids[chunk: chunk + 500])
        stored.update({int(i): json.loads(pj) for i, pj in db.execute(
            f"SELECT image_id, probs FROM predictions WHERE model_id = ? AND image_id IN "
            f"({', '.join('?' for _ in part)})", [model["id"], *part])})
    todo = [j for j, i in enumerate(image_ids) if i not in stored]
    ok = [j for j, i in enumerate(image_ids) if i in stored]
    for j in ok:
        out[j] = stored[image_ids[j]]
    if todo:
        clf = model_classifier(model)
        paths = dict(db.execute(f"SELECT id, path FROM images WHERE id IN "
                                f"({', '.join('?' for _ in todo)})",
                                [image_ids[j] for j in todo]).fetchall())
        for n_done, j in enumerate(todo):
            try:
                scan = read_image(paths[image_ids[j]], max_pixels=settings.max_pixels,
                                  max_side=WORK_SIDE).scan
            except (ImageReadError, OSError, KeyError):
                continue
            out[j] = clf.predict([scan])[0]
            ok.append(j)
            if n_done % 16 == 0:
                prog(n_done / len(todo), f"running {model['version']} on {len(todo)} images")
    return out, sorted(ok)


def _trained_on(db: Database, model_id: int) -> set[int]:
    return {int(r[0]) for r in db.execute(
        "SELECT image_id FROM model_images WHERE model_id = ? AND role = 'train'", [model_id])}


def _compare_sets(db: Database, truth: list[str], image_ids: list[int], groups: list[str] | None,
                  cand_probs: np.ndarray, cand_names: list[str], cand_version: str,
                  active: dict[str, Any] | None, settings: Settings, prog: Progress,
                  *, exclude_trained: bool, candidate_id: int | None = None) -> dict[str, Any]:
    keep = list(range(len(image_ids)))
    excluded = 0
    if active is not None and exclude_trained:
        seen = _trained_on(db, active["id"])
        keep = [j for j in keep if image_ids[j] not in seen]
        excluded = len(image_ids) - len(keep)
    if active is not None:
        ap, ok = _model_probs(db, active, [image_ids[j] for j in keep], settings, prog)
        okset = set(ok)
        keep2 = [keep[j] for j in range(len(keep)) if j in okset]
        act_probs = ap[[j for j in range(len(keep)) if j in okset]]
        keep = keep2
    ts = get_thresholds(db)
    t_keep = [truth[j] for j in keep]
    out: dict[str, Any] = {
        "images": len(keep),
        "groups": len({groups[j] for j in keep}) if groups else None,
        "excluded_trained_on_by_active": excluded,
        "thresholds": asdict(ts[GLOBAL]),
        "per_class_thresholds": sorted(c for c in ts if c != GLOBAL),
        "candidate": {"id": candidate_id, "version": cand_version,
                      **evaluate(t_keep, cand_probs[keep], cand_names, ts)},
        "active": None,
    }
    if active is not None:
        out["active"] = {"id": active["id"], "version": active["version"],
                         **evaluate(t_keep, act_probs, active["class_names"], ts)}
    return out


def compare(db: Database, candidate_id: int, active_id: int | None = None, *,
            settings: Settings | None = None, progress: Progress | None = None
            ) -> dict[str, Any]:
    """Active model vs candidate on the candidate's held-out human labels (their current
    labels; images the active model trained on are left out): accuracy (+ Wilson 95 %),
    per-class recall, confusion matrix, ECE (15 bins), auto-accept coverage / precision at the
    current thresholds. Stored predictions are used where present; missing ones are computed
    (nothing is written)."""
    settings = settings or Settings()
    prog = progress or (lambda f, m: None)
    cand = get_model(db, candidate_id)
    other = get_model(db, active_id) if active_id is not None else active_model(db)
    if other is not None and other["id"] == cand["id"]:
        other = None
    marks = ", ".join("?" for _ in HUMAN_SOURCES)
    specials = ", ".join("?" for _ in SPECIAL_LABELS)
    rows = db.execute(
        "SELECT mi.image_id, c.label FROM model_images mi JOIN current_labels c "
        "ON c.image_id = mi.image_id WHERE mi.model_id = ? AND mi.role = 'holdout' "
        f"AND c.source IN ({marks}) AND c.label NOT IN ({specials}) ORDER BY mi.image_id",
        [candidate_id, *HUMAN_SOURCES, *SPECIAL_LABELS]).fetchall()
    if not rows:
        n = db.execute("SELECT COUNT(*) FROM model_images WHERE model_id = ?",
                       [candidate_id]).fetchone()[0]
        raise StoreError(
            f"Model {cand['version']!r} has no held-out labelled images on record"
            + ("" if n else " (it was not trained here: compare works on models made by "
               "`semtriage train --from-db` or the Models page's Retrain)"))
    ids = [int(r[0]) for r in rows]
    truth = [str(r[1]) for r in rows]
    cp, ok = _model_probs(db, cand, ids, settings, prog)
    ids, truth, cp = [ids[j] for j in ok], [truth[j] for j in ok], cp[ok]
    card = cand["card"] or {}
    groups = None
    res = _compare_sets(db, truth, ids, groups, cp, cand["class_names"], cand["version"], other,
                        settings, prog, exclude_trained=True, candidate_id=cand["id"])
    res["groups"] = ((card.get("retrain") or {}).get("headline") or {}).get("groups")
    return res


def comparison_text(c: dict[str, Any]) -> str:
    """The comparison as a few aligned lines (CLI)."""
    rows = [("candidate", c["candidate"])] + ([("active", c["active"])] if c["active"] else [])

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v:.1%}"

    lines = [f"Same {c['images']} held-out human labels"
             + (f" ({c['excluded_trained_on_by_active']} left out: the active model trained on "
                "them)" if c.get("excluded_trained_on_by_active") else "") + ":",
             (f"  {'':<10} {'version':<34} {'accuracy':>9} {'95 %':>13} {'ECE':>6} "
             f"{'auto cov.':>9} {'auto prec.':>10}")]
    for role, m in rows:
        a = m["auto_accept"]
        lines.append(f"  {role:<10} {m['version'][:34]:<34} {pct(m['accuracy']):>9} "
                     f"{pct(m['interval'][0]):>6}–{pct(m['interval'][1]):<6} "
                     f"{'—' if m['ece'] is None else format(m['ece'], '.3f'):>6} {pct(a['coverage']):>9} "
                     f"{pct(a['precision']):>10}")
    classes = list(c["candidate"]["per_class"])
    lines.append("  recall per class: " + ", ".join(
        f"{cl} {pct(c['candidate']['per_class'][cl]['recall'])}"
        + (f" (active {pct(c['active']['per_class'][cl]['recall'])})" if c["active"] else "")
        for cl in classes))
    return "\n".join(lines)
