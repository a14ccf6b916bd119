"""Likely mislabelled reference images, found with confident learning (cleanlab).

    report = find_issues(db, folds=5)          # out-of-fold predictions + cleanlab; persisted
    issue_queue(db, limit=20, offset=0)         # open issues, most likely wrong first
    resolve_issue(db, image_id, "ann", "relabel")   # a normal label event (core.review.decide)

How
---
1. The reference set: every image whose current label comes from a person
   (``core.store.HUMAN_SOURCES``: ``human`` and ``import``), read as retraining reads it
   (``core.training.gather_labels``), ``several`` / ``unusable`` left out; classes with fewer than ``MIN_PER_CLASS`` labels are left out too (they cannot
   be predicted out of fold) and reported.
2. Each image is read and prepared exactly as for training (``core.training.load_inputs``) and
   described by fixed texture features (``core.training.texture_features``).
3. Out-of-fold probabilities: K group-aware folds (sklearn ``StratifiedGroupKFold`` over the
   groups of ``core.datasets.image_groups``: same sub-folder, file-name pattern, near-duplicate
   hash), a standardised multinomial logistic regression trained on K − 1 folds predicts the
   held-out one (strongly regularised, ``C_REG``). Group-aware, because a near-copy carrying the same wrong label in the
   training folds would vouch for it.
4. ``cleanlab.filter.find_label_issues`` (confident learning, Northcutt et al. 2021; pruning
   by noise rate) flags images whose given label is unlikely given the out-of-fold
   probabilities. On small reference sets its per-class thresholds (the mean confidence of
   each class's own images) sit so high that a flip the out-of-fold model clearly contradicts
   can slip through (measured: 2–3 of 4 flips in 48 images), so an image is also flagged when
   cleanlab's ``predicted_neq_given`` rule holds with a majority: another class has
   out-of-fold probability ≥ ``MAJORITY``. Ranked by cleanlab's self-confidence: ``score`` is
   the out-of-fold probability of the given label (low = likely wrong); ``suggested`` is the
   most probable other class.

A run replaces the open issues of the previous one; it writes them only at the end, so a
cancelled run (``cancel``, a ``threading.Event`` checked at every progress report: per 50 images
read, per fold, and once before saving) leaves the previous results as they were (only the
near-copy hash cache, ``image_hashes``, may have grown). An image a reviewer kept is not flagged
again while its label stays the same; a relabel is recorded as an ordinary ``relabel`` event,
so the label history stays complete.
"""


from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.access import User, require_admin
from core.datasets import image_groups, image_hashes
from core.errors import Cancelled, InvalidValue, NotFound, TrainingError
from core.progress import Progress
from core.review import clean_reviewer, decide
from core.store import get_setting, now_iso, set_setting, write_tx
from core.training.data import INPUT_SIZE, load_inputs
from core.training.holdout import gather_labels

MIN_ISSUE_LABELS = 10
MIN_PER_CLASS = 3


# inverse L2 strength of the logistic regression on standardised features: strong, so that
# out-of-fold probabilities stay soft on small, separable reference sets (measured: C = 1 lets
# confident clean images set cleanlab's per-class thresholds so high that flips slip through)
C_REG = 0.05


MAJORITY = 0.5
# How the folds keep related images together: "folders" (same sub-folder, file-name pattern or
# near-copy), "near-copies" (file-name pattern or near-copy only), "auto" (folders; near-copies
# when the folders leave fewer than 2 groups, e.g. one flat folder or the demo's class folders)
GROUPINGS = ("auto", "folders", "near-copies")
GROUPING_COST = ("grouped by near-copies only: images of one specimen in different files may sit "
                 "in different folds and vouch for each other's labels, so a label wrong for a whole "
                 "specimen is less likely to be flagged")
LAST_RUN_KEY = "label_issues.last_run"
ISSUE_ACTIONS = ("keep", "relabel")


@dataclass
class IssueReport:
    """What one run of :func:`find_issues` looked at and found."""

    run_at: str
    labels: int  # reference images analysed
    classes: list[str]
    folds: int
    groups: int
    flagged: int
    kept_before: int  # flagged again but kept earlier by a reviewer with the same label
    oof_accuracy: float  # out-of-fold accuracy of the texture classifier on the given labels
    seconds: float
    skipped_unreadable: list[str] = field(default_factory=list)
    skipped_classes: dict[str, int] = field(default_factory=dict)
    top: list[dict[str, Any]] = field(default_factory=list)
    grouping: str = "folders"  # what the folds grouped by (GROUPINGS, never "auto")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        s = (f"{self.flagged} likely mislabelled of {self.labels} reference images "
             f"({len(self.classes)} classes, {self.folds} group-aware folds over {self.groups} "
             f"groups; out-of-fold accuracy {self.oof_accuracy:.1%}; {self.seconds:.1f} s)")
        if self.grouping == "near-copies":
            s += f"; {GROUPING_COST}"
        if self.kept_before:
            s += f"; {self.kept_before} more were kept by a reviewer before"
        if self.skipped_classes:
            s += ("; not analysed (fewer than " + str(MIN_PER_CLASS) + " labels): "
                  + ", ".join(f"{c} ({n})" for c, n in self.skipped_classes.items()))
        if self.skipped_unreadable:
            s += f"; {len(self.skipped_unreadable)} unreadable image(s) skipped"
        return s


def _oof_probs(x: np.ndarray, y: np.ndarray, groups: list[str], k_classes: int, folds: int,
               seed: int, prog: Progress) -> np.ndarray:
    """Out-of-fold class probabilities (N, K) from group-aware stratified folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.zeros((len(y), k_classes))
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits"
        warnings.simplefilter("ignore", UserWarning)
        splits = list(cv.split(x, y, groups))
    for f, (tr, te) in enumerate(splits):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C_REG, max_iter=3000))
        present = np.unique(y[tr])
        if len(present) < 2:  # a fold whose training side has one class: it knows nothing else
            out[np.ix_(te, present)] = 1.0
        else:
            clf.fit(x[tr], y[tr])
            out[np.ix_(te, clf.classes_)] = clf.predict_proba(x[te])
        prog((f + 1) / len(splits), f"fold {f + 1}/{len(splits)}")
    out = np.clip(out, 1e-6, None)
    return out / out.sum(axis=1, keepdims=True)


def find_issues(
    db: Database,
    *,
    folds: int = 5,
    progress: Progress | None = None,
    seed: int = 0,
    pattern: str | None = None,
    input_size: tuple[int, int] | None = None,
    cancel: threading.Event | None = None,
    grouping: str = "auto",
    by: User | None = None,
) -> IssueReport:
    """Find likely mislabelled reference images and store them (replacing the previous run's
    open issues). ``pattern``: optional file-name regular expression for specimen groups (see
    core.datasets.image_groups); ``grouping``: one of :data:`GROUPINGS`. Its findings are shared
    (every reviewer's Likely mislabelled list): administrators only (``by``; ``None`` = local
    use, :class:`Forbidden` otherwise). Raises :class:`TrainingError` when there are too few labels or classes, and
    :class:`Cancelled` (nothing stored) once ``cancel`` is set."""
    require_admin(by, "run the label-issue finder (its findings replace everyone's list)")
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    from core.training.texture import texture_features  # torch: imported when finding

    t0 = time.perf_counter()
    report_to = progress or (lambda f, m: None)

    def prog(f: float, m: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Finding label issues cancelled; the previous results are kept")
        report_to(f, m)

    if folds < 2:
        raise TrainingError(f"folds must be at least 2, got {folds!r}")
    if grouping not in GROUPINGS:
        raise InvalidValue(f"Unknown grouping {grouping!r}; expected one of {', '.join(GROUPINGS)}")
    rows = gather_labels(db)
    counts = Counter(lab for _, _, lab in rows)
    small = {c: n for c, n in sorted(counts.items()) if n < MIN_PER_CLASS}
    rows = [r for r in rows if r[2] not in small]
    classes = sorted({r[2] for r in rows})
    if len(rows) < MIN_ISSUE_LABELS or len(classes) < 2:
        have = ", ".join(f"{c}: {n}" for c, n in sorted(counts.items())) or "none"
        raise TrainingError(
            f"Finding label issues needs at least {MIN_ISSUE_LABELS} reference labels in at least 2 "
            f"classes with ≥ {MIN_PER_CLASS} labels each; the reference set has {have}. "
            "Label more images first.")
    prog(0.0, f"reading {len(rows)} reference images")
    x, kept, unreadable = load_inputs(
        [(p, lab) for _, p, lab in rows], input_size=input_size or INPUT_SIZE,
        progress=lambda f, m: prog(0.5 * f, m))
    rows = [rows[i] for i in kept]
    ids = [r[0] for r in rows]
    chunks = []
    for i in range(0, len(x), 64):
        prog(0.5 + 0.1 * i / len(x), f"texture features {i:,}/{len(x):,}")
        chunks.append(texture_features(x[i : i + 64]))
    feats = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
    prog(0.6, "texture features done; grouping near-copies")
    image_hashes(db, ids)
    used = "near-copies" if grouping == "near-copies" else "folders"
    gmap = image_groups(db, ids, pattern=pattern or None, use_folder=used == "folders")
    if grouping == "auto" and len(set(gmap.values())) < 2:
        used = "near-copies"
        gmap = image_groups(db, ids, pattern=pattern or None, use_folder=False)
    groups = [gmap[i] for i in ids]
    n_groups = len(set(groups))
    k = min(folds, n_groups)
    if k < 2:
        kind = "folder / specimen / near-copies" if used == "folders" else "specimen pattern / near-copies"
        hint = " Try grouping by near-copies only." if used == "folders" else ""
        raise TrainingError(f"All {len(ids)} readable reference images fall in one group "
                            f"({kind}): out-of-fold predictions need at least 2 groups.{hint}")
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[r[2]] for r in rows], np.int64)
    if len(np.unique(y)) < 2:
        raise TrainingError("Fewer than 2 classes are left among the readable reference images.")
    probs = _oof_probs(feats, y, groups, len(classes), k, seed,
                       lambda f, m: prog(0.65 + 0.3 * f, m))
    prog(0.96, "confident learning (cleanlab)")
    flag = find_label_issues(y, probs, n_jobs=1)
    flag |= find_label_issues(y, probs, filter_by="predicted_neq_given", n_jobs=1) & (
        probs.max(axis=1) >= MAJORITY)
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    ranked = np.flatnonzero(flag)[np.argsort(quality[flag], kind="stable")]
    prog(0.98, "saving the findings")  # the last point a cancel stops at: nothing written yet
    stamp = now_iso()
    n_kept = 0
    top: list[dict[str, Any]] = []
    with write_tx(db, "saving label issues"):
        kept_rows = {int(r[0]): r[1] for r in db.execute(
            "SELECT image_id, given FROM label_issues WHERE status = 'kept'")}
        db.execute("DELETE FROM label_issues WHERE status != 'kept'")
        rank = 0
        for i in ranked.tolist():
            iid, given = ids[i], rows[i][2]
            if kept_rows.get(iid) == given:
                n_kept += 1
                continue
            other = probs[i].copy()
            other[y[i]] = -1.0
            s = int(other.argmax())
            rec = {"image_id": iid, "given": given, "suggested": classes[s],
                   "score": round(float(probs[i, y[i]]), 4),
                   "suggested_p": round(float(probs[i, s]), 4), "rank": rank, "run_at": stamp}
            db.execute(
                "INSERT INTO label_issues(image_id, given, suggested, score, suggested_p, rank, "
                "run_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, 'open') ON CONFLICT(image_id) DO "
                "UPDATE SET given = excluded.given, suggested = excluded.suggested, score = "
                "excluded.score, suggested_p = excluded.suggested_p, rank = excluded.rank, "
                "run_at = excluded.run_at, status = 'open', resolved_by = NULL, resolved_at = NULL",
                list(rec.values()))
            rank += 1
            if len(top) < 10:
                top.append(rec)
    report = IssueReport(
        run_at=stamp, labels=len(ids), classes=classes, folds=k, groups=n_groups, flagged=rank,
        kept_before=n_kept, oof_accuracy=round(float((probs.argmax(1) == y).mean()), 4),
        seconds=round(time.perf_counter() - t0, 1), skipped_unreadable=unreadable,
        skipped_classes=small, top=top, grouping=used)
    set_setting(db, LAST_RUN_KEY, json.dumps(report.to_json(), ensure_ascii=False))
    with contextlib.suppress(Cancelled):  # too late to cancel: the findings are stored
        report_to(1.0, report.summary())
    return report


def last_run(db: Database) -> dict[str, Any] | None:
    """The report of the latest run (as stored), or None."""
    raw = get_setting(db, LAST_RUN_KEY)
    return json.loads(raw) if raw else None


def issue_counts(db: Database) -> dict[str, int]:
    """Issues per status: open (still to look at), kept, relabelled."""
    out = {"open": 0, "kept": 0, "relabelled": 0}
    out.update(dict(db.execute(
        "SELECT l.status, COUNT(*) FROM label_issues l JOIN current_labels c "
        "ON c.image_id = l.image_id AND (c.label = l.given OR l.status != 'open') "
        "GROUP BY l.status").fetchall()))
    return out


def issue_queue(db: Database, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
    """Open issues, most likely mislabelled first: image id, name, path, given and suggested
    label, score, suggested_p, run_at. An issue whose label was changed since (on another page)
    is left out: someone already looked at it."""
    return list(db.query(
        "SELECT l.image_id, i.name, i.path, l.given, l.suggested, l.score, l.suggested_p, "
        "l.rank, l.run_at FROM label_issues l JOIN images i ON i.id = l.image_id "
        "JOIN current_labels c ON c.image_id = l.image_id AND c.label = l.given "
        "WHERE l.status = 'open' ORDER BY l.rank LIMIT ? OFFSET ?",
        [int(limit), int(offset)]))


def resolve_issue(db: Database, image_id: int, reviewer: str, action: str,
                  label: str | None = None) -> dict[str, Any]:
    """``keep`` the given label (the image is not flagged again while it keeps that label) or
    ``relabel`` it — to ``label``, by default the suggested class — through
    :func:`core.review.decide`, so the change is an ordinary label event. Returns the issue."""
    reviewer = clean_reviewer(reviewer)
    if action not in ISSUE_ACTIONS:
        raise InvalidValue(f"Unknown action {action!r} for a label issue; expected keep or relabel")
    row = db.execute("SELECT given, suggested FROM label_issues WHERE image_id = ?",
                     [image_id]).fetchone()
    if row is None:
        raise NotFound(f"Image {image_id!r} has no label issue; run `semtriage issues find` first")
    with write_tx(db, "resolving a label issue"):
        if action == "relabel":
            decide(db, image_id, "relabel", reviewer=reviewer, label=label or row[1],
                              note="label issue")
        db.execute(
            "UPDATE label_issues SET status = ?, resolved_by = ?, resolved_at = ? WHERE image_id = ?",
            ["kept" if action == "keep" else "relabelled", reviewer, now_iso(), image_id])
    return dict(next(iter(db.query("SELECT * FROM label_issues WHERE image_id = ?", [image_id]))))
