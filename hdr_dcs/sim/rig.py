"""The dual-camera rig: a reference camera at a constant medium exposure and an anchor
camera alternating low / high exposures, each with its own clock.

Reference frame i is captured at t = i / reference_rate_hz; anchor frame k at
t = anchor_phase_s + k / anchor_rate_hz, LOW for even k and HIGH for odd k, its exposure
``ev_low`` / ``ev_high`` stops around the reference's current exposure (bounded by its
frame interval). Stamps are mid-exposure times on each camera's own clock: the anchor
clock runs ``clock_offset_s`` ahead, both jitter. Dropped frames are not delivered, but
their sequence ids are used up, as on a real camera.

The anchor camera sits ``baseline_px`` beside the reference (disparity at the working
distance); its raw frames are in its own grid and its CameraInfo registers them into the
reference grid at the working distance (SPEC.md calibration semantics). Scene layers
nearer or farther than that keep a residual parallax, as on a real rig.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core.calibration import CameraCalibration
from ..core.photometry import luminance, to_unit
from ..core.types import Exposure, Frame, Role
from .camera import CameraModel

#: ``render(t_mid_s, duration_s, baseline_xy) -> (H, W, 3) radiance``
Renderer = Callable[[float, float, tuple[float, float]], np.ndarray]


@dataclass(frozen=True)
class RigConfig:
    """Timing, exposure and geometry of the two cameras.

    Attributes:
        reference_rate_hz: frame rate of the reference camera.
        anchor_period_frames: one low + high pair per this many reference frames; sets the
            anchor camera's rate (2 * reference_rate / period) unless ``anchor_rate_hz`` is given.
        anchor_rate_hz: the anchor camera's frame rate (overrides the period).
        anchor_phase_s: time of the first anchor frame on the reference timeline.
        clock_offset_s: anchor clock minus reference clock.
        jitter_s: standard deviation of each camera's stamp jitter.
        drop_reference, drop_anchor: probability that a frame is lost.
        ev_low, ev_high: anchor exposures relative to the reference, stops.
        reference_exposure_s: fixed reference exposure; None = auto from the first frame.
        auto_exposure_target: the reference's median pixel value under auto exposure.
        auto_exposure_ev_s: slow auto exposure rate limit (0 = set once, then fixed).
        gain_db: analog gain of both cameras.
        baseline_px: anchor camera disparity at the working distance (x, y), pixels.
        focal_px: focal length written into both CameraInfos (None = image width).
        seed: seeds every random draw (noise, jitter, drops).
    """

    reference_rate_hz: float = 30.0
    anchor_period_frames: int = 5
    anchor_rate_hz: float | None = None
    anchor_phase_s: float = 0.02
    clock_offset_s: float = 0.0
    jitter_s: float = 0.0
    drop_reference: float = 0.0
    drop_anchor: float = 0.0
    ev_low: float = -2.0
    ev_high: float = 2.0
    reference_exposure_s: float | None = None
    auto_exposure_target: float = 0.4
    auto_exposure_ev_s: float = 0.0
    gain_db: float = 0.0
    baseline_px: tuple[float, float] = (0.0, 0.0)
    focal_px: float | None = None
    seed: int = 0
    reference_camera: CameraModel = field(default_factory=CameraModel)
    anchor_camera: CameraModel = field(default_factory=CameraModel)

    @property
    def effective_anchor_rate_hz(self) -> float:
        if self.anchor_rate_hz is not None:
            return self.anchor_rate_hz
        return 2.0 * self.reference_rate_hz / self.anchor_period_frames


@dataclass(frozen=True)
class RigSequence:
    """A simulated recording with ground truth.

    Attributes:
        reference: delivered reference frames in capture order.
        anchors: delivered anchor frames (raw, anchor camera grid) in capture order.
        ground_truth: (N, H, W, 3) float32 radiance at each delivered reference frame's
            true capture time, in the reference grid.
        reference_calibration, anchor_calibration: the CameraInfos of the two cameras.
        dropped: number of frames lost per camera ("reference", "anchor").
    """

    reference: tuple[Frame, ...]
    anchors: tuple[Frame, ...]
    ground_truth: np.ndarray
    reference_calibration: CameraCalibration
    anchor_calibration: CameraCalibration
    dropped: dict[str, int]

    @property
    def reference_exposure(self) -> Exposure:
        """The first reference frame's exposure."""
        return self.reference[0].exposure


def auto_exposure(radiance: np.ndarray, camera: CameraModel, target: float, max_s: float,
                  gain_db: float = 0.0) -> float:
    """Exposure time (s) that puts the median luminance of ``radiance`` at pixel value ``target``."""
    median = float(np.median(luminance(radiance[::4, ::4])))
    if median <= 0:
        return max_s
    signal = float(camera.response.inverse(np.array([target], dtype=np.float32))[0])
    return float(min(signal / (median * 10 ** (gain_db / 20)), max_s))


def calibrations(size_wh: tuple[int, int], cfg: RigConfig) -> tuple[CameraCalibration, CameraCalibration]:
    """CameraInfos of the reference and the anchor camera (pinhole, no distortion)."""
    w, h = size_wh
    f = cfg.focal_px or float(w)
    ref = CameraCalibration.pinhole(w, h, f, "reference")
    anchor = CameraCalibration.pinhole(w, h, f, "anchor", p_shift_px=cfg.baseline_px)
    return ref, anchor


def simulate(render: Renderer, n_reference: int, cfg: RigConfig) -> RigSequence:
    """Capture ``n_reference`` reference frame slots and the anchor frames that cover them."""
    if n_reference < 1:
        raise ValueError("n_reference must be at least 1")
    rng = np.random.default_rng(cfg.seed)
    ref_period = 1.0 / cfg.reference_rate_hz
    anchor_period = 1.0 / cfg.effective_anchor_rate_hz
    first = render(0.0, 0.0, (0.0, 0.0))
    size_wh = (first.shape[1], first.shape[0])
    max_ref_s = 0.9 * ref_period
    t_ref = cfg.reference_exposure_s or auto_exposure(first, cfg.reference_camera, cfg.auto_exposure_target,
                                                      max_ref_s, cfg.gain_db)

    def jitter() -> float:
        return float(rng.normal(0.0, cfg.jitter_s)) if cfg.jitter_s > 0 else 0.0

    reference, truth, ref_exposures = [], [], []
    dropped = {"reference": 0, "anchor": 0}
    for i in range(n_reference):
        t = i * ref_period
        exp = Exposure(t_ref, cfg.gain_db)
        ref_exposures.append((t, t_ref))
        radiance = render(t, exp.exposure_time_s, (0.0, 0.0))
        codes = cfg.reference_camera.capture(radiance, exp, rng)
        if cfg.auto_exposure_ev_s > 0:
            target = auto_exposure(radiance, cfg.reference_camera, cfg.auto_exposure_target, max_ref_s, cfg.gain_db)
            step = cfg.auto_exposure_ev_s * ref_period
            t_ref = t_ref * 2.0 ** float(np.clip(math.log2(target / t_ref), -step, step))
        if rng.random() < cfg.drop_reference:
            dropped["reference"] += 1
            continue
        stamp = int(round((t + jitter()) * 1e9))
        reference.append(Frame(to_unit(codes), stamp, Role.REFERENCE, exp, i, "reference_optical_frame"))
        truth.append(render(t, 0.0, (0.0, 0.0)))

    anchors = []
    end_s = n_reference * ref_period + anchor_period
    max_anchor_s = 0.9 * anchor_period
    k = 0
    while cfg.anchor_phase_s + k * anchor_period < end_s:
        t = cfg.anchor_phase_s + k * anchor_period
        role, ev = (Role.LOW, cfg.ev_low) if k % 2 == 0 else (Role.HIGH, cfg.ev_high)
        # The anchor camera follows the reference's exposure at the time it is captured.
        current = ref_exposures[min(int(max(t, 0.0) / ref_period), len(ref_exposures) - 1)][1]
        exp = Exposure(min(current * 2.0 ** ev, max_anchor_s), cfg.gain_db)
        radiance = render(t, exp.exposure_time_s, cfg.baseline_px)
        codes = cfg.anchor_camera.capture(radiance, exp, rng)
        if rng.random() < cfg.drop_anchor:
            dropped["anchor"] += 1
        else:
            stamp = int(round((t + cfg.clock_offset_s + jitter()) * 1e9))
            anchors.append(Frame(to_unit(codes), stamp, role, exp, k, "anchor_optical_frame"))
        k += 1
    ref_cal, anchor_cal = calibrations(size_wh, cfg)
    gt = np.stack(truth) if truth else np.zeros((0, size_wh[1], size_wh[0], 3), np.float32)
    return RigSequence(tuple(reference), tuple(anchors), gt, ref_cal, anchor_cal, dropped)
