"""Decode any SEM image file into a :class:`SemImage`: clean pixels plus what the instrument said.

TIFF goes through ``tifffile`` (pages, FEI / Zeiss ``CZ_SEM`` / ImageJ metadata, resolution tags;
Pillow decodes the pixels when a codec needs ``imagecodecs``); PNG, JPEG and BMP go through Pillow.
Every failure becomes :class:`core.errors.ImageReadError` with a reason in plain words; malformed
SEM metadata is never fatal (the value is dropped and a warning recorded).

Pixels: 8-bit images map to ``value / 255`` as the instrument gave them; 16-bit, 32-bit and float
images are windowed to [0, 1] by robust percentiles computed on the scan area (data bar excluded).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tifffile
from PIL import BmpImagePlugin, Image, ImageFile, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from core.errors import ImageReadError

__all__ = [
    "SemImage",
    "detect_databar",
    "encode_png",
    "read_image",
    "sha256_file",
    "thumbnail_jpeg",
    "to_uint8",
    "window",
]

MAX_DATABAR_FRACTION = 0.25
"""A data bar is never taller than this fraction of the image height."""

_SNIFF = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF
    (b"MM\x00+", "TIFF"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
)
_PIL_CLASSES: dict[str, type[ImageFile.ImageFile]] = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.JpegImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"
_LENGTH_UNITS_M = {
    "m": 1.0,
    "meter": 1.0,
    "metre": 1.0,
    "cm": 1e-2,
    "mm": 1e-3,
    "um": 1e-6,
    "µm": 1e-6,  # micro sign
    "μm": 1e-6,  # Greek mu
    "\\u00b5m": 1e-6,  # ImageJ escapes the micro sign
    "micron": 1e-6,
    "microns": 1e-6,
    "micrometer": 1e-6,
    "nm": 1e-9,
    "nanometer": 1e-9,
    "pm": 1e-12,
    "fm": 1e-15,
    "å": 1e-10,
    "angstrom": 1e-10,
    "inch": 0.0254,
    "in": 0.0254,
}
_PLAUSIBLE_PIXEL_M = (1e-13, 1.0)


# --------------------------------------------------------------------------------------------
# The decoded image


@dataclass
class SemImage:
    """One decoded SEM image: windowed grey pixels plus what the file said about them."""

    path: str
    data: np.ndarray  # 2-D float32 in [0, 1]: full frame incl. data bar, first page, windowed
    raw_dtype: str  # numpy dtype name of the stored pixels: 'uint8', 'uint16', 'float32', ...
    bit_depth: int  # bits per stored sample: 1, 8, 16, 32, ...
    width: int
    height: int
    pages: int  # page count of a multi-page TIFF (the first page is used), else 1
    instrument: str | None  # 'FEI', 'Zeiss', 'ImageJ', or None
    pixel_size_m: float | None  # metres per pixel of the saved image; None when unknown
    pixel_size_source: str | None  # where pixel_size_m came from, in words
    databar_px: int  # rows at the bottom that are the instrument's data bar (0 when none)
    databar_source: str  # 'metadata' | 'heuristic' | 'none' (always 'none' when databar_px == 0)
    metadata: dict[str, Any] = field(default_factory=dict)  # small JSON-serialisable summary
    warnings: list[str] = field(default_factory=list)

    @property
    def scan(self) -> np.ndarray:
        """The micrograph without the data bar (a view)."""
        return self.data[: self.height - self.databar_px]

    @property
    def databar(self) -> np.ndarray | None:
        """The data bar strip (a view), or None when there is none."""
        if self.databar_px <= 0:
            return None
        return self.data[self.height - self.databar_px :]


@dataclass
class _Decoded:
    """Pixels as decoded, before windowing, plus the metadata found on the way."""

    grey: np.ndarray  # 2-D; uint8 when ``scale`` is set, else raw grey values
    scale: float | None  # multiply by this instead of windowing (8-bit: 1/255, 1-bit: 1)
    raw_dtype: str
    bit_depth: int
    pages: int = 1
    instrument: str | None = None
    pixel_size_m: float | None = None
    pixel_size_source: str | None = None
    databar_px: int | None = None  # from metadata; None: ask the heuristic
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Public API


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = 200_000_000,
    max_bytes: int | None = None,
) -> SemImage:
    """Decode an SEM image file (TIFF, PNG, JPEG, BMP) into a :class:`SemImage`.

    Raises :class:`ImageReadError` for every failure (missing, empty, not an image, truncated,
    corrupt, above ``max_pixels`` = width x height or ``max_bytes``, unsupported layout).
    The pixel limit is checked from the header, before any pixel data is decoded.
    """
    p = os.fspath(path)
    size = _check_file(p, max_bytes)
    head = _read_head(p)
    kind = _sniff(head)
    if kind is None:
        raise ImageReadError(p, f"not an image file (starts with {head[:8]!r})")
    try:
        if kind == "TIFF":
            dec = _decode_tiff(p, size, head, max_pixels)
        else:
            dec = _decode_pillow(p, kind, max_pixels)
        return _finish(p, dec)
    except ImageReadError:
        raise
    except MemoryError:
        raise ImageReadError(p, f"not enough memory to decode this {kind} image") from None
    except Image.DecompressionBombError as e:  # only if a Pillow plugin checks on its own
        raise ImageReadError(
            p, f"image too large to decode safely ({e}); our limit is {max_pixels:,} pixels"
        ) from None
    except Exception as e:  # every decoder failure becomes our error, with its reason
        raise ImageReadError(p, _describe_decode_error(kind, e)) from e


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (OSError propagates)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def window(arr: np.ndarray, lo_pct: float = 0.5, hi_pct: float = 99.5) -> np.ndarray:
    """Map ``arr`` to float32 [0, 1] between its ``lo_pct`` and ``hi_pct`` percentiles.

    Values outside the window are clipped; NaN becomes 0, +inf 1, -inf 0. When the percentiles
    coincide the finite min / max are used instead; a constant image gives zeros.
    """
    a = np.asarray(arr)
    lo, hi = _percentiles(a, lo_pct, hi_pct)
    return _apply_window(a, lo, hi)


def detect_databar(arr2d: np.ndarray) -> int:
    """Height in rows of an instrument data bar at the bottom of ``arr2d`` (0 when none found).

    A data bar is a full-width strip of at most 25% of the height whose rows are mostly one exact
    value at an extreme of the image's range (black or white background), holding high-contrast
    marks (text, scale bar), and separated from the micrograph by a sharp horizontal boundary.
    Conservative: anything ambiguous returns 0, since a false bar would cut real data.
    """
    a = np.asarray(arr2d)
    if a.ndim != 2:
        raise ValueError(f"detect_databar expects a 2-D array, got shape {a.shape}")
    h, w = a.shape
    if h < 32 or w < 32 or a.dtype.kind not in "biuf":
        return 0
    max_bar = int(h * MAX_DATABAR_FRACTION)
    ctx = max(4, math.ceil(h * 0.03))
    r0 = max(0, h - max_bar - ctx - 1)
    region = a[r0:]
    if w > 1024:  # a column subsample is plenty for row statistics
        region = region[:, :: -(-w // 1024)]
    if region.dtype == np.bool_:
        region = region.view(np.uint8)
    mf, mode = _row_modes(region)
    n = len(mf)

    # 1. From the bottom, climb through bar-like rows (mostly one exact value). Allowed: a few
    #    stray rows below the bar (some instruments leave one) and short runs of weaker rows
    #    (dense text) when a bar-like row lies above them.
    strong = mf >= 0.5
    weak = mf >= 0.2
    skip = max(2, h // 200)
    max_gap = max(5, h // 40)
    i = n - 1
    while i >= 0 and not weak[i] and (n - 1 - i) < skip:
        i -= 1
    end = i + 1  # rows [end, n) are strays, not bar
    gap = 0
    while i >= 0 and weak[i] and not strong[i] and gap < max_gap:
        i -= 1
        gap += 1
    if i < 0 or not strong[i]:
        return 0
    top = i
    j = i - 1
    while j >= 0:
        if strong[j]:
            top = j
            j -= 1
            continue
        gap = 0
        while j - gap >= 0 and weak[j - gap] and not strong[j - gap] and gap <= max_gap:
            gap += 1
        if 0 < gap <= max_gap and j - gap >= 0 and strong[j - gap]:
            j -= gap
            continue
        break
    if top < n - max_bar or top < ctx:
        return 0  # bar-like rows run higher than any data bar: a flat image, not a bar
    if np.count_nonzero(strong[top:end]) < 0.4 * (end - top):
        return 0

    # 2. A sharp, straight boundary: the rows just above the band are clearly micrograph
    #    (few repeated values), or the band starts with uniform rows right under rows that
    #    are far from uniform (a dark micrograph over a black bar).
    above = mf[top - ctx : top]
    clear = mf[top - 1] < 0.3 and float(np.median(above)) < 0.2
    jump = (
        float(mf[top : top + 2].min()) >= 0.95
        and mf[top - 1] <= 0.5
        and float(np.median(above)) <= 0.4
    )
    if not (clear or jump):
        return 0
    if float(mf[top:end].mean()) - float(above.mean()) < 0.3:
        return 0  # not much flatter than the micrograph above it (e.g. scan-line noise)

    # 3. Background at an extreme of the micrograph's range, and high-contrast marks on it.
    band_modes = mode[top:end][strong[top:end]]
    values, counts = np.unique(band_modes, return_counts=True)
    bg = float(values[np.argmax(counts)])
    scan_rows = a[max(0, r0 + top - max_bar) : r0 + top]
    sample = _sample(scan_rows, 65536)
    sample = sample[np.isfinite(sample)] if sample.dtype.kind == "f" else sample
    if sample.size == 0:
        return 0
    p5, p95 = (float(v) for v in np.percentile(sample, [5.0, 95.0]))
    if p5 < bg < p95:
        return 0
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    span = max(hi, bg) - min(lo, bg)
    if not math.isfinite(span) or span <= 0:
        return 0
    band = region[top:end].astype(np.float32)
    dist = np.abs(band - np.float32(bg))
    ink = dist > 0.25 * span
    if not 0.002 <= float(ink.mean()) <= 0.6:
        return 0

    # 4. Trim flat micrograph rows (e.g. saturated) caught at the top: the bar's own rows are
    #    drawn in its two colours, background and ink (a frame line, a margin, text).
    ink_values, ink_counts = np.unique(band[ink], return_counts=True)
    ink_value = np.float32(ink_values[np.argmax(ink_counts)])
    tol = 0.02 * span
    in_palette = ((dist <= tol) | (np.abs(band - ink_value) <= tol)).mean(axis=1)
    keep = np.flatnonzero(in_palette >= 0.9)
    if keep.size == 0:
        return 0
    cut = int(keep[0])
    top += cut
    bar = h - (r0 + top)
    if bar < max(6, math.ceil(h * 0.02)):
        return 0
    # 5. Overall, the strip must look drawn: mostly uniform rows in mostly two colours.
    if float(mf[top:end].mean()) < 0.45 or float(in_palette[cut:].mean()) < 0.55:
        return 0
    return int(bar)


def to_uint8(arr01: np.ndarray) -> np.ndarray:
    """float [0, 1] -> uint8 [0, 255], rounded; out-of-range values clipped, NaN -> 0."""
    out = np.multiply(arr01, 255.0, dtype=np.float32)
    out += 0.5
    np.clip(out, 0.0, 255.0, out=out)
    np.nan_to_num(out, copy=False, nan=0.0)
    return out.astype(np.uint8)


def thumbnail_jpeg(arr01: np.ndarray, max_side: int = 256, quality: int = 85) -> bytes:
    """A grey JPEG no larger than ``max_side`` on its longest side (aspect ratio kept).

    A frame of at least twice ``max_side`` (float32 in [0, 1], as decoded) is first averaged over
    whole k×k blocks in float, leaving at most 2× for the Lanczos filter: no full-size 8-bit
    copy is made, 8× faster on a 1024×768 frame (bench/ingest_predict.py)."""
    if np.ndim(arr01) != 2:
        raise ValueError(f"thumbnail_jpeg expects a 2-D image, got shape {np.shape(arr01)}")
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1, got {max_side!r}")
    k = max(np.shape(arr01)) // max_side
    if k >= 2 and arr01.dtype == np.float32 and 0.0 <= float(arr01.min()) and float(arr01.max()) <= 1.0:
        arr01 = np.asarray(Image.fromarray(np.ascontiguousarray(arr01), mode="F").reduce(k))
    im = Image.fromarray(to_uint8(arr01), mode="L")
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def encode_png(arr01: np.ndarray) -> bytes:
    """The full-resolution image as an 8-bit grey PNG (for display)."""
    if np.ndim(arr01) != 2:
        raise ValueError(f"encode_png expects a 2-D image, got shape {np.shape(arr01)}")
    buf = io.BytesIO()
    Image.fromarray(to_uint8(arr01), mode="L").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# File checks


def _check_file(p: str, max_bytes: int | None) -> int:
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise ImageReadError(p, "no such file") from None
    except PermissionError:
        raise ImageReadError(p, "permission denied") from None
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise ImageReadError(
            p, f"cannot access the file ({getattr(e, 'strerror', None) or e})"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(p, "is a directory, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(p, "not a regular file")
    if st.st_size == 0:
        raise ImageReadError(p, "empty file (0 bytes)")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ImageReadError(
            p, f"file is {st.st_size:,} bytes, above the limit of {max_bytes:,} bytes"
        )
    return int(st.st_size)


def _read_head(p: str) -> bytes:
    try:
        with open(p, "rb") as fh:
            return fh.read(16)
    except PermissionError:
        raise ImageReadError(p, "permission denied") from None
    except OSError as e:
        raise ImageReadError(p, f"cannot read the file ({e.strerror or e})") from None


def _sniff(head: bytes) -> str | None:
    for magic, kind in _SNIFF:
        if head.startswith(magic):
            return kind
    return None


def _check_pixels(p: str, w: int, h: int, max_pixels: int) -> None:
    if w <= 0 or h <= 0:
        raise ImageReadError(p, f"image header gives an invalid size {w} x {h}")
    if w * h > max_pixels:
        raise ImageReadError(
            p, f"image is {w} x {h} = {w * h:,} pixels, above the limit of {max_pixels:,}"
        )


def _describe_decode_error(kind: str, e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    if len(msg) > 200:
        msg = msg[:200] + "…"
    low = msg.lower()
    if "truncat" in low or "failed to read" in low or isinstance(e, EOFError):
        return f"truncated {kind}: {msg}"
    if "imagecodecs" in low:
        return f"unsupported {kind} compression: {msg}"
    if isinstance(e, SyntaxError):  # Pillow's way of saying the header does not parse
        return f"corrupt {kind} header ({msg})"
    return f"corrupt {kind} data ({type(e).__name__}: {msg})"


# --------------------------------------------------------------------------------------------
# TIFF


def _decode_tiff(p: str, size: int, head: bytes, max_pixels: int) -> _Decoded:
    _check_tiff_header(p, size, head)
    log: list[str] = []
    with _tifffile_warnings(log), tifffile.TiffFile(p) as tif:
        pages = len(tif.pages)
        if pages == 0:
            raise ImageReadError(p, "TIFF file holds no image")
        page = tif.pages.first
        h, w = int(page.imagelength), int(page.imagewidth)
        _check_pixels(p, w, h, max_pixels)
        if page.imagedepth > 1:
            raise ImageReadError(p, f"unsupported TIFF: a volume of depth {page.imagedepth}")
        _check_tiff_segments(p, page, size)
        dec = _tiff_pixels(p, page)
        dec.pages = pages
        _tiff_metadata(tif, page, dec, w, h)
    dec.warnings.extend(m for m in dict.fromkeys(log) if m)  # de-duplicated, in order
    return dec


def _check_tiff_header(p: str, size: int, head: bytes) -> None:
    order = "<" if head[:2] == b"II" else ">"
    bigtiff = head[2:4] in (b"+\x00", b"\x00+")
    need = 16 if bigtiff else 8
    if size < need:
        raise ImageReadError(p, f"truncated TIFF: only {size} bytes, not even a full header")
    offset = int.from_bytes(
        head[8:16] if bigtiff else head[4:8], "little" if order == "<" else "big"
    )
    if offset == 0:
        raise ImageReadError(p, "corrupt TIFF: the header points to no image directory")
    if offset + 2 > size:
        raise ImageReadError(
            p,
            f"truncated TIFF: the image directory should be at byte {offset:,}, "
            f"but the file has only {size:,} bytes",
        )


def _check_tiff_segments(p: str, page: tifffile.TiffPage, size: int) -> None:
    offsets = page.dataoffsets
    counts = page.databytecounts
    total = found = 0
    for off, cnt in zip(offsets, counts):
        if cnt <= 0:
            continue
        total += cnt
        found += max(0, min(off + cnt, size) - off)
    if found < total:
        raise ImageReadError(
            p, f"truncated TIFF (expected {total:,} bytes of image data, found {found:,})"
        )


def _tiff_pixels(p: str, page: tifffile.TiffPage) -> _Decoded:
    """Decode the first page's pixels to grey; Pillow takes over when tifffile cannot."""
    photometric = int(page.photometric)
    if photometric not in (0, 1, 2, 3):  # YCbCr, CMYK, CIELab, ...: let Pillow convert
        try:
            return _pillow_pixels(p, "TIFF", 1)
        except Exception as e:
            name = getattr(page.photometric, "name", photometric)
            raise ImageReadError(
                p, f"unsupported TIFF colour model {name} ({type(e).__name__}: {e})"
            ) from e
    try:
        arr = page.asarray()
    except (KeyError, ValueError, ImportError) as e:
        if "imagecodecs" in str(e) or isinstance(e, ImportError):
            return _pillow_pixels(p, "TIFF", 1)  # LZW / JPEG / ... without imagecodecs
        raise
    bits = (
        int(page.bitspersample) if isinstance(page.bitspersample, int) else arr.dtype.itemsize * 8
    )
    axes = str(page.axes)
    if arr.ndim == 3 and "S" in axes and axes.replace("S", "") == "YX":
        if axes.index("S") == 0:
            arr = np.moveaxis(arr, 0, -1)
    elif arr.ndim != 2:
        raise ImageReadError(
            p, f"unsupported TIFF layout: first page has shape {arr.shape} (axes {axes!r})"
        )
    raw_dtype = arr.dtype.name
    if photometric == 3:  # palette: map through the colour map's luminance
        return _palette_to_grey(p, arr, page.colormap, bits)
    if arr.ndim == 3:
        if photometric == 2 and arr.shape[2] >= 3:
            grey = _luminance(arr[..., :3])
        else:  # grey + extra samples (alpha): keep the grey channel
            grey = arr[..., 0]
    else:
        grey = arr
    if photometric == 0:  # MINISWHITE: 0 is white
        grey = _invert(grey)
    return _grey_decoded(np.ascontiguousarray(grey), raw_dtype, bits)


def _palette_to_grey(p: str, idx: np.ndarray, colormap: np.ndarray | None, bits: int) -> _Decoded:
    if idx.ndim != 2 or idx.dtype.kind not in "ub":
        raise ImageReadError(p, f"unsupported TIFF palette image of shape {idx.shape}")
    if colormap is None:
        dec = _grey_decoded(idx, idx.dtype.name, bits)
        dec.warnings.append("palette TIFF without a colour map; indices read as grey levels")
        return dec
    cm = np.asarray(colormap, dtype=np.float32).reshape(3, -1)
    full = 255.0 if float(cm.max(initial=0.0)) < 256 else 65535.0
    lum = (_LUMA @ cm) / full  # one grey value per palette entry
    index = idx.astype(np.intp, copy=False) if idx.dtype == np.bool_ else idx
    if lum.size <= 256:
        lut = np.clip(np.rint(lum * 255.0), 0, 255).astype(np.uint8)
        if lut.size == 256 and index.dtype == np.uint8:
            identity = np.array_equal(lut, np.arange(256, dtype=np.uint8))
            grey = index if identity else lut[index]  # grey ramps are the common case
        else:
            grey = np.take(lut, index, mode="clip")
        return _Decoded(grey=grey, scale=1.0 / 255.0, raw_dtype="uint8", bit_depth=bits)
    grey = np.take(np.clip(lum, 0.0, 1.0).astype(np.float32), index, mode="clip")
    return _Decoded(grey=grey, scale=1.0, raw_dtype=idx.dtype.name, bit_depth=bits)


def _tiff_metadata(
    tif: tifffile.TiffFile, page: tifffile.TiffPage, dec: _Decoded, w: int, h: int
) -> None:
    """Instrument, pixel size, data bar and summary from FEI / Zeiss / ImageJ metadata."""
    try:
        fei = tif.fei_metadata if tif.is_fei else None
        if fei:
            _fei_metadata(fei, dec, w, h)
            return
        sem = tif.sem_metadata if tif.is_sem else None
        if sem:
            _zeiss_metadata(sem, dec, w)
            return
        ij = tif.imagej_metadata if tif.is_imagej else None
        if ij is not None:
            _imagej_metadata(ij, page, dec)
    except Exception as e:  # noqa: BLE001 - metadata problems are never fatal
        dec.warnings.append(f"could not read the instrument metadata ({type(e).__name__}: {e})")


@contextlib.contextmanager
def _tifffile_warnings(sink: list[str]) -> Iterator[None]:
    """Collect tifffile's logged warnings raised in this thread (ingest reads in threads)."""
    handler = _ThreadLogCollector(sink)
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


class _ThreadLogCollector(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink
        self.thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.sink.append(f"tifffile: {record.getMessage()[:200]}")


# --------------------------------------------------------------------------------------------
# Pillow (PNG, JPEG, BMP; TIFF pixels when tifffile lacks a codec)


def _decode_pillow(p: str, kind: str, max_pixels: int) -> _Decoded:
    with open(p, "rb") as fh:
        im = _pil_open(fh, kind)
        _check_pixels(p, im.size[0], im.size[1], max_pixels)
        return _pil_to_decoded(im, kind)


def _pillow_pixels(p: str, kind: str, pages: int) -> _Decoded:
    """Pixels only (the caller already checked the size); used for exotic TIFFs."""
    with open(p, "rb") as fh:
        im = _pil_open(fh, kind)
        dec = _pil_to_decoded(im, kind)
    dec.pages = pages
    return dec


def _pil_open(fh: Any, kind: str) -> ImageFile.ImageFile:
    # The plugin class parses the header only and, unlike Image.open, applies no global
    # MAX_IMAGE_PIXELS check: our own max_pixels is the one limit, checked before load().
    return _PIL_CLASSES[kind](fh)


def _pil_to_decoded(im: ImageFile.ImageFile, kind: str) -> _Decoded:
    mode = im.mode
    if mode == "1":
        grey = np.asarray(im, dtype=np.uint8)
        return _Decoded(grey=grey, scale=1.0, raw_dtype="bool", bit_depth=1)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        grey = np.asarray(im).astype(np.uint16, copy=False)
        return _grey_decoded(grey, "uint16", 16)
    if mode == "I":
        grey = np.asarray(im)
        if kind == "PNG":  # PNG has no 32-bit samples: Pillow's "I" holds 16-bit data
            return _grey_decoded(grey.astype(np.uint16), "uint16", 16)
        return _grey_decoded(grey, grey.dtype.name, 32)
    if mode == "F":
        return _grey_decoded(np.asarray(im, dtype=np.float32), "float32", 32)
    grey_im: Image.Image = im
    if mode != "L":
        im.load()
        if mode not in ("RGB", "RGBA", "RGBX", "LA", "P"):
            grey_im = im.convert("RGBA" if "A" in mode else "RGB")
        grey_im = grey_im.convert("L")
    grey = np.asarray(grey_im, dtype=np.uint8)
    return _Decoded(grey=grey, scale=1.0 / 255.0, raw_dtype="uint8", bit_depth=8)


# --------------------------------------------------------------------------------------------
# Pixels


def _grey_decoded(grey: np.ndarray, raw_dtype: str, bits: int) -> _Decoded:
    if grey.dtype == np.bool_:
        return _Decoded(grey=grey.view(np.uint8), scale=1.0, raw_dtype="bool", bit_depth=1)
    if grey.dtype == np.uint8:
        full = (1 << bits) - 1 if 0 < bits < 8 else 255  # 2- or 4-bit grey: full range too
        return _Decoded(grey=grey, scale=1.0 / full, raw_dtype=raw_dtype, bit_depth=bits)
    return _Decoded(grey=grey, scale=None, raw_dtype=raw_dtype, bit_depth=bits)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").convert("L"))
    return rgb.astype(np.float32) @ _LUMA


def _invert(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return ~a
    if a.dtype.kind == "u":
        return np.iinfo(a.dtype).max - a
    return -a.astype(np.float32) if a.dtype.kind == "i" else -a


def _finish(p: str, dec: _Decoded) -> SemImage:
    grey = dec.grey
    h, w = grey.shape
    bar = dec.databar_px
    source = "metadata"
    if bar is None:
        bar = detect_databar(grey)
        source = "heuristic"
    if bar <= 0:
        bar, source = 0, "none"
    if dec.scale is not None:
        data = np.multiply(grey, np.float32(dec.scale), dtype=np.float32)
        np.clip(data, 0.0, 1.0, out=data)
    else:
        lo, hi = _percentiles(grey[: h - bar], 0.5, 99.5)
        if hi <= lo and bar:  # a blank scan area: window on the whole frame to keep the bar
            lo, hi = _percentiles(grey, 0.5, 99.5)
        data = _apply_window(grey, lo, hi)
    return SemImage(
        path=p,
        data=data,
        raw_dtype=dec.raw_dtype,
        bit_depth=int(dec.bit_depth),
        width=int(w),
        height=int(h),
        pages=int(dec.pages),
        instrument=dec.instrument,
        pixel_size_m=dec.pixel_size_m,
        pixel_size_source=dec.pixel_size_source if dec.pixel_size_m is not None else None,
        databar_px=int(bar),
        databar_source=source,
        metadata=_jsonable(dec.metadata),
        warnings=list(dec.warnings),
    )


def _sample(a: np.ndarray, n: int) -> np.ndarray:
    """At most about ``n`` values of ``a``, evenly spread (a stride that avoids column aliasing)."""
    flat = a.reshape(-1)
    if flat.size <= n:
        return flat
    step = flat.size // n + 1
    width = a.shape[-1] if a.ndim > 1 else 1
    while width > 1 and math.gcd(step, width) != 1:
        step += 1
    return flat[::step]


def _percentiles(a: np.ndarray, lo_pct: float, hi_pct: float) -> tuple[float, float]:
    """Robust (lo, hi) of the finite values of ``a``; falls back to min / max when they meet."""
    if a.size == 0:
        return 0.0, 0.0
    if a.dtype.kind in "ub" and a.dtype.itemsize <= 2:
        counts = np.bincount(a.reshape(-1).view(np.uint8) if a.dtype == np.bool_ else a.reshape(-1))
        cdf = np.cumsum(counts)
        total = int(cdf[-1])
        lo = float(np.searchsorted(cdf, total * lo_pct / 100.0, side="left"))
        hi = float(np.searchsorted(cdf, total * hi_pct / 100.0, side="left"))
        if hi <= lo:
            nz = np.flatnonzero(counts)
            lo, hi = float(nz[0]), float(nz[-1])
        return lo, hi
    s = _sample(a, 1 << 18)
    if s.dtype.kind == "f":
        s = s[np.isfinite(s)]
    if s.size == 0:
        return 0.0, 0.0
    lo, hi = (float(v) for v in np.percentile(s, [lo_pct, hi_pct]))
    if hi <= lo:
        lo, hi = float(s.min()), float(s.max())
    return lo, hi


def _apply_window(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(a - lo) / (hi - lo) as float32, clipped to [0, 1]; NaN -> 0; zeros when hi <= lo."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return np.zeros(a.shape, dtype=np.float32)
    out = np.subtract(a, lo, dtype=np.float32)
    out *= np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    if a.dtype.kind == "f":
        np.nan_to_num(out, copy=False, nan=0.0)
    return out


def _row_modes(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: fraction of pixels equal to the row's most common value, and that value."""
    n, w = region.shape
    if region.dtype == np.uint8:
        keys = (np.arange(n, dtype=np.intp)[:, None] << 8) | region
        counts = np.bincount(keys.reshape(-1), minlength=n << 8).reshape(n, 256)
        return counts.max(axis=1) / w, counts.argmax(axis=1).astype(np.float64)
    s = np.sort(region, axis=1)
    change = np.ones((n, w), dtype=bool)
    change[:, 1:] = s[:, 1:] != s[:, :-1]
    starts = np.flatnonzero(change.reshape(-1))
    lengths = np.diff(np.append(starts, n * w))
    first = np.searchsorted(starts, np.arange(n) * w)
    longest = np.maximum.reduceat(lengths, first)
    # Where one value fills at least half the row, the median is that value.
    return longest / w, s[:, w // 2].astype(np.float64)


# --------------------------------------------------------------------------------------------
# Instrument metadata


def _fei_metadata(md: dict[str, Any], dec: _Decoded, w: int, h: int) -> None:
    """FEI / Thermo: [Scan] PixelWidth; data bar = height - [Image] ResolutionY."""
    dec.instrument = "FEI"
    meta = dec.metadata

    def section(name: str) -> dict[str, Any]:
        sec = md.get(name)
        return sec if isinstance(sec, dict) else {}

    def num(sec: str, key: str) -> float | None:
        if key not in section(sec):
            return None
        v = section(sec)[key]
        f = _as_float(v)
        if f is None and not (isinstance(v, str) and not v.strip()):
            dec.warnings.append(f"malformed FEI metadata value [{sec}] {key}={v!r}; ignored")
        return f

    def text(sec: str, key: str) -> str | None:
        v = section(sec).get(key)
        return str(v).strip() if v not in (None, "") and str(v).strip() else None

    beam = text("Beam", "Beam")
    detector = text("Detectors", "Name")
    mode = text("Detectors", "Mode")
    if detector:
        meta["detector"] = f"{detector} ({mode})" if mode and mode != "None" else detector
    if beam:
        meta["beam"] = beam
    if (hv := num("Beam", "HV")) is not None:
        meta["hv_kV"] = hv / 1000.0
    if (wd := num("Stage", "WorkingDistance")) is not None:
        meta["wd_mm"] = wd * 1000.0
    date, time_ = text("User", "Date"), text("User", "Time")
    if date:
        meta["date"] = f"{date} {time_}" if time_ else date
    for key, sec, name in (
        ("system", "System", "SystemType"),
        ("software", "System", "Software"),
        ("user_text", "User", "UserText"),
    ):
        if (t := text(sec, name)) is not None:
            meta[key] = t

    is_nav = (
        "nav" in (detector or "").lower()
        or (beam or "").lower() in ("irbeam", "navcam", "nav-cam")
        or "Nav-Cam" in md
    )
    if beam and beam in md and not is_nav:
        if (hfw := num(beam, "HFW")) is not None:
            meta["hfw_m"] = hfw
        if (cur := num(beam, "BeamCurrent")) is not None:
            meta["beam_current_A"] = cur
    if (dwell := num("Scan", "Dwelltime")) is not None:
        meta["dwell_s"] = dwell

    # Pixel size of the saved image.
    res_x = num("Image", "ResolutionX")
    if is_nav:
        meta["note"] = (
            "navigation-camera image: no e-beam [Scan] section, so no pixel size is reported"
        )
        nav_hfw = num(beam, "HFW") if beam and beam in md else None
        if nav_hfw is not None:
            meta["nav_hfw_m"] = nav_hfw
    elif "Scan" not in md:
        meta["note"] = "no [Scan] section: pixel size unknown"
    else:
        pw = _plausible(num("Scan", "PixelWidth"), "FEI [Scan] PixelWidth", dec)
        ph = num("Scan", "PixelHeight")
        if pw is not None:
            source = "FEI [Scan] PixelWidth"
            if res_x is not None and res_x > 0 and int(res_x) != w:
                pw = pw * res_x / w  # saved at another width than scanned
                source = "FEI [Scan] PixelWidth x ResolutionX / image width"
            _set_pixel(dec, pw, source)
            if ph is not None and ph > 0 and abs(ph - pw) > 0.01 * pw and int(res_x or w) == w:
                dec.warnings.append(
                    f"FEI pixels are not square (PixelWidth {pw:.4g} m, PixelHeight {ph:.4g} m);"
                    " pixel_size_m is the width"
                )
        else:
            hfw = _plausible(num("Scan", "HorFieldsize"), "FEI [Scan] HorFieldsize", dec, 1.0 * w)
            if hfw is not None:
                _set_pixel(dec, hfw / w, "FEI [Scan] HorFieldsize / image width")

    # Data bar: the scan is ResolutionY rows, anything below it is the bar.
    res_y = num("Image", "ResolutionY")
    if res_y is not None and res_x is not None and int(res_x) != w:
        dec.warnings.append(
            f"FEI [Image] ResolutionX={int(res_x)} differs from the image width {w}: "
            "the image was resampled; data bar left to the heuristic"
        )
    elif res_y is not None:
        bar = h - int(res_y)
        if bar == 0:
            dec.databar_px = 0
        elif 0 < bar <= h * MAX_DATABAR_FRACTION:
            dec.databar_px = bar
        else:
            dec.warnings.append(
                f"FEI [Image] ResolutionY={int(res_y)} does not fit the image height {h}; "
                "data bar left to the heuristic"
            )


def _zeiss_metadata(md: dict[str, Any], dec: _Decoded, w: int) -> None:
    """Zeiss CZ_SEM: 'Image Pixel Size' if present, else 'Width' / image width."""
    dec.instrument = "Zeiss"
    meta = dec.metadata

    def entry(key: str, label: str) -> tuple[Any, str | None] | None:
        v = md.get(key)
        if v is None:  # older writers / readers: look the label up among the values
            for cand in md.values():
                if isinstance(cand, tuple) and cand and cand[0] == label:
                    v = cand
                    break
                if isinstance(cand, str) and re.match(rf"\s*{re.escape(label)}\s*[=:]", cand):
                    v = cand
                    break
        if v is None:
            return None
        return _zeiss_value(v, label)

    def quantity(key: str, label: str, units: dict[str, float]) -> float | None:
        e = entry(key, label)
        if e is None:
            return None
        value, unit = e
        f = _as_float(value)
        factor = units.get((unit or "").strip().lower()) if unit else None
        if f is None or factor is None:
            shown = f"{value} {unit}" if unit else f"{value}"
            dec.warnings.append(f"malformed Zeiss metadata value {label!r}={shown!r}; ignored")
            return None
        return f * factor

    lengths = {k.lower(): v for k, v in _LENGTH_UNITS_M.items()}
    ips = _plausible(
        quantity("ap_image_pixel_size", "Image Pixel Size", lengths),
        "Zeiss Image Pixel Size",
        dec,
        allow_zero=True,
    )
    width_m = _plausible(quantity("ap_width", "Width", lengths), "Zeiss Width", dec, 1.0 * w)
    if ips:
        _set_pixel(dec, ips, "Zeiss Image Pixel Size")
        if width_m and abs(width_m / w - ips) > 0.05 * ips:
            dec.warnings.append(
                f"Zeiss 'Image Pixel Size' ({ips:.4g} m) disagrees with Width / image width "
                f"({width_m / w:.4g} m); using Image Pixel Size"
            )
    elif width_m:
        _set_pixel(dec, width_m / w, "Zeiss Width / image width")
    if width_m:
        meta["hfw_m"] = width_m

    volts = {"kv": 1.0, "v": 1e-3, "mv": 1e3}
    if (eht := quantity("ap_actualkv", "EHT", volts)) is not None:
        meta["hv_kV"] = eht
    if (wd := quantity("ap_wd", "WD", {k: v * 1e3 for k, v in lengths.items()})) is not None:
        meta["wd_mm"] = wd
    mag = entry("ap_mag", "Mag")
    if mag is not None:
        m = _zeiss_magnification(mag)
        if m is None:
            dec.warnings.append(f"malformed Zeiss metadata value 'Mag'={mag[0]!r}; ignored")
        else:
            meta["magnification_x"] = m
    for key, label, name in (
        ("dp_detector_channel", "Signal A", "detector"),
        ("sv_serial_number", "Serial No.", "system"),
        ("dp_image_store", "Store resolution", "store_resolution"),
    ):
        e = entry(key, label)
        if e is not None and str(e[0]).strip():
            meta[name] = str(e[0]).strip()
    date, time_ = entry("ap_date", "Date"), entry("ap_time", "Time")
    if date is not None:
        meta["date"] = f"{date[0]} {time_[0]}" if time_ is not None else str(date[0])


def _zeiss_value(v: Any, label: str) -> tuple[Any, str | None]:
    """(value, unit) from ('Label', 11.65, 'nm'), ('Label', '11.65 nm'), 'Label = 11.65 nm'."""
    if isinstance(v, tuple):
        if len(v) >= 3:
            return v[1], str(v[2])
        if len(v) == 2:
            v = v[1]
        elif len(v) == 1:
            v = v[0]
    if isinstance(v, str):
        s = v.strip()
        if re.match(rf"{re.escape(label)}\s*[=:]", s):
            s = re.split(r"[=:]", s, maxsplit=1)[1].strip()
        parts = s.split()
        if len(parts) == 2 and _as_float(parts[0]) is not None:
            return parts[0], parts[1]
        return s, None
    return v, None


def _zeiss_magnification(mag: tuple[Any, str | None]) -> float | None:
    """105 'X' -> 105; '50.00 K X' -> 50000; '1.2 M X' -> 1.2e6."""
    value, unit = mag
    text = f"{value} {unit or ''}".strip()
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmM])?\s*[xX]?\s*", text)
    if not m or _as_float(m.group(1)) is None:
        return None
    f = float(m.group(1)) * {"k": 1e3, "m": 1e6}.get((m.group(2) or "").lower(), 1.0)
    return f if f > 0 else None


def _imagej_metadata(ij: dict[str, Any], page: tifffile.TiffPage, dec: _Decoded) -> None:
    """ImageJ: pixel size = 1 / XResolution in the description's ``unit``."""
    dec.instrument = "ImageJ"
    meta = dec.metadata
    if ij.get("ImageJ"):
        meta["imagej_version"] = str(ij["ImageJ"])
    images = ij.get("images")
    if isinstance(images, int) and images > dec.pages:
        dec.pages = images
    unit = str(ij.get("unit", "")).strip()
    if unit:
        meta["unit"] = unit
    resunit = int(page.resolutionunit)
    if resunit == 3:  # CENTIMETER tag wins over the description
        factor: float | None = 1e-2
    elif resunit == 2 and not unit:
        factor = None  # dots per inch of a print, not a physical pixel size
    else:
        factor = _LENGTH_UNITS_M.get(unit.lower()) if unit else None
    if factor is None:
        if unit and unit.lower() not in ("pixel", "pixels", "px"):
            dec.warnings.append(f"ImageJ unit {unit!r} is not a length unit; pixel size unknown")
        return
    xres, yres = page.get_resolution()
    if not (xres and xres > 0 and math.isfinite(xres)) or (xres == 1 and yres == 1):
        return  # tags absent (tifffile reports 1): uncalibrated
    px = _plausible(factor / float(xres), "ImageJ resolution tags", dec)
    if px is not None:
        _set_pixel(dec, px, "ImageJ resolution tags")
        if yres and abs(float(xres) - float(yres)) > 0.01 * float(xres):
            dec.warnings.append("ImageJ pixels are not square; pixel_size_m is the width")


def _as_float(v: Any) -> float | None:
    """A finite float from a number or numeric string, else None (bools are not numbers)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        f = float(v)
    elif isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            return None
    else:
        return None
    return f if math.isfinite(f) else None


def _plausible(
    v: float | None, what: str, dec: _Decoded, per: float = 1.0, *, allow_zero: bool = False
) -> float | None:
    """``v`` if ``v / per`` is a believable pixel size in metres, else None (with a warning)."""
    if v is None:
        return None
    if v == 0 and allow_zero:
        return None
    lo, hi = _PLAUSIBLE_PIXEL_M
    if not lo <= v / per <= hi:
        dec.warnings.append(f"implausible {what} = {v!r}; ignored")
        return None
    return v


def _set_pixel(dec: _Decoded, value: float, source: str) -> None:
    dec.pixel_size_m = float(value)
    dec.pixel_size_source = source


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, (np.integer, np.floating)):
            v = v.item()
        if isinstance(v, float) and not math.isfinite(v):
            continue
        if not isinstance(v, (str, int, float, bool)) and v is not None:
            v = str(v)
        out[str(k)] = v
    return out
