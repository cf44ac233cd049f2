"""Mid-exposure stamps of GigE frames on the node's clock.

Two sources, chosen per frame and reported in diagnostics:

- ``ptp``: the camera clock is synchronised by IEEE 1588 (PTP enabled and the camera a
  locked slave, or the master): the camera's own timestamp is already on the rig's
  clock. The stamp is ``camera timestamp + exposure / 2 + latch offset`` (no host jitter).
- ``host``: otherwise. The camera clock ticks steadily but from an unknown origin, and
  the host receive time carries the network and scheduling jitter. ``ClockMapper`` keeps
  both virtues: it maps the camera timestamp onto the host clock by the smallest offset
  seen recently (one-way minimum-delay synchronisation: the frame that arrived fastest
  bounds the clock offset best), after removing the parts of the delay that are known
  per frame (the exposure, when the camera latches at exposure start, and the
  transfer time of the payload over the link). Frames without a camera timestamp fall
  back to the receive time minus those known parts.

GenICam cameras commonly latch the timestamp at exposure (frame) start; some at exposure
end: ``latch`` says which (``exposure_start`` or ``exposure_end``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["LATCHES", "ClockMapper", "StampResult"]

LATCHES = ("exposure_start", "exposure_end")


@dataclass(frozen=True)
class StampResult:
    """A frame's stamp and how it was obtained.

    Attributes:
        stamp_ns: mid-exposure time on the node's clock, ns.
        source: "ptp", "host (camera clock mapped)" or "host (receive time)".
        delay_s: from the end of the exposure to the host receive time (readout + transfer
            + host latency), as far as the source can tell.
    """

    stamp_ns: int
    source: str
    delay_s: float


class ClockMapper:
    """Camera timestamps -> node-clock mid-exposure stamps (see the module docstring).

    Args:
        window: frames over which the minimum offset is taken (tracks drift between the
            clocks; at 30 Hz, 256 frames is ~8 s).
        latch: where in the frame the camera latches its timestamp.
        link_bps: link rate used to estimate the transfer time of a payload, bit/s.
        ptp_offset_ns: node clock - PTP clock (e.g. the TAI-UTC offset when the rig's
            grandmaster runs on TAI and the node clock on UTC), ns.
    """

    def __init__(self, window: int = 256, latch: str = "exposure_start", link_bps: float = 1e9,
                 ptp_offset_ns: int = 0) -> None:
        if latch not in LATCHES:
            raise ValueError(f"latch must be one of {', '.join(LATCHES)}, got {latch!r}")
        if window < 1 or link_bps <= 0:
            raise ValueError("window must be >= 1 and link_bps > 0")
        self.latch = latch
        self.link_bps = float(link_bps)
        self.ptp_offset_ns = int(ptp_offset_ns)
        self._offsets: deque[int] = deque(maxlen=window)

    def reset(self) -> None:
        """Forget the offset history (a reconnected camera restarts its clock)."""
        self._offsets.clear()

    @property
    def offset_ns(self) -> int | None:
        """The current camera-to-node clock offset estimate (host mode), ns."""
        return min(self._offsets) if self._offsets else None

    def _latch_to_mid_ns(self, exposure_s: float) -> int:
        half = int(round(exposure_s * 0.5e9))
        return half if self.latch == "exposure_start" else -half

    def stamp(self, camera_ns: int, receive_ns: int, exposure_s: float, payload_bytes: int,
              ptp: bool = False) -> StampResult:
        """The stamp of one frame.

        Args:
            camera_ns: the buffer's camera timestamp, ns (0 = none).
            receive_ns: host receive time on the node clock, ns.
            exposure_s: the frame's exposure, s.
            payload_bytes: image bytes transferred.
            ptp: the camera clock is PTP-locked.
        """
        transfer_ns = int(round(payload_bytes * 8 / self.link_bps * 1e9))
        exposure_ns = int(round(exposure_s * 1e9))
        if ptp and camera_ns > 0:
            mid = camera_ns + self.ptp_offset_ns + self._latch_to_mid_ns(exposure_s)
            return StampResult(mid, "ptp", (receive_ns - mid - exposure_ns // 2) * 1e-9)
        # receive = latch + (exposure if latched at start) + transfer + residual latency
        known_ns = transfer_ns + (exposure_ns if self.latch == "exposure_start" else 0)
        if camera_ns <= 0:
            latch_ns = receive_ns - known_ns
            mid = latch_ns + self._latch_to_mid_ns(exposure_s)
            return StampResult(mid, "host (receive time)", transfer_ns * 1e-9)
        self._offsets.append(receive_ns - known_ns - camera_ns)
        latch_ns = camera_ns + min(self._offsets)
        mid = latch_ns + self._latch_to_mid_ns(exposure_s)
        return StampResult(mid, "host (camera clock mapped)", (receive_ns - mid - exposure_ns // 2) * 1e-9)
