"""Photometric calibration: the camera response f^-1 from a static bracketed stack.

Input: N >= 3 images of a static scene taken with N distinct exposures t * g (SPEC.md:
t = exposure_time_us * 1e-6, g = 10 ** (gain_db / 20)), 8-bit or 16-bit codes. Output: a
:class:`~hdr_dcs.core.photometry.TabulatedResponse` of 256 samples of f^-1 on L =
linspace(0, 1, 256) (= 8-bit code / 255), normalised as SPEC.md's units assume
(f^-1(0) = 0, f^-1(1) = 1, strictly increasing), plus diagnostics.

How
---
1. Pixels. OpenCV's calibrators sample the stack themselves (Debevec: a grid, Robertson:
   every pixel). Instead we pick pixels stratified over the scene's radiance (the sum of a
   pixel's codes over the stack ranks radiance for any monotone response), the flattest
   of each stratum (less sensitive to demosaicing and sub-pixel shake), and pack them
   into a small square image per exposure: 256 pixels for ``cv2.createCalibrateDebevec``
   (one dense SVD), 4096 for ``cv2.createCalibrateRobertson``. Every brightness the scene
   offers is represented, however rare, and the cost does not grow with the image size.
2. Clipped observations. A saturated pixel reads 255 *or a few codes less* (noise), and
   its sensor exposure is unknown; left in, those readings drag the top of the curve up.
   The codes saturated pixels read are measured on the stack itself (pixels within 5
   codes of the top in one exposure, read in an exposure >= 1.25x longer); from the
   lowest of them up, and below code 3, observations are replaced by 255 / 0, which both
   calibrators weight (almost) zero.
3. Trusted codes. OpenCV returns a 256x1x3 curve per channel in an arbitrary scale
   (exp of Debevec's g(z); Robertson's likewise, NaN at codes nobody read, which are
   interpolated). Codes in [3, clip) that are read often enough (2 % of the average
   density in a +-4 code window of the 4096-pixel sample) are trusted.
4. One curve. TabulatedResponse holds one curve, which is what every user (merge, the
   learned backends' inputs, ``radiance``, ``reexpose``) applies to all three channels.
   A bracket cannot recover per-channel *scales* at all (white balance: any per-channel
   factor explains the stack equally well), so a per-channel table would only add a
   difference of *shape*, small for a sensor with one ADC and one tone curve, at the
   price of changing a protocol every backend shares. The channels' log curves are
   aligned by their median offset over the codes all of them trust and averaged; the
   largest remaining difference is reported (``channel_spread``; a warning above 0.05).
5. The ends, where data does not constrain the curve. Below the trusted codes: the power
   law a L^p fitted (log-log) to the first 24 trusted codes, which goes to 0 at L = 0 as
   SPEC.md's normalisation needs, without inventing a black level. Above: ln f^-1
   continued in a straight line with the slope at the last trusted code (from a
   quadratic fitted to the last 24; a power law would flatten a shoulder, whose slope
   keeps growing); usually 3-5 codes. The curve is then divided by its value at L = 1,
   made monotone (isotonic regression) and strictly increasing (steps >= 1e-7). The
   error of this extrapolation becomes a scale error of the whole curve: on synthetic
   stacks with 0.8 code noise, 0.5-2 % for a moderate highlight shoulder, up to 4 % for a
   strong one (Debevec's smoothness also flattens the last trusted codes a little).
6. Checks. Refused (``InputError``): fewer than 3 images, sizes or dtypes that differ,
   duplicate exposures, fewer than ``min_pixels`` pixels well exposed in two images, a
   stack that is not static (after exposure normalisation with the recovered curve,
   f^-1(L_j) / t_j of each exposure against the others', more than
   ``max_moving_fraction`` of some exposure's well-exposed pixels disagree by more than
   35 %; above 1 % a warning), and trusted codes not reaching from L = 0.2 to 0.8.

Robertson has no smoothness prior. When every exposure ratio of the bracket is a power
of one step (what auto-bracketing produces), no method can tell the curve from one
rippled with that period in log exposure (Grossberg & Nayar 2003); Debevec's prior picks
the smooth one, OpenCV's Robertson keeps the ripple its linear initial curve leaves
(measured: 0.06-0.07 max error on a 2 EV bracket vs <= 0.02 for Debevec). It is accurate
on irregular brackets; on geometric ones it gets a warning. Debevec is the default.

16-bit input is reduced to 8-bit codes by rounding (``max_code`` for 12-bit codes in
mono16): OpenCV's calibrators take 8-bit images only, and 256 samples interpolate a
smooth curve well. Only the calibration sees 8 bits; reconstruction keeps the full codes.

Never imports rclpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise

import cv2
import numpy as np
from scipy.optimize import isotonic_regression

from ..core.errors import InputError
from ..core.photometry import CameraResponse, GammaResponse, TabulatedResponse, from_unit, to_unit

__all__ = [
    "LEVELS",
    "METHODS",
    "ResponseCalibration",
    "ResponseCalibrationConfig",
    "compare_responses",
    "exposure_consistency",
    "prepare_stack",
    "recover_response",
]

#: Calibration methods: OpenCV's CalibrateDebevec and CalibrateRobertson.
METHODS = ("debevec", "robertson")
#: Samples of a recovered curve: one per 8-bit code, L = code / 255.
LEVELS = 256

_END_MARGIN = 3                 # codes below this are never trusted (black clipping)
_WINDOW = 9                     # codes in the observation-density window
_END_FIT_CODES = 24             # trusted codes each end's extrapolation is fitted to
_MIN_STEP = 1e-7                # strictly increasing: the smallest step between samples
_WELL_EXPOSED = (0.1, 0.92)     # L range of a trustworthy observation (the checks)
_MOVED_LOG_RATIO = 0.3          # |ln ratio| beyond which an observation disagrees (35 %)
_WARN_MOVING_FRACTION = 0.01
_WARN_CHANNEL_SPREAD = 0.05
_REQUIRED_RANGE = (0.2, 0.8)    # the trusted codes must cover this much of L
_CHECK_PIXELS = 100_000         # pixels (strided) the checks look at
_SELECT_PIXELS = 1_000_000      # pixels (strided) the selection for OpenCV looks at


@dataclass(frozen=True)
class ResponseCalibrationConfig:
    """Parameters of :func:`recover_response`; the defaults suit 5-9 exposures 1-2 EV apart.

    Attributes:
        method: "debevec" or "robertson".
        debevec_samples: pixels given to CalibrateDebevec, a square number (its SVD is
            (samples * exposures) x (samples + 256)).
        debevec_lambda: Debevec's smoothness weight.
        robertson_samples: pixels given to CalibrateRobertson, a square number.
        robertson_max_iter: Robertson's iterations (OpenCV's default, 30, stops early).
        robertson_threshold: Robertson's convergence threshold.
        min_pixels: pixels that must be well exposed (L in [0.1, 0.92]) in two images.
        max_moving_fraction: refuse the stack when a larger fraction of some exposure's
            well-exposed pixels disagrees with the others (module docstring).
        max_code: largest code of uint16 images that do not fill 16 bits (4095 for 12-bit
            codes); None: the dtype's maximum.
    """

    method: str = "debevec"
    debevec_samples: int = 256
    debevec_lambda: float = 10.0
    robertson_samples: int = 4096
    robertson_max_iter: int = 200
    robertson_threshold: float = 1e-4
    min_pixels: int = 1000
    max_moving_fraction: float = 0.05
    max_code: int | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown calibration method {self.method!r}; "
                             f"choose one of {', '.join(METHODS)}")
        for name in ("debevec_samples", "robertson_samples"):
            n = getattr(self, name)
            if n < 64 or round(n ** 0.5) ** 2 != n:
                raise InputError(f"{name} must be a square number >= 64, got {n}")
        if not 0 < self.max_moving_fraction <= 1:
            raise InputError(f"max_moving_fraction must be in (0, 1], got {self.max_moving_fraction}")


@dataclass(frozen=True)
class ResponseCalibration:
    """A recovered camera response and how well the stack supports it.

    Attributes:
        response: the curve for every backend (256 samples of f^-1).
        method: "debevec" or "robertson".
        exposure_times_s: t * g of each image, seconds, in the order given.
        raw: (256, C) float64, OpenCV's curves (arbitrary scale per channel, NaN where
            Robertson saw no pixel).
        channel_curves: (C, 256) float64, each channel's curve on ``response``'s scale;
            NaN outside the codes that channel trusts.
        trusted_range: (L_lo, L_hi): fitted to data inside, extrapolated outside.
        consistency: RMS over well-exposed observations of ln(f^-1(L_j) / t_j) minus the
            other exposures' estimate, with the recovered curve (0: perfectly consistent).
        gamma_consistency: the same with gamma 2.2, SPEC.md's default.
        moving_fraction: the largest fraction, over exposures, of well-exposed
            observations that disagree with the other exposures by more than 35 %.
        channel_spread: largest |channel curve - combined curve| over the trusted codes.
        warnings: one line each: what does not prevent calibration but deserves a look.
    """

    response: TabulatedResponse
    method: str
    exposure_times_s: tuple[float, ...]
    raw: np.ndarray
    channel_curves: np.ndarray
    trusted_range: tuple[float, float]
    consistency: float
    gamma_consistency: float
    moving_fraction: float
    channel_spread: float
    warnings: tuple[str, ...] = field(default=())

    @property
    def inverse_samples(self) -> np.ndarray:
        """(256,) float64: f^-1 at L = linspace(0, 1, 256)."""
        return np.asarray(self.response.inverse_samples, dtype=np.float64)


# -- inputs -------------------------------------------------------------------------------------
def prepare_stack(images: Sequence[np.ndarray], exposure_times_s: Sequence[float],
                  max_code: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validate a bracketed stack and convert it to 8-bit codes.

    Args:
        images: N arrays (H, W), (H, W, 1) or (H, W, 3), all uint8 or all uint16 (the
            channel order does not matter: one curve serves all channels).
        exposure_times_s: N effective exposures t * g in seconds.
        max_code: largest code of uint16 images that do not fill 16 bits.
    Returns:
        ((N, H, W, 3) uint8 codes, (N,) float64 exposures), in the order given.
    Raises:
        InputError: one line: fewer than 3 images, a count mismatch, an unsupported dtype
            or shape, sizes or dtypes that differ, exposures that are not finite,
            positive and distinct (within 0.1 %).
    """
    n = len(images)
    times = np.asarray(list(exposure_times_s), dtype=np.float64).ravel()
    if n < 3:
        raise InputError(f"a response calibration needs at least 3 exposures, got {n}")
    if times.size != n:
        raise InputError(f"{n} images but {times.size} exposure times")
    if not np.all(np.isfinite(times) & (times > 0)):
        raise InputError(f"exposure times must be finite and > 0, got {times.tolist()}")
    order = np.argsort(times, kind="stable")
    same = np.flatnonzero(times[order][1:] <= times[order][:-1] * (1 + 1e-3))
    if same.size:
        i, j = sorted((int(order[same[0]]), int(order[same[0] + 1])))
        raise InputError(f"images {i} and {j} have the same exposure ({times[i] * 1e6:g} us): "
                         "a bracket needs distinct exposures")
    first = np.asarray(images[0])
    stack = np.empty((n, *first.shape[:2], 3), dtype=np.uint8)
    for i, image in enumerate(images):
        a = np.asarray(image)
        if a.dtype not in (np.uint8, np.uint16):
            raise InputError(f"image {i} is {a.dtype}: expected uint8 or uint16 codes")
        if a.dtype != first.dtype:
            raise InputError(f"image {i} is {a.dtype}, image 0 is {first.dtype}: a stack needs one dtype")
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] == 3)):
            raise InputError(f"image {i} has shape {a.shape}: expected (H, W), (H, W, 1) or (H, W, 3)")
        if a.shape[:2] != first.shape[:2]:
            raise InputError(f"image {i} is {a.shape[1]}x{a.shape[0]}, image 0 is "
                             f"{first.shape[1]}x{first.shape[0]}: a stack needs one size")
        if a.dtype == np.uint16 or max_code is not None:
            a = from_unit(to_unit(a, max_code), np.uint8)
        stack[i] = a[:, :, None] if a.ndim == 2 else a
    if min(stack.shape[1:3]) < 16:
        raise InputError(f"images of {stack.shape[2]}x{stack.shape[1]} pixels are too small to calibrate")
    return stack, times


# -- pixels for OpenCV --------------------------------------------------------------------------
def _summed(stack: np.ndarray) -> np.ndarray:
    """(H, W) int32: each pixel's codes summed over exposures and channels, which ranks
    radiance for any monotone response."""
    total = np.zeros(stack.shape[1:3], dtype=np.int32)
    for image in stack:
        total += image.sum(axis=2, dtype=np.int32)
    return total


def _flatness(total: np.ndarray) -> np.ndarray:
    """(H, W) float32: local gradient magnitude of the summed stack (low = flat)."""
    total = total.astype(np.float32)
    gx = cv2.Sobel(total, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(total, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.blur(np.abs(gx) + np.abs(gy), (3, 3))


def _select_pixels(total: np.ndarray, count: int, flatness: np.ndarray) -> np.ndarray:
    """Flat indices of up to ``count`` interior pixels, stratified over radiance.

    Half the picks come from equal-width bins of the radiance proxy ``total`` (every
    brightness, however rare), the rest from equal-count bins of the remaining pixels
    (where the pixels are); in each bin the flattest pixel wins.
    """
    h, w = total.shape
    interior = np.zeros((h, w), dtype=bool)
    interior[1:-1, 1:-1] = True
    candidates = np.flatnonzero(interior)
    count = min(count, candidates.size)
    proxy = total.ravel()[candidates].astype(np.int64)
    score = flatness.ravel()[candidates]

    def flattest_per_bin(bins: np.ndarray, pool: np.ndarray) -> np.ndarray:
        order = np.lexsort((score[pool], bins))
        _, first = np.unique(bins[order], return_index=True)
        return pool[order[first]]

    half = max(count // 2, 1)
    lo, hi = int(proxy.min()), int(proxy.max())
    pool = np.arange(candidates.size)
    picked = flattest_per_bin(np.minimum((proxy - lo) * half // max(hi - lo, 1), half - 1), pool)
    rest = np.setdiff1d(pool, picked, assume_unique=True)
    need = count - picked.size
    if need > 0 and rest.size:
        ranks = np.empty(rest.size, dtype=np.int64)
        ranks[np.argsort(proxy[rest], kind="stable")] = np.arange(rest.size)
        picked = np.concatenate([picked, flattest_per_bin(ranks * need // rest.size, rest)])
    return candidates[picked[:count]]


def _clip_codes(stack: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(3,) int: per channel, the lowest code a saturated pixel reads (noise spreads clipping).

    A pixel within 5 codes of an exposure's brightest code is saturated in any exposure
    >= 1.25x longer; the 0.1st percentile of what it reads there, minus one, is where
    clipping starts. 253 when the stack has fewer than 50 such readings.
    """
    order = np.argsort(times)
    clip = np.full(3, LEVELS - _END_MARGIN, dtype=np.int64)
    for c in range(3):
        top = int(stack[..., c].max())
        readings = [stack[b, :, :, c][stack[a, :, :, c] >= top - 5]
                    for a, b in pairwise(order) if times[b] >= 1.25 * times[a]]
        codes = np.concatenate(readings) if readings else np.empty(0, dtype=np.uint8)
        if codes.size >= 50:
            clip[c] = min(clip[c], int(np.percentile(codes, 0.1)) - 1)
    return clip


def _sample_images(stack: np.ndarray, total: np.ndarray, flatness: np.ndarray, count: int,
                   clip: np.ndarray) -> list[np.ndarray]:
    """The selected pixels of each exposure as a square (side, side, 3) uint8 image, with
    codes below 3 set to 0 and codes >= ``clip`` (per channel) to 255 (weighted ~0)."""
    index = _select_pixels(total, count, flatness)
    side = int(np.sqrt(index.size))
    index = index[: side * side]
    flat = stack.reshape(stack.shape[0], -1, 3)
    out = []
    for j in range(stack.shape[0]):
        codes = flat[j, index].reshape(side, side, 3)
        codes = np.where(codes < _END_MARGIN, 0, np.where(codes >= clip, LEVELS - 1, codes))
        out.append(np.ascontiguousarray(codes, dtype=np.uint8))
    return out


def _opencv_curves(samples: list[np.ndarray], times: np.ndarray,
                   cfg: ResponseCalibrationConfig) -> np.ndarray:
    """(256, 3) float64: OpenCV's inverse response per channel, arbitrary scale."""
    if cfg.method == "debevec":
        side = samples[0].shape[0]
        # samples = side**2 on a side x side image: OpenCV's grid then takes every pixel
        calibrator = cv2.createCalibrateDebevec(side * side, cfg.debevec_lambda, False)
    else:
        calibrator = cv2.createCalibrateRobertson(cfg.robertson_max_iter, cfg.robertson_threshold)
    curve = calibrator.process(samples, times.astype(np.float32))
    return np.asarray(curve, dtype=np.float64).reshape(LEVELS, 3)


# -- curve post-processing ----------------------------------------------------------------------
def _trusted_codes(codes: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """(C, 256) bool: per channel, codes in [3, clip) read often enough, from (N, P, C) codes."""
    channels = codes.shape[-1]
    levels = np.arange(LEVELS)
    usable = (levels[None] >= _END_MARGIN) & (levels[None] < clip[:, None])
    counts = np.stack([np.bincount(codes[..., c].ravel(), minlength=LEVELS) for c in range(channels)])
    counts = np.where(usable, counts, 0).astype(np.float64)
    density = np.stack([np.convolve(c, np.ones(_WINDOW), mode="same") for c in counts])
    uniform = _WINDOW * codes[..., 0].size / LEVELS
    return usable & (density >= max(5.0, 0.02 * uniform))


def _longest_run(mask: np.ndarray) -> tuple[int, int] | None:
    """(first, last) index of the longest run of True in a 1-D mask, or None."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    if edges.size == 0:
        return None
    starts, stops = edges[0::2], edges[1::2]
    k = int(np.argmax(stops - starts))
    return int(starts[k]), int(stops[k] - 1)


def _fill_gaps(raw: np.ndarray) -> np.ndarray:
    """(256, C) curves with codes nobody read (Robertson: NaN) interpolated in log between
    their neighbours; codes beyond the first and last read ones stay as they are."""
    out = raw.copy()
    levels = np.arange(LEVELS)
    for c in range(raw.shape[1]):
        ok = np.isfinite(raw[:, c]) & (raw[:, c] > 0)
        if ok.sum() < 2:
            continue
        first, last = np.flatnonzero(ok)[[0, -1]]
        gap = (levels > first) & (levels < last) & ~ok
        out[gap, c] = np.exp(np.interp(levels[gap], levels[ok], np.log(raw[ok, c])))
    return out


def _power_law(log_curve: np.ndarray, codes: np.ndarray) -> tuple[float, float]:
    """(ln a, p) of ln f^-1 = ln a + p ln L fitted at ``codes``; p kept >= 0.1."""
    x = np.log(codes / (LEVELS - 1.0))
    y = log_curve[codes]
    p, ln_a = np.polyfit(x, y, 1)
    if not p >= 0.1:                         # a broken fit: keep a gentle, increasing law
        p = 0.1
        ln_a = float(np.mean(y - p * x))
    return float(ln_a), float(p)


def _end_slope(log_curve: np.ndarray, codes: np.ndarray) -> float:
    """d ln f^-1 / dL at the last of ``codes`` from a quadratic fitted to them, kept within
    [0.5, 2] times the slope of a straight line fitted to them (noise must not run away)."""
    x = codes / (LEVELS - 1.0)
    y = log_curve[codes]
    line = max(float(np.polyfit(x, y, 1)[0]), 1e-3)
    c2, c1, _ = np.polyfit(x, y, 2)
    return float(np.clip(c1 + 2 * c2 * x[-1], 0.5 * line, 2.0 * line))


def _finish_curve(log_curve: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """ln f^-1 trusted on codes [lo, hi] -> (256,) f^-1, normalised and strictly increasing
    (module docstring, step 5)."""
    g = log_curve.copy()
    g[lo:hi + 1] = isotonic_regression(g[lo:hi + 1]).x
    codes = np.arange(LEVELS, dtype=np.float64)
    fit = min(_END_FIT_CODES, hi - lo + 1)
    ln_a, p = _power_law(g, np.arange(lo, lo + fit))
    g[1:lo] = ln_a + p * np.log(codes[1:lo] / (LEVELS - 1))
    slope = _end_slope(g, np.arange(hi - fit + 1, hi + 1))
    g[hi + 1:] = g[hi] + slope * (codes[hi + 1:] - hi) / (LEVELS - 1)
    curve = np.exp(g - g[-1])
    curve[0] = 0.0
    curve = isotonic_regression(curve).x
    for i in range(1, LEVELS):
        curve[i] = max(curve[i], curve[i - 1] + _MIN_STEP)
    curve /= curve[-1]
    curve[0] = 0.0
    return curve


def _combine(raw: np.ndarray, trusted: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """(256, C) OpenCV curves -> (combined (256,) f^-1, (C, 256) channel curves on its
    scale, (first, last) trusted code).

    Raises:
        InputError: fewer than 48 consecutive codes trusted by every channel.
    """
    raw = _fill_gaps(raw)
    valid = np.isfinite(raw) & (raw > 0)
    mask = trusted & valid.T
    common = _longest_run(mask.all(axis=0))
    if common is None or common[1] - common[0] + 1 < 2 * _END_FIT_CODES:
        raise InputError("the stack constrains the response at too few codes: use more exposures "
                         "or a scene with a wider range of brightness")
    lo, hi = common
    logs = np.log(np.where(valid, raw, 1.0)).T                         # (C, 256)
    ref = logs[int(np.argmax(mask.sum(axis=1)))]
    offsets = np.median(logs[:, lo:hi + 1] - ref[None, lo:hi + 1], axis=1)
    aligned = logs - offsets[:, None]
    combined = np.full(LEVELS, np.nan)
    combined[lo:hi + 1] = aligned[:, lo:hi + 1].mean(axis=0)
    curve = _finish_curve(combined, lo, hi)
    norm = float(np.median(combined[lo:hi + 1] - np.log(curve[lo:hi + 1])))
    channel_curves = np.where(mask, np.exp(aligned - norm), np.nan)
    return curve, channel_curves, (lo, hi)


# -- checks -------------------------------------------------------------------------------------
def _strided(stack: np.ndarray, pixels: int) -> np.ndarray:
    step = max(1, int(np.ceil(np.sqrt(stack.shape[1] * stack.shape[2] / pixels))))
    return stack[:, ::step, ::step]


def exposure_consistency(stack: np.ndarray, exposure_times_s: np.ndarray,
                         response: CameraResponse) -> tuple[float, float, np.ndarray]:
    """How well ``response`` explains a static stack.

    Each well-exposed observation (L in [0.1, 0.92]) gives ln H = ln(f^-1(L_j) / t_j),
    compared with the hat-weighted mean of the same pixel's and channel's other
    well-exposed observations (leave-one-out).

    Args:
        stack: (N, H, W, C) uint8 codes.
        exposure_times_s: (N,) t * g, seconds.
    Returns:
        (RMS of the log differences; the largest fraction, over exposures, of observations
        with |log difference| > 0.3; (N,) that fraction per exposure). (NaN, 0, zeros) when
        no pixel is well exposed twice.
    """
    values = stack.astype(np.float32) / np.float32(LEVELS - 1)
    lo, hi = _WELL_EXPOSED
    good = (values >= lo) & (values <= hi)
    weight = np.where(good, np.minimum(values - lo, hi - values) + np.float32(0.02), np.float32(0.0))
    log_h = np.log(np.maximum(response.inverse(values), np.float32(1e-12))) \
        - np.log(exposure_times_s).astype(np.float32)[:, None, None, None]
    weighted = weight * log_h
    others_w = weight.sum(axis=0)[None] - weight
    usable = good & (others_w > 1e-6)
    n = usable.reshape(stack.shape[0], -1).sum(axis=1)
    if not n.any():
        return float("nan"), 0.0, np.zeros(stack.shape[0])
    others = (weighted.sum(axis=0)[None] - weighted) / np.where(usable, others_w, np.float32(1.0))
    diff = np.where(usable, log_h - others, np.float32(0.0))
    rms = float(np.sqrt(np.square(diff[usable], dtype=np.float64).mean()))
    moved = (usable & (np.abs(diff) > _MOVED_LOG_RATIO)).reshape(stack.shape[0], -1).sum(axis=1)
    per_exposure = moved / np.maximum(n, 1)
    return rms, float(per_exposure.max()), per_exposure


def compare_responses(a: CameraResponse, b: CameraResponse, lo: float = 0.05,
                      hi: float = 0.95) -> tuple[float, float]:
    """(max, RMS) of |a.inverse(L) - b.inverse(L)| over L in [lo, hi] (1001 points)."""
    levels = np.linspace(lo, hi, 1001, dtype=np.float32)
    d = np.abs(a.inverse(levels).astype(np.float64) - b.inverse(levels).astype(np.float64))
    return float(d.max()), float(np.sqrt(np.mean(d ** 2)))


def _well_exposed_twice(stack: np.ndarray) -> int:
    """Pixels of (N, H, W, 3) codes whose mean code is in the well-exposed range in >= 2 images."""
    mean = stack.astype(np.float32).mean(axis=3) / (LEVELS - 1)
    lo, hi = _WELL_EXPOSED
    return int((((mean >= lo) & (mean <= hi)).sum(axis=0) >= 2).sum())


def _geometric_step(times: np.ndarray) -> float | None:
    """The step in EV when every ratio of the exposures is a power of it (within 5 %), else None."""
    ev = np.diff(np.sort(np.log2(times)))
    step = float(ev.min())
    return step if np.all(np.abs(ev / step - np.round(ev / step)) < 0.05) else None


# -- the calibration ----------------------------------------------------------------------------
def recover_response(images: Sequence[np.ndarray], exposure_times_s: Sequence[float],
                     method: str | None = None,
                     config: ResponseCalibrationConfig | None = None) -> ResponseCalibration:
    """Recover the camera response from a static bracketed stack (module docstring: how).

    Args:
        images: N >= 3 images (H, W), (H, W, 1) or (H, W, 3) of uint8 or uint16 codes.
        exposure_times_s: N distinct effective exposures t * g, seconds
            (exposure_time_us * 1e-6 * 10 ** (gain_db / 20)).
        method: "debevec" or "robertson"; overrides ``config.method``.
        config: the other parameters.
    Returns:
        The normalised curve and its diagnostics.
    Raises:
        InputError: one line (see :func:`prepare_stack` and the module docstring's checks).
    """
    cfg = config or ResponseCalibrationConfig()
    if method is not None and method != cfg.method:
        cfg = replace(cfg, method=method)
    stack, times = prepare_stack(images, exposure_times_s, cfg.max_code)
    checked = _strided(stack, _CHECK_PIXELS)
    scale = stack.shape[1] * stack.shape[2] / (checked.shape[1] * checked.shape[2])
    well = round(_well_exposed_twice(checked) * scale)
    if well < cfg.min_pixels:
        lo, hi = _WELL_EXPOSED
        raise InputError(f"only {well} pixels are well exposed (L in [{lo}, {hi}]) in two or more images, "
                         f"{cfg.min_pixels} needed: use exposures closer together or a scene with more "
                         "mid-tones")

    work = _strided(stack, _SELECT_PIXELS)        # 4096 pixels are picked: 1 Mpx to pick from is plenty
    total = _summed(work)
    flatness = _flatness(total)
    clip = _clip_codes(work, times)
    count = cfg.debevec_samples if cfg.method == "debevec" else cfg.robertson_samples
    samples = _sample_images(work, total, flatness, count, clip)
    raw = _opencv_curves(samples, times, cfg)
    density = samples if cfg.method == "robertson" else \
        _sample_images(work, total, flatness, cfg.robertson_samples, clip)
    trusted = _trusted_codes(np.stack([s.reshape(-1, 3) for s in density]), clip)
    curve, channel_curves, (lo_code, hi_code) = _combine(raw, trusted)
    trusted_range = (lo_code / (LEVELS - 1), hi_code / (LEVELS - 1))
    response = TabulatedResponse.from_array(curve)

    # the static check first: a moving stack also narrows the trusted range
    consistency, moving, per_exposure = exposure_consistency(checked, times, response)
    worst = int(np.argmax(per_exposure))
    if moving > cfg.max_moving_fraction:
        raise InputError(f"the stack is not static: {100 * moving:.1f} % of the well-exposed pixels of image "
                         f"{worst} disagree by more than 35 % with the other exposures after exposure "
                         f"normalisation (at most {100 * cfg.max_moving_fraction:g} % allowed); take it "
                         "again on a tripod, without moving objects")
    if trusted_range[0] > _REQUIRED_RANGE[0] or trusted_range[1] < _REQUIRED_RANGE[1]:
        lo, hi = _REQUIRED_RANGE
        raise InputError(f"the stack constrains the response only for L in [{trusted_range[0]:.2f}, "
                         f"{trusted_range[1]:.2f}]; it must cover [{lo}, {hi}]: add shorter and longer "
                         "exposures or use a scene with a wider range of brightness")
    gamma_consistency, _, _ = exposure_consistency(checked, times, GammaResponse(2.2))
    spread = float(np.nanmax(np.abs(channel_curves - curve[None]))) if np.isfinite(channel_curves).any() \
        else 0.0

    warnings = []
    if moving > _WARN_MOVING_FRACTION:
        warnings.append(f"{100 * moving:.1f} % of the well-exposed pixels of image {worst} disagree with the "
                        "other exposures: did something move?")
    if spread > _WARN_CHANNEL_SPREAD:
        warnings.append(f"the channels' curves differ by up to {spread:.3f}: one curve for all channels "
                        "approximates this camera")
    step = _geometric_step(times)
    if cfg.method == "robertson" and step is not None:
        warnings.append(f"the exposures are multiples of one {step:.2g} EV step: Robertson cannot tell the "
                        "curve from one rippled at that step (debevec can, or use an irregular bracket)")
    return ResponseCalibration(response=response, method=cfg.method,
                               exposure_times_s=tuple(float(t) for t in times), raw=raw,
                               channel_curves=channel_curves, trusted_range=trusted_range,
                               consistency=consistency, gamma_consistency=gamma_consistency,
                               moving_fraction=moving, channel_spread=spread, warnings=tuple(warnings))
