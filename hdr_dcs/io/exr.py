"""EXR images <-> float32 (H, W, 3) linear RGB, through the official ``openexr`` bindings.

What ``read_exr`` accepts: a flat (scanline or tiled, not deep) image whose *first part*
has full-resolution R, G and B channels (A and any other channels are ignored), or a
single grey channel: ``Y``, or a file whose only colour channel is one of R, G, B (as in
TestImages/WideFloatRange.exr, which stores its data in G). Grey is replicated to 3
channels. HALF and FLOAT pixels are read; UINT channels are refused. Multi-part files:
only part 0 is used and must be such an image; every other part must still decode, or
the file is refused as damaged. Layered names (``diffuse.R``), luminance/chroma images
(Y with RY/BY) and sub-sampled channels are refused.

The array covers the data window (not the display window). Values are scene-linear and
kept as they are, including negative ones (ScanLines/Carrots.exr has some).

Every failure is an ``ExrError`` (an ``InputError``) with a one-line message naming the
file; exceptions from the bindings are chained, never propagated. Surprises in openexr
3.5.3 this module works around:

- a file whose pixel data fails to decode does NOT raise: the binding prints
  "Warning: Exception raised reading pixel data for part N" to stdout and returns a File
  whose failed parts are silently missing from ``parts`` (so "part 0" may be the file's
  part 1). We compare the part count with a header-only read and refuse on mismatch;
- ``Channel.type()`` raises IndexError on header-only reads (it is derived from the pixel
  array), so pixel types are checked after the full read, from the arrays' dtypes;
- deep files open "successfully" with object-dtype channels; we refuse them from the
  header, before decoding any pixels (one damaged deep file takes seconds to decode);
- the C library prints its own diagnostics to stderr; they cannot be silenced here.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR

from hdr_dcs.core.errors import ExrError

__all__ = ["COMPRESSIONS", "MAX_PIXELS", "NONFINITE_POLICIES", "read_exr", "write_exr"]

#: Largest data window read_exr accepts (width * height): 2**27 pixels is 1.5 GiB as
#: float32 RGB. Guards against damaged headers that claim gigapixel images.
MAX_PIXELS = 1 << 27

#: How read_exr treats NaN / Inf (see read_exr).
NONFINITE_POLICIES = ("error", "zero", "clip")

#: write_exr's compression names -> OpenEXR constants. Measured with openexr 3.5.3:
#: lossless for half and float: none, rle, zips, zip, piz, zstd, htj2k256, htj2k32;
#: lossless for half only: pxr24, lj2k; b44, b44a lossy for half (float kept exact);
#: dwaa, dwab lossy for both.
COMPRESSIONS: dict[str, Any] = {
    ("none" if name == "NO_COMPRESSION" else name.removesuffix("_COMPRESSION").lower()): value
    for name, value in OpenEXR.Compression.__members__.items()
    if name.endswith("_COMPRESSION")
}

_MAGIC = b"\x76\x2f\x31\x01"
_FLAT = (OpenEXR.scanlineimage, OpenEXR.tiledimage)
_DEEP = {OpenEXR.deepscanline: "deep scanline", OpenEXR.deeptile: "deep tiled"}
_PIXEL_MAX = {"half": float(np.finfo(np.float16).max), "float": float(np.finfo(np.float32).max)}
_PIXEL_DTYPE = {"half": np.float16, "float": np.float32}


def _one_line(exc: BaseException, path: Path) -> str:
    """An exception's text on one short line, without repeating the file's path."""
    text = " ".join(str(exc).replace(str(path), path.name).split()) or "no details"
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(exc).__name__}: {text}"


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise ExrError(f"EXR path must be a str or path-like, got {type(path).__name__}")
    p = Path(os.fspath(path))
    try:
        if not p.exists():
            raise ExrError(f"{p}: no such file")
        if p.is_dir():
            raise ExrError(f"{p}: is a directory, not an EXR file")
        if not p.is_file():
            raise ExrError(f"{p}: not a regular file")
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ExrError(f"{p}: cannot read ({_one_line(exc, p)})") from exc
    if magic != _MAGIC:
        what = "empty file" if not magic else "bad magic number"
        raise ExrError(f"{p}: not an OpenEXR file ({what})")
    return p


def _open(p: Path, header_only: bool) -> Any:
    try:
        return OpenEXR.File(str(p), separate_channels=True, header_only=header_only)
    except Exception as exc:
        stage = "header" if header_only else "pixel data"
        raise ExrError(f"{p}: damaged or unreadable EXR {stage} ({_one_line(exc, p)})") from exc


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:8])
    return shown + (f" and {len(names) - 8} more" if len(names) > 8 else "")


def _select_channels(p: Path, names: list[str]) -> tuple[str, str, str]:
    """Which channels make R, G, B (the same name thrice for grey)."""
    present = set(names)
    if {"R", "G", "B"} <= present:
        return ("R", "G", "B")
    if "Y" in present:
        if present & {"RY", "BY"}:
            raise ExrError(f"{p}: luminance/chroma (Y, RY, BY) images are not supported")
        return ("Y", "Y", "Y")
    colour = present & {"R", "G", "B"}
    if len(colour) == 1 and present - {"A"} == colour:
        (only,) = colour
        return (only, only, only)
    raise ExrError(f"{p}: no RGB, RGBA or Y image in part 0 (channels: {_names(names) or 'none'})")


def _window(p: Path, header: dict, max_pixels: int) -> tuple[int, int]:
    try:
        lo, hi = header["dataWindow"]
        x0, y0 = (int(v) for v in lo)
        x1, y1 = (int(v) for v in hi)
    except Exception as exc:
        raise ExrError(f"{p}: damaged EXR header: no valid dataWindow ({_one_line(exc, p)})") from exc
    width, height = x1 - x0 + 1, y1 - y0 + 1
    if width <= 0 or height <= 0:
        raise ExrError(f"{p}: damaged EXR header: empty data window {width}x{height}")
    if width * height > max_pixels:
        raise ExrError(f"{p}: data window {width}x{height} exceeds the {max_pixels}-pixel limit")
    return height, width


def _apply_nonfinite(p: Path, rgb: np.ndarray, policy: str) -> np.ndarray:
    finite = np.isfinite(rgb)
    if finite.all():
        return rgb
    if policy == "error":
        n_nan = int(np.count_nonzero(np.isnan(rgb)))
        n_inf = int(rgb.size - np.count_nonzero(finite) - n_nan)
        n_px = int(np.count_nonzero(~finite.all(axis=-1)))
        raise ExrError(
            f"{p}: {n_px} pixels contain NaN or Inf ({n_nan} NaN and {n_inf} Inf values); "
            "read with nonfinite='zero' or 'clip' to repair them"
        )
    if policy == "zero":
        return np.nan_to_num(rgb, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    good = rgb[finite]
    hi, lo = (float(good.max()), float(good.min())) if good.size else (0.0, 0.0)
    return np.nan_to_num(rgb, copy=False, nan=0.0, posinf=hi, neginf=lo)


def read_exr(path: str | os.PathLike, nonfinite: str = "error", *,
             max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an EXR file as float32 (H, W, 3) linear RGB (see the module docstring).

    Args:
        path: the file.
        nonfinite: what to do with NaN / Inf values:
            ``"error"``: raise ExrError saying how many pixels (and values) are non-finite;
            ``"zero"``: NaN, +Inf and -Inf all become 0 (the value is unknown, so it is
            treated like a black pixel; use "clip" to keep +Inf bright);
            ``"clip"``: NaN -> 0, +Inf -> the largest finite value of the image, -Inf ->
            the smallest (over all channels; both 0 if nothing is finite).
        max_pixels: refuse data windows larger than this.
    Returns:
        A new C-contiguous float32 array (H, W, 3); negative values are kept.
    Raises:
        ExrError: missing file, directory, not an EXR, damaged file, deep image, no
            RGB/RGBA/Y image in part 0, UINT or sub-sampled channels, non-finite values
            under "error", or an invalid ``nonfinite`` value.
    """
    if nonfinite not in NONFINITE_POLICIES:
        raise ExrError(f"nonfinite must be one of {', '.join(NONFINITE_POLICIES)}; got {nonfinite!r}")
    p = _check_path(path)

    head = _open(p, header_only=True)
    try:
        n_parts = len(head.parts)
        header = head.header(0) if n_parts else {}
        storage = header.get("type", OpenEXR.tiledimage if "tiles" in header else OpenEXR.scanlineimage)
        declared = list(header.get("channels", []))
        names = [str(c.name) for c in declared]
        sampling = {str(c.name): (int(c.xSampling), int(c.ySampling)) for c in declared}
    except Exception as exc:
        raise ExrError(f"{p}: damaged EXR header ({_one_line(exc, p)})") from exc
    if n_parts == 0:
        raise ExrError(f"{p}: damaged EXR header: no parts")
    if storage in _DEEP:
        raise ExrError(f"{p}: {_DEEP[storage]} image (deep data is not supported)")
    if storage not in _FLAT:
        raise ExrError(f"{p}: damaged EXR header: unknown storage type {storage!r}")
    height, width = _window(p, header, max_pixels)
    selected = _select_channels(p, names)
    for name in set(selected):
        if sampling[name] != (1, 1):
            raise ExrError(f"{p}: channel {name} is sub-sampled {sampling[name]}; not supported")

    full = _open(p, header_only=False)
    try:
        decoded = len(full.parts)
        channels = full.channels(0) if decoded else {}
    except Exception as exc:
        raise ExrError(f"{p}: damaged EXR pixel data ({_one_line(exc, p)})") from exc
    if decoded != n_parts:
        raise ExrError(
            f"{p}: damaged EXR: pixel data of {n_parts - decoded} of {n_parts} parts could not be decoded"
        )

    planes: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(selected):
        channel = channels.get(name)
        pixels = getattr(channel, "pixels", None)
        if not isinstance(pixels, np.ndarray):
            raise ExrError(f"{p}: damaged EXR: channel {name} has no pixel data")
        if pixels.dtype == np.uint32:
            raise ExrError(f"{p}: channel {name} holds UINT values, not colour")
        if pixels.dtype not in (np.float16, np.float32):
            raise ExrError(f"{p}: damaged EXR: channel {name} has pixels of dtype {pixels.dtype}")
        if pixels.shape != (height, width):
            raise ExrError(
                f"{p}: damaged EXR: channel {name} is {pixels.shape}, data window is {(height, width)}"
            )
        planes[name] = pixels

    rgb = np.empty((height, width, 3), dtype=np.float32)
    for i, name in enumerate(selected):
        rgb[:, :, i] = planes[name]
    return _apply_nonfinite(p, rgb, nonfinite)


def write_exr(
    path: str | os.PathLike,
    rgb: np.ndarray,
    compression: str = "zip",
    pixel_type: str = "half",
    *,
    allow_nonfinite: bool = False,
) -> None:
    """Write float (H, W, 3) linear RGB as a single-part scanline RGB EXR.

    The file is written to a temporary name in the same directory and renamed into place,
    so a failed write never leaves a truncated file at ``path``.

    Args:
        rgb: float16/32/64 array (H, W, 3), channels R, G, B.
        compression: a key of ``COMPRESSIONS`` (case-insensitive), default "zip".
        pixel_type: "half" (float16; |values| must be <= 65504) or "float" (float32).
        allow_nonfinite: write NaN / Inf as they are instead of refusing them.
    Raises:
        ExrError: bad shape/dtype, non-finite values (unless allowed), values beyond the
            pixel type's range, unknown compression or pixel type, or a failed write.
    Round trip: ``read_exr`` returns exactly the values for "float", and the values rounded
    to half precision for "half" (lossless compressions only).
    """
    if pixel_type not in _PIXEL_DTYPE:
        raise ExrError(f"pixel_type must be 'half' or 'float', got {pixel_type!r}")
    comp = COMPRESSIONS.get(compression.lower()) if isinstance(compression, str) else None
    if comp is None:
        raise ExrError(f"unknown EXR compression {compression!r}; one of {', '.join(COMPRESSIONS)}")
    if not isinstance(path, (str, os.PathLike)):
        raise ExrError(f"EXR path must be a str or path-like, got {type(path).__name__}")
    p = Path(os.fspath(path))
    arr = np.asarray(rgb)
    if arr.dtype.kind != "f":
        raise ExrError(f"{p}: write_exr needs a float array, got dtype {arr.dtype}")
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ExrError(f"{p}: write_exr needs a non-empty (H, W, 3) array, got shape {arr.shape}")
    finite = np.isfinite(arr)
    if not allow_nonfinite and not finite.all():
        raise ExrError(
            f"{p}: refusing to write {arr.size - int(np.count_nonzero(finite))} NaN/Inf values "
            "(pass allow_nonfinite=True to keep them)"
        )
    limit = _PIXEL_MAX[pixel_type]
    too_big = int(np.count_nonzero(np.abs(arr, where=finite, out=np.zeros(arr.shape, arr.dtype)) > limit))
    if too_big:
        hint = "; use pixel_type='float'" if pixel_type == "half" else ""
        raise ExrError(f"{p}: {too_big} values exceed the {pixel_type} range (|x| > {limit:g}){hint}")
    dtype = _PIXEL_DTYPE[pixel_type]
    planes = {name: np.ascontiguousarray(arr[:, :, i], dtype=dtype) for i, name in enumerate("RGB")}

    if not p.parent.is_dir():
        raise ExrError(f"{p}: directory {p.parent} does not exist")
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        OpenEXR.File({"compression": comp, "type": OpenEXR.scanlineimage}, planes).write(str(tmp))
        os.replace(tmp, p)
    except Exception as exc:
        raise ExrError(f"{p}: cannot write EXR ({_one_line(exc, tmp)})") from exc
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)
