"""Augmentation: one geometric transform for a whole window, and photometric randomisation
of the simulated rig.

Geometric (``SpatialTransform``): a crop, vertical / horizontal flips and a rotation by a
multiple of 90 degrees (the papers' "random rotations"), applied identically to every
reference frame, both anchor pairs, their valid masks and the ground truth, so a window
stays consistent. Works on numpy arrays and torch tensors, channels-last (..., H, W, C)
or channels-first (..., C, H, W). Flips and quarter turns are exact permutations of
pixels (no interpolation).

Photometric (``RigRandomization``, ``draw_rig``): done at simulation time, where it is
physically right: noise depends on the signal before the response curve and clipping.
Per sample we draw the EV spacing of the anchors around the reference, the sensor (bit
depth 8 or 12, full-well capacity, read noise), the analog gain, the reference exposure
time and the brightness of the scene (median reference pixel), the anchor camera's phase,
baseline and stamp jitter, and where in the scene's timeline the clip starts. Everything
comes from the numpy Generator passed in.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.photometry import GammaResponse, luminance
from ..sim.camera import CameraModel
from ..sim.rig import RigConfig
from .windows import Anchors, Window

__all__ = ["ExposedRenderer", "RigDraw", "RigRandomization", "SpatialTransform", "augment_window",
           "draw_rig", "random_transform", "transform_window"]


# --- geometric -------------------------------------------------------------------------------

@dataclass(frozen=True)
class SpatialTransform:
    """Crop rows y0:y0+h, columns x0:x0+w, then flip, then rotate by k quarter turns
    (counter-clockwise, ``np.rot90``'s convention).

    Attributes:
        y0, x0, h, w: the crop in the source image (h, w None = to the end).
        flip_v: flip upside down (rows reversed); flip_h: flip left-right.
        k: quarter turns, 0..3.
    """

    y0: int = 0
    x0: int = 0
    h: int | None = None
    w: int | None = None
    flip_v: bool = False
    flip_h: bool = False
    k: int = 0

    def output_size(self, size_hw: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the result for a source of ``size_hw``."""
        h = size_hw[0] - self.y0 if self.h is None else self.h
        w = size_hw[1] - self.x0 if self.w is None else self.w
        return (w, h) if self.k % 2 else (h, w)

    def apply(self, array: Any, channels_last: bool = True) -> Any:
        """Transform a numpy array or torch tensor whose spatial axes are (-3, -2)
        (``channels_last``) or (-2, -1). A (H, W) mask: pass ``channels_last=False``."""
        ya, xa = (-3, -2) if channels_last else (-2, -1)
        if array.ndim < -ya:
            raise InputError(f"array of shape {tuple(array.shape)} has no axes {ya}, {xa}")
        size_y, size_x = array.shape[ya], array.shape[xa]
        y1 = size_y if self.h is None else self.y0 + self.h
        x1 = size_x if self.w is None else self.x0 + self.w
        if not (0 <= self.y0 < y1 <= size_y and 0 <= self.x0 < x1 <= size_x):
            raise InputError(f"crop [{self.y0}:{y1}, {self.x0}:{x1}] outside an image of {size_y}x{size_x}")
        index = [slice(None)] * array.ndim
        index[array.ndim + ya] = slice(self.y0, y1)
        index[array.ndim + xa] = slice(self.x0, x1)
        out = array[tuple(index)]
        is_numpy = isinstance(out, np.ndarray)
        flip_axes = [ax for ax, on in ((ya, self.flip_v), (xa, self.flip_h)) if on]
        if flip_axes:
            out = np.flip(out, axis=tuple(flip_axes)) if is_numpy else out.flip(flip_axes)
        if self.k % 4:
            out = np.rot90(out, self.k % 4, axes=(ya, xa)) if is_numpy else out.rot90(self.k % 4, (ya, xa))
        return np.ascontiguousarray(out) if is_numpy else out.contiguous()


def _valid_box(valid: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of a box inside which every pixel is valid, or None: starting from
    the whole frame, the border row or column with the largest invalid fraction is trimmed
    until none is left (exact for the strips a registration shift leaves)."""
    inv = ~valid
    y0, y1, x0, x1 = 0, inv.shape[0], 0, inv.shape[1]
    while y0 < y1 and x0 < x1:
        sub = inv[y0:y1, x0:x1]
        fractions = (sub[0].mean(), sub[-1].mean(), sub[:, 0].mean(), sub[:, -1].mean())
        side = int(np.argmax(fractions))
        if fractions[side] == 0:
            return y0, y1, x0, x1
        if side == 0:
            y0 += 1
        elif side == 1:
            y1 -= 1
        elif side == 2:
            x0 += 1
        else:
            x1 -= 1
    return None


def random_transform(rng: np.random.Generator, size_hw: tuple[int, int],
                     crop: int | tuple[int, int] | None = None, flips: bool = True, rotations: bool = True,
                     valid: np.ndarray | None = None) -> SpatialTransform:
    """Draw a transform: a uniform crop position, each flip with probability 1/2, a uniform
    quarter-turn count (0..3 for a square crop; 0 or 2 otherwise, so that every sample of a
    dataset has the same shape).

    Args:
        size_hw: source size.
        crop: crop size (square int or (h, w)); None keeps the whole frame.
        valid: optional (H, W) bool mask (registered anchors): when it contains a
            fully valid box of the crop size the crop is drawn inside it.
    """
    h, w = size_hw
    if crop is None:
        ch, cw = h, w
    else:
        ch, cw = (crop, crop) if isinstance(crop, (int, np.integer)) else (int(crop[0]), int(crop[1]))
    if not (0 < ch <= h and 0 < cw <= w):
        raise InputError(f"crop {ch}x{cw} does not fit a {h}x{w} frame")
    ylo, yhi, xlo, xhi = 0, h, 0, w
    if valid is not None and (ch, cw) != (h, w):
        box = _valid_box(np.asarray(valid, dtype=bool))
        if box is not None and box[1] - box[0] >= ch and box[3] - box[2] >= cw:
            ylo, yhi, xlo, xhi = box
    y0 = int(rng.integers(ylo, yhi - ch + 1))
    x0 = int(rng.integers(xlo, xhi - cw + 1))
    fv, fh = (bool(b) for b in rng.integers(0, 2, size=2)) if flips else (False, False)
    # Quarter turns only for square crops, half turns otherwise: every sample keeps one shape.
    k = (int(rng.integers(0, 4)) if ch == cw else 2 * int(rng.integers(0, 2))) if rotations else 0
    return SpatialTransform(y0, x0, ch, cw, fv, fh, k)


def _transform_anchors(a: Anchors | None, t: SpatialTransform) -> Anchors | None:
    if a is None:
        return None
    return dataclasses.replace(a, low=t.apply(a.low), high=t.apply(a.high), valid=t.apply(a.valid, False))


def transform_window(window: Window, t: SpatialTransform) -> Window:
    """Apply one transform to every frame, anchor, valid mask and ground truth of a window."""
    return dataclasses.replace(
        window,
        reference=t.apply(window.reference),
        anchors=_transform_anchors(window.anchors, t),
        alt_anchors=_transform_anchors(window.alt_anchors, t),
        gt=None if window.gt is None else t.apply(window.gt),
    )


def augment_window(window: Window, rng: np.random.Generator, crop: int | tuple[int, int] | None = None,
                   flips: bool = True, rotations: bool = True, avoid_invalid: bool = True) -> Window:
    """A random crop / flip / quarter-turn of a window (``random_transform`` +
    ``transform_window``); with ``avoid_invalid`` the crop avoids anchor pixels outside the
    registration's valid mask when it can."""
    valid = window.anchors.valid if avoid_invalid else None
    if valid is not None and window.alt_anchors is not None:
        valid = valid & window.alt_anchors.valid
    t = random_transform(rng, window.size_hw, crop, flips, rotations, valid)
    return transform_window(window, t)


# --- photometric (simulation time) --------------------------------------------------------------

@dataclass(frozen=True)
class RigRandomization:
    """Ranges of the per-sample rig draw. (lo, hi) pairs are uniform unless noted.

    Attributes:
        ev_spacing: stops between the reference and each anchor (low = -s, high = +s).
        ev_asymmetry: independent extra uniform +-a stops on the low and the high anchor.
        bit_depths: sensor bit depths to choose from (8: uint8 codes, 12: uint16 left-aligned).
        full_well_e: full-well capacity, electrons (log-uniform).
        read_noise_e: read noise, electrons rms (log-uniform).
        gain_db: analog gain of both cameras.
        gamma: response exponent (f(x) = x ** (1 / gamma); SPEC.md default 2.2).
        exposure_target: median reference pixel value (the scene radiance is scaled to it).
        reference_exposure_s: reference exposure time (log-uniform); keep
            hi * 2 ** (max spacing + asymmetry) below 0.9 / anchor rate or the rig caps
            the high exposure (the frames then record the capped exposure).
        anchor_period_frames: reference frames per anchor pair, chosen from (raised to T).
        baseline_px: anchor camera disparity magnitude (random direction), pixels.
        jitter_s: stamp jitter standard deviation.
        time_offset_s: where in the scene's timeline the clip starts.
        reference_rate_hz: reference frame rate.
        same_sensor: both cameras get the same sensor draw (identical cameras, as in DCS).
    """

    ev_spacing: tuple[float, float] = (1.5, 3.0)
    ev_asymmetry: float = 0.0
    bit_depths: tuple[int, ...] = (8, 12)
    full_well_e: tuple[float, float] = (2000.0, 40000.0)
    read_noise_e: tuple[float, float] = (1.0, 15.0)
    gain_db: tuple[float, float] = (0.0, 12.0)
    gamma: tuple[float, float] = (2.2, 2.2)
    exposure_target: tuple[float, float] = (0.25, 0.55)
    reference_exposure_s: tuple[float, float] = (0.001, 0.006)
    anchor_period_frames: tuple[int, ...] = (5,)
    baseline_px: tuple[float, float] = (0.0, 4.0)
    jitter_s: tuple[float, float] = (0.0, 0.001)
    time_offset_s: tuple[float, float] = (0.0, 0.5)
    reference_rate_hz: tuple[float, float] = (30.0, 30.0)
    same_sensor: bool = True


@dataclass(frozen=True)
class RigDraw:
    """One draw: the rig, plus how to present the scene to it.

    Attributes:
        config: the RigConfig (exposures fixed, seeded).
        exposure_target: median reference pixel the scene radiance is scaled to.
        time_offset_s: scene time of the clip's t = 0.
    """

    config: RigConfig
    exposure_target: float
    time_offset_s: float


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def _uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _sensor(rng: np.random.Generator, rand: RigRandomization, gamma: float) -> CameraModel:
    return CameraModel(GammaResponse(gamma), int(rng.choice(rand.bit_depths)),
                       _log_uniform(rng, *rand.full_well_e), _log_uniform(rng, *rand.read_noise_e))


def draw_rig(rng: np.random.Generator, rand: RigRandomization | None = None,
             min_period_frames: int = 1) -> RigDraw:
    """Draw a RigConfig (and scene presentation) from ``rand``'s ranges.

    Args:
        min_period_frames: lower bound of the anchor period (a window of T frames needs a
            pair per >= T reference frames).
    """
    rand = rand or RigRandomization()
    spacing = _uniform(rng, rand.ev_spacing)
    asym = rand.ev_asymmetry
    ev_low = -spacing + (float(rng.uniform(-asym, asym)) if asym > 0 else 0.0)
    ev_high = spacing + (float(rng.uniform(-asym, asym)) if asym > 0 else 0.0)
    gamma = _uniform(rng, rand.gamma)
    ref_cam = _sensor(rng, rand, gamma)
    anchor_cam = ref_cam if rand.same_sensor else _sensor(rng, rand, gamma)
    period = max(int(rng.choice(rand.anchor_period_frames)), int(min_period_frames))
    rate = _uniform(rng, rand.reference_rate_hz)
    anchor_interval = period / (2.0 * rate)
    angle = float(rng.uniform(0, 2 * math.pi))
    baseline = _uniform(rng, rand.baseline_px)
    cfg = RigConfig(
        reference_rate_hz=rate,
        anchor_period_frames=period,
        anchor_phase_s=float(rng.uniform(0.0, anchor_interval)),
        jitter_s=_uniform(rng, rand.jitter_s),
        ev_low=ev_low, ev_high=ev_high,
        reference_exposure_s=_log_uniform(rng, *rand.reference_exposure_s),
        gain_db=_uniform(rng, rand.gain_db),
        baseline_px=(baseline * math.cos(angle), baseline * math.sin(angle)),
        seed=int(rng.integers(0, 2**31 - 1)),
        reference_camera=ref_cam,
        anchor_camera=anchor_cam,
    )
    return RigDraw(cfg, _uniform(rng, rand.exposure_target), _uniform(rng, rand.time_offset_s))


#: ``render(t_mid_s, duration_s, baseline_xy) -> (H, W, 3) radiance``, e.g. LayeredScene.render_exposure
Renderer = Callable[[float, float, tuple[float, float]], np.ndarray]


class ExposedRenderer:
    """A renderer shifted in time and scaled in radiance:
    ``scale * render(t + time_offset_s, duration, baseline)``.

    ``for_target`` picks the scale that puts the median reference pixel of the first frame
    at a target value for a given rig (so the drawn exposure time is used as it is, and the
    anchors keep their exact EV spacing instead of being capped by the frame interval).
    """

    def __init__(self, render: Renderer, scale: float = 1.0, time_offset_s: float = 0.0,
                 first: np.ndarray | None = None) -> None:
        self.render = render
        self.scale = float(scale)
        self.time_offset_s = float(time_offset_s)
        # simulate() renders the sharp first frame up to twice for its auto exposure; keep it.
        self._first = None if first is None else first * np.float32(self.scale)

    def __call__(self, t_mid_s: float, duration_s: float, baseline_xy: tuple[float, float]) -> np.ndarray:
        if (self._first is not None and t_mid_s == 0.0 and duration_s == 0.0
                and tuple(baseline_xy) == (0.0, 0.0)):
            return self._first.copy()
        out = self.render(t_mid_s + self.time_offset_s, duration_s, baseline_xy)
        return out * np.float32(self.scale) if self.scale != 1.0 else out

    @classmethod
    def for_target(cls, render: Renderer, draw: RigDraw) -> ExposedRenderer:
        cfg = draw.config
        first = render(draw.time_offset_s, 0.0, (0.0, 0.0))
        median = float(np.median(luminance(first[::2, ::2])))
        signal = float(cfg.reference_camera.response.inverse(np.array([draw.exposure_target], np.float32))[0])
        exposure = cfg.reference_exposure_s * 10 ** (cfg.gain_db / 20)  # type: ignore[operator]
        scale = signal / (max(median, 1e-12) * exposure)
        return cls(render, scale, draw.time_offset_s, first)
