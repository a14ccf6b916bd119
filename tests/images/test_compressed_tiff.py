"""Real instrument TIFFs are usually compressed: every common compression decodes to the same
stored values as the uncompressed file (lossless ones exactly, JPEG within its loss), 8- and
16-bit, striped and tiled, with the instrument's metadata still read — through imagecodecs,
never tifffile's pure-Python fallback (0.5 s per image, issue 13)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from core.images import read_frame, read_image

LOSSLESS = ["packbits", "lzw", "deflate", "zstd", "lzma"]


def micrograph(dtype: str, h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """SEM-like: blobs on a gradient, shot noise, a few saturated pixels, a dark data bar."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = 0.3 + 0.2 * xx / w
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, 10)
        a += 0.4 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    a += rng.normal(0, 0.04, (h, w))
    a[-12:] = 0.02
    top = 255 if dtype == "uint8" else 65535
    out = (np.clip(a, 0, 1) * top).astype(dtype)
    out.flat[rng.integers(0, h * w, 5)] = top
    return out


@pytest.mark.parametrize("tiled", [False, True], ids=["strips", "tiles"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
@pytest.mark.parametrize("compression", LOSSLESS)
def test_lossless_compressions_decode_to_the_stored_values(tmp_path: Path, compression, dtype, tiled):
    arr = micrograph(dtype)
    plain, packed = tmp_path / "plain.tif", tmp_path / f"{compression}.tif"
    kw = {"tile": (32, 32)} if tiled else {"rowsperstrip": 16}
    tifffile.imwrite(plain, arr, **kw)
    tifffile.imwrite(packed, arr, compression=compression, **kw)
    with tifffile.TiffFile(packed) as tf:  # really written compressed
        assert tf.pages[0].compression.name.lower().startswith(compression[:4].lower())
    a, b = read_frame(plain), read_frame(packed)
    np.testing.assert_array_equal(b.raw, a.raw)
    assert (b.lo, b.hi, b.bit_depth) == (a.lo, a.hi, a.bit_depth)
    ia, ib = read_image(plain), read_image(packed)
    np.testing.assert_array_equal(ib.data, ia.data)
    assert (ib.raw_dtype, ib.databar_px) == (dtype, ia.databar_px)


@pytest.mark.parametrize("bits", [8, 12])
def test_jpeg_compressed_tiff_decodes_within_its_loss(tmp_path: Path, bits):
    arr = micrograph("uint8" if bits == 8 else "uint16")
    if bits == 12:
        arr = (arr >> 4).astype(np.uint16)  # 12-bit samples in 16-bit words, as JPEG-12 stores them
    p = tmp_path / f"jpeg{bits}.tif"
    tifffile.imwrite(p, arr, compression="jpeg", compressionargs={"level": 95}, bitspersample=bits,
                     photometric="minisblack", rowsperstrip=16)
    raw = read_frame(p).raw.astype(np.float64)
    scan_rows = raw.shape[0]
    err = np.abs(raw - arr[:scan_rows].astype(np.float64)) / (2 ** bits - 1)
    assert err.mean() < 0.01 and np.percentile(err, 99) < 0.06


def test_compressed_real_instrument_tiff_keeps_its_metadata(tmp_path: Path, sem_fixtures):
    """A real FEI / Zeiss / ImageJ file re-saved with Deflate (its instrument tags copied) reads
    the same pixels, pixel size and data bar as the original."""
    done = 0
    for src in sorted(sem_fixtures.glob("*.tif")):
        with tifffile.TiffFile(src) as tf:
            page = tf.pages[0]
            if int(page.compression) != 1 or page.samplesperpixel != 1:
                continue
            data = page.asarray()
            extra = []
            for t in page.tags.values():  # FEI, Zeiss, ImageJ metadata: copied as stored
                if t.code in (34682, 34118, 50838, 50839):
                    size = t.count * struct.calcsize("<" + tifffile.TIFF.DATA_FORMATS[t.dtype])
                    tf.filehandle.seek(t.valueoffset)
                    extra.append((t.code, t.dtype, t.count, tf.filehandle.read(size), True))
            desc = page.description
            tags = page.tags
            res: dict = {}
            if int(page.photometric) == 3:  # a palette image (Zeiss): the colormap comes along
                res.update(photometric="palette", colormap=page.colormap)
            if "XResolution" in tags and "YResolution" in tags:  # ImageJ's pixel size lives here
                res.update(resolution=(tags["XResolution"].value, tags["YResolution"].value),
                           resolutionunit=tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 1)
        dst = tmp_path / f"deflate_{src.name}"
        tifffile.imwrite(dst, data, compression="deflate", description=desc or None, extratags=extra,
                         metadata=None, **res)
        a, b = read_image(src), read_image(dst)
        assert (b.pixel_size_m, b.instrument, b.databar_px, b.databar_source) == (
            a.pixel_size_m, a.instrument, a.databar_px, a.databar_source), src.name
        np.testing.assert_array_equal(b.data, a.data, err_msg=src.name)
        done += 1
    assert done >= 2, "expected at least two uncompressed grey fixtures to re-compress"


def test_compressed_tiffs_do_not_fall_back_to_pure_python():
    import imagecodecs

    for name in ("PACKBITS", "LZW", "ZLIB", "ZSTD", "LZMA", "JPEG8"):
        assert getattr(imagecodecs, name).available, f"imagecodecs lacks {name}"
    for code in (5, 8, 32773):  # LZW, Deflate, PackBits: tifffile decodes them with imagecodecs
        assert tifffile.TIFF.DECOMPRESSORS[code].__module__ == "imagecodecs"

