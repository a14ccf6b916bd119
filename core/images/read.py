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
import logging
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import tifffile
from PIL import BmpImagePlugin, Image, ImageFile, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from core.errors import ImageReadError
from core.files import HEAD_BYTES, sniff_kind
from core.images.databar import detect_databar
from core.images.levels import _apply_window, _percentiles, block_mean
from core.images.metadata import _Decoded, _jsonable, _tiff_metadata

_PIL_CLASSES: dict[str, type[ImageFile.ImageFile]] = {
    "PNG": PngImagePlugin.PngImageFile,
    "JPEG": JpegImagePlugin.JpegImageFile,
    "BMP": BmpImagePlugin.BmpImageFile,
    "TIFF": TiffImagePlugin.TiffImageFile,
}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as Pillow's "L"

WORK_SIDE = 4096
"""Longest side of the frame that thumbnails and model inputs are made from (ingest, predict,
training): a larger image is reduced by a whole factor (block means) to at most this before it
is windowed, so a 14000 x 14000 mosaic costs a 49 MB float frame instead of 784 MB. The
percentile window is still computed on every stored pixel; both end at a few hundred pixels."""


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
    reduction: int = 1  # ``data`` is the frame reduced by this factor (``max_side``); 1 = full

    @property
    def _scan_rows(self) -> int:
        # rows of ``data`` wholly above the data bar (a reduced row mixing both is bar)
        return (self.height - self.databar_px) // self.reduction

    @property
    def scan(self) -> np.ndarray:
        """The micrograph without the data bar (a view)."""
        return self.data[: self._scan_rows]

    @property
    def databar(self) -> np.ndarray | None:
        """The data bar strip (a view), or None when there is none."""
        if self.databar_px <= 0:
            return None
        return self.data[self._scan_rows :]

    def without_pixels(self) -> SemImage:
        """This image's description with an empty frame: what a batch keeps once the
        thumbnail and the model input are made (the frame is freed)."""
        return replace(self, data=np.zeros((0, 0), dtype=np.float32))


# --------------------------------------------------------------------------------------------
# Public API


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = 200_000_000,
    max_bytes: int | None = None,
    max_side: int | None = None,
) -> SemImage:
    """Decode an SEM image file (TIFF, PNG, JPEG, BMP) into a :class:`SemImage`.

    Raises :class:`ImageReadError` for every failure (missing, empty, not an image, truncated,
    corrupt, above ``max_pixels`` = width x height or ``max_bytes``, unsupported layout).
    The pixel limit is checked from the header, before any pixel data is decoded.
    ``max_side``: a frame longer than this is reduced by a whole factor before windowing
    (``SemImage.reduction``; width, height and the data bar stay in the file's pixels).
    """
    p = os.fspath(path)
    dec, kind = _decode(p, max_pixels, max_bytes)
    try:
        return _finish(p, dec, max_side)
    except MemoryError:
        raise ImageReadError(p, f"not enough memory to decode this {kind} image") from None
    except Exception as e:
        raise ImageReadError(p, _describe_decode_error(kind, e)) from e


@dataclass
class RawFrame:
    """The scan area as stored (no windowing): what the reviewer's window / level and the
    zoomed views are drawn from, at full resolution."""

    raw: np.ndarray  # 2-D, the stored samples (uint8, uint16, float32, ...) above the data bar
    lo: float  # the default window: raw ``lo`` shows black and ``hi`` white, as read_image maps it
    hi: float
    bit_depth: int
    pixel_size_m: float | None

    @property
    def width(self) -> int:
        return int(self.raw.shape[1])

    @property
    def height(self) -> int:
        return int(self.raw.shape[0])


def read_frame(
    path: str | os.PathLike[str], *, max_pixels: int = 200_000_000, max_bytes: int | None = None
) -> RawFrame:
    """The full-resolution scan area of an image file with its stored values (8-bit, 16-bit,
    float...) and the window :func:`read_image` would apply, so that
    ``apply_window(frame.raw, frame.lo, frame.hi)`` is ``read_image(path).scan``. Half the
    memory of the float frame for 16-bit files. Raises :class:`ImageReadError` as read_image."""
    p = os.fspath(path)
    dec, kind = _decode(p, max_pixels, max_bytes)
    grey = dec.grey
    try:
        bar = _databar_rows(dec, grey)
        lo, hi = _default_window(dec, grey, bar)
    except MemoryError:
        raise ImageReadError(p, f"not enough memory to decode this {kind} image") from None
    except Exception as e:
        raise ImageReadError(p, _describe_decode_error(kind, e)) from e
    return RawFrame(raw=grey[: grey.shape[0] - bar], lo=lo, hi=hi, bit_depth=int(dec.bit_depth),
                    pixel_size_m=dec.pixel_size_m)


def _decode(p: str, max_pixels: int, max_bytes: int | None) -> tuple[_Decoded, str]:
    """The decoded samples and metadata of one file, every failure an ImageReadError."""
    size = _check_file(p, max_bytes)
    head = _read_head(p)
    kind = sniff_kind(head)
    if kind is None:
        # what the file holds is never echoed (a link to /etc/passwd must not leak a byte)
        raise ImageReadError(p, "not an image file (no TIFF, PNG, JPEG or BMP signature)")
    try:
        if kind == "TIFF":
            return _decode_tiff(p, size, head, max_pixels), kind
        return _decode_pillow(p, kind, max_pixels), kind
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


def decode_bytes(path: str | os.PathLike[str], max_side: int | None = None) -> int:
    """About how many bytes :func:`read_image` holds at its peak for this file, from its
    header alone (no pixels decoded): the decoded samples (twice for Pillow, which decodes into
    its own buffer first) plus the float32 frame (reduced by ``max_side``). 0 when the header
    cannot be read (``read_image`` then says why, cheaply)."""
    p = os.fspath(path)
    try:
        kind = sniff_kind(_read_head(p))
        if kind == "TIFF":
            with tifffile.TiffFile(p) as tif:
                page = tif.pages.first
                h, w = int(page.imagelength), int(page.imagewidth)
                samples = int(page.samplesperpixel) * max(1, int(page.imagedepth))
                raw = h * w * samples * max(1, page.dtype.itemsize if page.dtype else 1)
                if int(page.photometric) not in (0, 1, 2, 3):
                    raw *= 2
        elif kind is not None:
            with open(p, "rb") as fh:
                im = _pil_open(fh, kind)
                w, h = im.size
                raw = 2 * w * h * len(im.getbands()) * (2 if im.mode.startswith("I") else 1)
        else:
            return 0
    except Exception:  # noqa: BLE001 — read_image reports what is wrong with the file
        return 0
    f = -(-max(h, w) // max_side) if max_side and max(h, w) > max_side else 1
    return int(raw + 4 * (-(-h // f)) * (-(-w // f)))


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
            return fh.read(HEAD_BYTES)
    except PermissionError:
        raise ImageReadError(p, "permission denied") from None
    except OSError as e:
        raise ImageReadError(p, f"cannot read the file ({e.strerror or e})") from None


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


def _databar_rows(dec: _Decoded, grey: np.ndarray) -> int:
    """Rows of the data bar: from the metadata, else the heuristic (0 when none)."""
    bar = dec.databar_px if dec.databar_px is not None else detect_databar(grey)
    return max(0, int(bar))


def _default_window(dec: _Decoded, grey: np.ndarray, bar: int) -> tuple[float, float]:
    """The raw values shown black and white: the full scale of 8-bit (and fewer) samples, else
    robust percentiles of the scan area (of the whole frame when the scan area is blank)."""
    if dec.scale is not None:
        return 0.0, 1.0 / dec.scale
    lo, hi = _percentiles(grey[: grey.shape[0] - bar], 0.5, 99.5)
    if hi <= lo and bar:  # a blank scan area: window on the whole frame to keep the bar
        lo, hi = _percentiles(grey, 0.5, 99.5)
    return lo, hi


def _finish(p: str, dec: _Decoded, max_side: int | None = None) -> SemImage:
    grey = dec.grey
    h, w = grey.shape
    source = "metadata" if dec.databar_px is not None else "heuristic"
    bar = _databar_rows(dec, grey)
    if bar <= 0:
        source = "none"
    f = -(-max(h, w) // max_side) if max_side and max(h, w) > max_side else 1
    if dec.scale is not None:
        frame = block_mean(grey, f) if f > 1 else grey
        data = np.multiply(frame, np.float32(dec.scale), dtype=np.float32)
        np.clip(data, 0.0, 1.0, out=data)
    else:
        lo, hi = _default_window(dec, grey, bar)
        data = _apply_window(block_mean(grey, f) if f > 1 else grey, lo, hi)
    del grey
    dec.grey = data  # the decoded samples are freed here, not when the caller lets go
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
        reduction=f,
    )
