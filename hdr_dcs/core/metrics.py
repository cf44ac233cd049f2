"""Quality metrics for HDR images and HDR video: PSNR, SSIM, temporal and brightness metrics.

Inputs are *normalised* linear HDR: float arrays already divided by one common peak (see
``tonemap.normalise``) so that values lie in [0, 1]. Images are (H, W, C) and sequences
(N, H, W, C), with C = 3 (RGB) or 1 (mono). Prediction and ground truth must share one
peak; for video, use one peak per sequence so that frames stay comparable.

Domains: ``*_l`` metrics compare linear values; ``*_mu`` metrics first apply the mu-law
tone curve tau(H) = ln(1 + mu H) / ln(1 + mu), mu = 5000 (``tonemap.mu_law``; eq. 12 of the
DCS/EAFNet paper, after Kalantari & Ramamoorthi 2017). The temporal and brightness metrics
work in the mu-law domain. Values there lie in [0, 1], so PSNR and SSIM use a data range
of 1.

Sources:
  * DCS/EAFNet, "dual-camera system for HDR video" (Sec. V-A.3, eqs. 16-17): PSNR-L/mu,
    SSIM-L/mu, t-SSIM, L_avg, LSD.
  * LoCAtion (Sec. IV-A, "Evaluation metrics"): t-PSNR, t-SSIM, AB, MADB, STD; on real
    videos without ground truth it reports t-PSNR, t-SSIM and LSD, as DCS does.
  * SSIM: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image quality assessment:
    from error visibility to structural similarity", IEEE TIP 13(4), 2004.

Infinite PSNR: the PSNR of two identical signals is ``math.inf``. Where the PSNRs of
several frames are averaged or spread (no-reference t-PSNR, ``psnr_std`` and the means
in ``sequence_report``), each per-frame value is first capped at ``PSNR_CAP_DB``
(100 dB). Otherwise one identical frame would make the mean inf and the standard
deviation NaN. ``sequence_report`` also caps its pooled values, so that its output is
plain, finite JSON.

Framework-free: numpy and OpenCV only. Sequences are processed one frame at a time, so
memory stays at a few frames however long the sequence is.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import cv2
import numpy as np

from .errors import InputError
from .photometry import luminance
from .tonemap import MU, mu_law

#: The cap, in dB, on per-frame PSNRs before averaging, and on every PSNR of ``sequence_report``.
#: 100 dB means an MSE of 1e-10 at a data range of 1, below float32 rounding of values in [0, 1].
PSNR_CAP_DB = 100.0

# SSIM constants of Wang et al. (2004) with a Gaussian window: sigma 1.5, 11 x 11 (radius 5).
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_SIGMA = 1.5
SSIM_WIN = 11
_SSIM_PAD = (SSIM_WIN - 1) // 2

#: Frame brightness B_t is given on the 8-bit scale of the papers (L_avg ~ 100-130 in DCS).
BRIGHTNESS_SCALE = 255.0


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def _as_array(x: np.ndarray, name: str, ndim: int, *, require_float: bool) -> np.ndarray:
    """Check dtype, rank, channel count, emptiness and finiteness. Floats keep their dtype."""
    x = np.asarray(x)
    kind = "image (H, W, C)" if ndim == 3 else "sequence (N, H, W, C)"
    if x.dtype == np.bool_ or not (np.issubdtype(x.dtype, np.floating)
                                   or np.issubdtype(x.dtype, np.integer)):
        raise InputError(f"{name} must be a real numeric array, got dtype {x.dtype}")
    if require_float and not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{name} must be normalised float HDR in [0, 1], got dtype {x.dtype} "
                         "(convert integer codes with photometry.to_unit first)")
    if x.ndim != ndim:
        raise InputError(f"{name} must be an {kind}, got shape {x.shape}")
    if x.shape[-1] not in (1, 3):
        raise InputError(f"{name} must have 1 or 3 channels (last axis), got shape {x.shape}")
    if x.size == 0:
        raise InputError(f"{name} is empty: shape {x.shape}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise InputError(f"{name} contains NaN or Inf values")
    return x


def _pair(x: np.ndarray, y: np.ndarray, names: tuple[str, str], ndim: int,
          *, require_float: bool = True) -> tuple[np.ndarray, np.ndarray]:
    a = _as_array(x, names[0], ndim, require_float=require_float)
    b = _as_array(y, names[1], ndim, require_float=require_float)
    if a.shape != b.shape:
        raise InputError(f"{names[0]} and {names[1]} differ in shape: {a.shape} vs {b.shape}")
    return a, b


def _sequences(pred: np.ndarray, gt: np.ndarray | None, *, ssim: bool = False,
               temporal: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate pred (and gt) as (N, H, W, C) float sequences for the sequence metrics."""
    if gt is None:
        p, g = _as_array(pred, "pred", 4, require_float=True), None
    else:
        p, g = _pair(pred, gt, ("pred", "gt"), 4)
    if temporal and p.shape[0] < 2:
        raise InputError(f"a temporal metric needs at least 2 frames, got {p.shape[0]}")
    if ssim:
        _check_ssim_size(p.shape, "pred")
    return p, g


def _check_range(data_range: float) -> float:
    r = float(data_range)
    if not (math.isfinite(r) and r > 0):
        raise InputError(f"data_range must be finite and > 0, got {data_range}")
    return r


def _check_ssim_size(shape: tuple[int, ...], name: str) -> None:
    h, w = shape[-3], shape[-2]
    if h < SSIM_WIN or w < SSIM_WIN:
        raise InputError(f"SSIM needs frames of at least {SSIM_WIN} x {SSIM_WIN} pixels, "
                         f"{name} is {h} x {w}")


# ---------------------------------------------------------------------------------------------
# Kernels (validated input only)
# ---------------------------------------------------------------------------------------------

def _mu(x: np.ndarray) -> np.ndarray:
    """mu-law tone map; float64 stays float64, other dtypes become float32."""
    x = np.asarray(x)
    return mu_law(x if x.dtype == np.float64 else x.astype(np.float32), MU)


def _sumsq(d: np.ndarray) -> float:
    """Sum of squares, accumulated in float64."""
    return float(np.square(d, dtype=np.float64).sum())


def _sse(x: np.ndarray, y: np.ndarray) -> float:
    return _sumsq(np.subtract(x, y, dtype=np.float64))


def _psnr_from_mse(mse: float, data_range: float) -> float:
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def _cap(values: float | list[float] | np.ndarray) -> np.ndarray:
    return np.minimum(np.asarray(values, dtype=np.float64), PSNR_CAP_DB)


def _blur(img: np.ndarray) -> np.ndarray:
    # An 11 x 11 sampled Gaussian, sigma 1.5: the kernel of scipy.ndimage.gaussian_filter with
    # truncate 3.5, as skimage uses. The border mode never reaches the valid region we average.
    out = cv2.GaussianBlur(img, (SSIM_WIN, SSIM_WIN), SSIM_SIGMA, sigmaY=SSIM_SIGMA,
                           borderType=cv2.BORDER_REFLECT)
    return out.reshape(img.shape)  # cv2 drops a trailing channel axis of size 1


class _Local(NamedTuple):
    """A frame in float64 with its Gaussian local mean and local population variance."""

    x: np.ndarray
    mean: np.ndarray
    var: np.ndarray


def _local(x: np.ndarray) -> _Local:
    x = np.ascontiguousarray(x, dtype=np.float64)
    m = _blur(x)
    v = _blur(x * x)
    v -= m * m
    return _Local(x, m, v)


def _ssim_local(a: _Local, b: _Local, data_range: float) -> float:
    """Mean SSIM of two frames over the valid region (all in float64, in place where possible)."""
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    cov = _blur(a.x * b.x)
    cov -= a.mean * b.mean
    num = a.mean * b.mean
    num *= 2.0
    num += c1
    cov *= 2.0
    cov += c2
    num *= cov
    den = a.mean * a.mean
    den += np.square(b.mean, out=cov)
    den += c1
    vs = a.var + b.var
    vs += c2
    den *= vs
    num /= den
    p = _SSIM_PAD
    return float(num[p:-p, p:-p].mean())


def _ssim_pair(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    return _ssim_local(_local(x), _local(y), data_range)


def _brightness_frame(mu_frame: np.ndarray) -> float:
    """B_t of one mu-law frame: 255 * mean relative luminance."""
    return BRIGHTNESS_SCALE * float(luminance(mu_frame).mean(dtype=np.float64))


# Names _scan can compute. Per-frame lists: psnr_l, psnr_mu, ssim_l, ssim_mu, t_psnr_nr,
# t_ssim_nr, t_ssim, brightness, gt_* ; pooled: t_psnr (as a sum of squares).
_FULL_REF = {"psnr_l", "ssim_l", "psnr_mu", "ssim_mu", "t_psnr", "t_ssim",
             "gt_brightness", "gt_t_psnr_nr", "gt_t_ssim_nr"}


def _scan(pred: np.ndarray, gt: np.ndarray | None, want: set[str]) -> dict[str, list[float]]:
    """One pass over validated sequences computing the per-frame terms of ``want``.

    Everything except psnr_l / ssim_l works on mu-law frames; only two consecutive
    frames are held at a time. Returns, for each wanted name, the list of per-frame (or
    per-frame-pair) values; ``t_psnr`` holds the per-pair sums of squared errors.
    """
    if gt is None and want & _FULL_REF:
        raise AssertionError(f"full-reference metrics {want & _FULL_REF} need gt")
    out: dict[str, list[float]] = {k: [] for k in want}
    n_px = pred[0].size
    need_lp = bool(want & {"ssim_mu", "t_ssim_nr"})
    need_lg = bool(want & {"ssim_mu", "gt_t_ssim_nr"})
    mp_prev = mg_prev = None
    lp_prev = lg_prev = None
    e_prev = None
    for t in range(pred.shape[0]):
        p = pred[t]
        g = gt[t] if gt is not None else None
        if "psnr_l" in want:
            out["psnr_l"].append(_psnr_from_mse(_sse(p, g) / n_px, 1.0))
        if "ssim_l" in want:
            out["ssim_l"].append(_ssim_local(_local(p), _local(g), 1.0))
        mp = _mu(p)
        mg = _mu(g) if g is not None else None
        lp = _local(mp) if need_lp else None
        lg = _local(mg) if need_lg else None
        if "brightness" in want:
            out["brightness"].append(_brightness_frame(mp))
        if "gt_brightness" in want:
            out["gt_brightness"].append(_brightness_frame(mg))
        if "psnr_mu" in want:
            out["psnr_mu"].append(_psnr_from_mse(_sse(mp, mg) / n_px, 1.0))
        if "ssim_mu" in want:
            out["ssim_mu"].append(_ssim_local(lp, lg, 1.0))
        e = np.subtract(mp, mg, dtype=np.float64) if "t_psnr" in want else None
        if t > 0:
            if "t_psnr_nr" in want:
                out["t_psnr_nr"].append(_psnr_from_mse(_sse(mp, mp_prev) / n_px, 1.0))
            if "gt_t_psnr_nr" in want:
                out["gt_t_psnr_nr"].append(_psnr_from_mse(_sse(mg, mg_prev) / n_px, 1.0))
            if "t_ssim_nr" in want:
                out["t_ssim_nr"].append(_ssim_local(lp, lp_prev, 1.0))
            if "gt_t_ssim_nr" in want:
                out["gt_t_ssim_nr"].append(_ssim_local(lg, lg_prev, 1.0))
            if "t_psnr" in want:
                # (pred[t] - pred[t-1]) - (gt[t] - gt[t-1]) = e[t] - e[t-1], e = pred - gt
                out["t_psnr"].append(_sumsq(e - e_prev))
            if "t_ssim" in want:
                dp = np.subtract(mp, mp_prev, dtype=np.float64)
                dp += 1.0
                dp *= 0.5
                dg = np.subtract(mg, mg_prev, dtype=np.float64)
                dg += 1.0
                dg *= 0.5
                out["t_ssim"].append(_ssim_local(_local(dp), _local(dg), 1.0))
        mp_prev, mg_prev, lp_prev, lg_prev, e_prev = mp, mg, lp, lg, e
    return out


def _t_psnr_fr(sums: list[float], n_px: int) -> float:
    return _psnr_from_mse(float(np.sum(sums)) / (len(sums) * n_px), 1.0)


# ---------------------------------------------------------------------------------------------
# Image metrics
# ---------------------------------------------------------------------------------------------

def psnr(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, in whatever domain x and y are given.

    PSNR = 10 log10(R^2 / MSE), MSE = mean over all pixels and channels of (x - y)^2
    (in float64), R = ``data_range``. Returns ``math.inf`` when x == y (MSE = 0).

    Args:
        x, y: (H, W, C) images of equal shape, C in {1, 3}; any real dtype.
        data_range: R, the peak-to-peak range of the signal (1 for normalised values).
    Raises:
        InputError: rank or shape mismatch, empty or non-finite input, bad data_range.
    """
    a, b = _pair(x, y, ("x", "y"), 3, require_float=False)
    r = _check_range(data_range)
    return _psnr_from_mse(_sse(a, b) / a.size, r)


def psnr_l(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR-L: ``psnr`` of normalised linear HDR, R = 1 (DCS/EAFNet Sec. V-A.3).

    Args: pred, gt: (H, W, C) float in [0, 1]. Returns dB; ``math.inf`` if identical.
    """
    a, b = _pair(pred, gt, ("pred", "gt"), 3)
    return _psnr_from_mse(_sse(a, b) / a.size, 1.0)


def psnr_mu(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR-mu: ``psnr`` of the mu-law tone-mapped images, mu = 5000, R = 1.

    PSNR(tau(pred), tau(gt)) with tau(H) = ln(1 + 5000 H) / ln(5001) (Kalantari &
    Ramamoorthi 2017; DCS/EAFNet Sec. V-A.3; LoCAtion Sec. IV-A). The tone curve expands
    dark values, so an error in the shadows weighs far more than in PSNR-L.

    Args: pred, gt: (H, W, C) float in [0, 1]. Returns dB; ``math.inf`` if identical.
    """
    a, b = _pair(pred, gt, ("pred", "gt"), 3)
    return _psnr_from_mse(_sse(_mu(a), _mu(b)) / a.size, 1.0)


def ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity (Wang et al. 2004), in whatever domain x and y are given.

    Per channel, with Gaussian-weighted local statistics (11 x 11 window, sigma 1.5): local
    means mu_x, mu_y, population (not sample) variances s_x^2, s_y^2 and covariance s_xy,

        SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
        C1 = (0.01 R)^2, C2 = (0.03 R)^2, R = data_range.

    The SSIM map is averaged over the *valid* region, the pixels at least 5 from every
    border, whose windows need no padding, and then over the channels. This is
    ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=R, channel_axis=-1)``. Computed in float64.

    Args:
        x, y: (H, W, C) images of equal shape, H, W >= 11, C in {1, 3}; any real dtype.
        data_range: R (1 for normalised values).
    Returns:
        SSIM in [-1, 1]; 1 for identical images.
    """
    a, b = _pair(x, y, ("x", "y"), 3, require_float=False)
    r = _check_range(data_range)
    _check_ssim_size(a.shape, "x")
    return _ssim_pair(a, b, r)


def ssim_l(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM-L: ``ssim`` of normalised linear HDR, R = 1 (DCS/EAFNet Sec. V-A.3).

    Args: pred, gt: (H, W, C) float in [0, 1], H, W >= 11.
    """
    a, b = _pair(pred, gt, ("pred", "gt"), 3)
    _check_ssim_size(a.shape, "pred")
    return _ssim_pair(a, b, 1.0)


def ssim_mu(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM-mu: ``ssim`` of the mu-law tone-mapped images (mu = 5000), R = 1.

    Args: pred, gt: (H, W, C) float linear HDR in [0, 1], H, W >= 11.
    """
    a, b = _pair(pred, gt, ("pred", "gt"), 3)
    _check_ssim_size(a.shape, "pred")
    return _ssim_pair(_mu(a), _mu(b), 1.0)


# ---------------------------------------------------------------------------------------------
# Sequence metrics
# ---------------------------------------------------------------------------------------------

def psnr_mu_per_frame(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N,) float64 PSNR-mu of each frame pair (pred[t], gt[t]) in dB, inf where identical.

    Args: pred, gt: (N, H, W, C) float linear HDR in [0, 1].
    """
    p, g = _sequences(pred, gt, temporal=False)
    return np.asarray(_scan(p, g, {"psnr_mu"})["psnr_mu"], dtype=np.float64)


def psnr_std(pred: np.ndarray, gt: np.ndarray) -> float:
    """LoCAtion's "STD": population standard deviation over frames of per-frame PSNR-mu, dB.

    STD = sqrt(1/N sum_t (P_t - mean(P))^2), P_t = min(PSNR-mu(pred[t], gt[t]), 100 dB).
    LoCAtion names it "standard deviation of frame-wise quality metrics" but gives no
    formula; we take PSNR-mu, its headline metric, and the population form, as LSD does.

    Args: pred, gt: (N, H, W, C) float linear HDR in [0, 1], N >= 2.
    """
    p, g = _sequences(pred, gt)
    return float(np.std(_cap(_scan(p, g, {"psnr_mu"})["psnr_mu"])))


def t_psnr(pred: np.ndarray, gt: np.ndarray | None = None) -> float:
    """Temporal PSNR in the mu-law domain, in dB.

    With ``gt`` (full reference; LoCAtion's t-PSNR): with D_t(x) = tau(x[t]) - tau(x[t-1]),

        t-PSNR = 10 log10(1 / MSE),   MSE = mean over t = 1..N-1, pixels and channels
                                            of (D_t(pred) - D_t(gt))^2,

    pooled over all t; ``math.inf`` when the differences match exactly (pred == gt, or
    tau(pred) = tau(gt) plus an offset constant in time: a steady bias is no flicker).
    The data range is 1, not the 2 that D_t in [-1, 1] spans, so that t-PSNR sits on the
    dB scale of PSNR-mu: an error uncorrelated in time with MSE e gives MSE 2e here, i.e.
    t-PSNR = PSNR-mu - 3.01 dB, and a perfectly steady error gives inf.

    Without ``gt`` (no reference; how DCS and LoCAtion score real videos):

        t-PSNR = 1/(N-1) sum_{t=1}^{N-1} min(PSNR(tau(pred[t]), tau(pred[t-1]); R = 1), 100),

    each consecutive-frame PSNR capped at ``PSNR_CAP_DB``: a static sequence scores 100.

    Args:
        pred, gt: (N, H, W, C) float linear HDR in [0, 1], N >= 2.
    """
    p, g = _sequences(pred, gt)
    if g is None:
        return float(np.mean(_cap(_scan(p, None, {"t_psnr_nr"})["t_psnr_nr"])))
    return _t_psnr_fr(_scan(p, g, {"t_psnr"})["t_psnr"], p[0].size)


def t_ssim(pred: np.ndarray, gt: np.ndarray | None = None) -> float:
    """Temporal SSIM in the mu-law domain (SSIM as in ``ssim``, R = 1).

    With ``gt`` (full reference; our definition, LoCAtion gives no formula): the mean SSIM
    of the temporal differences, mapped from [-1, 1] to [0, 1],

        t-SSIM = 1/(N-1) sum_{t=1}^{N-1} SSIM((D_t(pred) + 1) / 2, (D_t(gt) + 1) / 2),
        D_t(x) = tau(x[t]) - tau(x[t-1]).

    It is 1 when pred changes from frame to frame exactly as gt does (a static pred of a
    static gt scores exactly 1) and drops when the structure of the changes differs:
    temporal noise, ghosts, motion absent from gt. Being SSIM of values centred on 0.5, it
    is nearly blind to a *global* brightness flicker (that moves only the luminance term,
    little at that level): ``t_psnr``, ``madb`` and ``lsd`` measure flicker.

    Without ``gt`` (no reference; DCS Table III, LoCAtion Table II): the mean SSIM of
    consecutive predicted frames, 1/(N-1) sum_t SSIM(tau(pred[t]), tau(pred[t-1])).

    Args:
        pred, gt: (N, H, W, C) float linear HDR in [0, 1], N >= 2, H, W >= 11.
    """
    p, g = _sequences(pred, gt, ssim=True)
    key = "t_ssim_nr" if g is None else "t_ssim"
    return float(np.mean(_scan(p, g, {key})[key]))


def frame_brightness(seq: np.ndarray) -> np.ndarray:
    """B_t of every frame: (N,) float64 on the scale [0, 255].

    B_t = 255 * mean over pixels of Y(tau(seq[t])): tau the mu-law tone curve (mu = 5000),
    Y the Rec. 709 relative-luminance weights (0.2126, 0.7152, 0.0722) applied to the
    tone-mapped RGB (``photometry.luminance``; mono passes through). This is the "mean
    luminance value of frame i", L_i, of DCS eqs. 16-17, taken on the tone-mapped frame as
    it is viewed, on the 8-bit scale of the DCS tables' L_avg.

    Args: seq: (N, H, W, C) float linear HDR in [0, 1].
    """
    return _brightness(seq, temporal=False)


def _brightness(seq: np.ndarray, temporal: bool = True) -> np.ndarray:
    s, _ = _sequences(seq, None, temporal=temporal)
    return np.asarray(_scan(s, None, {"brightness"})["brightness"], dtype=np.float64)


def _lsd(b: np.ndarray) -> float:
    return float(np.std(b))


def _madb(b: np.ndarray) -> float:
    return float(np.mean(np.abs(np.diff(b))))


def _ab(b: np.ndarray) -> float:
    return float(np.mean(np.abs(b - b.mean())))


def l_avg(seq: np.ndarray) -> float:
    """Average luminance, DCS eq. 16: L_avg = 1/N sum_t B_t, on [0, 255] (``frame_brightness``).

    Args: seq: (N, H, W, C) float linear HDR in [0, 1], N >= 1.
    """
    return float(_brightness(seq, temporal=False).mean())


def lsd(seq: np.ndarray) -> float:
    """Luminance standard deviation, DCS eq. 17: sqrt(1/N sum_t (B_t - L_avg)^2), on [0, 255].

    The population standard deviation of the frame brightness B_t (``frame_brightness``).
    DCS Table III lists LSD of ~0.01-0.1 beside L_avg of ~110, which suggests that its
    LSD used brightness on [0, 1]: divide ours by 255 to compare with those numbers.

    Args: seq: (N, H, W, C) float linear HDR in [0, 1], N >= 2.
    """
    return _lsd(_brightness(seq))


def madb(seq: np.ndarray) -> float:
    """Mean absolute difference of brightness (LoCAtion's MADB), on [0, 255].

    MADB = 1/(N-1) sum_{t=1}^{N-1} |B_t - B_{t-1}|, frame-to-frame flicker. LoCAtion
    names it without a formula; this is the direct reading of the name.

    Args: seq: (N, H, W, C) float linear HDR in [0, 1], N >= 2.
    """
    return _madb(_brightness(seq))


def ab(seq: np.ndarray) -> float:
    """Average brightness variation (LoCAtion's AB), on [0, 255].

    AB = 1/N sum_t |B_t - L_avg|, the mean absolute deviation of the frame brightness from
    its sequence mean. LoCAtion gives no formula for AB: this definition is ours (the L1
    counterpart of LSD, less dominated by a few outlying frames).

    Args: seq: (N, H, W, C) float linear HDR in [0, 1], N >= 2.
    """
    return _ab(_brightness(seq))


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def sequence_report(pred: np.ndarray, gt: np.ndarray | None = None) -> dict[str, float]:
    """Every applicable metric of a predicted HDR sequence, as plain finite floats.

    Always (no reference needed; brightness metrics on [0, 255]):
        ``t_psnr_nr``, ``t_ssim_nr``: the no-reference ``t_psnr(pred)``, ``t_ssim(pred)``;
        ``l_avg``, ``lsd``, ``madb``, ``ab``: the brightness metrics of pred.
    With ``gt``, also (full reference):
        ``psnr_l``, ``psnr_mu``: means over frames of per-frame PSNR-L / PSNR-mu, dB;
        ``ssim_l``, ``ssim_mu``: means over frames of per-frame SSIM-L / SSIM-mu;
        ``psnr_std``: ``psnr_std(pred, gt)``;
        ``t_psnr``, ``t_ssim``: the full-reference ``t_psnr(pred, gt)``, ``t_ssim(pred, gt)``;
        ``gt_l_avg``, ``gt_lsd``, ``gt_t_psnr_nr``, ``gt_t_ssim_nr``: the same no-reference
        metrics of gt, to compare the prediction's stability with the truth's.

    Every PSNR, per frame or pooled, is capped at ``PSNR_CAP_DB`` = 100 dB, so the dict
    holds no inf and serialises with ``json.dumps``. Values equal those of the separate
    functions (up to the cap on pooled ``t_psnr``).

    Args:
        pred, gt: (N, H, W, C) float linear HDR in [0, 1], one common peak; N >= 2,
            H, W >= 11.
    Raises:
        InputError: wrong rank, shape mismatch, N < 2, frames under 11 x 11, non-finite values.
    """
    p, g = _sequences(pred, gt, ssim=True)
    want = {"t_psnr_nr", "t_ssim_nr", "brightness"}
    if g is not None:
        want |= _FULL_REF
    r = _scan(p, g, want)
    b = np.asarray(r["brightness"])
    out: dict[str, float] = {}
    if g is not None:
        frames_mu = _cap(r["psnr_mu"])
        out["psnr_l"] = float(np.mean(_cap(r["psnr_l"])))
        out["psnr_mu"] = float(np.mean(frames_mu))
        out["psnr_std"] = float(np.std(frames_mu))
        out["ssim_l"] = float(np.mean(r["ssim_l"]))
        out["ssim_mu"] = float(np.mean(r["ssim_mu"]))
        out["t_psnr"] = float(_cap(_t_psnr_fr(r["t_psnr"], p[0].size)))
        out["t_ssim"] = float(np.mean(r["t_ssim"]))
    out["t_psnr_nr"] = float(np.mean(_cap(r["t_psnr_nr"])))
    out["t_ssim_nr"] = float(np.mean(r["t_ssim_nr"]))
    out["l_avg"] = float(b.mean())
    out["lsd"] = _lsd(b)
    out["madb"] = _madb(b)
    out["ab"] = _ab(b)
    if g is not None:
        gb = np.asarray(r["gt_brightness"])
        out["gt_l_avg"] = float(gb.mean())
        out["gt_lsd"] = _lsd(gb)
        out["gt_t_psnr_nr"] = float(np.mean(_cap(r["gt_t_psnr_nr"])))
        out["gt_t_ssim_nr"] = float(np.mean(r["gt_t_ssim_nr"]))
    return out
