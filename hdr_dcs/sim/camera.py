"""A camera model worth training on: response, shot/read noise, gain, quantisation, clipping.

The sensor signal is x = H * t * g (full scale 1). Noise is added in electrons before the
gain (shot: Poisson, approximated as Gaussian with variance = electrons) and after it
(read), then the response f maps x to a pixel value and codes are quantised. Everything
is deterministic given the numpy Generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.photometry import CameraResponse, GammaResponse
from ..core.types import Exposure


@dataclass(frozen=True)
class CameraModel:
    """Photometric model of one camera.

    Attributes:
        response: f, sensor signal in [0, 1] -> pixel value in [0, 1].
        bit_depth: 8 (uint8 codes), 12 (uint16 codes, left-aligned: multiples of 16) or 16.
        full_well_e: electrons at full scale and unity gain; sets the shot noise.
        read_noise_e: read noise in electrons (rms), applied after gain.
    """

    response: CameraResponse = field(default_factory=GammaResponse)
    bit_depth: int = 8
    full_well_e: float = 10_000.0
    read_noise_e: float = 8.0

    def __post_init__(self) -> None:
        if self.bit_depth not in (8, 10, 12, 16):
            raise ValueError(f"bit_depth must be 8, 10, 12 or 16, got {self.bit_depth}")

    @property
    def code_dtype(self) -> type:
        return np.uint8 if self.bit_depth == 8 else np.uint16

    def sensor_signal(self, hdr: np.ndarray, exposure: Exposure,
                      rng: np.random.Generator | None) -> np.ndarray:
        """Radiance (H, W, C) -> noisy linear signal x, clipped to [0, 1]."""
        x = np.maximum(hdr, 0.0).astype(np.float32) * np.float32(exposure.scale)
        if rng is not None:
            gain = np.float32(exposure.gain_linear)
            electrons = np.minimum(x / gain, 2.0) * np.float32(self.full_well_e)
            # Shot (variance = electrons) and read noise are independent Gaussians: one draw
            # with the summed variance has the same distribution at half the cost.
            sigma_e = np.sqrt(electrons + np.float32(self.read_noise_e ** 2))
            noise = rng.standard_normal(x.shape, dtype=np.float32)
            x = x + noise * sigma_e * (gain / np.float32(self.full_well_e))
        return np.clip(x, 0.0, 1.0)

    def capture(self, hdr: np.ndarray, exposure: Exposure,
                rng: np.random.Generator | None = None) -> np.ndarray:
        """Radiance (H, W, C) in SPEC.md units -> integer codes (H, W, C) of ``code_dtype``.

        With ``rng`` None the capture is noise-free (quantisation and clipping only).
        """
        values = self.response.forward(self.sensor_signal(hdr, exposure, rng))
        levels = 2 ** self.bit_depth - 1
        codes = np.rint(values * levels)
        if self.bit_depth not in (8, 16):
            codes = codes * (65535 // levels)  # left-align in 16 bits: max code -> 65535
        return codes.astype(self.code_dtype)
