"""The predictions report: every image with a model's prediction, full probability vector,
queue and reason, and its current label (csv or jsonl)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from core.datasets.manifest import _Manifest, _paged, _snapshot
from core.errors import ExportError, NotFound
from core.models import active_model
from core.progress import Progress, counted
from core.review import current_reason, get_thresholds


def predictions_report(
    db: Database,
    out_path: str | Path,
    *,
    fmt: str = "csv",
    model_id: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Every image with its prediction from ``model_id`` (default: the active model) — class,
    p1, margin, entropy, the full probability vector (``p_<class>`` columns in csv, a dict
    ``probs`` in jsonl), queue and reason — and its current label and label source. Images
    without a prediction from that model are listed with empty prediction fields. Written
    atomically (a temporary sibling renamed into place)."""
    if fmt not in ("csv", "jsonl"):
        raise ExportError(f"Unknown report format {fmt!r}; expected csv or jsonl")
    out = Path(out_path).expanduser().absolute()
    if out.is_dir():
        raise ExportError(
            f"Report path {str(out)!r} is a folder; give a file name such as "
            f"{str(out / ('predictions.' + fmt))!r}"
        )
    with _snapshot(db):
        if model_id is None:
            active = active_model(db)
            row = (active["id"], active["version"], json.dumps(active["class_names"])) if active else None
            if row is None:
                raise ExportError(
                    "No active model: register one with `semtriage model add PATH`, "
                    "or name the model to report on"
                )
        else:
            row = db.execute(
                "SELECT id, version, class_names FROM models WHERE id = ?", [model_id]
            ).fetchone()
            if row is None:
                raise NotFound(
                    f"No model with id {model_id!r}; see `semtriage model list`"
                )
        mid, version, names_json = row
        names: list[str] = json.loads(names_json)
        fixed = [
            "path",
            "sha256",
            "model_version",
            "pred",
            "p1",
            "second",
            "p2",
            "margin",
            "entropy",
            "queue",
            "reason",
            "label",
            "label_source",
        ]
        prob_cols = [f"p_{n}" for n in names]
        total = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f"{out.name}.partial-", dir=out.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            m = _Manifest(tmp, fmt, fixed + prob_cols if fmt == "csv" else fixed + ["probs"])
            ts = get_thresholds(db)
            try:
                for done, r in enumerate(
                    _paged(
                        db,
                        "SELECT i.id, i.path, i.sha256, p.pred, p.p1, p.second, p.p2, p.margin, "
                        "p.entropy, p.probs, p.queue, p.reason, c.label, c.source FROM images i "
                        "LEFT JOIN predictions p ON p.image_id = i.id AND p.model_id = ? "
                        "LEFT JOIN current_labels c ON c.image_id = i.id WHERE {after}",
                        [mid],
                        key="i.id",
                    ),
                    start=1,
                ):
                    (
                        _,
                        path,
                        sha,
                        pred,
                        p1,
                        second,
                        p2,
                        margin,
                        ent,
                        probs,
                        queue,
                        reason,
                        label,
                        lsource,
                    ) = r
                    rec: dict[str, Any] = {
                        "path": path,
                        "sha256": sha,
                        "model_version": version if pred else None,
                        "pred": pred,
                        "p1": p1,
                        "second": second,
                        "p2": p2,
                        "margin": margin,
                        "entropy": ent,
                        "queue": queue,
                        "reason": (current_reason(ts, pred, p1, second, p2)
                                   if pred is not None else reason),
                        "label": label,
                        "label_source": lsource,
                    }
                    vec = json.loads(probs) if probs else None
                    if fmt == "csv":
                        for col, v in zip(prob_cols, vec or [None] * len(names)):
                            rec[col] = v
                    else:
                        rec["probs"] = dict(zip(names, vec)) if vec else None
                    m.write(rec)
                    if done % 256 == 0 or done == total:
                        counted(progress, done, total, os.path.basename(path))
            finally:
                m.close()
            os.replace(tmp, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return out
