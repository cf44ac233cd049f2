"""The photometric model of SPEC.md and the operations built on it.

A pixel value L in [0, 1] relates to scene radiance H (per second of exposure at unity
gain) by ``L = clip(f(H * t * g))`` and ``H = f^-1(L) / (t * g)``, where f is the camera
response (gamma 1/2.2 by default, a calibrated curve when one is given).

All functions take numpy arrays; images are (H, W, 3) float32 RGB unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import InputError
from .types import Exposure

# Rec. 709 / sRGB primaries: relative luminance weights of linear RGB.
LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def to_unit(codes: np.ndarray, max_code: int | None = None) -> np.ndarray:
    """Integer codes -> float32 in [0, 1], dividing by the code maximum.

    Args:
        codes: uint8 / uint16 array (any shape), or a float array already in [0, 1].
        max_code: the largest code; defaults to the dtype's maximum (255, 65535). A 12-bit
            camera whose codes are not left-aligned in 16 bits passes 4095.
    Raises:
        InputError: unsupported dtype, or non-finite float input.
    """
    if np.issubdtype(codes.dtype, np.integer):
        top = np.iinfo(codes.dtype).max if max_code is None else max_code
        if top <= 0:
            raise InputError(f"max_code must be positive, got {top}")
        return (codes.astype(np.float32) / np.float32(top)).clip(0.0, 1.0)
    if np.issubdtype(codes.dtype, np.floating):
        if not np.all(np.isfinite(codes)):
            raise InputError("image contains NaN or Inf values")
        return codes.astype(np.float32, copy=False).clip(0.0, 1.0)
    raise InputError(f"cannot normalise pixels of dtype {codes.dtype}")


def from_unit(values: np.ndarray, dtype: type = np.uint8) -> np.ndarray:
    """[0, 1] floats -> integer codes of ``dtype``, rounded to nearest, clipped."""
    top = np.iinfo(dtype).max
    return np.rint(np.clip(values, 0.0, 1.0) * top).astype(dtype)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Relative luminance of linear RGB (..., 3) -> (...). Mono input (..., 1) passes through."""
    if rgb.shape[-1] == 1:
        return rgb[..., 0]
    if rgb.shape[-1] != 3:
        raise InputError(f"expected 1 or 3 channels, got shape {rgb.shape}")
    return rgb @ LUMA_WEIGHTS.astype(rgb.dtype)


def channel_max(image: np.ndarray) -> np.ndarray:
    """Per-pixel maximum over the last axis of (..., C); much faster than ``max(axis=-1)``
    for C = 3, which numpy reduces element by element."""
    out = image[..., 0]
    for c in range(1, image.shape[-1]):
        out = np.maximum(out, image[..., c])
    return out


def channel_min(image: np.ndarray) -> np.ndarray:
    """Per-pixel minimum over the last axis of (..., C)."""
    out = image[..., 0]
    for c in range(1, image.shape[-1]):
        out = np.minimum(out, image[..., c])
    return out


class CameraResponse(Protocol):
    """Camera response f: normalised sensor exposure x = H*t*g in [0, 1] -> pixel value L."""

    def forward(self, x: np.ndarray) -> np.ndarray: ...

    def inverse(self, values: np.ndarray) -> np.ndarray: ...

    def inverse_slope(self, values: np.ndarray) -> np.ndarray:
        """d f^-1 / dL at L: how a pixel step maps to a sensor-exposure step."""
        ...


@dataclass(frozen=True)
class GammaResponse:
    """f(x) = x ** (1 / gamma); SPEC.md's default with gamma = 2.2."""

    gamma: float = 2.2

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.power(np.clip(x, 0.0, 1.0), 1.0 / self.gamma).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return np.power(np.clip(values, 0.0, 1.0), self.gamma).astype(np.float32)

    def inverse_slope(self, values: np.ndarray) -> np.ndarray:
        v = np.clip(values, 0.0, 1.0)
        return (self.gamma * np.power(v, self.gamma - 1.0)).astype(np.float32)


@dataclass(frozen=True)
class TabulatedResponse:
    """A calibrated response given as samples of f^-1 on a uniform grid of L in [0, 1].

    Attributes:
        inverse_samples: (N,) strictly increasing f^-1 at L = linspace(0, 1, N), with
            f^-1(0) = 0 and f^-1(1) = 1 (the normalisation SPEC.md's units assume).
    """

    inverse_samples: tuple[float, ...]

    def __post_init__(self) -> None:
        s = np.asarray(self.inverse_samples, dtype=np.float64)
        if s.ndim != 1 or s.size < 2:
            raise InputError("a tabulated response needs at least 2 samples")
        if not np.all(np.isfinite(s)) or np.any(np.diff(s) <= 0):
            raise InputError("a tabulated response must be finite and strictly increasing")
        if abs(s[0]) > 1e-6 or abs(s[-1] - 1.0) > 1e-6:
            raise InputError("a tabulated response must map 0 -> 0 and 1 -> 1")

    @classmethod
    def from_array(cls, inverse_samples: np.ndarray) -> TabulatedResponse:
        return cls(tuple(float(v) for v in np.asarray(inverse_samples).ravel()))

    @property
    def _grid(self) -> tuple[np.ndarray, np.ndarray]:
        s = np.asarray(self.inverse_samples, dtype=np.float64)
        return np.linspace(0.0, 1.0, s.size), s

    def forward(self, x: np.ndarray) -> np.ndarray:
        levels, s = self._grid
        return np.interp(np.clip(x, 0.0, 1.0), s, levels).astype(np.float32)

    def inverse(self, values: np.ndarray) -> np.ndarray:
        levels, s = self._grid
        return np.interp(np.clip(values, 0.0, 1.0), levels, s).astype(np.float32)

    def inverse_slope(self, values: np.ndarray) -> np.ndarray:
        levels, s = self._grid
        slopes = np.diff(s) / np.diff(levels)
        idx = np.clip((np.clip(values, 0.0, 1.0) * (s.size - 1)).astype(np.int64), 0, s.size - 2)
        return slopes[idx].astype(np.float32)


DEFAULT_RESPONSE = GammaResponse(2.2)


def radiance(values: np.ndarray, exposure: Exposure,
             response: CameraResponse = DEFAULT_RESPONSE) -> np.ndarray:
    """H = f^-1(L) / (t * g): pixel values in [0, 1] -> radiance in SPEC.md units."""
    return response.inverse(values) / np.float32(exposure.scale)


def reexpose(hdr: np.ndarray, exposure: Exposure,
             response: CameraResponse = DEFAULT_RESPONSE) -> np.ndarray:
    """L = clip(f(H * t * g)): radiance -> noise-free pixel values in [0, 1]."""
    return response.forward(np.asarray(hdr, dtype=np.float32) * np.float32(exposure.scale))


def saturation_mask(values: np.ndarray, threshold: float = 0.97) -> np.ndarray:
    """True where any channel of (H, W, C) reaches ``threshold``: H is only bounded below."""
    return channel_max(values) >= threshold


def noise_floor_mask(values: np.ndarray, threshold: float = 0.03) -> np.ndarray:
    """True where every channel of (H, W, C) is below ``threshold``: H is only bounded above."""
    return channel_max(values) <= threshold


def global_luminance_alignment(values: np.ndarray, reference: np.ndarray,
                               eps: float = 1e-6) -> np.ndarray:
    """EAFNet's GLA: scale a non-reference exposure to the reference's mean luminance.

    Follows the intent of eq. (2) of the DCS/EAFNet paper, "the LDR images are mapped to
    the luminance range of the reference image", as ``G = clip(L * mean(L_ref) / mean(L))``.
    The equation as printed has the ratio inverted (mean(L_i) / mean(L_m)), which would
    darken the low exposure further and brighten the high one: the opposite of aligning
    them, so we do not follow the printed form.

    Args:
        values: (..., H, W, C) non-reference image in [0, 1].
        reference: (..., H, W, C) reference image in [0, 1], same leading shape.
    Returns:
        (..., H, W, C) float32 in [0, 1]; the mean is over H, W, C per leading index.
    """
    axes = (-3, -2, -1)
    ratio = reference.mean(axis=axes, keepdims=True) / np.maximum(values.mean(axis=axes, keepdims=True), eps)
    return np.clip(values * ratio, 0.0, 1.0).astype(np.float32)
