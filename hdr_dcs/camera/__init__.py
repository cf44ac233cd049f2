"""Camera backends: what a camera node needs from a camera, simulated or real.

A backend delivers captured frames with the exposure they really had (read back from
the camera, never assumed) and a mid-exposure stamp on the host's (node's) clock. The
simulated rig (``sim_backend.SimCameraBackend``) and GigE Vision cameras through Aravis
(``gige_backend.GigECameraBackend``) implement it. A backend may also offer
``status_values() -> Mapping[str, str]`` (extra diagnostics) and
``set_reference_exposure(exposure_us, gain_db)`` (an anchor centred on the reference).

Life cycle, all from one capture thread except ``close``::

    backend.open()                       # CameraError when the camera cannot be opened
    while running:
        frame = backend.grab(timeout_s)  # None: nothing within the timeout (or closed);
                                         # CameraError: the camera is gone (disconnect)
    backend.close()                      # idempotent; any thread; unblocks grab()

Frames the camera lost are not delivered; their ``sequence_id`` values are used up (as
GigE block ids are) and ``drop_counts()`` says why they were lost.

No rclpy here: the node owns ROS time and hands the backend a clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import HdrDcsError
from hdr_dcs.core.types import Role

__all__ = ["CAMERAS", "CameraBackend", "CameraError", "CapturedFrame", "NsClock", "system_clock_ns"]

#: the two cameras of the rig
CAMERAS = ("reference", "anchor")

#: now in integer nanoseconds on the clock stamps are expressed in (the node's clock)
NsClock = Callable[[], int]


def system_clock_ns() -> int:
    """Wall-clock time in ns (what a node's clock gives without use_sim_time)."""
    return time.time_ns()


class CameraError(HdrDcsError):
    """A camera failure with a one-line reason: cannot open, disconnected, misconfigured."""


@dataclass(frozen=True, eq=False)
class CapturedFrame:
    """One frame as the camera delivered it.

    Attributes:
        pixels: integer codes, (H, W, 3) RGB or (H, W) mono; uint8 for 8-bit cameras,
            uint16 otherwise (10/12-bit codes left-aligned: full scale is 65535).
        stamp_ns: mid-exposure time on the node's clock, ns.
        role: REFERENCE for the reference camera, LOW / HIGH for the anchor camera.
        exposure_time_s: the exposure the frame really had, seconds.
        gain_db: the analog gain it really had, dB (0 = unity).
        sequence_id: per-camera frame counter; +1 per captured frame (lost frames use ids up).
        bit_depth: significant bits of the codes (8, 10, 12, 16).
        delay_s: seconds from the end of the exposure until the frame was handed over
            (simulator: render time; GigE: readout and transfer).
        ground_truth: simulators only: (H, W, 3) float32 radiance at the frame's
            mid-exposure instant in the reference grid (SPEC.md units), when requested.
    """

    pixels: np.ndarray
    stamp_ns: int
    role: Role
    exposure_time_s: float
    gain_db: float
    sequence_id: int
    bit_depth: int = 8
    delay_s: float = 0.0
    ground_truth: np.ndarray | None = None

    @property
    def exposure_time_us(self) -> float:
        return self.exposure_time_s * 1e6

    @property
    def size_wh(self) -> tuple[int, int]:
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


@runtime_checkable
class CameraBackend(Protocol):
    """A source of ``CapturedFrame`` for one camera of the rig (see the module docstring)."""

    @property
    def camera(self) -> str:
        """"reference" or "anchor"."""

    @property
    def description(self) -> str:
        """One line for diagnostics: model, serial or scene, size, rate."""

    def open(self) -> None:
        """Connect and start acquisition. Raises CameraError with the reason."""

    def close(self) -> None:
        """Stop acquisition and disconnect; idempotent, callable from any thread, and
        makes a blocked ``grab`` return None promptly."""

    def grab(self, timeout_s: float) -> CapturedFrame | None:
        """The next frame, waiting at most ``timeout_s`` seconds (wall time).

        Returns None on timeout or when closed. Raises CameraError when the camera is
        gone (the caller may ``close`` and ``open`` again).
        """

    def calibration(self) -> CameraCalibration | None:
        """The camera's calibration when the backend knows it (the simulator does, exactly;
        a real camera does not: None)."""

    def drop_counts(self) -> Mapping[str, int]:
        """Frames lost since ``open`` by reason (e.g. "render overrun", "incomplete")."""
