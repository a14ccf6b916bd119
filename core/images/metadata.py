"""What the instrument wrote into the file: FEI / Thermo, Zeiss ``CZ_SEM`` and ImageJ metadata
→ instrument, pixel size in metres, data-bar height and a small JSON summary. Malformed values
are dropped with a warning, never fatal. Also pixel sizes in words (``2.35 nm/px``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tifffile

from core.images.databar import MAX_DATABAR_FRACTION

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
# Instrument metadata


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


# --------------------------------------------------------------------------------------------
# Pixel sizes in words


def format_length(m: float | None) -> str:
    """A length in metres in the unit a microscopist reads: pm, nm, µm, mm or m."""
    if m is None or not math.isfinite(m) or m <= 0:
        return "unknown"
    for unit, f in (("m", 1.0), ("mm", 1e-3), ("µm", 1e-6), ("nm", 1e-9), ("pm", 1e-12)):
        if m >= f or unit == "pm":
            v = m / f
            digits = 0 if v >= 100 else 1 if v >= 10 else 2 if v >= 1 else 3
            return f"{v:.{digits}f} {unit}"
    return f"{m:g} m"  # pragma: no cover


def scale_text(pixel_size_m: float | None, width_px: int) -> str | None:
    """'2.35 nm/px · field width 2.41 µm', or None when the pixel size is unknown."""
    if not pixel_size_m:
        return None
    return f"{format_length(pixel_size_m)}/px · field width {format_length(pixel_size_m * width_px)}"


# --------------------------------------------------------------------------------------------
# Metadata as a table a microscopist reads

# (label, formatter) of the fields the readers above fill; others are shown under their own name
_FIELDS: dict[str, tuple[str, Any]] = {
    "instrument": ("Instrument", str),
    "system": ("System", str),
    "detector": ("Detector", str),
    "beam": ("Beam", str),
    "hv_kV": ("Accelerating voltage", lambda v: f"{v:g} kV"),
    "wd_mm": ("Working distance", lambda v: f"{v:.3g} mm"),
    "magnification_x": ("Magnification", lambda v: f"{v:,.0f}×"),
    "hfw_m": ("Horizontal field width", format_length),
    "nav_hfw_m": ("Navigation-camera field width", format_length),
    "beam_current_A": ("Beam current", lambda v: f"{v * 1e12:.3g} pA"),
    "dwell_s": ("Dwell time", lambda v: f"{v * 1e6:.3g} µs"),
    "store_resolution": ("Stored resolution", str),
    "date": ("Acquired", str),
    "software": ("Software", str),
    "user_text": ("User text", str),
    "imagej_version": ("ImageJ version", str),
    "unit": ("Calibration unit", str),
    "note": ("Note", str),
}


def metadata_rows(
    metadata: dict[str, Any], *, pixel_size_m: float | None = None, pixel_size_source: str | None = None,
    max_chars: int = 200,
) -> list[tuple[str, str]]:
    """(field, value) rows of an image's metadata in words and units (known fields first, in a
    fixed order; then the rest under their own names; nested values flattened with dots; long
    values cut at ``max_chars``). Plain text: the caller must not render it as Markdown/HTML."""
    rows: list[tuple[str, str]] = []
    if pixel_size_m:
        src = f" (from {pixel_size_source})" if pixel_size_source else ""
        rows.append(("Pixel size", f"{format_length(pixel_size_m)}{src}"))

    def cut(v: Any) -> str:
        s = str(v)
        return s if len(s) <= max_chars else s[: max_chars - 1] + "…"

    for key, (label, fmt) in _FIELDS.items():
        if key in metadata and metadata[key] not in (None, ""):
            try:
                rows.append((label, cut(fmt(metadata[key]))))
            except (TypeError, ValueError):
                rows.append((label, cut(metadata[key])))

    def flat(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                flat(f"{prefix}.{k}" if prefix else str(k), sub)
        elif v not in (None, ""):
            rows.append((prefix.replace("_", " "), cut(v)))

    for key, v in metadata.items():
        if key not in _FIELDS:
            flat(key, v)
    return rows
