"""Temporally stable display tone mapping: linear HDR radiance -> sRGB bgr8 frames.

This renders /dcs/hdr/tonemapped (SPEC.md): one (H, W, 3) uint8 BGR image per HDR frame,
for people and for detectors trained on ordinary camera images. The input radiance has
an arbitrary absolute scale (SPEC.md units, typically 1e-3 .. 1e3), so the mapper adapts
like a camera's auto exposure, and it must do so without flicker or pumping.

Per frame:

1. Sanitise. NaN becomes 0, +Inf the largest radiance (1e30), -Inf and negatives 0; the
   pixels affected are counted in ``last_stats`` (a node keeps running). A wrong shape
   or dtype raises ``InputError``.
2. Measure, on luminance (``photometry.luminance``) area-downsampled so its long side is
   at most ``stats_max_side`` (160) px, in EV = log2(luminance):

   * the key: the mean of log luminance between its 40th and 90th percentiles
     (``key_percentiles``), a trimmed log-average. Trimming makes it robust: a light
     switching on over 2 % of the frame only shifts ranks by 2 %, which moves the key
     by a small fraction of the spread of the trimmed window, inside the dead band. The
     window sits above the median so that scenes with large dark areas (a lamp-lit
     table in a dark room) are exposed for what is lit rather than for the darkness;
   * the white point: the 90th percentile (``white_percentile``) plus 1.5 EV
     (``white_headroom_ev``), held 2.5 .. 7 EV above the key (``white_range_ev``). The
     90th percentile barely notices small lights; the lower bound keeps flat scenes from
     being stretched into noise. When the scene has more range than 7 EV the key is
     raised instead (shadows are given up rather than highlights).

   Pixels more than ``floor_below_white_ev`` (16 EV) below the white percentile (black
   borders, dead pixels, exact zeros) carry no exposure information and are ignored.
3. Adapt. The state is (key EV, white range EV above the key; a global brightening moves
   only the key), smoothed in the log domain toward the measurement by an exponential
   with time constant tau (0.5 s key, 1 s white) on the frames' stamps, a step of
   ``(1 - exp(-dt / tau)) * error``, so 15 Hz and 60 Hz streams follow the same
   trajectory in time. Each step is also limited to ``max_rate_ev_per_s * dt`` (2 EV/s).
   A dead band with hysteresis makes a static scene static: a settled value starts
   moving only when the measurement leaves +-``dead_band_ev`` (1/8 EV) around it, then
   moves until it is within ``settle_ev`` (1/64 EV) of the measurement and freezes
   again. Sensor noise thus yields bit-identical curves, while a real change is followed
   all the way (no residual offset of up to a dead band). The first frame, and the
   first after ``reset()``, a stamp going backwards or a gap over ``max_stamp_gap_s``
   (5 s), initialises the state directly (no fade-in). A frame with no usable pixels
   (black) holds the state.
4. Tone curve on luminance, extended Reinhard: with exposure ``s = middle_grey / 2^key``
   (middle_grey 0.18), ``L = s Y`` and white ``Lw = middle_grey * 2^range``,
   ``Ld = min(1, L (1 + L / Lw^2) / (1 + L))``. The key comes out near sRGB code 110, the
   white point at 255; the curve is monotonic and compresses highlights smoothly.
5. Colour: RGB is scaled by ``Ld / Y``, which keeps hue and saturation (a per-channel
   curve would desaturate mid-tones and shift the hue of bright colours, e.g. orange
   lights to yellow). Where that pushes a channel above 1, the pixel is mixed with the
   grey of the same luminance just enough to fit the gamut (luminance-preserving gamut
   mapping), so bright saturated lights roll off to white instead of clipping hues.
6. sRGB encoding (IEC 61966-2-1, with its linear toe) through a 65536-entry table, in
   BGR channel order.

A 640x480 frame takes ~4 ms on one core: the statistics run on 160x120, the full-size
work is a dozen vectorised passes into reused buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import InputError
from .photometry import luminance

__all__ = [
    "DisplayToneMapper",
    "DisplayToneMapperConfig",
    "DisplayToneState",
    "DisplayToneStats",
    "srgb_encode",
]

# Anything at or below this luminance is black: no exposure information, and no log(0).
_BLACK = 1e-30
# Radiance is clipped to this (2^100), and exposed luminance L to _MAX_SCALED (far past
# any white point), so float32 arithmetic never overflows.
_MAX_RADIANCE = 1e30
_MAX_SCALED = 1e15
_TINY = 1e-37
_LUT_SIZE = 65536


@dataclass(frozen=True)
class DisplayToneMapperConfig:
    """Tuning of ``DisplayToneMapper``. EV are log2 units of luminance; times in seconds.

    Attributes:
        middle_grey: display-linear value the key is exposed to before the curve (0.18,
            the photographic middle grey; it comes out at sRGB codes 110..118).
        key_percentiles: (low, high) percentiles of log luminance whose trimmed mean is the
            key (40, 90): robust to small lights and to large dark areas.
        white_percentile: percentile of log luminance that sets the white point (90).
        white_headroom_ev: the white point sits this far above ``white_percentile`` (1.5).
        white_range_ev: (min, max) distance of the white point above the key (2.5, 7.0);
            a scene wider than max raises the key.
        floor_below_white_ev: pixels this far below ``white_percentile`` are ignored by the
            statistics (16.0).
        min_valid_fraction: a frame with fewer usable statistics pixels than this holds
            the adaptation state (0.01).
        stats_max_side: the statistics image is area-downsampled to this long side (160).
        key_time_constant_s: time constant of the key's exponential smoothing (0.5).
        white_time_constant_s: time constant of the white range's smoothing (1.0).
        max_rate_ev_per_s: largest adaptation speed of either value (2.0 EV/s).
        dead_band_ev: a settled value moves only when the measurement is further than this
            (0.125 = 1/8 EV).
        settle_ev: a moving value freezes once within this of the measurement (1/64 EV).
        max_stamp_gap_s: a forward stamp jump larger than this re-initialises the state
            (5.0); None disables.
        reset_on_backwards: a stamp earlier than the previous one re-initialises the state
            (True), e.g. when a bag loops.
        desaturate_highlights: luminance-preserving gamut mapping of out-of-range colours
            (True); False clips each channel at 1.
    """

    middle_grey: float = 0.18
    key_percentiles: tuple[float, float] = (40.0, 90.0)
    white_percentile: float = 90.0
    white_headroom_ev: float = 1.5
    white_range_ev: tuple[float, float] = (2.5, 7.0)
    floor_below_white_ev: float = 16.0
    min_valid_fraction: float = 0.01
    stats_max_side: int = 160
    key_time_constant_s: float = 0.5
    white_time_constant_s: float = 1.0
    max_rate_ev_per_s: float = 2.0
    dead_band_ev: float = 0.125
    settle_ev: float = 1.0 / 64.0
    max_stamp_gap_s: float | None = 5.0
    reset_on_backwards: bool = True
    desaturate_highlights: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.key_percentiles
        wmin, wmax = self.white_range_ev
        checks = [
            (0.0 < self.middle_grey < 1.0, f"middle_grey must be in (0, 1), got {self.middle_grey}"),
            (0.0 <= lo < hi <= 100.0, f"key_percentiles must be 0 <= low < high <= 100, got {lo, hi}"),
            (0.0 <= self.white_percentile <= 100.0,
             f"white_percentile must be in [0, 100], got {self.white_percentile}"),
            (math.isfinite(self.white_headroom_ev),
             f"white_headroom_ev must be finite, got {self.white_headroom_ev}"),
            (0.0 < wmin <= wmax < 64.0, f"white_range_ev must be 0 < min <= max < 64, got {wmin, wmax}"),
            (self.floor_below_white_ev > 0.0,
             f"floor_below_white_ev must be > 0, got {self.floor_below_white_ev}"),
            (0.0 <= self.min_valid_fraction <= 1.0,
             f"min_valid_fraction must be in [0, 1], got {self.min_valid_fraction}"),
            (self.stats_max_side >= 1, f"stats_max_side must be >= 1, got {self.stats_max_side}"),
            (self.key_time_constant_s > 0.0 and self.white_time_constant_s > 0.0,
             "time constants must be > 0"),
            (self.max_rate_ev_per_s > 0.0, f"max_rate_ev_per_s must be > 0, got {self.max_rate_ev_per_s}"),
            (0.0 < self.settle_ev <= self.dead_band_ev,
             f"need 0 < settle_ev <= dead_band_ev, got {self.settle_ev}, {self.dead_band_ev}"),
            (self.max_stamp_gap_s is None or self.max_stamp_gap_s > 0.0,
             f"max_stamp_gap_s must be > 0 or None, got {self.max_stamp_gap_s}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass(frozen=True)
class DisplayToneState:
    """Adaptation state, for diagnostics. EV are log2 of luminance in SPEC.md units.

    Attributes:
        key_ev: the adapted key (trimmed log-average luminance) of the scene.
        white_range_ev: how far the white point lies above the key.
        exposure_ev: log2 of the gain from luminance to display-linear before the curve,
            log2(middle_grey) - key_ev.
        stamp_s: stamp of the last frame processed.
        key_adapting, white_adapting: whether each value is moving (it left its dead band
            and has not settled yet).
    """

    key_ev: float
    white_range_ev: float
    exposure_ev: float
    stamp_s: float
    key_adapting: bool = False
    white_adapting: bool = False

    @property
    def white_ev(self) -> float:
        """log2 of the scene luminance shown as display white."""
        return self.key_ev + self.white_range_ev


@dataclass(frozen=True)
class DisplayToneStats:
    """What the last call saw.

    Attributes:
        nonfinite_pixels: pixels with a NaN or Inf channel (NaN and -Inf shown as 0, +Inf
            as the largest radiance).
        negative_pixels: pixels with a finite negative channel (clipped to 0).
        measured_key_ev, measured_white_ev: this frame's statistics; NaN when the frame had
            no usable pixels.
        reset: the state was (re-)initialised from this frame.
    """

    nonfinite_pixels: int = 0
    negative_pixels: int = 0
    measured_key_ev: float = math.nan
    measured_white_ev: float = math.nan
    reset: bool = False


def _srgb_oetf(linear: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding of linear [0, 1] values (float64)."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


_SRGB_LUT = np.rint(_srgb_oetf(np.linspace(0.0, 1.0, _LUT_SIZE)) * 255.0).astype(np.uint8)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] floats (any shape) -> sRGB uint8 codes; out-of-range values clip.

    A 65536-entry table: its step is 1/20 of a code at black, where sRGB is steepest.
    """
    idx = np.clip(linear, 0.0, 1.0) * (_LUT_SIZE - 1) + 0.5
    return np.take(_SRGB_LUT, idx.astype(np.uint16))


class DisplayToneMapper:
    """Adaptive global tone mapper for /dcs/hdr/tonemapped; see the module docstring.

    Usage::

        mapper = DisplayToneMapper()
        bgr8 = mapper(hdr_rgb_float32, stamp_s)   # (H, W, 3) uint8 BGR
        mapper.state, mapper.last_stats           # diagnostics

    The mapper owns its temporal state; call ``reset()`` at a cut (it also resets itself
    when the stamp goes backwards or jumps forward by more than ``max_stamp_gap_s``). One
    mapper per stream, called from one thread: it reuses scratch buffers between calls.
    """

    def __init__(self, config: DisplayToneMapperConfig | None = None) -> None:
        self._config = config if config is not None else DisplayToneMapperConfig()
        self._state: DisplayToneState | None = None
        self._stats = DisplayToneStats()
        self._ws: _Workspace | None = None

    @property
    def config(self) -> DisplayToneMapperConfig:
        return self._config

    @property
    def state(self) -> DisplayToneState | None:
        """Current adaptation state; None before the first usable frame or after ``reset()``."""
        return self._state

    @property
    def last_stats(self) -> DisplayToneStats:
        """Statistics of the last call (sanitised pixel counts, measurement, reset)."""
        return self._stats

    def reset(self) -> None:
        """Forget the adaptation state: the next frame initialises it directly."""
        self._state = None

    def __call__(self, hdr: np.ndarray, stamp_s: float) -> np.ndarray:
        """Tone map one frame.

        Args:
            hdr: (H, W, 3) floating RGB linear radiance (SPEC.md units); float32 preferred.
            stamp_s: the frame's stamp in seconds (drives the adaptation time constants).
        Returns:
            (H, W, 3) uint8 BGR, sRGB-encoded.
        Raises:
            InputError: ``hdr`` is not a floating (H, W, 3) array, or ``stamp_s`` is not finite.
        """
        image = _check_frame(hdr)
        stamp = float(stamp_s)
        if not math.isfinite(stamp):
            raise InputError(f"stamp_s must be finite, got {stamp_s}")
        image, nonfinite, negative = _sanitise(image, self._workspace(image.shape[:2]).clean)
        y = luminance(image)
        measured = self._measure(y)
        reset = self._adapt(measured, stamp)
        self._stats = DisplayToneStats(
            nonfinite_pixels=nonfinite, negative_pixels=negative,
            measured_key_ev=measured[0] if measured else math.nan,
            measured_white_ev=measured[0] + measured[1] if measured else math.nan,
            reset=reset)
        if self._state is None:  # nothing usable seen yet: the frame is black
            return np.zeros(image.shape, dtype=np.uint8)
        return self._render(image, y, self._state)

    # -- statistics ------------------------------------------------------------------

    def _measure(self, y: np.ndarray) -> tuple[float, float] | None:
        """(key EV, white range EV) of full-resolution luminance (H, W), or None if black."""
        cfg = self._config
        height, width = y.shape
        factor = max(height, width) / cfg.stats_max_side
        if factor > 1.0:
            size = (max(1, round(width / factor)), max(1, round(height / factor)))
            y = cv2.resize(y, size, interpolation=cv2.INTER_AREA)
        log_y = np.log2(np.maximum(y.ravel(), np.float32(_BLACK)))
        white_all = _percentile(log_y, cfg.white_percentile)
        floor = max(math.log2(_BLACK), white_all - cfg.floor_below_white_ev)
        valid = log_y[log_y > floor]
        if valid.size == 0 or valid.size < cfg.min_valid_fraction * log_y.size:
            return None
        n = valid.size
        lo, hi = cfg.key_percentiles
        k_lo = min(n - 1, math.floor(lo / 100.0 * n))
        k_hi = max(k_lo, min(n - 1, math.ceil(hi / 100.0 * n) - 1))
        k_white = min(n - 1, round(cfg.white_percentile / 100.0 * (n - 1)))
        part = np.partition(valid, sorted({k_lo, k_hi, k_white}))
        white = float(part[k_white]) + cfg.white_headroom_ev
        min_range, max_range = cfg.white_range_ev
        # A scene with more range than the curve can hold gives up shadows, not highlights.
        key = max(float(part[k_lo:k_hi + 1].mean(dtype=np.float64)), white - max_range)
        return key, min(max_range, max(min_range, white - key))

    # -- adaptation ------------------------------------------------------------------

    def _adapt(self, measured: tuple[float, float] | None, stamp: float) -> bool:
        """Advance the state to ``stamp`` toward ``measured``; True if it was (re)initialised."""
        cfg = self._config
        state = self._state
        if state is not None:
            dt = stamp - state.stamp_s
            if (dt < 0.0 and cfg.reset_on_backwards) or (
                    cfg.max_stamp_gap_s is not None and dt > cfg.max_stamp_gap_s):
                state = None
        if measured is None:  # no information: hold the values, keep the clock
            if state is not None:
                self._state = self._make_state(state.key_ev, state.white_range_ev, stamp,
                                               state.key_adapting, state.white_adapting)
            else:
                self._state = None
            return False
        key, white_range = measured
        if state is None:
            self._state = self._make_state(key, white_range, stamp)
            return True
        dt = max(0.0, stamp - state.stamp_s)
        new_key, key_moving = _approach(state.key_ev, key, state.key_adapting, dt,
                                        cfg.key_time_constant_s, cfg)
        new_range, range_moving = _approach(state.white_range_ev, white_range, state.white_adapting,
                                            dt, cfg.white_time_constant_s, cfg)
        self._state = self._make_state(new_key, new_range, stamp, key_moving, range_moving)
        return False

    def _make_state(self, key_ev: float, white_range_ev: float, stamp_s: float,
                    key_adapting: bool = False, white_adapting: bool = False) -> DisplayToneState:
        exposure_ev = math.log2(self._config.middle_grey) - key_ev
        return DisplayToneState(key_ev, white_range_ev, exposure_ev, stamp_s, key_adapting,
                                white_adapting)

    # -- rendering -------------------------------------------------------------------

    def _render(self, image: np.ndarray, y: np.ndarray, state: DisplayToneState) -> np.ndarray:
        """(H, W, 3) float32 RGB radiance and its (H, W) luminance -> (H, W, 3) uint8 BGR.

        Per pixel, with c = p * Ld / Y the hue-preserving colour of input p:
        ``out = t c + (1 - t) Ld``, where t in [0, 1] is the largest mix that keeps
        max(out) <= 1 (t = 1 in gamut). So ``out = p * (t Ld / Y) + (1 - t) Ld``: a gain
        and an offset per pixel, computed at (H, W) and applied once to the 3 channels.
        Scratch buffers are reused across frames (fresh large arrays cost page faults).
        """
        cfg = self._config
        ws = self._workspace(y.shape)
        exposure = np.float32(cfg.middle_grey * 2.0 ** -state.key_ev)
        inv_white_sq = np.float32(1.0 / (cfg.middle_grey * 2.0 ** state.white_range_ev) ** 2)
        one = np.float32(1.0)
        lum, ld, gain, tmp = ws.lum, ws.ld, ws.gain, ws.tmp
        with np.errstate(over="ignore"):  # absurd radiance over a dark key: capped below
            np.multiply(y, exposure, out=lum)                            # L
        np.minimum(lum, np.float32(_MAX_SCALED), out=lum)
        # Ld = L (1 + L / Lw^2) / (1 + L); Ld >= 1 past the white point.
        np.multiply(lum, inv_white_sq, out=ld)
        ld += one
        ld *= lum
        lum += one
        ld /= lum
        np.minimum(ld, one, out=ld)
        np.maximum(y, np.float32(_TINY), out=tmp)
        np.divide(ld, tmp, out=gain)                                     # Ld / Y
        offset = ws.offset
        if cfg.desaturate_highlights:
            # t = (1 - Ld) / (max(c) - Ld), clipped to 1; max(c) >= Ld as Y is a mean of p.
            np.maximum(image[..., 0], image[..., 1], out=tmp)
            np.maximum(tmp, image[..., 2], out=tmp)
            tmp *= gain                                                  # max(c)
            tmp -= ld
            np.maximum(tmp, np.float32(1e-7), out=tmp)
            np.subtract(one, ld, out=lum)
            np.divide(lum, tmp, out=tmp)
            np.minimum(tmp, one, out=tmp)                                # t
            gain *= tmp
            np.subtract(one, tmp, out=offset)
            offset *= ld                                                 # (1 - t) Ld
        else:
            offset.fill(0.0)
        # Straight to 16-bit table indices: cv2.add rounds and saturates at 65535.
        scale = np.float32(_LUT_SIZE - 1)
        gain *= scale
        offset *= scale
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR, dst=ws.bgr)
        bgr = cv2.multiply(bgr, cv2.merge((gain, gain, gain), dst=ws.planes), dst=bgr)
        idx = cv2.add(bgr, cv2.merge((offset, offset, offset), dst=ws.planes), dst=ws.idx,
                      dtype=cv2.CV_16U)
        return np.take(_SRGB_LUT, idx)

    def _workspace(self, shape: tuple[int, ...]) -> _Workspace:
        if self._ws is None or self._ws.lum.shape != shape:
            self._ws = _Workspace.allocate(shape)
        return self._ws


@dataclass
class _Workspace:
    """Scratch buffers of ``_render`` for one frame size."""

    lum: np.ndarray
    ld: np.ndarray
    gain: np.ndarray
    offset: np.ndarray
    tmp: np.ndarray
    bgr: np.ndarray
    planes: np.ndarray
    idx: np.ndarray
    clean: np.ndarray

    @classmethod
    def allocate(cls, shape: tuple[int, ...]) -> _Workspace:
        height, width = shape
        plane = [np.empty((height, width), np.float32) for _ in range(5)]
        color = [np.empty((height, width, 3), np.float32) for _ in range(2)]
        return cls(*plane, *color, np.empty((height, width, 3), np.uint16),
                   np.empty((height, width, 3), np.float32))


def _approach(value: float, target: float, moving: bool, dt: float, tau: float,
              cfg: DisplayToneMapperConfig) -> tuple[float, bool]:
    """One step of rate-limited exponential smoothing with a hysteresis dead band."""
    error = target - value
    if not moving and abs(error) <= cfg.dead_band_ev:
        return value, False
    limit = cfg.max_rate_ev_per_s * dt
    value += min(limit, max(-limit, -math.expm1(-dt / tau) * error))
    return value, abs(target - value) > cfg.settle_ev


def _percentile(values: np.ndarray, q: float) -> float:
    """Nearest-rank percentile of a 1-D array."""
    k = min(values.size - 1, round(q / 100.0 * (values.size - 1)))
    return float(np.partition(values, k)[k])


def _check_frame(hdr: object) -> np.ndarray:
    if not isinstance(hdr, np.ndarray):
        raise InputError(f"HDR frame must be a numpy array, got {type(hdr).__name__}")
    if hdr.ndim != 3 or hdr.shape[2] != 3 or hdr.shape[0] == 0 or hdr.shape[1] == 0:
        raise InputError(f"HDR frame must be (H, W, 3) RGB, got shape {hdr.shape}")
    if not np.issubdtype(hdr.dtype, np.floating):
        raise InputError(f"HDR frame must be floating point radiance, got dtype {hdr.dtype}")
    return np.ascontiguousarray(hdr, dtype=np.float32)


def _sanitise(image: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, int, int]:
    """NaN -> 0, +Inf -> _MAX_RADIANCE, -Inf and negatives -> 0, written into ``clean``.

    Finite values above _MAX_RADIANCE are clipped to it too. Returns the image to use
    (``image`` itself when it needs no repair) and the counts of pixels with a non-finite
    and with a negative channel.
    """
    finite = bool(np.isfinite(image).all())
    if finite and image.min() >= 0.0 and image.max() <= _MAX_RADIANCE:
        return image, 0, 0
    np.copyto(clean, image)
    nonfinite = 0
    if not finite:
        bad = ~np.isfinite(image)
        nonfinite = int(np.count_nonzero(bad[..., 0] | bad[..., 1] | bad[..., 2]))
        np.nan_to_num(clean, copy=False, nan=0.0, posinf=_MAX_RADIANCE, neginf=0.0)
    darkest = np.minimum(np.minimum(clean[..., 0], clean[..., 1]), clean[..., 2])
    negative = int(np.count_nonzero(darkest < 0.0))
    np.clip(clean, 0.0, _MAX_RADIANCE, out=clean)
    return clean, nonfinite, negative
