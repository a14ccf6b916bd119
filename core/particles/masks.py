"""Import of annotated masks: a folder of images, each with a Cellpose-style instance mask
beside it (``<stem>_masks.tif`` or ``<stem>_masks.png``: 0 = background, 1..N = one particle
each). Images not stored yet are ingested; each image's particles are stored as verified,
reviewer ``import``, in one transaction per image. A bad mask (not an integer label image, a
shape that differs from its image, a mask without an image) is reported by file name with the
reason and the rest of the folder goes on."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image
from sqlite_utils import Database

from core.config import Settings
from core.errors import ImageReadError, InvalidValue, SemTriageError
from core.files import sha256_file
from core.images import read_image
from core.intake import find_images, ingest
from core.particles.measure import measure
from core.particles.store import save_verified
from core.progress import Progress, counted

MASK_SUFFIXES = ("_masks.tif", "_masks.tiff", "_masks.png")
IMPORT_REVIEWER = "import"


@dataclass
class MaskImportReport:
    images: int = 0
    particles: int = 0
    ingested: int = 0
    without_mask: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        s = (f"{self.images} image(s) imported with {self.particles} verified particles "
             f"({self.ingested} newly ingested, {self.without_mask} image(s) without a mask)")
        if self.failed:
            s += f"; {len(self.failed)} failed: " + "; ".join(f"{p}: {r}" for p, r in self.failed[:3])
        return s

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        return d


def is_mask(path: Path) -> bool:
    return path.name.lower().endswith(MASK_SUFFIXES)


def read_mask(path: Path) -> np.ndarray:
    """An instance label image (int32) from a mask file; :class:`InvalidValue` naming the file
    when it is not one."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            a = tifffile.imread(path)
        else:
            with Image.open(path) as im:
                if im.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "P", "1"):
                    raise InvalidValue(f"mask {path.name!r} is a {im.mode} image; expected one "
                                       "grey integer channel (0 = background, 1..N = particles)")
                a = np.asarray(im)
    except InvalidValue:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is an unreadable mask
        raise InvalidValue(f"cannot read mask {path.name!r}: {type(e).__name__}: {e}") from None
    a = np.squeeze(a)
    if a.ndim != 2:
        raise InvalidValue(f"mask {path.name!r} has shape {a.shape}; expected a 2-D label image")
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise InvalidValue(f"mask {path.name!r} holds non-integer values; expected labels 0..N")
    elif a.dtype.kind not in "iub":
        raise InvalidValue(f"mask {path.name!r} has pixel type {a.dtype}; expected integers")
    if a.min() < 0:
        raise InvalidValue(f"mask {path.name!r} has negative labels")
    return a.astype(np.int32)


def _pairs(folder: Path) -> tuple[list[tuple[Path, Path]], list[Path], list[Path]]:
    files, _, _ = find_images([folder])
    masks = {f: None for f in files if is_mask(f)}
    images = [f for f in files if not is_mask(f)]
    by_stem: dict[tuple[Path, str], Path] = {(f.parent, f.stem): f for f in images}
    pairs, orphans = [], []
    used = set()
    for m in masks:
        low = m.name.lower()
        stem = m.name[: len(m.name) - len(next(s for s in MASK_SUFFIXES if low.endswith(s)))]
        img = by_stem.get((m.parent, stem))
        if img is None:
            orphans.append(m)
        else:
            pairs.append((img, m))
            used.add(img)
    return pairs, orphans, [f for f in images if f not in used]


def import_masks(db: Database, folder: str | Path, *, settings: Settings | None = None,
                 progress: Progress | None = None) -> MaskImportReport:
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InvalidValue(f"{str(folder)!r} is not a folder of images and masks")
    rep = MaskImportReport()
    pairs, orphans, lone = _pairs(folder)
    rep.without_mask = len(lone)
    for m in orphans:
        rep.failed.append((str(m), "mask without an image (expected <stem>.tif/.png beside it)"))
    if pairs:
        before = db.execute("SELECT count(*) FROM images").fetchone()[0]
        ing = ingest(db, [p for p, _ in pairs], settings=settings)
        rep.ingested = db.execute("SELECT count(*) FROM images").fetchone()[0] - before
        bad = dict(ing.failed)
    else:
        bad = {}
    for i, (img_path, mask_path) in enumerate(pairs):
        counted(progress, i, len(pairs), img_path.name)
        if str(img_path) in bad or str(img_path.resolve()) in bad:
            rep.failed.append((str(img_path), bad.get(str(img_path)) or bad[str(img_path.resolve())]))
            continue
        try:
            row = db.execute("SELECT id FROM images WHERE sha256 = ?", [sha256_file(img_path)]).fetchone()
            if row is None:
                raise InvalidValue("the image was not stored (see ingest errors)")
            img = read_image(img_path)
            lab = read_mask(mask_path)
            if lab.shape != (img.height, img.width):
                raise InvalidValue(f"mask shape {lab.shape[1]}×{lab.shape[0]} differs from its "
                                   f"image {img.width}×{img.height}")
            scan_lab = lab[: img.height - img.databar_px]
            parts = measure(_compact(scan_lab), img.scan, databar_px=img.databar_px)
            save_verified(db, int(row[0]), parts, reviewer=IMPORT_REVIEWER)
            rep.images += 1
            rep.particles += len(parts)
        except ImageReadError as e:
            rep.failed.append((str(img_path), e.reason))
        except SemTriageError as e:
            rep.failed.append((str(mask_path), str(e)))
    counted(progress, len(pairs), len(pairs), "done")
    return rep


def _compact(lab: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..N in order (any integer ids, gaps allowed)."""
    ids, inv = np.unique(lab, return_inverse=True)
    if ids.size and ids[0] != 0:
        inv = inv + 1
    return inv.reshape(lab.shape).astype(np.int32)
