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
from collections.abc import Callable, Iterator
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
                  gain_db: float = 0.0, ev_low: float = -2.0, max_underexposure_ev: float = 1.5) -> float:
    """Exposure time (s) of the reference camera, as an HDR rig would set it.

    Puts the median luminance at pixel value ``target``, unless then more than 1 % of the
    pixels would clip even in the low anchor (``ev_low`` stops down): then it exposes
    for the 99th percentile at the low anchor's full scale, but never more than
    ``max_underexposure_ev`` below the median target.
    """
    lum = luminance(radiance[::4, ::4])
    median, p99 = (float(v) for v in np.percentile(lum, [50, 99]))
    if median <= 0:
        return max_s
    g = 10 ** (gain_db / 20)
    signal = float(camera.response.inverse(np.array([target], dtype=np.float32))[0])
    t_median = signal / (median * g)
    t_highlights = 1.0 / (max(p99, 1e-12) * g * 2.0 ** ev_low)
    t = float(np.clip(t_highlights, t_median * 2.0 ** -max_underexposure_ev, t_median))
    return float(min(t, max_s))


def calibrations(size_wh: tuple[int, int], cfg: RigConfig) -> tuple[CameraCalibration, CameraCalibration]:
    """CameraInfos of the reference and the anchor camera (pinhole, no distortion)."""
    w, h = size_wh
    f = cfg.focal_px or float(w)
    ref = CameraCalibration.pinhole(w, h, f, "reference")
    anchor = CameraCalibration.pinhole(w, h, f, "anchor", p_shift_px=cfg.baseline_px)
    return ref, anchor


@dataclass(frozen=True)
class RigEvent:
    """One delivered frame of a simulated recording, in capture order.

    Attributes:
        camera: "reference" or "anchor".
        frame: the frame (anchor frames raw, in the anchor camera's grid).
        ground_truth: (H, W, 3) radiance at the frame's true capture time in the reference
            grid, for reference frames; None for anchor frames.
    """

    camera: str
    frame: Frame
    ground_truth: np.ndarray | None = None


def _first_exposure(render: Renderer, cfg: RigConfig) -> tuple[float, tuple[int, int]]:
    first = render(0.0, 0.0, (0.0, 0.0))
    t_ref = cfg.reference_exposure_s or auto_exposure(first, cfg.reference_camera, cfg.auto_exposure_target,
                                                      0.9 / cfg.reference_rate_hz, cfg.gain_db, cfg.ev_low)
    return t_ref, (first.shape[1], first.shape[0])


def simulate_stream(render: Renderer, n_reference: int, cfg: RigConfig,
                    dropped: dict[str, int] | None = None) -> Iterator[RigEvent]:
    """Capture ``n_reference`` reference frame slots and the anchor frames that cover them,
    yielding delivered frames in capture order (memory stays at one frame).

    ``dropped``, when given, is updated with the number of frames lost per camera.
    """
    if n_reference < 1:
        raise ValueError("n_reference must be at least 1")
    rng = np.random.default_rng(cfg.seed)
    ref_period = 1.0 / cfg.reference_rate_hz
    anchor_period = 1.0 / cfg.effective_anchor_rate_hz
    max_ref_s, max_anchor_s = 0.9 * ref_period, 0.9 * anchor_period
    t_ref, _ = _first_exposure(render, cfg)
    dropped = dropped if dropped is not None else {}
    dropped.setdefault("reference", 0)
    dropped.setdefault("anchor", 0)
    end_s = n_reference * ref_period + anchor_period

    def jitter() -> float:
        return float(rng.normal(0.0, cfg.jitter_s)) if cfg.jitter_s > 0 else 0.0

    i = k = 0
    while i < n_reference or cfg.anchor_phase_s + k * anchor_period < end_s:
        t_i, t_k = i * ref_period, cfg.anchor_phase_s + k * anchor_period
        if i < n_reference and (t_i <= t_k or t_k >= end_s):
            exp = Exposure(t_ref, cfg.gain_db)
            radiance = render(t_i, exp.exposure_time_s, (0.0, 0.0))
            codes = cfg.reference_camera.capture(radiance, exp, rng)
            if cfg.auto_exposure_ev_s > 0:
                target = auto_exposure(radiance, cfg.reference_camera, cfg.auto_exposure_target, max_ref_s,
                                       cfg.gain_db, cfg.ev_low)
                step = cfg.auto_exposure_ev_s * ref_period
                t_ref = t_ref * 2.0 ** float(np.clip(math.log2(target / t_ref), -step, step))
            if rng.random() < cfg.drop_reference:
                dropped["reference"] += 1
            else:
                stamp = max(0, int(round((t_i + jitter()) * 1e9)))
                frame = Frame(to_unit(codes), stamp, Role.REFERENCE, exp, i, "reference_optical_frame")
                yield RigEvent("reference", frame, render(t_i, 0.0, (0.0, 0.0)))
            i += 1
        else:
            role, ev = (Role.LOW, cfg.ev_low) if k % 2 == 0 else (Role.HIGH, cfg.ev_high)
            # The anchor camera brackets the reference's current exposure.
            exp = Exposure(min(t_ref * 2.0 ** ev, max_anchor_s), cfg.gain_db)
            codes = cfg.anchor_camera.capture(render(t_k, exp.exposure_time_s, cfg.baseline_px), exp, rng)
            if rng.random() < cfg.drop_anchor:
                dropped["anchor"] += 1
            else:
                stamp = max(0, int(round((t_k + cfg.clock_offset_s + jitter()) * 1e9)))
                yield RigEvent("anchor", Frame(to_unit(codes), stamp, role, exp, k, "anchor_optical_frame"))
            k += 1


def simulate(render: Renderer, n_reference: int, cfg: RigConfig) -> RigSequence:
    """``simulate_stream`` collected into a RigSequence (all frames in memory)."""
    dropped: dict[str, int] = {}
    reference, anchors, truth = [], [], []
    for event in simulate_stream(render, n_reference, cfg, dropped):
        if event.camera == "reference":
            reference.append(event.frame)
            truth.append(event.ground_truth)
        else:
            anchors.append(event.frame)
    _, size_wh = _first_exposure(render, cfg)
    ref_cal, anchor_cal = calibrations(size_wh, cfg)
    gt = np.stack(truth) if truth else np.zeros((0, size_wh[1], size_wh[0], 3), np.float32)
    return RigSequence(tuple(reference), tuple(anchors), gt, ref_cal, anchor_cal, dropped)
