"""Detectors against verified images: F1 (one-to-one matching), D50 error, merges and splits on
the held-out verified images of a candidate, the candidate and the active detector side by side;
promotion makes a candidate active, discarding removes one. Nothing is written but the
promotion and the discard (administrators only when ``by`` is given)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sqlite_utils import Database

from core.access import User, require_admin
from core.errors import ImageReadError, StoreError
from core.images import read_image
from core.models import card_path
from core.particles.detectors import (
    active_detector,
    detect_array,
    find_detector,
    list_detectors,
    set_active_detector,
)
from core.particles.matching import MatchResult, match
from core.particles.store import label_image
from core.store import write_tx

MIN_TRAIN_VERIFIED = 2  # retraining: at least one image to learn from and one held out


def verified_images(db: Database) -> list[dict[str, Any]]:
    """Every verified image (human or imported) with its group (folder) key."""
    return list(db.query(
        "SELECT i.id, i.path, COALESCE(i.group_key, i.path) AS grp, pi.source FROM particle_images pi "
        "JOIN images i ON i.id = pi.image_id WHERE pi.state = 'verified' ORDER BY i.id"))


def truth_pairs(db: Database, image_ids: Sequence[int]) -> list[tuple[int, np.ndarray, np.ndarray, int]]:
    """(image id, scan [0, 1], verified labels of the scan, data-bar rows) of each readable image."""
    out = []
    for iid in image_ids:
        path = db.execute("SELECT path FROM images WHERE id = ?", [iid]).fetchone()
        if path is None:
            continue
        try:
            img = read_image(path[0])
        except ImageReadError:
            continue
        lab, _ = label_image(db, iid)
        out.append((iid, img.scan, lab[: img.scan.shape[0]], img.databar_px))
    return out


def evaluate_on(d: dict[str, Any], pairs: Sequence[tuple[int, np.ndarray, np.ndarray, int]]
                ) -> dict[str, Any]:
    """Detector row ``d`` on (id, scan, truth labels, bar) pairs: the match summary."""
    tot = MatchResult()
    for _, scan, truth, bar in pairs:
        parts = detect_array(scan, d, databar_px=bar)
        pred = np.zeros(truth.shape, np.int32)
        for k, p in enumerate(parts, 1):
            x0, y0, x1, y1 = p.bbox
            pred[y0:y1, x0:x1][p.mask] = k
        tot = tot + match(pred, truth)
    s = tot.summary()
    s["images"] = len(pairs)
    return s


def compare_detector(db: Database, version: str) -> dict[str, Any]:
    """A detector and the active one on the candidate's held-out verified images (from its
    metrics), or on every verified image when it has none recorded."""
    cand = find_detector(db, version)
    act = active_detector(db)
    held = (cand.get("metrics") or {}).get("held_out_images")
    ids = held if held else [r["id"] for r in verified_images(db)]
    if not ids:
        raise StoreError("No verified images to compare on: verify some images or import masks first")
    pairs = truth_pairs(db, ids)
    res = {"candidate": cand["version"], "active": act["version"], "images": len(pairs),
           "held_out": bool(held)}
    res["candidate_metrics"] = evaluate_on(cand, pairs)
    res["active_metrics"] = (res["candidate_metrics"] if act["id"] == cand["id"]
                             else evaluate_on(act, pairs))
    return res


def promote_detector(db: Database, version: str, *, by: User | None = None) -> dict[str, Any]:
    """Make a detector the active one (what ``detect`` uses from now on); administrators only
    when ``by`` is given (the app), ``None`` is the trusted CLI."""
    require_admin(by, "change the active particle detector")
    return set_active_detector(db, version)


def detector_candidates(db: Database) -> list[dict[str, Any]]:
    """Detectors made by retraining (with their held-out metrics) that are not active, newest
    first."""
    return [d for d in reversed(list_detectors(db))
            if not d["active"] and "candidate" in (d["metrics"] or {})]


def discard_detector(db: Database, version: str, *, by: User | None = None) -> dict[str, Any]:
    """Remove a candidate detector: its row and — when retraining wrote it — its ONNX file and
    card. Refuses the active detector and one whose detections are stored (the particles keep
    which detector made them). Administrators only when ``by`` is given."""
    require_admin(by, "discard a particle detector")
    d = find_detector(db, version)
    if d["active"]:
        raise StoreError(f"Particle detector {d['version']!r} is the active one; promote another "
                         "before discarding it")
    with write_tx(db, "discarding a particle detector"):
        used = db.execute("SELECT count(*) FROM particles WHERE detector_version = ?",
                          [d["version"]]).fetchone()[0]
        if used:
            raise StoreError(f"Particle detector {d['version']!r} made {used:,} stored particles; "
                             "it is kept so that their history stays complete")
        db.execute("DELETE FROM particle_detectors WHERE id = ?", [d["id"]])
        shared = d["path"] and db.execute("SELECT count(*) FROM particle_detectors WHERE path = ?",
                                          [d["path"]]).fetchone()[0]
    removed: list[str] = []
    if d["path"] and not shared and "candidate" in (d["metrics"] or {}):
        for p in (Path(d["path"]), card_path(d["path"])):
            if p.is_file():
                p.unlink()
                removed.append(str(p))
    return {"discarded": d["version"], "files_removed": removed}


def comparison_text(res: dict[str, Any]) -> str:
    def line(name: str, m: dict[str, Any]) -> str:
        d50 = m.get("d50_rel_err")
        return (f"{name}: F1 {m['f1']:.3f} (P {m['precision']:.3f}, R {m['recall']:.3f}), "
                f"D50 error {'–' if d50 is None else f'{d50:+.1%}'}, merges {m['merges']}, "
                f"splits {m['splits']}")
    where = "its held-out verified images" if res["held_out"] else "every verified image"
    return (f"On {res['images']} image(s) ({where}):\n"
            + line(f"candidate {res['candidate']}", res["candidate_metrics"]) + "\n"
            + line(f"active    {res['active']}", res["active_metrics"]))


def metrics_json(m: dict[str, Any]) -> str:
    return json.dumps(m, default=float)
