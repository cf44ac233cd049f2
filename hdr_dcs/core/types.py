"""Immutable value types shared by every part of hdr_dcs. Units are in the names."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Role(enum.IntEnum):
    """Exposure role of a frame; values equal hdr_dcs_msgs/ExposureInfo ROLE_* constants."""

    REFERENCE = 0
    LOW = 1
    HIGH = 2


@dataclass(frozen=True)
class Exposure:
    """Exposure actually used for a frame.

    Attributes:
        exposure_time_s: integration time in seconds (ExposureInfo.exposure_time_us * 1e-6).
        gain_db: analog gain in dB, 0 = unity.
    """

    exposure_time_s: float
    gain_db: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.exposure_time_s) and self.exposure_time_s > 0):
            raise ValueError(f"exposure_time_s must be finite and > 0, got {self.exposure_time_s}")
        if not np.isfinite(self.gain_db):
            raise ValueError(f"gain_db must be finite, got {self.gain_db}")

    @property
    def gain_linear(self) -> float:
        """Linear gain g = 10 ** (gain_db / 20)."""
        return float(10.0 ** (self.gain_db / 20.0))

    @property
    def scale(self) -> float:
        """t * g: sensor signal per unit radiance (SPEC.md: L = f(H * t * g))."""
        return self.exposure_time_s * self.gain_linear

    def ev_relative_to(self, other: Exposure) -> float:
        """Exposure value difference log2(scale / other.scale) in stops."""
        return float(np.log2(self.scale / other.scale))


@dataclass(frozen=True)
class Frame:
    """One camera frame, normalised.

    Attributes:
        pixels: (H, W, 3) float32 RGB in [0, 1] (integer codes divided by their maximum).
        stamp_ns: mid-exposure time in nanoseconds.
        role: exposure role.
        exposure: exposure actually used.
        sequence_id: per-camera frame counter.
        frame_id: camera optical frame.
    """

    pixels: np.ndarray
    stamp_ns: int
    role: Role
    exposure: Exposure
    sequence_id: int = 0
    frame_id: str = ""

    @property
    def stamp_s(self) -> float:
        return self.stamp_ns * 1e-9


@dataclass(frozen=True)
class AnchorPair:
    """A low and a high anchor frame, both registered into the reference image grid."""

    low: Frame
    high: Frame

    @property
    def stamp_ns(self) -> int:
        """Mean stamp of the two frames."""
        return (self.low.stamp_ns + self.high.stamp_ns) // 2


@dataclass(frozen=True)
class FrameGroup:
    """One reference frame with the anchor pair assigned to it (None when none is usable).

    Attributes:
        reference: the reference frame.
        anchors: its anchor pair, registered into the reference grid, or None.
        anchor_age_s: |reference stamp - anchor pair stamp| in seconds (0 without anchors).
    """

    reference: Frame
    anchors: AnchorPair | None = None
    anchor_age_s: float = 0.0
    extras: dict = field(default_factory=dict, compare=False)
