"""Particles in the database: the one writer of detections, the reviewers' edits (add from a
seed click, delete, merge, split, relabel, verify) as append-only events with undo, the
user-set pixel size, and reads (an image's particles, its label image, a set's rows).

Every edit is one transaction: an event row (who, when, the detector version of the image,
the particle ids it created and removed) plus the particle rows it adds and the
``removed_event`` it sets; undo writes an ``undo`` event that reverses the last live edit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed
from sqlite_utils import Database

from core.errors import InvalidValue, NotFound, StoreError
from core.images import SemImage, read_image
from core.particles.measure import Particle, measure
from core.review import clean_reviewer
from core.store import now_iso, write_tx

PCOLS = ("centroid_x_px", "centroid_y_px", "area_px", "ecd_px", "feret_max_px", "feret_min_px",
         "aspect_ratio", "circularity", "solidity", "mean_intensity", "score", "excluded")
MACHINE = ("model", "classical")
EDIT_ACTIONS = ("add", "delete", "merge", "split", "relabel", "verify", "unverify")


# ------------------------------------------------------------------ masks


def pack_mask(mask: np.ndarray) -> bytes:
    return np.packbits(mask.astype(bool), axis=None).tobytes()


def unpack_mask(blob: bytes, w: int, h: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(blob, np.uint8), count=w * h)
    return bits.reshape(h, w).astype(bool)


def _image_row(db: Database, image_id: int) -> dict[str, Any]:
    rows = list(db.query("SELECT id, sha256, path, name, width, height, pixel_size_m, "
                         "pixel_size_source, databar_px FROM images WHERE id = ?", [image_id]))
    if not rows:
        raise NotFound(f"No image with id {image_id!r}")
    return rows[0]


def image_state(db: Database, image_id: int) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM particle_images WHERE image_id = ?", [image_id]))
    return rows[0] if rows else None


def pixel_size(db: Database, image_id: int) -> tuple[float | None, str | None]:
    """The pixel size (m) used for an image's particles and where it came from: a user's
    setting wins over the file's metadata; (None, None) when unknown."""
    st = image_state(db, image_id)
    if st and st["pixel_size_m"]:
        return float(st["pixel_size_m"]), st["pixel_size_source"]
    im = _image_row(db, image_id)
    if im["pixel_size_m"]:
        return float(im["pixel_size_m"]), im["pixel_size_source"]
    return None, None


# ------------------------------------------------------------------ writes


def _event(db: Database, image_id: int, action: str, reviewer: str, *,
           detector_version: str | None = None, created: Sequence[int] = (),
           removed: Sequence[int] = (), payload: Any = None, undoes: int | None = None) -> int:
    cur = db.execute(
        "INSERT INTO particle_events (image_id, action, reviewer, detector_version, created, "
        "removed, payload, undoes, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [image_id, action, reviewer, detector_version, json.dumps(list(created)),
         json.dumps(list(removed)), None if payload is None else json.dumps(payload), undoes,
         now_iso()])
    return int(cur.lastrowid or 0)


def _insert(db: Database, image_id: int, parts: Iterable[Particle], source: str,
            detector_version: str | None, event_id: int) -> list[int]:
    ids = []
    for p in parts:
        x0, y0, x1, y1 = (int(v) for v in p.bbox)
        cur = db.execute(
            "INSERT INTO particles (image_id, source, detector_version, event_id, x0, y0, x1, y1, "
            "mask, " + ", ".join(PCOLS) + ") VALUES (" + ", ".join("?" * (9 + len(PCOLS))) + ")",
            [image_id, source, detector_version, event_id, x0, y0, x1, y1, pack_mask(p.mask),
             *[_plain(getattr(p, c)) for c in PCOLS]])
        ids.append(int(cur.lastrowid or 0))
    return ids


def _plain(v: Any) -> Any:
    """A value SQLite stores as a number (numpy scalars would become BLOBs; NaN → NULL)."""
    if isinstance(v, str):
        return v
    if isinstance(v, (int, np.integer)):
        return int(v)
    f = float(v)
    return None if math.isnan(f) else f


def _remove(db: Database, ids: Sequence[int], event_id: int) -> None:
    if ids:
        marks = ",".join("?" * len(ids))
        db.execute(f"UPDATE particles SET removed_event = ? WHERE id IN ({marks})",
                   [event_id, *ids])


def _refresh(db: Database, image_id: int, *, state: str | None = None,
             detector_version: str | None = None, verified_by: str | None = None,
             source: str | None = None) -> None:
    """Recount the image's live particles into particle_images (creating its row)."""
    n, n_edge, n_bar, smin = db.execute(
        "SELECT count(*), sum(excluded = 'edge'), sum(excluded = 'databar'), min(score) "
        "FROM particles WHERE image_id = ? AND removed_event IS NULL", [image_id]).fetchone()
    old = image_state(db, image_id)
    row = {"image_id": image_id, "n_particles": n or 0, "n_edge": n_edge or 0,
           "n_databar": n_bar or 0, "min_score": smin, "updated_at": now_iso(),
           "state": state or (old["state"] if old else "detected"),
           "detector_version": detector_version or (old["detector_version"] if old else None),
           "verified_by": verified_by if state == "verified" else (
               None if state == "detected" else (old["verified_by"] if old else None)),
           "source": source or (old["source"] if old else None),
           "pixel_size_m": old["pixel_size_m"] if old else None,
           "pixel_size_source": old["pixel_size_source"] if old else None}
    db.table("particle_images").upsert(row, pk="image_id")


def live_ids(db: Database, image_id: int, sources: Sequence[str] | None = None) -> list[int]:
    sql = "SELECT id FROM particles WHERE image_id = ? AND removed_event IS NULL"
    args: list[Any] = [image_id]
    if sources:
        sql += f" AND source IN ({','.join('?' * len(sources))})"
        args += list(sources)
    return [r[0] for r in db.execute(sql, args)]


def save_detection(db: Database, image_id: int, parts: Sequence[Particle], *, source: str,
                   detector_version: str, redo: bool = False, reviewer: str = "detector") -> bool:
    """Store a detector's particles for an image (one transaction). A verified image is never
    touched (False); an image already detected is left alone unless ``redo`` (then its machine
    particles are replaced, people's additions kept)."""
    if source not in MACHINE:
        raise InvalidValue(f"detection source {source!r}: expected one of {MACHINE}")
    with write_tx(db, "storing particles"):
        st = image_state(db, image_id)
        if st and st["state"] == "verified":
            return False
        if st and not redo:
            return False
        old = live_ids(db, image_id, MACHINE)
        ev = _event(db, image_id, "detect", reviewer, detector_version=detector_version)
        new = _insert(db, image_id, parts, source, detector_version, ev)
        _remove(db, old, ev)
        db.execute("UPDATE particle_events SET created = ?, removed = ? WHERE id = ?",
                   [json.dumps(new), json.dumps(old), ev])
        _refresh(db, image_id, state="detected", detector_version=detector_version, source=source)
    return True


def save_verified(db: Database, image_id: int, parts: Sequence[Particle], *, reviewer: str,
                  source: str = "import") -> list[int]:
    """Replace an image's particles with verified ones (imported masks), one transaction."""
    with write_tx(db, "importing particles"):
        old = live_ids(db, image_id)
        ev = _event(db, image_id, "import", reviewer)
        new = _insert(db, image_id, parts, source, None, ev)
        _remove(db, old, ev)
        db.execute("UPDATE particle_events SET created = ?, removed = ? WHERE id = ?",
                   [json.dumps(new), json.dumps(old), ev])
        _refresh(db, image_id, state="verified", verified_by=reviewer, source=source,
                 detector_version="import")
    return new


def set_pixel_size(db: Database, image_ids: Sequence[int], pixel_size_m: float | None, *,
                   reviewer: str, how: str = "typed") -> int:
    """Set (or clear, None) the pixel size of images; returns how many were set."""
    reviewer = clean_reviewer(reviewer)
    if pixel_size_m is not None and not (1e-12 < float(pixel_size_m) < 1e-2):
        raise InvalidValue(f"pixel size {pixel_size_m!r} m is out of range (expected 1 pm – 1 cm)")
    with write_tx(db, "setting the pixel size"):
        for iid in image_ids:
            _image_row(db, iid)
            if image_state(db, iid) is None:
                _refresh(db, iid, state="detected")
            db.execute("UPDATE particle_images SET pixel_size_m = ?, pixel_size_source = ? "
                       "WHERE image_id = ?",
                       [pixel_size_m, None if pixel_size_m is None else f"set by {reviewer} ({how})",
                        iid])
            _event(db, iid, "pixel_size", reviewer, payload={"pixel_size_m": pixel_size_m})
    return len(image_ids)


def scale_bar_pixel_size(x0: float, y0: float, x1: float, y1: float, length_nm: float) -> float:
    """The pixel size (m) from two clicks on the ends of a scale bar of ``length_nm``."""
    d = float(np.hypot(x1 - x0, y1 - y0))
    if d < 2:
        raise InvalidValue(f"the two scale-bar points are {d:.1f} px apart; click both ends of the bar")
    if not length_nm > 0:
        raise InvalidValue(f"scale-bar length {length_nm!r} nm must be > 0")
    return length_nm * 1e-9 / d


# ------------------------------------------------------------------ reads


def particle_rows(db: Database, image_id: int) -> list[dict[str, Any]]:
    """The live particles of an image (no masks), with nm sizes when the pixel size is known."""
    ps, _ = pixel_size(db, image_id)
    rows = list(db.query(
        "SELECT id, source, detector_version, x0, y0, x1, y1, label, " + ", ".join(PCOLS) +
        " FROM particles WHERE image_id = ? AND removed_event IS NULL ORDER BY id", [image_id]))
    for r in rows:
        for c in ("ecd", "feret_max", "feret_min"):
            r[f"{c}_nm"] = None if ps is None else r[f"{c}_px"] * ps * 1e9
    return rows


def label_image(db: Database, image_id: int, shape: tuple[int, int] | None = None
                ) -> tuple[np.ndarray, list[int]]:
    """The image's live particles as an instance label image (label k = the k-th particle id
    of the returned list) of ``shape`` (default: the image's full frame)."""
    im = _image_row(db, image_id)
    h, w = shape or (im["height"], im["width"])
    lab = np.zeros((h, w), np.int32)
    ids = []
    for pid, x0, y0, x1, y1, blob in db.execute(
            "SELECT id, x0, y0, x1, y1, mask FROM particles WHERE image_id = ? AND "
            "removed_event IS NULL ORDER BY id", [image_id]):
        ids.append(pid)
        m = unpack_mask(blob, x1 - x0, y1 - y0)
        ya, yb, xa, xb = max(0, y0), min(h, y1), max(0, x0), min(w, x1)
        if ya >= yb or xa >= xb:
            continue
        sub = lab[ya:yb, xa:xb]
        sub[m[ya - y0 : yb - y0, xa - x0 : xb - x0]] = len(ids)
    return lab, ids


def _masks(db: Database, ids: Sequence[int], image_id: int) -> list[tuple[int, tuple[int, int, int, int], np.ndarray]]:
    out = []
    for pid in ids:
        r = db.execute("SELECT x0, y0, x1, y1, mask FROM particles WHERE id = ? AND image_id = ? "
                       "AND removed_event IS NULL", [pid, image_id]).fetchone()
        if r is None:
            raise NotFound(f"Particle {pid!r} is not a current particle of image {image_id}")
        x0, y0, x1, y1, blob = r
        out.append((pid, (x0, y0, x1, y1), unpack_mask(blob, x1 - x0, y1 - y0)))
    return out


# ------------------------------------------------------------------ edits


def _measure_full(mask: np.ndarray, scan: np.ndarray, databar_px: int, score: float = 1.0
                  ) -> list[Particle]:
    """Measure one full-scan boolean mask (each connected piece a particle? no: one particle)."""
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return []
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    h, w = mask.shape
    pad = 1
    ya, yb, xa, xb = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
    crop = mask[ya:yb, xa:xb].astype(np.int32)
    parts = measure(crop, scan[ya:yb, xa:xb], scores=np.array([0.0, score]), offset=(xa, ya))
    for p in parts:
        bx0, by0, bx1, by1 = p.bbox
        p.excluded = ("databar" if databar_px > 0 and by1 == h else
                      "edge" if (bx0 == 0 or by0 == 0 or bx1 == w or by1 == h) else "")
    return parts


def segment_from_seed(scan: np.ndarray, x: float, y: float, typical_d: float) -> np.ndarray:
    """A particle mask (full-scan bool) grown from a click at (x, y): the thresholded blob of
    the click's neighbourhood that contains (or is nearest to) it; a disc of ``typical_d`` when
    nothing stands out there."""
    h, w = scan.shape
    r = max(3.0, typical_d / 2)
    cx, cy = round(x), round(y)
    if not (0 <= cx < w and 0 <= cy < h):
        raise InvalidValue(f"click ({x:.0f}, {y:.0f}) is outside the image ({w}×{h})")
    half = int(r * 3)
    ya, yb, xa, xb = max(0, cy - half), min(h, cy + half + 1), max(0, cx - half), min(w, cx + half + 1)
    win = scan[ya:yb, xa:xb].astype(np.float32)
    mask = np.zeros((h, w), bool)
    blob = None
    if float(np.ptp(win)) > 1e-3:
        t = threshold_otsu(win)
        centre = win[cy - ya, cx - xa]
        fg = win > t if centre > t else win <= t
        lab, _ = ndimage.label(fg)
        k = lab[cy - ya, cx - xa]
        if k:
            cand = lab == k
            area = cand.sum()
            touches = cand[0].any() or cand[-1].any() or cand[:, 0].any() or cand[:, -1].any()
            if 0.15 * np.pi * r * r <= area <= 4 * np.pi * r * r and not touches:
                blob = cand
    if blob is None:
        yy, xx = np.ogrid[ya:yb, xa:xb]
        blob = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    mask[ya:yb, xa:xb] = blob
    return mask


def _typical_d(db: Database, image_id: int) -> float:
    r = db.execute("SELECT avg(ecd_px) FROM particles WHERE image_id = ? AND removed_event IS NULL "
                   "AND excluded = ''", [image_id]).fetchone()
    return float(r[0]) if r and r[0] else 12.0


def _scan_shape(im: dict[str, Any]) -> tuple[int, int]:
    return im["height"] - (im["databar_px"] or 0), im["width"]


def add_particle(db: Database, image_id: int, scan: np.ndarray, x: float, y: float, *,
                 reviewer: str, mask: np.ndarray | None = None) -> int:
    """Add a particle where a reviewer clicked (segmented from that seed) or from ``mask``."""
    reviewer = clean_reviewer(reviewer)
    im = _image_row(db, image_id)
    if scan.shape != _scan_shape(im):
        raise InvalidValue(f"scan shape {scan.shape} does not match image {image_id} {_scan_shape(im)}")
    m = mask if mask is not None else segment_from_seed(scan, x, y, _typical_d(db, image_id))
    parts = _measure_full(m, scan, im["databar_px"] or 0)
    if not parts:
        raise InvalidValue("the new particle is empty")
    return _edit(db, image_id, "add", reviewer, parts, [])[0]


def delete_particles(db: Database, image_id: int, ids: Sequence[int], *, reviewer: str) -> None:
    reviewer = clean_reviewer(reviewer)
    if not ids:
        raise InvalidValue("select at least one particle to delete")
    _masks(db, ids, image_id)  # they exist and are live
    _edit(db, image_id, "delete", reviewer, [], list(ids))


def merge_particles(db: Database, image_id: int, ids: Sequence[int], scan: np.ndarray, *,
                    reviewer: str) -> int:
    """Merge two or more particles into one (the union of their masks, gaps closed)."""
    reviewer = clean_reviewer(reviewer)
    if len(set(ids)) < 2:
        raise InvalidValue("select two or more particles to merge")
    im = _image_row(db, image_id)
    full = np.zeros(_scan_shape(im), bool)
    for _, (x0, y0, x1, y1), m in _masks(db, ids, image_id):
        full[y0:y1, x0:x1] |= m
    full = ndimage.binary_closing(full, iterations=2) | full
    lab, n = ndimage.label(full)
    if n > 1:  # keep it one particle: join the pieces through their convex hull
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        full = ndimage.binary_closing(full, iterations=6) | full
    parts = _measure_full(full, scan, im["databar_px"] or 0)
    return _edit(db, image_id, "merge", reviewer, parts[:1], list(ids))[0]


def split_particle(db: Database, image_id: int, pid: int, scan: np.ndarray, *, reviewer: str,
                   n: int = 2) -> list[int]:
    """Split one particle into ``n`` (distance-transform seeds; k-means of its pixels when
    the distance map has too few maxima)."""
    reviewer = clean_reviewer(reviewer)
    im = _image_row(db, image_id)
    (_, (x0, y0, x1, y1), m), = _masks(db, [pid], image_id)
    if m.sum() < 2 * n:
        raise InvalidValue(f"particle {pid} is too small to split into {n}")
    dist = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    ys, xs = np.nonzero(m)
    pts = np.stack([ys, xs], 1).astype(np.float64)
    # k-means seeds along the particle (deterministic: start at the extremes of the long axis)
    c = pts.mean(0)
    _u, _s, vt = np.linalg.svd(pts - c, full_matrices=False)
    proj = (pts - c) @ vt[0]
    cents = np.stack([pts[np.argmin(np.abs(proj - q))] for q in np.linspace(proj.min(), proj.max(), n + 2)[1:-1]])
    for _ in range(10):
        lab = np.argmin(((pts[:, None] - cents[None]) ** 2).sum(-1), 1)
        cents = np.stack([pts[lab == k].mean(0) if (lab == k).any() else cents[k] for k in range(n)])
    markers = np.zeros(m.shape, np.int32)
    for k, (cy, cx) in enumerate(cents, 1):
        markers[round(cy), round(cx)] = k
    markers[~m] = 0
    seg = watershed(-dist, markers, mask=m)
    full_shape = _scan_shape(im)
    parts: list[Particle] = []
    for k in range(1, n + 1):
        piece = np.zeros(full_shape, bool)
        piece[y0:y1, x0:x1] = seg == k
        parts += _measure_full(piece, scan, im["databar_px"] or 0)
    if len(parts) < 2:
        raise InvalidValue(f"particle {pid} could not be split")
    return _edit(db, image_id, "split", reviewer, parts, [pid])


def relabel_particles(db: Database, image_id: int, ids: Sequence[int], label: str | None, *,
                      reviewer: str) -> None:
    """Give particles a label (a population such as ``12 nm``, or ``shadow`` — a look-alike
    that is not a particle and is left out of distributions); None clears it."""
    reviewer = clean_reviewer(reviewer)
    if label is not None:
        label = label.strip()
        if not label or len(label) > 64:
            raise InvalidValue(f"particle label {label!r} must be 1–64 characters")
    _masks(db, ids, image_id)
    with write_tx(db, "relabelling particles"):
        old = {pid: db.execute("SELECT label FROM particles WHERE id = ?", [pid]).fetchone()[0]
               for pid in ids}
        _event(db, image_id, "relabel", reviewer, detector_version=_det_version(db, image_id),
               payload={"label": label, "old": old})
        for pid in ids:
            db.execute("UPDATE particles SET label = ? WHERE id = ?", [label, pid])


def verify_image(db: Database, image_id: int, *, reviewer: str, verified: bool = True) -> None:
    """Accept the image's particles as verified (or take that back): ``detect --all`` never
    touches a verified image, and verified images train and test detectors."""
    reviewer = clean_reviewer(reviewer)
    _image_row(db, image_id)
    with write_tx(db, "verifying an image"):
        st = image_state(db, image_id)
        if st is None:
            raise StoreError(f"Image {image_id} has no particles yet: detect them first "
                             "(or add them by hand)")
        _event(db, image_id, "verify" if verified else "unverify", reviewer,
               detector_version=st["detector_version"], payload={"old_state": st["state"],
                                                                 "old_by": st["verified_by"]})
        _refresh(db, image_id, state="verified" if verified else "detected", verified_by=reviewer)


def _det_version(db: Database, image_id: int) -> str | None:
    st = image_state(db, image_id)
    return st["detector_version"] if st else None


def _edit(db: Database, image_id: int, action: str, reviewer: str, parts: Sequence[Particle],
          removed: Sequence[int]) -> list[int]:
    with write_tx(db, f"{action} particles"):
        ev = _event(db, image_id, action, reviewer, detector_version=_det_version(db, image_id),
                    removed=removed)
        new = _insert(db, image_id, parts, "human", _det_version(db, image_id), ev)
        _remove(db, removed, ev)
        db.execute("UPDATE particle_events SET created = ? WHERE id = ?", [json.dumps(new), ev])
        _refresh(db, image_id)
    return new


def undo_last(db: Database, image_id: int, *, reviewer: str) -> dict[str, Any] | None:
    """Undo the last edit of the image that is not undone yet (add, delete, merge, split,
    relabel, verify); None when there is nothing to undo. Detections and imports are not
    undone here (re-run or re-import)."""
    reviewer = clean_reviewer(reviewer)
    with write_tx(db, "undoing a particle edit"):
        undone = {r[0] for r in db.execute(
            "SELECT undoes FROM particle_events WHERE image_id = ? AND undoes IS NOT NULL", [image_id])}
        rows = [r for r in db.query(
            "SELECT * FROM particle_events WHERE image_id = ? AND action IN "
            f"({','.join('?' * len(EDIT_ACTIONS))}) ORDER BY id DESC", [image_id, *EDIT_ACTIONS])
            if r["id"] not in undone]
        if not rows:
            return None
        ev = rows[0]
        created, removed = json.loads(ev["created"]), json.loads(ev["removed"])
        payload = json.loads(ev["payload"]) if ev["payload"] else {}
        uid = _event(db, image_id, "undo", reviewer, detector_version=ev["detector_version"],
                     created=removed, removed=created, undoes=ev["id"])
        _remove(db, created, uid)
        if removed:
            marks = ",".join("?" * len(removed))
            db.execute(f"UPDATE particles SET removed_event = NULL WHERE id IN ({marks})", removed)
        if ev["action"] == "relabel":
            for pid, lab in payload.get("old", {}).items():
                db.execute("UPDATE particles SET label = ? WHERE id = ?", [lab, int(pid)])
        if ev["action"] in ("verify", "unverify"):
            db.execute("UPDATE particle_images SET state = ?, verified_by = ? WHERE image_id = ?",
                       [payload.get("old_state", "detected"), payload.get("old_by"), image_id])
        _refresh(db, image_id)
    return ev


def history(db: Database, image_id: int) -> list[dict[str, Any]]:
    return list(db.query("SELECT id, action, reviewer, detector_version, created, removed, "
                         "payload, undoes, created_at FROM particle_events WHERE image_id = ? "
                         "ORDER BY id", [image_id]))


def review_queue(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    """Detected, not yet verified images, worst first: images without particles (a miss, or
    every one deleted) before all others, then by priority — the share of low-score
    detections (< 0.5), of likely merges (solidity < 0.85) and of odd sizes (ECD beyond 2× or
    under ½ the image's mean) added up, plus 1 without particles."""
    rows = list(db.query(
        "WITH p AS (SELECT image_id, score, solidity, ecd_px, avg(ecd_px) OVER (PARTITION BY "
        "image_id) AS m FROM particles WHERE removed_event IS NULL AND image_id IN "
        "(SELECT image_id FROM particle_images WHERE state = 'detected')) "
        "SELECT pi.image_id, i.name, pi.n_particles, pi.detector_version, "
        "COALESCE(avg(p.score < 0.5), 0) AS low_score, COALESCE(avg(p.solidity < 0.85), 0) AS merges, "
        "COALESCE(avg(p.ecd_px > 2 * p.m OR p.ecd_px < 0.5 * p.m), 0) AS odd_size "
        "FROM particle_images pi JOIN images i ON i.id = pi.image_id LEFT JOIN p ON "
        "p.image_id = pi.image_id WHERE pi.state = 'detected' GROUP BY pi.image_id"))
    for r in rows:
        r["priority"] = round(r["low_score"] + r["merges"] + r["odd_size"]
                              + (1.0 if not r["n_particles"] else 0.0), 4)
    rows.sort(key=lambda r: (bool(r["n_particles"]), -r["priority"], r["image_id"]))
    return rows[:limit]


def load_scan(db: Database, image_id: int) -> SemImage:
    """The decoded image of a stored image id (its scan is what particles live on)."""
    im = _image_row(db, image_id)
    return read_image(im["path"])


def image_path(db: Database, image_id: int) -> str:
    return str(_image_row(db, image_id)["path"])


def particle_images(db: Database) -> list[dict[str, Any]]:
    """Every image that has a particle state: id, name, folder, state, counts, pixel size."""
    return list(db.query(
        "SELECT i.id, i.name, i.group_key, pi.state, pi.n_particles, pi.detector_version, "
        "pi.verified_by, COALESCE(pi.pixel_size_m, i.pixel_size_m) AS pixel_size_m "
        "FROM particle_images pi JOIN images i ON i.id = pi.image_id ORDER BY i.id"))


def folder_images(db: Database, image_id: int) -> list[int]:
    """The ids of every image in the same folder (group key) as ``image_id``."""
    key = _image_row(db, image_id)
    grp = db.execute("SELECT group_key FROM images WHERE id = ?", [key["id"]]).fetchone()[0]
    if grp is None:
        return [image_id]
    return [r[0] for r in db.execute("SELECT id FROM images WHERE group_key = ? ORDER BY id", [grp])]


def image_ids_without_particles(db: Database) -> list[int]:
    return [r[0] for r in db.execute(
        "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM particle_images) ORDER BY id")]
