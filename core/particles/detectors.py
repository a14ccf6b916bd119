"""Particle detectors known to a database (classical with its parameters, or an ONNX
segmenter tied to its file's SHA-256), the active one, and detection of stored images in a
batch: each image read, detected, measured and stored in its own transaction; a bad file or a
detector that does not fit is reported by name and the batch goes on; verified images are never
overwritten."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from sqlite_utils import Database

from core.config import MODELS_DIR
from core.errors import ImageReadError, InvalidValue, ModelError, NotFound, SemTriageError
from core.files import sha256_file
from core.images import annotation_boxes, read_image
from core.models import read_card
from core.particles.classical import ClassicalParams, detect_classical
from core.particles.measure import Particle, measure
from core.particles.segmenter import ParticleSegmenter, drop_small
from core.particles.store import save_detection
from core.progress import Progress, counted
from core.store import now_iso, write_tx

DEFAULT_DETECTOR = MODELS_DIR / "particles-default.onnx"
CLASSICAL_DEFAULT = "classical-default"
METHODS = ("model", "classical")
TILE_PIXELS = 1536 * 1536  # larger scans are detected tile by tile (classical too)


def _row(r: dict[str, Any]) -> dict[str, Any]:
    r = dict(r)
    r["params"] = json.loads(r["params"] or "{}")
    r["card"] = json.loads(r["card"]) if r.get("card") else None
    r["metrics"] = json.loads(r["metrics"]) if r.get("metrics") else None
    r["active"] = bool(r["active"])
    return r


def list_detectors(db: Database) -> list[dict[str, Any]]:
    return [_row(r) for r in db.query("SELECT * FROM particle_detectors ORDER BY id")]


def find_detector(db: Database, ref: str | int) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM particle_detectors WHERE version = ? OR id = ?",
                         [str(ref), ref if isinstance(ref, int) else -1]))
    if not rows:
        known = ", ".join(d["version"] for d in list_detectors(db)) or "none"
        raise NotFound(f"No particle detector {ref!r}; known: {known}")
    return _row(rows[0])


def register_detector(db: Database, *, path: str | Path | None = None,
                      params: ClassicalParams | None = None, version: str | None = None,
                      activate: bool = False, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record an ONNX segmenter (validated first: :class:`ModelError` if it does not fit) or
    a classical parameter set. The same file (hash) or version registers once."""
    if path is not None:
        p = Path(path).resolve()
        seg = ParticleSegmenter(p)
        sha = sha256_file(p)
        old = db.execute("SELECT id FROM particle_detectors WHERE sha256 = ?", [sha]).fetchone()
        if old:
            if activate:
                set_active_detector(db, old[0])
            return find_detector(db, old[0])
        version = version or seg.version
        row: dict[str, Any] = {"version": version, "kind": "model", "path": str(p), "sha256": sha,
               "params": json.dumps({k: v for k, v in seg.metadata.items() if k != "training_data"}, default=str),
               "card": json.dumps(read_card(p)) if read_card(p) else None}
    else:
        prm = params or ClassicalParams()
        version = version or CLASSICAL_DEFAULT
        row = {"version": version, "kind": "classical", "path": None, "sha256": None,
               "params": json.dumps(prm.to_dict()), "card": None}
    with write_tx(db, "registering a particle detector"):
        old = db.execute("SELECT id FROM particle_detectors WHERE version = ?", [version]).fetchone()
        if old:
            did = old[0]
        else:
            row.update(added_at=now_iso(), active=0,
                       metrics=json.dumps(metrics) if metrics else None)
            did = db.table("particle_detectors").insert(row).last_pk
        if activate:
            set_active_detector(db, did)
    return find_detector(db, did)


def set_active_detector(db: Database, ref: str | int) -> dict[str, Any]:
    d = find_detector(db, ref)
    with write_tx(db, "activating a particle detector"):
        db.execute("UPDATE particle_detectors SET active = (id = ?)", [d["id"]])
    return find_detector(db, d["id"])


_SHIPPED_SHA: dict[float, str] = {}


def _shipped_sha() -> str | None:
    """The shipped default detector's hash (cached by modification time: this runs on every
    ``active_detector``)."""
    try:
        mtime = DEFAULT_DETECTOR.stat().st_mtime
    except OSError:
        return None
    if mtime not in _SHIPPED_SHA:
        _SHIPPED_SHA.clear()
        _SHIPPED_SHA[mtime] = sha256_file(DEFAULT_DETECTOR)
    return _SHIPPED_SHA[mtime]


def ensure_defaults(db: Database) -> None:
    """The classical default and the shipped model registered (the model active) on first use.

    After an upgrade that ships a new default model (same file, new hash), the new one is
    registered; it becomes active where the active detector was the old shipped file, which
    no longer exists as it was (a lab's own detectors stay active). Stored detections keep
    the version that made them."""
    if not db.execute("SELECT count(*) FROM particle_detectors").fetchone()[0]:
        register_detector(db, params=ClassicalParams(), version=CLASSICAL_DEFAULT)
        if DEFAULT_DETECTOR.is_file():
            register_detector(db, path=DEFAULT_DETECTOR, activate=True)
        else:
            set_active_detector(db, CLASSICAL_DEFAULT)
        return
    sha = _shipped_sha()
    if sha is None or db.execute("SELECT 1 FROM particle_detectors WHERE sha256 = ?", [sha]).fetchone():
        return
    act = db.execute("SELECT path, sha256 FROM particle_detectors WHERE active = 1").fetchone()
    was_shipped = bool(act and act[0] and Path(act[0]) == DEFAULT_DETECTOR.resolve() and act[1] != sha)
    register_detector(db, path=DEFAULT_DETECTOR, activate=was_shipped)


def active_detector(db: Database, method: str | None = None) -> dict[str, Any]:
    """The detector to use: the active one, or for ``method`` the active one of that kind
    (else the newest of that kind)."""
    ensure_defaults(db)
    if method is not None and method not in METHODS:
        raise InvalidValue(f"method {method!r}: expected one of {METHODS}")
    kind = method
    rows = list_detectors(db)
    act = [d for d in rows if d["active"]]
    if kind is None:
        if act:
            return act[0]
        raise NotFound("No active particle detector; activate one with `semtriage particles detector promote`")
    if act and act[0]["kind"] == kind:
        return act[0]
    same = [d for d in rows if d["kind"] == kind]
    if not same:
        raise NotFound(f"No {kind} particle detector registered")
    return same[-1]


_SEGMENTERS: dict[tuple[str, float], ParticleSegmenter] = {}


def segmenter_for(d: dict[str, Any]) -> ParticleSegmenter:
    """The ONNX session of a registered model detector (cached per path and mtime; refused
    when the file changed since registration)."""
    p = Path(d["path"])
    if not p.is_file():
        raise ModelError(f"Particle detector {d['version']!r}: file {str(p)!r} is missing")
    key = (str(p), p.stat().st_mtime)
    if key not in _SEGMENTERS:
        if sha256_file(p) != d["sha256"]:
            raise ModelError(f"Particle detector {d['version']!r}: {str(p)!r} changed since it was "
                             "registered; register the new file as a new version")
        _SEGMENTERS[key] = ParticleSegmenter(p)
    return _SEGMENTERS[key]


def detect_array(scan: np.ndarray, d: dict[str, Any], *, databar_px: int = 0) -> list[Particle]:
    """Detect and measure the particles of a scan (2-D [0, 1]) with detector row ``d``.

    An instrument overlay box inside the frame (core.images.annotation_boxes: a black box of
    text over a corner) is hidden from the detector (filled with the scan's median), nothing is
    detected under it, and particles it cuts are left out of sizes as ``databar``."""
    scan = np.asarray(scan, np.float32)
    if scan.ndim != 2 or scan.shape[0] < 8 or scan.shape[1] < 8:
        raise InvalidValue(f"scan of shape {scan.shape} is too small to detect particles in")
    boxes = annotation_boxes(scan)
    if not boxes:
        return _detect(scan, d, databar_px)
    hidden = np.zeros(scan.shape, bool)
    for y0, y1, x0, x1 in boxes:
        hidden[y0:y1, x0:x1] = True
    seen = scan.copy()
    seen[hidden] = float(np.median(scan[~hidden])) if (~hidden).any() else 0.0
    parts = _detect(seen, d, databar_px, hidden=hidden)
    ring = ndimage.binary_dilation(hidden, iterations=2)
    for p in parts:
        x0, y0, x1, y1 = p.bbox
        if not p.excluded and ring[y0:y1, x0:x1][p.mask].any():
            p.excluded = "databar"
    return parts


def _detect(scan: np.ndarray, d: dict[str, Any], databar_px: int,
            hidden: np.ndarray | None = None) -> list[Particle]:
    if d["kind"] == "classical":
        prm = ClassicalParams.from_dict(d["params"])
        if scan.size > TILE_PIXELS:
            labels, scores = _tiled_classical(scan, prm)
        else:
            labels, scores = detect_classical(scan, prm)
    else:
        labels, scores = segmenter_for(d).detect(scan)
    if hidden is not None:
        # what is left beside the box of a particle under it: a piece, not one
        labels = drop_small(np.where(hidden, 0, labels), 6)
    return measure(labels, scan, scores=scores, databar_px=databar_px)


def _tiled_classical(scan: np.ndarray, prm: ClassicalParams, tile: int = 1024, overlap: int = 64):
    """Classical detection of a very large frame in overlapping tiles; a particle belongs to
    the tile whose core holds its centroid."""
    h, w = scan.shape
    out = np.zeros((h, w), np.int32)
    scores = [0.0]
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            ya, xa = max(0, y0 - overlap), max(0, x0 - overlap)
            yb, xb = min(h, y0 + tile + overlap), min(w, x0 + tile + overlap)
            lab, sc = detect_classical(scan[ya:yb, xa:xb], prm)
            for k, sl in enumerate(ndimage.find_objects(lab), 1):
                if sl is None:
                    continue
                ys, xs = np.nonzero(lab[sl] == k)
                ys, xs = ys + sl[0].start + ya, xs + sl[1].start + xa
                cy, cx = ys.mean(), xs.mean()
                if y0 <= cy < y0 + tile and x0 <= cx < x0 + tile:
                    free = out[ys, xs] == 0
                    scores.append(float(sc[k]))
                    out[ys[free], xs[free]] = len(scores) - 1
    return out, np.asarray(scores, np.float32)


@dataclass
class DetectReport:
    detected: int = 0
    particles: int = 0
    skipped_verified: int = 0
    skipped_done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    detector: str = ""

    def summary(self) -> str:
        s = (f"{self.detected} image(s) detected with {self.detector}: {self.particles} particles; "
             f"{self.skipped_verified} verified left alone, {self.skipped_done} already detected "
             f"(--redo replaces)")
        if self.failed:
            s += f"; {len(self.failed)} failed: " + "; ".join(f"{p}: {r}" for p, r in self.failed[:3])
        return s

    def to_json(self) -> dict[str, Any]:
        return {"detected": self.detected, "particles": self.particles,
                "skipped_verified": self.skipped_verified, "skipped_done": self.skipped_done,
                "failed": [{"path": p, "reason": r} for p, r in self.failed],
                "seconds": round(self.seconds, 2), "detector": self.detector}


def select_images(db: Database, ids: Sequence[int] = (), *, all_images: bool = False,
                  cls: str | None = None) -> list[int]:
    """Image ids by id list, every image, or a class (its current label, else its prediction)."""
    if ids:
        return [int(i) for i in ids]
    if cls:
        return [r[0] for r in db.execute(
            "SELECT i.id FROM images i LEFT JOIN current_labels c ON c.image_id = i.id "
            "LEFT JOIN predictions p ON p.image_id = i.id AND p.model_id = "
            "(SELECT id FROM models WHERE active = 1) WHERE COALESCE(c.label, p.pred) = ? "
            "ORDER BY i.id", [cls])]
    if all_images:
        return [r[0] for r in db.execute("SELECT id FROM images ORDER BY id")]
    raise InvalidValue("say which images: IDs, --all or --class C")


def detect_images(db: Database, image_ids: Sequence[int], *, method: str | None = None,
                  version: str | None = None, redo: bool = False,
                  progress: Progress | None = None) -> DetectReport:
    """Detect the particles of stored images (see the module doc)."""
    d = find_detector(db, version) if version else active_detector(db, method)
    rep = DetectReport(detector=d["version"])
    t0 = time.perf_counter()
    states = {r[0]: r[1] for r in db.execute("SELECT image_id, state FROM particle_images")}
    for i, iid in enumerate(image_ids):
        counted(progress, i, len(image_ids), f"image {iid}")
        row = db.execute("SELECT path, databar_px FROM images WHERE id = ?", [iid]).fetchone()
        if row is None:
            rep.failed.append((f"image {iid}", "no such image id"))
            continue
        st = states.get(iid)
        if st == "verified":
            rep.skipped_verified += 1
            continue
        if st is not None and not redo:
            rep.skipped_done += 1
            continue
        try:
            img = read_image(row[0])
            parts = detect_array(img.scan, d, databar_px=img.databar_px)
            if save_detection(db, iid, parts, source=d["kind"], detector_version=d["version"],
                              redo=redo):
                rep.detected += 1
                rep.particles += len(parts)
        except ImageReadError as e:
            rep.failed.append((row[0], e.reason))
        except ModelError as e:  # the detector itself does not fit: every image would fail
            rep.failed.append((row[0], str(e)))
            break
        except SemTriageError as e:
            rep.failed.append((row[0], str(e)))
    counted(progress, len(image_ids), len(image_ids), "done")
    rep.seconds = time.perf_counter() - t0
    return rep
