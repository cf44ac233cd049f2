"""Exposure roles of a real camera: the anchor's low/high alternation and the
reference's slow auto exposure. Pure logic; the GigE backend applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hdr_dcs.core.types import Role

__all__ = ["AnchorExposures", "SlowAutoExposure", "clamp_exposure_us"]


def clamp_exposure_us(value_us: float, bounds_us: tuple[float, float]) -> float:
    """``value_us`` within the camera's [min, max] exposure, us."""
    return float(min(max(value_us, bounds_us[0]), bounds_us[1]))


@dataclass(frozen=True)
class AnchorExposures:
    """The anchor camera's two exposures around the reference's, by EV offsets.

    Attributes:
        base_us: the reference camera's exposure, us.
        ev_low, ev_high: offsets in stops (ev_low <= 0 <= ev_high).
        bounds_us: the camera's exposure range, us.
    """

    base_us: float
    ev_low: float = -2.0
    ev_high: float = 2.0
    bounds_us: tuple[float, float] = (1.0, 1e7)

    def exposure_us(self, role: Role) -> float:
        """The requested exposure of a LOW or HIGH frame, us (clamped to the bounds)."""
        if role not in (Role.LOW, Role.HIGH):
            raise ValueError(f"an anchor frame is LOW or HIGH, got {role!r}")
        ev = self.ev_low if role == Role.LOW else self.ev_high
        return clamp_exposure_us(self.base_us * 2.0 ** ev, self.bounds_us)

    @staticmethod
    def next_role(role: Role | None) -> Role:
        """LOW, HIGH, LOW, ... (a pair is a LOW frame followed by a HIGH frame)."""
        return Role.HIGH if role == Role.LOW else Role.LOW


@dataclass
class SlowAutoExposure:
    """A slow, non-alternating auto exposure for the reference camera.

    Drives the median code level of a frame towards ``target`` by at most
    ``max_ev_per_s`` stops per second, and only when the error exceeds ``deadband_ev``,
    so that the backbone's exposure changes rarely and smoothly (every change costs the
    frames whose exposure is uncertain).

    Attributes:
        target: desired median code level in [0, 1] (0.4 ~ mid-grey through gamma 2.2).
        max_ev_per_s: slew limit, stops per second.
        deadband_ev: no change while |error| is below this, stops.
        gamma: the response exponent used to turn a code-level ratio into stops.
    """

    target: float = 0.4
    max_ev_per_s: float = 0.5
    deadband_ev: float = 0.25
    gamma: float = 2.2

    def error_ev(self, pixels: np.ndarray) -> float:
        """Stops to add to reach the target, from a frame's codes (any integer dtype)."""
        full = 255.0 if pixels.dtype == np.uint8 else 65535.0
        level = float(np.median(pixels[::4, ::4])) / full
        level = min(max(level, 1.0 / 1024), 1.0)
        return self.gamma * math.log2(self.target / level)

    def update(self, pixels: np.ndarray, exposure_us: float, dt_s: float,
               bounds_us: tuple[float, float]) -> float | None:
        """The new exposure after ``dt_s`` seconds, us, or None to keep the current one."""
        error = self.error_ev(pixels)
        if abs(error) < self.deadband_ev:
            return None
        step = math.copysign(min(abs(error), self.max_ev_per_s * max(dt_s, 0.0)), error)
        new = clamp_exposure_us(exposure_us * 2.0 ** step, bounds_us)
        return None if abs(math.log2(new / exposure_us)) < 1e-3 else new
