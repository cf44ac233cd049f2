"""Classical (non-learned) HDR merge of a reference frame with its registered anchors.

The baseline every learned backend is measured against, so it does what a careful
engineer would do without learning:

1. Linearise each exposure through the camera response: E_i = f^-1(L_i) / (t_i g_i).
2. Weight each exposure by the inverse variance of its radiance estimate (shot, read and
   quantisation noise propagated through f^-1), times a hat that falls to zero as any
   channel approaches saturation: the maximum-likelihood merge of independent
   measurements (Granados et al. 2010, "Optimal HDR reconstruction with linear
   digital cameras"; Hasinoff et al. 2010 for the noise model).
3. Correct a global photometric mismatch between the cameras: the median log ratio of
   anchor to reference radiance over pixels both see well (bounded to +-1 EV). This also
   absorbs an exposure read-back that is slightly off.
4. Reject motion against the reference: an anchor pixel counts only where its radiance
   agrees with the reference's within k noise sigmas plus a relative tolerance (for
   residual misregistration and response error); the squared normalised difference is
   averaged over a small window before testing, so noise does not punch holes, and the
   rejection is dilated so moving edges do not leak.
   Where the reference is saturated it only bounds the radiance from below: an anchor
   that claims less than that bound is inconsistent (something darker moved in).
   Rejections are also propagated a few pixels into saturated regions from their
   surroundings, since a moving object seen where the reference is valid usually
   continues where it is not.
5. Stale anchors count less with age (exp(-age / tau)) and not at all past a maximum
   age; missing anchors fall back to the reference alone. Both are reported.
6. Where every usable exposure is saturated, the largest consistent lower bound is used.

Images are (H, W, 3) float32 RGB in [0, 1]; radiance is in SPEC.md units.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .errors import InputError
from .photometry import DEFAULT_RESPONSE, CameraResponse, channel_max, channel_min, luminance
from .types import Frame, FrameGroup


@dataclass(frozen=True)
class NoiseModel:
    """Noise of the linear sensor signal x = H t g in [0, 1] (full scale = 1).

    var(x) = shot * g * x + (read * g) ** 2 + quantisation, with the quantisation step
    of ``bits``-bit codes mapped through f^-1 (uniform: step ** 2 / 12).
    """

    shot: float = 1.0e-4
    read: float = 1.0e-3
    bits: int = 8


@dataclass(frozen=True)
class MergeConfig:
    """Parameters of the classical merge; defaults suit 8-bit gamma cameras.

    Attributes:
        saturation_level: pixel value (any channel) at which an exposure carries no information.
        saturation_knee: where the saturation hat starts to fall from 1.
        consistency_sigmas: k, the number of noise sigmas an anchor may deviate.
        relative_tolerance: relative radiance error of an anchor always allowed for (response
            and photometric calibration error); enters the anchor's variance.
        registration_error_px: residual misregistration of an anchor after calibration and
            motion compensation; an error of d pixels costs d * |gradient| in radiance, which
            enters the anchor's variance, so anchors lose weight at edges where the reference
            is reliable (they would blur or double them) and keep it in flat or dark areas.
        consistency_window_px: side of the window the squared deviation is averaged over.
        rejection_dilate_px: dilation of the rejection mask.
        saturated_propagation_px: how far rejections spread into reference-saturated areas.
        anchor_age_tau_s: time constant of the weight decay of stale anchors.
        max_anchor_age_s: anchors older than this are not used.
        compensate_motion: estimate and undo a global translation of each anchor (camera
            motion between the anchor's and the reference's capture times).
        max_alignment_ev: bound of the global photometric correction.
        min_alignment_fraction: fraction of pixels needed to estimate that correction.
    """

    noise: NoiseModel = field(default_factory=NoiseModel)
    saturation_level: float = 0.97
    saturation_knee: float = 0.85
    consistency_sigmas: float = 3.0
    relative_tolerance: float = 0.05
    registration_error_px: float = 0.5
    consistency_window_px: int = 5
    rejection_dilate_px: int = 2
    saturated_propagation_px: int = 6
    anchor_age_tau_s: float = 0.25
    max_anchor_age_s: float = 0.5
    compensate_motion: bool = True
    max_alignment_ev: float = 1.0
    min_alignment_fraction: float = 0.01


@dataclass(frozen=True)
class MergeResult:
    """A merged HDR frame and what went into it.

    Attributes:
        hdr: (H, W, 3) float32 radiance, SPEC.md units.
        anchors_used: False when the reference alone was used.
        reason: why anchors were not used ("" when they were).
        stats: scalars for diagnostics: per-anchor rejected / used fractions, global
            alignment in EV, age weight, fraction of reference-saturated pixels recovered.
    """

    hdr: np.ndarray
    anchors_used: bool
    reason: str = ""
    stats: dict[str, float] = field(default_factory=dict)


def reference_only(frame: Frame, response: CameraResponse = DEFAULT_RESPONSE) -> np.ndarray:
    """The reference-only estimate f^-1(L_ref) / (t g): (H, W, 3) float32 radiance."""
    return response.inverse(frame.pixels) / np.float32(frame.exposure.scale)


def _saturation_hat(top: np.ndarray, cfg: MergeConfig) -> np.ndarray:
    """Per-pixel channel maximum (H, W) -> (H, W): 1 below the knee, 0 at saturation."""
    ramp = (cfg.saturation_level - top) / (cfg.saturation_level - cfg.saturation_knee)
    ramp = np.clip(ramp, 0.0, 1.0)
    return ramp * ramp * (3.0 - 2.0 * ramp)


class _Exposure:
    """One linearised exposure: radiance, luminance, variance of luminance, weight."""

    def __init__(self, frame: Frame, response: CameraResponse, cfg: MergeConfig) -> None:
        n = cfg.noise
        scale = np.float32(frame.exposure.scale)
        gain = np.float32(frame.exposure.gain_linear)
        values = frame.pixels
        signal = response.inverse(values)
        self.radiance = signal / scale
        self.lum = luminance(self.radiance)
        sig_lum = luminance(signal)
        half_code = 0.5 / (2 ** n.bits - 1)
        q_step = response.inverse_slope(np.maximum(luminance(values), half_code)) / (2 ** n.bits - 1)
        var_signal = n.shot * gain * sig_lum + (n.read * gain) ** 2 + q_step * q_step / 12.0
        self.var_lum = var_signal / (scale * scale)
        top = channel_max(values)
        self.hat = _saturation_hat(top, cfg)
        self.saturated = top >= cfg.saturation_level
        self.darkest = channel_min(values)
        self.weight = self.hat / self.var_lum


def estimate_shift(reference: Frame, anchor: Frame, response: CameraResponse,
                   max_shift_fraction: float = 0.05) -> tuple[float, float, float]:
    """Global translation (dx, dy) in pixels that moves ``anchor`` onto ``reference``.

    Both frames are linearised to radiance and their log is clipped to the range both
    exposures capture well, which makes them look alike whatever their exposures (the same
    idea as Ward's median threshold bitmaps, but sub-pixel); then phase correlation.
    Returns (dx, dy, response) where response is the correlation peak in [0, 1]; a shift
    beyond ``max_shift_fraction`` of the image size or with a weak peak returns zeros.
    """
    logs = []
    lo, hi = 0.0, np.inf
    for frame in (reference, anchor):
        s = frame.exposure.scale
        lo = max(lo, float(response.inverse(np.float32(0.08))) / s)
        hi = min(hi, float(response.inverse(np.float32(0.9))) / s)
    if not hi > 1.5 * lo:
        return 0.0, 0.0, 0.0
    for frame in (reference, anchor):
        lum = luminance(response.inverse(frame.pixels)) / np.float32(frame.exposure.scale)
        logs.append(np.log(np.clip(lum, lo, hi)).astype(np.float32))
    h, w = logs[0].shape
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    (dx, dy), peak = cv2.phaseCorrelate(logs[1], logs[0], window)
    if peak < 0.05 or abs(dx) > max_shift_fraction * w or abs(dy) > max_shift_fraction * h:
        return 0.0, 0.0, float(peak)
    return float(dx), float(dy), float(peak)


def _translate(frame: Frame, dx: float, dy: float) -> tuple[Frame, np.ndarray]:
    """Shift a frame's pixels by (dx, dy); returns it and the (H, W) mask of pixels it covers."""
    h, w = frame.pixels.shape[:2]
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    pixels = cv2.warpAffine(frame.pixels, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    cover = cv2.warpAffine(np.ones((h, w), np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return replace(frame, pixels=pixels), (cover > 0.999).astype(np.float32)


def _window_mean(image: np.ndarray, size: int) -> np.ndarray:
    if size <= 1:
        return image
    return cv2.blur(image, (size, size), borderType=cv2.BORDER_REFLECT)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel)


def _global_alignment(ref: _Exposure, anchor: _Exposure, cfg: MergeConfig) -> float:
    """Median log2 ratio anchor / reference over pixels both expose well (0 if too few).

    "Well" is judged on both frames' pixel values alike (not on either's noise estimate,
    which would select pixels whose noise happens to be positive and bias the ratio).
    """
    good = (ref.hat > 0.99) & (anchor.hat > 0.99) & (ref.darkest > 0.15) & (anchor.darkest > 0.15)
    if good.mean() < cfg.min_alignment_fraction:
        return 0.0
    ratio_ev = float(np.median(np.log2(anchor.lum[good] / ref.lum[good])))
    return float(np.clip(ratio_ev, -cfg.max_alignment_ev, cfg.max_alignment_ev))


def _consistency(ref: _Exposure, anchor: _Exposure, cfg: MergeConfig) -> tuple[np.ndarray, float]:
    """(H, W) weight in [0, 1] of an anchor's agreement with the reference, and rejected fraction."""
    k = cfg.consistency_sigmas
    sigma2 = ref.var_lum + anchor.var_lum
    diff = anchor.lum - ref.lum
    # Reference saturated: it is only a lower bound, so only a shortfall is a conflict.
    lower_bound_only = ref.saturated
    diff = np.where(lower_bound_only, np.minimum(diff, 0.0), diff)
    z2 = _window_mean((diff * diff / sigma2).astype(np.float32), cfg.consistency_window_px)
    z = np.sqrt(np.maximum(z2, 0.0))  # box filters can round to tiny negatives
    weight = np.clip(1.0 - (z - k) / k, 0.0, 1.0).astype(np.float32)
    rejection = _dilate(1.0 - weight, cfg.rejection_dilate_px)
    if cfg.saturated_propagation_px > 0 and lower_bound_only.any():
        spread = _dilate(rejection, cfg.saturated_propagation_px)
        rejection = np.where(lower_bound_only, np.maximum(rejection, spread), rejection)
    weight = 1.0 - rejection
    return weight, float((weight < 0.5).mean())


def _gradient_magnitude(lum: np.ndarray) -> np.ndarray:
    """|grad| of (H, W) luminance per pixel (central differences, Scharr-smoothed)."""
    gx = cv2.Scharr(lum, cv2.CV_32F, 1, 0, borderType=cv2.BORDER_REFLECT) / 32.0
    gy = cv2.Scharr(lum, cv2.CV_32F, 0, 1, borderType=cv2.BORDER_REFLECT) / 32.0
    return np.sqrt(gx * gx + gy * gy)


def _add_model_error(anchor: _Exposure, ref: _Exposure, cfg: MergeConfig) -> None:
    """Add misregistration and photometric model error to an anchor's variance (in place)."""
    grad = np.maximum(_gradient_magnitude(ref.lum), _gradient_magnitude(anchor.lum))
    extra = (cfg.registration_error_px * grad) ** 2 + (cfg.relative_tolerance * anchor.lum) ** 2
    anchor.var_lum = anchor.var_lum + extra
    anchor.weight = anchor.hat / anchor.var_lum


def age_weight(age_s: float, cfg: MergeConfig) -> float:
    """Weight of an anchor pair of age ``age_s`` seconds: exp(-age / tau), 0 past the maximum."""
    if age_s > cfg.max_anchor_age_s:
        return 0.0
    return float(np.exp(-max(age_s, 0.0) / cfg.anchor_age_tau_s))


def _check_frame(frame: Frame, shape: tuple[int, ...] | None) -> None:
    px = frame.pixels
    if px.ndim != 3 or px.shape[2] != 3 or px.dtype != np.float32:
        raise InputError(f"{frame.role.name} frame must be (H, W, 3) float32, got {px.shape} {px.dtype}")
    if shape is not None and px.shape != shape:
        raise InputError(f"{frame.role.name} frame is {px.shape[:2]}, reference is {shape[:2]}; "
                         "anchors must be registered into the reference grid")
    if not np.all(np.isfinite(px)):
        raise InputError(f"{frame.role.name} frame contains NaN or Inf")


def merge(group: FrameGroup, response: CameraResponse = DEFAULT_RESPONSE,
          cfg: MergeConfig | None = None) -> MergeResult:
    """Merge a reference frame with its anchor pair into radiance.

    Args:
        group: the reference frame, its anchor pair registered into the reference grid
            (or None), and the pair's age.
        response: the camera response shared by both cameras.
        cfg: merge parameters.
    Returns:
        MergeResult with (H, W, 3) float32 radiance.
    Raises:
        InputError: malformed frames (shape, dtype, non-finite values).
    """
    cfg = cfg or MergeConfig()
    ref_frame = group.reference
    _check_frame(ref_frame, None)
    ref = _Exposure(ref_frame, response, cfg)
    stats: dict[str, float] = {"anchor_age_s": float(group.anchor_age_s),
                               "reference_saturated_fraction": float(ref.saturated.mean())}

    if group.anchors is None:
        return MergeResult(reference_only(ref_frame, response), False, "no anchor pair", stats)
    w_age = age_weight(group.anchor_age_s, cfg)
    stats["age_weight"] = w_age
    if w_age <= 0.0:
        return MergeResult(reference_only(ref_frame, response), False,
                           f"anchor pair too old ({group.anchor_age_s:.3f} s > {cfg.max_anchor_age_s} s)",
                           stats)

    num = ref.weight[..., None] * ref.radiance
    den = ref.weight.copy()
    # Lower bound on radiance from saturated-but-consistent measurements.
    bound = np.where(ref.saturated, ref.lum, 0.0)
    bound_rgb = np.where(ref.saturated[..., None], ref.radiance, 0.0)
    recovered = np.zeros(ref.lum.shape, dtype=bool)
    for name, frame in (("low", group.anchors.low), ("high", group.anchors.high)):
        _check_frame(frame, ref_frame.pixels.shape)
        cover = None
        if cfg.compensate_motion:
            dx, dy, peak = estimate_shift(ref_frame, frame, response)
            stats[f"{name}_shift_x_px"], stats[f"{name}_shift_y_px"] = dx, dy
            if dx or dy:
                frame, cover = _translate(frame, dx, dy)
        anchor = _Exposure(frame, response, cfg)
        if cover is not None:
            anchor.weight *= cover
        shift_ev = _global_alignment(ref, anchor, cfg)
        if shift_ev != 0.0:
            corr = np.float32(2.0 ** -shift_ev)
            anchor.radiance *= corr
            anchor.lum *= corr
            anchor.var_lum *= corr * corr
            anchor.weight /= corr * corr
        _add_model_error(anchor, ref, cfg)
        consistent, rejected = _consistency(ref, anchor, cfg)
        w = anchor.weight * consistent * np.float32(w_age)
        num += w[..., None] * anchor.radiance
        den += w
        ok_bound = anchor.saturated & (consistent > 0.5) & (anchor.lum > bound)
        bound = np.where(ok_bound, anchor.lum, bound)
        bound_rgb = np.where(ok_bound[..., None], anchor.radiance, bound_rgb)
        recovered |= ref.saturated & (w > 0) & ~anchor.saturated
        stats[f"{name}_alignment_ev"] = shift_ev
        stats[f"{name}_rejected_fraction"] = rejected
        stats[f"{name}_weight_fraction"] = float((w / np.maximum(w + ref.weight, 1e-30)).mean())

    with np.errstate(invalid="ignore", divide="ignore"):
        hdr = num / den[..., None]
    unresolved = den <= 0
    hdr = np.where(unresolved[..., None], bound_rgb, hdr)
    # A saturated reference is a lower bound the merged value must respect.
    hdr = np.where((ref.saturated & ~recovered)[..., None], np.maximum(hdr, ref.radiance), hdr)
    sat = ref.saturated.sum()
    stats["saturated_recovered_fraction"] = float(recovered.sum() / sat) if sat else 1.0
    return MergeResult(hdr.astype(np.float32), True, "", stats)
