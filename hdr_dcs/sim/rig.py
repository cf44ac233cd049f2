"""The dual-camera rig: a reference camera at a constant medium exposure and an anchor
camera alternating low / high exposures, with independent clocks.

Anchor pairs are captured once per ``anchor_period_frames`` reference frames; within that
period the low frame is taken at ``anchor_phase`` and the high frame half a period later
(the anchor camera runs at 2 / period). Stamps are mid-exposure times in nanoseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..core.photometry import luminance, to_unit
from ..core.types import Exposure, Frame, Role
from .camera import CameraModel

#: ``render(t_mid_s, duration_s, offset_xy) -> (H, W, 3) radiance``
Renderer = Callable[[float, float, tuple[float, float]], np.ndarray]


@dataclass(frozen=True)
class RigConfig:
    """Timing and exposure of the two cameras.

    Attributes:
        reference_rate_hz: frame rate of the reference camera.
        anchor_period_frames: one low + high pair per this many reference frames.
        anchor_phase: where in the period the low frame is taken, in [0, 0.5).
        ev_low, ev_high: anchor exposures relative to the reference, stops.
        reference_exposure_s: the reference's exposure time; None = auto from the first frame.
        auto_exposure_target: for auto: the reference's median pixel value.
        parallax_px: residual misregistration of the anchor camera after calibration.
        jitter_s: standard deviation of timestamp jitter of both cameras.
        seed: seeds every random draw (noise, jitter).
    """

    reference_rate_hz: float = 30.0
    anchor_period_frames: int = 5
    anchor_phase: float = 0.2
    ev_low: float = -2.0
    ev_high: float = 2.0
    reference_exposure_s: float | None = None
    auto_exposure_target: float = 0.4
    max_exposure_fraction: float = 0.9
    gain_db: float = 0.0
    parallax_px: tuple[float, float] = (0.4, -0.3)
    jitter_s: float = 0.0
    seed: int = 0
    reference_camera: CameraModel = field(default_factory=CameraModel)
    anchor_camera: CameraModel = field(default_factory=CameraModel)


@dataclass(frozen=True)
class RigSequence:
    """A simulated recording with ground truth.

    Attributes:
        reference: reference frames in capture order.
        anchors: anchor frames (LOW, HIGH alternating) in capture order, registered into
            the reference grid up to ``RigConfig.parallax_px``.
        ground_truth: (N, H, W, 3) float32 radiance at each reference frame's stamp.
        reference_exposure: the reference camera's exposure.
    """

    reference: tuple[Frame, ...]
    anchors: tuple[Frame, ...]
    ground_truth: np.ndarray
    reference_exposure: Exposure


def auto_exposure(radiance: np.ndarray, camera: CameraModel, target: float, max_s: float) -> float:
    """Exposure time (s) that puts the median luminance at pixel value ``target``."""
    median = float(np.median(luminance(radiance)))
    if median <= 0:
        return max_s
    signal = float(camera.response.inverse(np.array([target], dtype=np.float32))[0])
    return float(min(signal / median, max_s))


def simulate(render: Renderer, n_reference: int, cfg: RigConfig) -> RigSequence:
    """Capture ``n_reference`` reference frames and the anchor pairs that cover them."""
    rng = np.random.default_rng(cfg.seed)
    period_s = 1.0 / cfg.reference_rate_hz
    t_ref = cfg.reference_exposure_s
    if t_ref is None:
        t_ref = auto_exposure(render(0.0, 0.0, (0.0, 0.0)), cfg.reference_camera,
                              cfg.auto_exposure_target, cfg.max_exposure_fraction * period_s)
    ref_exp = Exposure(t_ref, cfg.gain_db)

    def jitter() -> float:
        return float(rng.normal(0.0, cfg.jitter_s)) if cfg.jitter_s > 0 else 0.0

    reference, truth = [], []
    for i in range(n_reference):
        t = i * period_s
        codes = cfg.reference_camera.capture(render(t, ref_exp.exposure_time_s, (0.0, 0.0)), ref_exp, rng)
        stamp = int(round((t + jitter()) * 1e9))
        reference.append(Frame(to_unit(codes), stamp, Role.REFERENCE, ref_exp, i, "reference_optical"))
        truth.append(render(t, 0.0, (0.0, 0.0)))

    anchors = []
    window_s = cfg.anchor_period_frames * period_s
    n_pairs = math.ceil(n_reference / cfg.anchor_period_frames)
    max_anchor_s = 0.45 * window_s
    seq = 0
    for p in range(n_pairs):
        for role, ev, phase in ((Role.LOW, cfg.ev_low, cfg.anchor_phase),
                                (Role.HIGH, cfg.ev_high, cfg.anchor_phase + 0.5)):
            t = (p + phase) * window_s - 0.5 * period_s
            exp = Exposure(min(t_ref * 2.0 ** ev, max_anchor_s), cfg.gain_db)
            radiance = render(t, exp.exposure_time_s, cfg.parallax_px)
            codes = cfg.anchor_camera.capture(radiance, exp, rng)
            stamp = int(round((t + jitter()) * 1e9))
            anchors.append(Frame(to_unit(codes), stamp, role, exp, seq, "anchor_optical"))
            seq += 1
    return RigSequence(tuple(reference), tuple(anchors), np.stack(truth), ref_exp)
