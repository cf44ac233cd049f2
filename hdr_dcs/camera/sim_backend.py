"""The simulated rig as a live camera: renders ``sim.rig``'s scene in real time.

Two ``SimCameraBackend`` instances (the reference and the anchor camera, in the same or in
different processes) see the same scene at the same instants without talking to each
other: everything is a function of the node clock and shared settings.

Timeline (as ``sim.rig.simulate_stream``), relative to ``epoch_s`` on the node clock:

- reference frame i: mid-exposure at ``i / reference_rate_hz``;
- anchor frame k: mid-exposure at ``anchor_phase_s + k / anchor_rate``, LOW for even k and
  HIGH for odd k (k counted from the epoch, so every process agrees on the roles);
- the scene is rendered at ``t mod loop_s`` (the scene loops; a ``loop_s`` that is a
  multiple of both frame periods keeps the pattern identical in every loop).

Exposures: the reference exposure is fixed, computed once from the scene at t = 0 with
``sim.rig.auto_exposure`` (or ``RigConfig.reference_exposure_s``), so both cameras derive
the same value independently; anchor frames bracket it by ``ev_low`` / ``ev_high`` stops,
bounded by 0.9 of the anchor frame interval. Slow auto exposure (``auto_exposure_ev_s``)
is not simulated live.

A frame is rendered when its exposure has ended on the node clock, and stamped with its
mid-exposure time (so use_sim_time works: the frames follow /clock). If rendering falls
behind so that a later frame is already complete, the frames in between are skipped and
counted as dropped ("render overrun"), never delivered late in a drifting stream; their
sequence ids are used up, as on a real camera.
"""

from __future__ import annotations

import math
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.types import Exposure, Role
from hdr_dcs.sim.rig import RigConfig, auto_exposure, calibrations
from hdr_dcs.sim.scene import LayeredScene
from hdr_dcs.sim.scenes import make_scene

from . import CAMERAS, CameraError, CapturedFrame, NsClock, system_clock_ns

__all__ = ["SimCameraBackend", "reference_exposure_s"]

_NS = 10**9
#: renders happen when due; this wall-time slice bounds how long a wait ignores close()
_WAIT_SLICE_S = 0.05


def _fraction(value: float) -> Fraction:
    return Fraction(value).limit_denominator(1_000_000)


def reference_exposure_s(scene: LayeredScene, rig: RigConfig) -> float:
    """The fixed reference exposure both simulated cameras use (``sim.rig`` auto exposure
    on the scene at t = 0, bounded by 0.9 of the reference frame interval)."""
    if rig.reference_exposure_s:
        return float(rig.reference_exposure_s)
    first = scene.render_exposure(0.0, 0.0, (0.0, 0.0))
    return auto_exposure(first, rig.reference_camera, rig.auto_exposure_target, 0.9 / rig.reference_rate_hz,
                         rig.gain_db, rig.ev_low)


class SimCameraBackend:
    """One camera of the simulated rig, implementing ``hdr_dcs.camera.CameraBackend``.

    Args:
        camera: "reference" or "anchor".
        scene_name: one of ``sim.scenes.SCENES`` or ``procedural_<seed>``.
        rig: rates, anchor phase, EVs, baseline, gain, noise seed and camera models.
        size_wh: image size (both cameras).
        loop_s: the scene repeats with this period, seconds.
        epoch_s: node-clock time (s) of reference frame 0; every process must use the same.
        clock: node clock, ns (default: wall clock).
        exr_dir: OpenEXR sample images for EXR-based scenes (None: the default place).
        ground_truth: reference camera: attach the ground-truth radiance to each frame.
        scene: an already built scene (tests); ``scene_name`` is then only a label.
    """

    def __init__(self, camera: str, scene_name: str = "street", rig: RigConfig | None = None,
                 size_wh: tuple[int, int] = (640, 480), loop_s: float = 10.0, epoch_s: float = 0.0,
                 clock: NsClock = system_clock_ns, exr_dir: str | Path | None = None,
                 ground_truth: bool = False, scene: LayeredScene | None = None) -> None:
        if camera not in CAMERAS:
            raise ValueError(f"camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
        if not (math.isfinite(loop_s) and loop_s > 0):
            raise ValueError(f"loop_s must be > 0, got {loop_s}")
        self._camera = camera
        self.scene_name = scene_name
        self.rig = rig or RigConfig()
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.loop_s = float(loop_s)
        self.epoch_ns = int(round(epoch_s * _NS))
        self._clock = clock
        self._exr_dir = Path(exr_dir) if exr_dir else None
        self.ground_truth = bool(ground_truth) and camera == "reference"
        self._scene = scene
        self._model = self.rig.reference_camera if camera == "reference" else self.rig.anchor_camera
        if camera == "reference":
            rate = _fraction(self.rig.reference_rate_hz)
            self._offset_ns = Fraction(0)
        else:
            rate = (_fraction(self.rig.anchor_rate_hz) if self.rig.anchor_rate_hz is not None
                    else 2 * _fraction(self.rig.reference_rate_hz) / self.rig.anchor_period_frames)
            self._offset_ns = Fraction(round(self.rig.anchor_phase_s * _NS))
        self.rate_hz = float(rate)
        self._period_ns = Fraction(_NS) / rate
        self._loop_ns = _fraction(self.loop_s) * _NS
        self._stop = threading.Event()
        self._opened = False
        self._next = 0
        self._seq = 0
        self._drops: dict[str, int] = {}
        self.reference_exposure_s = float("nan")

    # -- CameraBackend --------------------------------------------------------------------
    @property
    def camera(self) -> str:
        return self._camera

    @property
    def description(self) -> str:
        w, h = self.size_wh
        return f"simulated {self._camera} camera: scene {self.scene_name}, {w}x{h}, {self.rate_hz:.4g} Hz"

    def open(self) -> None:
        """Build the scene and the fixed exposures; the first frame delivered is the next
        one whose exposure ends after now."""
        try:
            if self._scene is None:
                self._scene = make_scene(self.scene_name, self._exr_dir, self.size_wh, self.loop_s)
            self.reference_exposure_s = reference_exposure_s(self._scene, self.rig)
        except (InputError, OSError, ValueError) as exc:
            raise CameraError(f"simulated {self._camera} camera: {exc}") from exc
        if tuple(self._scene.size_wh) != self.size_wh:
            raise CameraError(f"scene size {self._scene.size_wh} differs from the camera size {self.size_wh}")
        self._stop.clear()
        self._drops = {}
        self._seq = 0
        self._next = self._latest_ready(self._clock()) + 1
        self._opened = True

    def close(self) -> None:
        self._opened = False
        self._stop.set()

    def grab(self, timeout_s: float) -> CapturedFrame | None:
        if not self._opened:
            if self._stop.is_set():
                return None
            raise CameraError(f"simulated {self._camera} camera is not open")
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            if self._stop.is_set():
                return None
            now = self._clock()
            latest = self._latest_ready(now)
            if latest >= self._next:
                break
            if latest < self._next - 2:
                # The clock went back (a looping bag under use_sim_time): resume from now.
                self._next = latest + 1
            wall_left = deadline - time.monotonic()
            if wall_left <= 0:
                return None
            wait_s = (self._ready_ns(self._next) - now) / _NS
            self._stop.wait(min(max(wait_s, 0.0005), wall_left, _WAIT_SLICE_S))
        index = self._next
        if latest > index:  # behind by more than a frame: skip to the newest complete frame
            skipped = latest - index
            self._drops["render overrun"] = self._drops.get("render overrun", 0) + skipped
            self._seq += skipped
            index = latest
        frame = self.render(index, self._seq)
        self._next = index + 1
        self._seq += 1
        return frame

    def calibration(self) -> CameraCalibration:
        ref, anchor = calibrations(self.size_wh, self.rig)
        return ref if self._camera == "reference" else anchor

    def drop_counts(self) -> dict[str, int]:
        return dict(self._drops)

    # -- timeline ---------------------------------------------------------------------------
    def role(self, index: int) -> Role:
        """Role of frame ``index`` (counted from the epoch)."""
        if self._camera == "reference":
            return Role.REFERENCE
        return Role.LOW if index % 2 == 0 else Role.HIGH

    def exposure_s(self, index: int) -> float:
        """Exposure time of frame ``index``, seconds (needs ``open``)."""
        t_ref = self.reference_exposure_s
        if self._camera == "reference":
            return t_ref
        ev = self.rig.ev_low if self.role(index) == Role.LOW else self.rig.ev_high
        return min(t_ref * 2.0 ** ev, 0.9 * float(self._period_ns) / _NS)

    def mid_ns(self, index: int) -> int:
        """Mid-exposure time of frame ``index`` on the node clock, ns."""
        return self.epoch_ns + round(self._offset_ns + index * self._period_ns)

    def scene_time_s(self, index: int) -> float:
        """The scene instant frame ``index`` shows (its time since the epoch mod loop_s)."""
        return float(((self._offset_ns + index * self._period_ns) % self._loop_ns) / _NS)

    def _ready_ns(self, index: int) -> int:
        return self.mid_ns(index) + int(round(self.exposure_s(index) * _NS / 2))

    def _latest_ready(self, now_ns: int) -> int:
        """The newest frame whose exposure has ended at ``now_ns``."""
        m = math.floor((now_ns - self.epoch_ns - self._offset_ns) / self._period_ns)
        if self._ready_ns(m) > now_ns:  # exposures are < 0.9 period: one step back suffices
            m -= 1
        return m

    def render(self, index: int, sequence_id: int) -> CapturedFrame:
        """Render and capture frame ``index`` (deterministic: noise seeded by rig seed,
        camera and index)."""
        start = time.perf_counter()
        assert self._scene is not None
        t_scene = self.scene_time_s(index)
        exposure = Exposure(self.exposure_s(index), self.rig.gain_db)
        baseline = (0.0, 0.0) if self._camera == "reference" else tuple(self.rig.baseline_px)
        radiance = self._scene.render_exposure(t_scene, exposure.exposure_time_s, baseline)
        rng = np.random.default_rng([self.rig.seed, CAMERAS.index(self._camera), index % 2**64])
        codes = self._model.capture(radiance, exposure, rng)
        truth = self._scene.render(t_scene) if self.ground_truth else None
        return CapturedFrame(pixels=codes, stamp_ns=self.mid_ns(index), role=self.role(index),
                             exposure_time_s=exposure.exposure_time_s, gain_db=exposure.gain_db,
                             sequence_id=sequence_id & 0xFFFFFFFF, bit_depth=self._model.bit_depth,
                             delay_s=time.perf_counter() - start, ground_truth=truth)
