"""sensor_msgs/Image <-> numpy, without cv_bridge and without rclpy.

Messages are duck-typed on the fields ``height, width, encoding, is_bigendian, step,
data``, so the same code serves rclpy's ``sensor_msgs.msg.Image`` (``data`` is an
``array.array('B')``) and the dataclasses ``rosbags`` deserialises (``data`` is a read-only
numpy uint8 view into the bag's buffer).

Supported encodings (see ``SUPPORTED_ENCODINGS``):

- named: ``mono8 mono16 rgb8 bgr8 rgba8 bgra8 rgb16 bgr16 rgba16 bgra16``;
- generic: ``8UC1..8UC4``, ``16UC1..16UC4``, ``32FC1..32FC4``.

Arrays are (H, W) for one channel and (H, W, C) otherwise, in the message's own channel
order, with the encoding's dtype (uint8, uint16, float32) in native byte order.

Ownership: ``image_to_numpy`` always returns a new, C-contiguous, writeable array that
owns its memory (exactly one copy of the pixel bytes is made). It never aliases
``msg.data``, so neither later changes to the message nor the read-only buffers rosbags
hands out can affect it.
"""

from __future__ import annotations

import array as _array
import numbers
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from hdr_dcs.core.errors import ImageEncodingError, InputError
from hdr_dcs.core.photometry import to_unit

__all__ = [
    "SUPPORTED_ENCODINGS",
    "reject_reason",
    "Encoding",
    "fill_image",
    "image_to_numpy",
    "lookup_encoding",
    "numpy_to_image_fields",
    "to_rgb_unit",
]

_UINT32_MAX = 0xFFFFFFFF


@dataclass(frozen=True)
class Encoding:
    """What a sensor_msgs/Image encoding string means for the pixel buffer.

    Attributes:
        name: the encoding string, e.g. ``"bgr16"``.
        dtype: element type in native byte order (uint8, uint16 or float32).
        channels: channels per pixel (1..4).
        order: channel order: ``"mono"``, ``"rgb"``, ``"bgr"``, ``"rgba"``, ``"bgra"``, or
            ``"any"`` for 2-channel generic encodings (no colour meaning). Generic 3/4
            channel encodings (``8UC3``, ``32FC3``...) are taken as RGB(A), the convention
            SPEC.md uses for ``32FC3``.
    """

    name: str
    dtype: np.dtype
    channels: int
    order: str

    @property
    def bytes_per_pixel(self) -> int:
        return self.dtype.itemsize * self.channels


def _build_table() -> dict[str, Encoding]:
    u8, u16, f32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)
    table: dict[str, Encoding] = {}
    for bits, dt in (("8", u8), ("16", u16)):
        table[f"mono{bits}"] = Encoding(f"mono{bits}", dt, 1, "mono")
        for order in ("rgb", "bgr", "rgba", "bgra"):
            table[f"{order}{bits}"] = Encoding(f"{order}{bits}", dt, len(order), order)
    generic_order = {1: "mono", 2: "any", 3: "rgb", 4: "rgba"}
    for depth, dt in (("8U", u8), ("16U", u16), ("32F", f32)):
        for n, order in generic_order.items():
            table[f"{depth}C{n}"] = Encoding(f"{depth}C{n}", dt, n, order)
    return table


_ENCODINGS = _build_table()
SUPPORTED_ENCODINGS: frozenset[str] = frozenset(_ENCODINGS)


def lookup_encoding(encoding: str) -> Encoding:
    """The ``Encoding`` of an encoding string; ImageEncodingError if unsupported."""
    if not isinstance(encoding, str):
        raise ImageEncodingError(f"image encoding must be a string, got {type(encoding).__name__}")
    enc = _ENCODINGS.get(encoding)
    if enc is None:
        shown = repr(encoding) if encoding else "'' (empty)"
        raise ImageEncodingError(
            f"unsupported image encoding {shown}; supported: {', '.join(sorted(SUPPORTED_ENCODINGS))}"
        )
    return enc


def _field(msg: Any, name: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError:
        raise ImageEncodingError(
            f"{type(msg).__name__} is not an image message: it has no '{name}' field"
        ) from None


def _size(value: Any, what: str, enc: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ImageEncodingError(f"{enc} image: {what} must be an integer, got {value!r}")
    value = int(value)
    if value <= 0:
        raise ImageEncodingError(f"{enc} image: {what} must be positive, got {value}")
    if value > _UINT32_MAX:
        raise ImageEncodingError(f"{enc} image: {what} {value} does not fit the uint32 field")
    return value


def _as_byte_array(data: Any, enc: str) -> np.ndarray:
    """A 1-D uint8 view of ``data`` (no copy when it supports the buffer protocol)."""
    if isinstance(data, np.ndarray):
        if data.dtype.itemsize != 1 or data.dtype.kind not in "uib":
            raise ImageEncodingError(f"{enc} image: data must hold bytes, got a {data.dtype} array")
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview, _array.array)):
        try:
            return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
        except (TypeError, ValueError) as exc:
            raise ImageEncodingError(f"{enc} image: data is not a contiguous byte buffer ({exc})") from exc
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ImageEncodingError(f"{enc} image: data is not a sequence of bytes ({exc})") from exc
    raise ImageEncodingError(f"{enc} image: data of type {type(data).__name__} is not a byte buffer")


def image_to_numpy(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (rclpy or rosbags) -> numpy array.

    Returns:
        (H, W) for one channel, (H, W, C) otherwise, in the message's channel order and the
        encoding's dtype in native byte order (big-endian data is converted). Row padding
        (``step`` > width * bytes per pixel) is dropped; bytes after ``step * height`` are
        ignored. The array is always a new, C-contiguous, writeable copy.
    Raises:
        ImageEncodingError: unsupported encoding, non-positive sizes, ``step`` smaller than a
            row, fewer than ``step * height`` data bytes, or a malformed message.
    """
    enc = lookup_encoding(_field(msg, "encoding"))
    height = _size(_field(msg, "height"), "height", enc.name)
    width = _size(_field(msg, "width"), "width", enc.name)
    step = _size(_field(msg, "step"), "step", enc.name)
    big_endian = bool(_field(msg, "is_bigendian"))
    buf = _as_byte_array(_field(msg, "data"), enc.name)

    row = width * enc.bytes_per_pixel
    where = f"{enc.name} image {width}x{height}"
    if step < row:
        raise ImageEncodingError(
            f"{where}: step {step} < width * bytes_per_pixel = {width} * {enc.bytes_per_pixel} = {row}"
        )
    need = step * height
    if buf.size < need:
        raise ImageEncodingError(f"{where}: data has {buf.size} bytes, step * height needs {need}")

    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    pixels = np.empty(shape, dtype=enc.dtype)  # native order; owns its memory
    pixels.view(np.uint8).reshape(height, row)[...] = buf[:need].reshape(height, step)[:, :row]
    if big_endian != (sys.byteorder == "big") and enc.dtype.itemsize > 1:
        pixels.byteswap(inplace=True)  # the bytes were copied in wire order
    return pixels


def _check_array(array: Any, enc: Encoding) -> np.ndarray:
    """Validate that ``array`` fits ``enc``; returns it as (H, W, C)."""
    if not isinstance(array, np.ndarray):
        raise ImageEncodingError(f"{enc.name}: expected a numpy array, got {type(array).__name__}")
    if array.dtype.kind != enc.dtype.kind or array.dtype.itemsize != enc.dtype.itemsize:
        raise ImageEncodingError(f"{enc.name} needs {enc.dtype} pixels, got an array of dtype {array.dtype}")
    if enc.channels == 1 and array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != enc.channels:
        want = "(H, W) or (H, W, 1)" if enc.channels == 1 else f"(H, W, {enc.channels})"
        raise ImageEncodingError(f"{enc.name} needs an array of shape {want}, got {array.shape}")
    if array.shape[0] <= 0 or array.shape[1] <= 0:
        raise ImageEncodingError(f"{enc.name}: image must not be empty, got shape {array.shape}")
    return array


def numpy_to_image_fields(
    array: np.ndarray,
    encoding: str,
    step: int | None = None,
    is_bigendian: bool = False,
    *,
    as_numpy: bool = False,
) -> dict[str, Any]:
    """numpy array -> the pixel fields of a sensor_msgs/Image.

    Args:
        array: (H, W) or (H, W, 1) for one channel, (H, W, C) otherwise, with exactly the
            encoding's element type (uint8, uint16, float32; any byte order). Never cast.
        encoding: one of ``SUPPORTED_ENCODINGS``.
        step: bytes per row; defaults to width * bytes per pixel. A larger value pads every
            row (padding bytes are zero).
        is_bigendian: write multi-byte elements big-endian.
        as_numpy: return ``data`` as a 1-D uint8 numpy array instead of ``bytes``. rosbags
            message classes need this (their serializer rejects ``bytes``); rclpy accepts
            both.
    Returns:
        ``{"height", "width", "encoding", "is_bigendian" (0/1), "step", "data"}``: use
        ``Image(header=..., **fields)`` with rclpy or rosbags, or ``fill_image``.
    Raises:
        ImageEncodingError: unsupported encoding, array shape/dtype not matching it, or a
            step smaller than a row.
    """
    enc = lookup_encoding(encoding)
    pixels = _check_array(array, enc)
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    row = width * enc.bytes_per_pixel
    if step is None:
        step = row
    elif isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise ImageEncodingError(f"{enc.name}: step must be an integer, got {step!r}")
    step = int(step)
    if step < row:
        raise ImageEncodingError(
            f"{enc.name} image {width}x{height}: step {step} < width * bytes_per_pixel = {row}"
        )
    if step > _UINT32_MAX or height > _UINT32_MAX:
        raise ImageEncodingError(f"{enc.name} image {width}x{height}: step {step} does not fit uint32")

    wire = enc.dtype.newbyteorder(">" if is_bigendian else "<")
    body = np.ascontiguousarray(pixels, dtype=wire).view(np.uint8).reshape(height, row)
    if step == row:
        flat = body.reshape(-1)
    else:
        flat = np.zeros((height, step), dtype=np.uint8)
        flat[:, :row] = body
        flat = flat.reshape(-1)
    if as_numpy:
        data: Any = flat.copy() if np.may_share_memory(flat, array) else flat
    else:
        data = flat.tobytes()
    return {
        "height": height,
        "width": width,
        "encoding": enc.name,
        "is_bigendian": int(bool(is_bigendian)),
        "step": step,
        "data": data,
    }


def fill_image(msg: Any, array: np.ndarray, encoding: str, step: int | None = None,
               is_bigendian: bool = False) -> Any:
    """Set the pixel fields of an existing Image message (rclpy or rosbags) from ``array``.

    The header is left alone. ``data`` becomes a numpy uint8 array when the message's
    current ``data`` is one (rosbags), else ``bytes`` (rclpy stores it as array.array).
    Returns ``msg``.
    """
    as_numpy = isinstance(getattr(msg, "data", None), np.ndarray)
    fields = numpy_to_image_fields(array, encoding, step, is_bigendian, as_numpy=as_numpy)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


_ORDER_INDEX = {"rgb": (0, 1, 2), "rgba": (0, 1, 2), "bgr": (2, 1, 0), "bgra": (2, 1, 0)}


def to_rgb_unit(source: Any, encoding: str | None = None, *, max_code: int | None = None) -> np.ndarray:
    """An image message or array -> float32 (H, W, 3) RGB in [0, 1].

    Integer codes are divided by the dtype's maximum (255, 65535; or ``max_code``, e.g. 4095
    for a 12-bit camera that does not left-align its codes) via ``core.photometry.to_unit``.
    Mono is replicated to 3 channels, BGR(A) reordered, alpha dropped. 32F encodings are
    checked finite and otherwise taken as they are, except that ``to_unit`` clips them to
    [0, 1]: radiance (``/dcs/hdr/image``) should be read with ``image_to_numpy`` instead.

    Args:
        source: a sensor_msgs/Image (rclpy or rosbags) or a numpy array in the layout
            ``image_to_numpy`` returns.
        encoding: required for arrays; for messages optional, and must match
            ``msg.encoding`` when given.
    Raises:
        ImageEncodingError: bad encoding/shape/dtype, or a 2-channel encoding.
        InputError: NaN or Inf in a 32F image.
    """
    if isinstance(source, np.ndarray):
        if encoding is None:
            raise ImageEncodingError("to_rgb_unit needs the encoding of a numpy array")
        enc = lookup_encoding(encoding)
        pixels = _check_array(source, enc)
    else:
        msg_encoding = _field(source, "encoding")
        if encoding is not None and encoding != msg_encoding:
            raise ImageEncodingError(f"encoding {encoding!r} given for a {msg_encoding!r} message")
        enc = lookup_encoding(msg_encoding)
        pixels = _check_array(image_to_numpy(source), enc)

    if enc.order == "any":
        raise ImageEncodingError(f"{enc.name} has 2 channels: no RGB interpretation")
    if enc.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(pixels)))
        if bad:
            raise InputError(f"{enc.name} image contains {bad} NaN or Inf values")
    if enc.order == "mono":
        unit = to_unit(pixels[:, :, 0], max_code)
        return np.repeat(unit[:, :, None], 3, axis=2)
    rgb = pixels[:, :, list(_ORDER_INDEX[enc.order])]
    return np.ascontiguousarray(to_unit(rgb, max_code), dtype=np.float32)


def reject_reason(msg: Any, exc: BaseException) -> str:
    """Short, stable reason why an image message could not be converted (a diagnostics
    and report key): unsupported encoding, malformed image, non-finite pixels, bad image."""
    if isinstance(exc, ImageEncodingError):
        encoding = getattr(msg, "encoding", None)
        try:
            enc = lookup_encoding(encoding)
        except ImageEncodingError:
            return f"unsupported encoding {encoding!r}"
        return f"unsupported encoding {encoding!r}" if enc.order == "any" else "malformed image"
    return "non-finite pixels" if "NaN" in str(exc) else "bad image"
