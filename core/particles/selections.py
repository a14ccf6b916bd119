"""Saved selections: named sets of images for size distributions and exports, beside the
sets the archive gives by itself (every image, a folder, a predicted class).

A selection is made from image ids, a folder (group key), a class (current label, else the
active model's prediction), or any of them together (the images that match every one given),
and keeps who made it and how. It holds image ids, not particles: edits and detections made
later count the next time its distribution is drawn. Everyone may make one; only its maker or
an administrator may delete it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlite_utils import Database

from core.access import User, require_admin, same_identity
from core.errors import InvalidValue, NotFound
from core.particles.detectors import select_images
from core.review import clean_reviewer
from core.store import now_iso, write_tx

NAME_MAX = 64
_NAME_RE = re.compile(r"^\w[\w .+\-()/]*$")
_CHUNK = 500


def clean_selection_name(name: str) -> str:
    """A selection name: 1–64 letters, digits, spaces or ``. _ - + ( ) /``, starting with a
    letter or digit (so it never reads as a command-line option)."""
    s = (name or "").strip()
    if not s:
        raise InvalidValue("Selection name is empty: give the selection a name")
    if len(s) > NAME_MAX:
        raise InvalidValue(f"Selection name {name!r} is {len(s)} characters long; at most {NAME_MAX}")
    if not _NAME_RE.match(s):
        raise InvalidValue(f"Selection name {name!r} is not valid: use letters, digits, spaces or "
                           ". _ - + ( ) /, starting with a letter or digit")
    return s


def _existing_ids(db: Database, ids: Sequence[int]) -> set[int]:
    have: set[int] = set()
    for k in range(0, len(ids), _CHUNK):
        part = list(ids[k : k + _CHUNK])
        have.update(r[0] for r in db.execute(
            f"SELECT id FROM images WHERE id IN ({','.join('?' * len(part))})", part))
    return have


def _folder_images(db: Database, folder: str) -> set[int]:
    ids = {r[0] for r in db.execute("SELECT id FROM images WHERE group_key = ?", [folder])}
    if not ids:
        known = [r[0] for r in db.execute(
            "SELECT DISTINCT group_key FROM images WHERE group_key IS NOT NULL ORDER BY group_key LIMIT 11")]
        hint = ", ".join(repr(k) for k in known[:10]) + (", …" if len(known) > 10 else "")
        raise InvalidValue(f"Folder {folder!r} has no images; known folders: {hint or 'none'}")
    return ids


def _describe(image_ids: Sequence[int] | None, folder: str | None, cls: str | None) -> str:
    parts = []
    if image_ids:
        shown = ", ".join(str(i) for i in list(image_ids)[:8])
        parts.append(f"images {shown}" + (", …" if len(image_ids) > 8 else ""))
    if folder:
        parts.append(f"folder {folder!r}")
    if cls:
        parts.append(f"class {cls!r}")
    return " and ".join(parts)


def save_selection(db: Database, name: str, image_ids: Sequence[int] | None = None, *,
                   folder: str | None = None, cls: str | None = None, reviewer: str,
                   how: str | None = None) -> dict[str, Any]:
    """Save the images that match every criterion given (ids, folder, class) as the selection
    ``name``, made by ``reviewer``; ``how`` says where they came from (default: the criteria).
    :class:`InvalidValue` for a bad or taken name, no criterion, or no image matching;
    :class:`NotFound` for image ids that do not exist."""
    name = clean_selection_name(name)
    who = clean_reviewer(reviewer)
    ids_given = image_ids is not None and len(image_ids) > 0
    if not ids_given and not folder and not cls:
        raise InvalidValue("Say which images the selection holds: image ids, a folder or a class")
    chosen: set[int] | None = None
    if ids_given:
        assert image_ids is not None
        want = sorted({int(i) for i in image_ids})
        missing = sorted(set(want) - _existing_ids(db, want))
        if missing:
            shown = ", ".join(str(i) for i in missing[:10]) + (", …" if len(missing) > 10 else "")
            raise NotFound(f"No image with id {shown} ({len(missing)} of the {len(want)} ids given); "
                           "nothing was saved")
        chosen = set(want)
    if folder:
        f = _folder_images(db, folder)
        chosen = f if chosen is None else chosen & f
    if cls:
        c = set(select_images(db, cls=cls))
        if not c:
            raise InvalidValue(f"Class {cls!r} has no images (by current label, else prediction)")
        chosen = c if chosen is None else chosen & c
    assert chosen is not None
    what = _describe(image_ids, folder, cls)
    if not chosen:
        raise InvalidValue(f"No image is in all of {what}; nothing was saved")
    with write_tx(db, "saving a selection"):
        old = db.execute("SELECT name, created_by FROM particle_selections WHERE name = ?",
                         [name]).fetchone()
        if old:
            raise InvalidValue(f"Selection name {name!r} is taken (a selection {old[0]!r} made by "
                               f"{old[1]!r}); choose another name, or delete that one first")
        cur = db.execute("INSERT INTO particle_selections (name, created_by, how, created_at) "
                         "VALUES (?, ?, ?, ?)", [name, who, how or what, now_iso()])
        sid = int(cur.lastrowid or 0)
        db.conn.executemany("INSERT INTO particle_selection_images (selection_id, image_id) VALUES (?, ?)",
                            [(sid, i) for i in sorted(chosen)])
    return find_selection(db, name)


def list_selections(db: Database) -> list[dict[str, Any]]:
    """Every selection: name, who made it, how, when, its images and how many have particles."""
    return list(db.query(
        "SELECT s.id, s.name, s.created_by, s.how, s.created_at, count(si.image_id) AS images, "
        "count(pi.image_id) AS with_particles FROM particle_selections s "
        "LEFT JOIN particle_selection_images si ON si.selection_id = s.id "
        "LEFT JOIN particle_images pi ON pi.image_id = si.image_id "
        "GROUP BY s.id ORDER BY s.name COLLATE NOCASE"))


def find_selection(db: Database, name: str) -> dict[str, Any]:
    """One selection by name (any case); :class:`NotFound` naming the known ones."""
    for s in list_selections(db):
        if s["name"].casefold() == (name or "").strip().casefold():
            return s
    known = ", ".join(repr(s["name"]) for s in list_selections(db)[:20]) or "none yet"
    raise NotFound(f"No selection named {name!r}; known: {known}")


def selection_images(db: Database, name: str) -> list[int]:
    """The image ids of a selection, in order."""
    s = find_selection(db, name)
    return [r[0] for r in db.execute(
        "SELECT image_id FROM particle_selection_images WHERE selection_id = ? ORDER BY image_id",
        [s["id"]])]


def selection_sets(db: Database) -> dict[str, list[int]]:
    """Every selection's image ids by name (the ``selection`` sets of a distribution)."""
    out: dict[str, list[int]] = {s["name"]: [] for s in list_selections(db)}
    for name, iid in db.execute(
            "SELECT s.name, si.image_id FROM particle_selection_images si JOIN particle_selections s "
            "ON s.id = si.selection_id ORDER BY s.name, si.image_id"):
        out[name].append(iid)
    return out


def may_delete_selection(selection: dict[str, Any], by: User | None) -> bool:
    """Whether ``by`` may delete it: its maker, an administrator, or local use (``None``)."""
    return by is None or by.admin or (bool(by.name) and same_identity(selection["created_by"], by.name))


def delete_selection(db: Database, name: str, *, by: User | None = None) -> dict[str, Any]:
    """Delete a selection (never its images or particles): only its maker or an
    administrator (:class:`Forbidden` otherwise); ``by=None`` is the trusted CLI."""
    s = find_selection(db, name)
    if not may_delete_selection(s, by):
        require_admin(by, f"delete the selection {s['name']!r} (made by {s['created_by']!r})")
    with write_tx(db, "deleting a selection"):
        db.execute("DELETE FROM particle_selection_images WHERE selection_id = ?", [s["id"]])
        db.execute("DELETE FROM particle_selections WHERE id = ?", [s["id"]])
    return {"deleted": s["name"], "images": s["images"]}
