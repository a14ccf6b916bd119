"""Bad and unusual input: no particles, one huge particle, 16-bit and float files, very large
frames (tiled), unreadable files in a batch (named, the rest goes on, nothing half stored)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from core import particles as P
from core.errors import InvalidValue
from core.intake import ingest

CLASSICAL = {"kind": "classical", "params": P.ClassicalParams().to_dict(), "version": "c"}


def discs(h, w, step=40, r=10):
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w), 0.2, np.float32)
    n = 0
    for cy in range(step // 2, h - r, step):
        for cx in range(step // 2, w - r, step):
            img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = 0.8
            n += 1
    return img, n


def test_no_particles_and_one_huge_particle():
    assert P.detect_array(np.full((128, 128), 0.3, np.float32), CLASSICAL) == []
    img = np.full((256, 256), 0.2, np.float32)
    yy, xx = np.mgrid[:256, :256]
    img[(xx - 128) ** 2 + (yy - 128) ** 2 <= 100 ** 2] = 0.8
    parts = P.detect_array(img, CLASSICAL)
    assert len(parts) == 1 and parts[0].ecd_px == pytest.approx(200, rel=0.03)


def test_very_large_frames_are_tiled_without_losing_or_doubling_particles():
    img, n = discs(1600, 1600, step=80)
    assert img.size > P.TILE_PIXELS
    parts = P.detect_array(img, CLASSICAL)
    assert len(parts) == n
    assert all(p.ecd_px == pytest.approx(20, rel=0.1) for p in parts)


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_16_bit_and_float_files(db, tmp_path, dtype):
    img, n = discs(200, 240)
    raw = (img * 60000).astype(np.uint16) if dtype == np.uint16 else img * 3.7 - 1.0
    folder = tmp_path / "deep"
    folder.mkdir()
    tifffile.imwrite(folder / "deep.tif", raw.astype(dtype))
    (folder / "broken.tif").write_bytes(b"II*\x00" + b"\x00" * 20)
    ingest(db, [folder])
    ids = P.select_images(db, all_images=True)
    rep = P.detect_images(db, ids + [999], method="classical")
    assert rep.detected == 1 and rep.particles == n
    assert any("999" in p for p, _ in rep.failed)
    rows = P.particle_rows(db, ids[0])
    assert rows[0]["ecd_nm"] is None  # no pixel size in the file: px only


def test_bad_scan_shape_is_refused():
    with pytest.raises(InvalidValue, match="too small"):
        P.detect_array(np.zeros((3, 3), np.float32), CLASSICAL)
