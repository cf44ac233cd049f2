"""GenICam pixel formats -> the integer codes a ``CapturedFrame`` carries.

Supported: Mono8, Mono10/12/16 (unpacked, little-endian), RGB8, BGR8, Bayer{RG,GR,GB,BG}
8/10/12/16 (unpacked). Codes wider than 8 bits are left-aligned into uint16, so full
scale is always 65535 (``CapturedFrame`` convention). Bayer mosaics are demosaiced with
OpenCV's edge-aware interpolation into RGB at full resolution.

Packed formats (Mono12p, BayerRG12p, ...) are refused: configure the camera for the
unpacked variant, which costs bandwidth but no CPU here.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hdr_dcs.camera import CameraError

__all__ = ["PIXEL_FORMATS", "PixelFormat", "decode_pixels"]


@dataclass(frozen=True)
class PixelFormat:
    """How to read one GenICam pixel format.

    Attributes:
        name: the PFNC name, e.g. "BayerRG12".
        bits: significant bits per sample.
        channels: samples per pixel in the buffer (1 for mono and Bayer, 3 for RGB/BGR).
        bayer: the 2x2 pattern ("RG", "GR", "GB", "BG") or "" for none.
        bgr: three-channel buffers stored B, G, R.
    """

    name: str
    bits: int
    channels: int
    bayer: str = ""
    bgr: bool = False

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.bits == 8 else 2

    @property
    def color(self) -> bool:
        return self.channels == 3 or bool(self.bayer)


def _table() -> dict[str, PixelFormat]:
    table = {"RGB8": PixelFormat("RGB8", 8, 3), "BGR8": PixelFormat("BGR8", 8, 3, bgr=True)}
    for bits in (8, 10, 12, 16):
        table[f"Mono{bits}"] = PixelFormat(f"Mono{bits}", bits, 1)
        for pattern in ("RG", "GR", "GB", "BG"):
            table[f"Bayer{pattern}{bits}"] = PixelFormat(f"Bayer{pattern}{bits}", bits, 1, bayer=pattern)
    return table


#: PFNC name -> format
PIXEL_FORMATS: dict[str, PixelFormat] = _table()

# OpenCV names a Bayer pattern by the 2x2 block starting at pixel (1, 1), so the codes are
# shifted by one against PFNC's (which name the block at (0, 0)): PFNC RG = OpenCV BG.
_DEMOSAIC = {"RG": cv2.COLOR_BayerBG2RGB_EA, "GR": cv2.COLOR_BayerGB2RGB_EA,
             "GB": cv2.COLOR_BayerGR2RGB_EA, "BG": cv2.COLOR_BayerRG2RGB_EA}


def decode_pixels(data: bytes | memoryview, fmt: str, width: int, height: int) -> np.ndarray:
    """One image buffer -> codes.

    Args:
        data: the buffer's image bytes (at least width * height * samples * bytes).
        fmt: the PFNC pixel format name.
        width, height: image size, px.
    Returns:
        (H, W) for mono, (H, W, 3) RGB for colour; uint8 for 8-bit formats, otherwise
        uint16 with the codes left-aligned (a 12-bit 4095 becomes 65520).
    Raises:
        CameraError: unsupported format or a buffer too short for the size.
    """
    spec = PIXEL_FORMATS.get(fmt)
    if spec is None:
        raise CameraError(f"pixel format {fmt!r} is not supported; use one of "
                          f"{', '.join(sorted(PIXEL_FORMATS))}")
    n = width * height * spec.channels
    need = n * spec.bytes_per_sample
    raw = memoryview(data).cast("B")
    if len(raw) < need:
        raise CameraError(f"{fmt} {width}x{height} needs {need} bytes, the buffer has {len(raw)}")
    dtype = np.uint8 if spec.bytes_per_sample == 1 else np.dtype("<u2")
    codes = np.frombuffer(raw[:need], dtype=dtype).astype(np.uint8 if spec.bits == 8 else np.uint16)
    if 8 < spec.bits < 16:
        codes = codes << (16 - spec.bits)
    image = codes.reshape(height, width, spec.channels)
    if spec.bayer:
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, 0]), _DEMOSAIC[spec.bayer])
    if spec.channels == 1:
        return np.ascontiguousarray(image[:, :, 0])
    return np.ascontiguousarray(image[:, :, ::-1] if spec.bgr else image)
