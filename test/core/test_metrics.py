"""HDR image and video metrics: PSNR / SSIM (linear and mu-law), temporal and brightness metrics."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hdr_dcs.core import metrics
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.tonemap import inverse_mu_law, mu_law

LN_5001 = math.log1p(5000.0)


# --- inputs ----------------------------------------------------------------------------------

def make_base(seed: int, h: int = 48, w: int = 64, c: int = 3) -> tuple[np.ndarray, np.random.Generator]:
    """A smooth structured image in [0, 1] plus a little uniform noise; deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = [0.5 + 0.3 * np.sin(2 * np.pi * (xx / 21.0 + k / 3)) * np.cos(2 * np.pi * yy / 17.0)
             for k in range(c)]
    base = np.stack(chans, axis=-1) + 0.1 * rng.random((h, w, c))
    return np.clip(base, 0.0, 1.0).astype(np.float32), rng


def ssim_cases() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    base, rng = make_base(7)
    noisy = np.clip(base + 0.05 * rng.standard_normal(base.shape), 0, 1).astype(np.float32)
    shifted = np.clip(base + 0.1, 0, 1).astype(np.float32)
    mono, rng2 = make_base(11, c=1)
    mono_noisy = np.clip(mono + 0.02 * rng2.standard_normal(mono.shape), 0, 1).astype(np.float32)
    hdr = (base**4).astype(np.float32)
    hdr_pred = np.clip(hdr * 1.05 + 0.002 * rng.standard_normal(hdr.shape), 0, 1).astype(np.float32)
    codes_a = np.round(base * 255).astype(np.uint8)
    codes_b = np.round(noisy * 255).astype(np.uint8)
    return {
        "noisy": (base, noisy, 1.0),
        "shifted": (base, shifted, 1.0),
        "mono": (mono, mono_noisy, 1.0),
        "hdr": (hdr, hdr_pred, 1.0),  # golden is SSIM of the mu-law images (ssim_mu)
        "uint8": (codes_a, codes_b, 255.0),
    }


# Golden SSIM values from scikit-image 0.26.0 (numpy 2.4.6), installed only in a throwaway
# venv (python3 -m venv /tmp/skim && /tmp/skim/bin/pip install scikit-image numpy), computed
# once on the inputs of ssim_cases() as
#   skimage.metrics.structural_similarity(x.astype(np.float64), y.astype(np.float64),
#       gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=R,
#       channel_axis=-1)
# and, for "hdr", on x, y = mu-law (float32, mu = 5000) of the two linear images.
# Sanity check of the inputs there: sum(base) = 5070.2461970299, sum(noisy) = 5072.7511664182.
SKIMAGE_SSIM = {
    "noisy": 0.8862439504542161,
    "shifted": 0.9844373380710327,
    "mono": 0.9797351416329068,
    "hdr": 0.9891333988367389,
    "uint8": 0.8861432268616461,
}


def uniform_seq(mu_levels: list[float], h: int = 16, w: int = 20) -> np.ndarray:
    """A sequence of flat grey frames whose mu-law value is mu_levels[t]."""
    lin = inverse_mu_law(np.asarray(mu_levels, dtype=np.float64), 5000.0)
    return np.broadcast_to(lin[:, None, None, None], (len(mu_levels), h, w, 3)).astype(np.float32)


# --- PSNR ------------------------------------------------------------------------------------

def test_ssim_inputs_are_the_golden_ones() -> None:
    base, noisy, _ = ssim_cases()["noisy"]
    assert float(np.sum(base, dtype=np.float64)) == pytest.approx(5070.2461970299, abs=1e-6)
    assert float(np.sum(noisy, dtype=np.float64)) == pytest.approx(5072.7511664182, abs=1e-6)


def test_psnr_golden_from_known_mse() -> None:
    x = np.zeros((8, 10, 3), np.float32)
    y = x.copy()
    y[:4] = 0.2  # half the pixels off by 0.2: MSE = 0.02 -> 10 log10(1 / 0.02) = 16.9897 dB
    assert metrics.psnr(x, y) == pytest.approx(10 * math.log10(50.0), abs=1e-6)
    assert metrics.psnr(x, y) == pytest.approx(16.98970004, abs=1e-6)
    assert metrics.psnr_l(y, x) == pytest.approx(16.98970004, abs=1e-6)
    # data_range scales the peak: R = 2 adds 20 log10(2) dB.
    assert metrics.psnr(x, y, data_range=2.0) == pytest.approx(16.98970004 + 6.02059991, abs=1e-6)


def test_psnr_uint8_codes_do_not_wrap() -> None:
    a = np.full((4, 4, 3), 200, np.uint8)
    b = np.full((4, 4, 3), 216, np.uint8)  # |diff| 16 both ways: MSE = 256
    expected = 10 * math.log10(255.0**2 / 256.0)
    assert metrics.psnr(a, b, data_range=255) == pytest.approx(expected, abs=1e-9)
    assert metrics.psnr(b, a, data_range=255) == pytest.approx(expected, abs=1e-9)


def test_psnr_of_identical_images_is_inf() -> None:
    x, _, _ = ssim_cases()["noisy"]
    assert metrics.psnr(x, x.copy()) == math.inf
    assert metrics.psnr_l(x, x) == math.inf
    assert metrics.psnr_mu(x, x) == math.inf


def test_psnr_mu_weighs_dark_errors_more_than_linear() -> None:
    gt_dark = np.full((4, 4, 3), 0.001, np.float32)
    pred_dark = np.full((4, 4, 3), 0.002, np.float32)
    gt_bright = np.full((4, 4, 3), 0.900, np.float32)
    pred_bright = np.full((4, 4, 3), 0.901, np.float32)
    # The same linear error of 0.001 -> 60 dB in both places.
    assert metrics.psnr_l(pred_dark, gt_dark) == pytest.approx(60.0, abs=1e-3)
    assert metrics.psnr_l(pred_bright, gt_bright) == pytest.approx(60.0, abs=1e-2)
    # mu-law: |tau(0.002) - tau(0.001)| = ln(11 / 6) / ln(5001), ~0.0712 -> ~22.95 dB.
    dark_mu = -20 * math.log10(math.log(11 / 6) / LN_5001)
    assert metrics.psnr_mu(pred_dark, gt_dark) == pytest.approx(dark_mu, abs=1e-3)
    assert 22.9 < dark_mu < 23.0
    # Bright: |tau(0.901) - tau(0.9)| = ln(4506 / 4501) / ln(5001), ~1.3e-4 -> ~77.6 dB.
    bright_mu = -20 * math.log10(math.log(4506 / 4501) / LN_5001)
    assert metrics.psnr_mu(pred_bright, gt_bright) == pytest.approx(bright_mu, abs=0.05)
    assert metrics.psnr_mu(pred_dark, gt_dark) < metrics.psnr_l(pred_dark, gt_dark) - 30
    assert metrics.psnr_mu(pred_bright, gt_bright) > metrics.psnr_l(pred_bright, gt_bright) + 10


# --- SSIM ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["noisy", "shifted", "mono", "uint8"])
def test_ssim_matches_skimage_golden(name: str) -> None:
    x, y, r = ssim_cases()[name]
    assert metrics.ssim(x, y, data_range=r) == pytest.approx(SKIMAGE_SSIM[name], abs=1e-6)
    assert metrics.ssim(y, x, data_range=r) == pytest.approx(SKIMAGE_SSIM[name], abs=1e-6)


def test_ssim_l_and_ssim_mu_match_skimage_golden() -> None:
    x, y, _ = ssim_cases()["noisy"]
    assert metrics.ssim_l(y, x) == pytest.approx(SKIMAGE_SSIM["noisy"], abs=1e-6)
    hdr, hdr_pred, _ = ssim_cases()["hdr"]
    assert metrics.ssim_mu(hdr_pred, hdr) == pytest.approx(SKIMAGE_SSIM["hdr"], abs=1e-6)
    assert metrics.ssim(mu_law(hdr_pred), mu_law(hdr)) == pytest.approx(SKIMAGE_SSIM["hdr"], abs=1e-6)
    # In the linear domain the dark HDR image hides its error: SSIM-L is higher than SSIM-mu.
    assert metrics.ssim_l(hdr_pred, hdr) > metrics.ssim_mu(hdr_pred, hdr)


def test_ssim_of_identical_images_is_one() -> None:
    x, _, _ = ssim_cases()["noisy"]
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-9)
    assert metrics.ssim_mu(x, x) == pytest.approx(1.0, abs=1e-9)


def test_ssim_of_flat_images_follows_the_luminance_term() -> None:
    # Zero variances: SSIM = (2ab + C1) / (a^2 + b^2 + C1) exactly.
    a = np.full((16, 16, 3), 0.4, np.float32)
    b = np.full((16, 16, 3), 0.5, np.float32)
    c1 = 1e-4
    expected = (2 * 0.4 * 0.5 + c1) / (0.16 + 0.25 + c1)
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-6)


# --- temporal and brightness -----------------------------------------------------------------

def test_brightness_metrics_on_known_frame_brightness() -> None:
    # Flat grey frames with tau = B / 255 give B_t = [100, 110, 90, 100] exactly.
    seq = uniform_seq([100 / 255, 110 / 255, 90 / 255, 100 / 255])
    np.testing.assert_allclose(metrics.frame_brightness(seq), [100, 110, 90, 100], atol=1e-3)
    assert metrics.l_avg(seq) == pytest.approx(100.0, abs=1e-3)
    assert metrics.lsd(seq) == pytest.approx(math.sqrt(50.0), abs=1e-3)  # population, not sample (8.165)
    assert metrics.madb(seq) == pytest.approx(40.0 / 3.0, abs=1e-3)  # (10 + 20 + 10) / 3
    assert metrics.ab(seq) == pytest.approx(5.0, abs=1e-3)  # (0 + 10 + 10 + 0) / 4


def test_brightness_uses_luminance_weights_of_the_tone_mapped_frame() -> None:
    seq = np.zeros((2, 12, 12, 3), np.float32)
    seq[:, :, :, 1] = 1.0  # pure green: tau = 1 in G only -> B = 255 * 0.7152
    np.testing.assert_allclose(metrics.frame_brightness(seq), [255 * 0.7152] * 2, rtol=1e-5)
    assert metrics.lsd(seq) == pytest.approx(0.0, abs=1e-9)
    assert metrics.madb(seq) == pytest.approx(0.0, abs=1e-9)


def test_l_avg_accepts_a_single_frame_but_lsd_does_not() -> None:
    seq = uniform_seq([0.5])
    assert metrics.l_avg(seq) == pytest.approx(127.5, abs=1e-3)
    for fn in (metrics.lsd, metrics.madb, metrics.ab, metrics.t_psnr, metrics.t_ssim):
        with pytest.raises(InputError, match="at least 2 frames"):
            fn(seq)


def test_t_psnr_without_gt_on_flat_frames() -> None:
    # Consecutive mu-law steps of 10/255, 20/255, 10/255 -> 20 log10(25.5), 20 log10(12.75), ...
    seq = uniform_seq([100 / 255, 110 / 255, 90 / 255, 100 / 255])
    expected = (2 * 20 * math.log10(25.5) + 20 * math.log10(12.75)) / 3
    assert metrics.t_psnr(seq) == pytest.approx(expected, abs=1e-3)


def test_t_psnr_without_gt_of_static_sequence_is_capped() -> None:
    x, _, _ = ssim_cases()["noisy"]
    static = np.stack([x] * 4)
    assert metrics.t_psnr(static) == metrics.PSNR_CAP_DB
    # One repeated frame among changing ones: that pair is capped, not inf for the whole mean.
    seq = uniform_seq([0.4, 0.4, 0.5])
    assert metrics.t_psnr(seq) == pytest.approx((100.0 + 20.0) / 2, abs=1e-3)


def test_t_psnr_with_gt() -> None:
    gt = uniform_seq([0.4, 0.4, 0.4])
    assert metrics.t_psnr(gt, gt.copy()) == math.inf
    # A bias constant in time leaves the temporal differences unchanged.
    assert metrics.t_psnr(uniform_seq([0.5, 0.5, 0.5]), gt) == math.inf
    # e = [0, 0.1, 0] in mu-law -> differences +-0.1 -> MSE 0.01 -> 20 dB.
    assert metrics.t_psnr(uniform_seq([0.4, 0.5, 0.4]), gt) == pytest.approx(20.0, abs=1e-3)


def test_t_psnr_of_time_uncorrelated_noise_is_psnr_mu_minus_3db() -> None:
    base, rng = make_base(3, h=32, w=32)
    gt = np.stack([base] * 6)
    err = 0.02 * rng.standard_normal(gt.shape)
    pred_mu = np.clip(mu_law(gt.astype(np.float64)) + err, 0.0, 1.0)
    pred = inverse_mu_law(pred_mu, 5000.0).astype(np.float32)
    mean_psnr_mu = float(np.mean(metrics.psnr_mu_per_frame(pred, gt)))
    assert metrics.t_psnr(pred, gt) == pytest.approx(mean_psnr_mu - 10 * math.log10(2), abs=0.1)


def test_t_ssim_on_flat_frames() -> None:
    c1 = 1e-4
    flicker = uniform_seq([0.4, 0.5, 0.4])
    step = (2 * 0.4 * 0.5 + c1) / (0.16 + 0.25 + c1)
    assert metrics.t_ssim(flicker) == pytest.approx(step, abs=1e-5)
    static = uniform_seq([0.4, 0.4, 0.4])
    assert metrics.t_ssim(static) == pytest.approx(1.0, abs=1e-9)
    assert metrics.t_ssim(static, static.copy()) == pytest.approx(1.0, abs=1e-9)
    # With gt: pred's differences +0.1, -0.1 map to 0.55, 0.45; a static gt's to 0.5.
    expected = ((0.55 + c1) / (0.3025 + 0.25 + c1) + (0.45 + c1) / (0.2025 + 0.25 + c1)) / 2
    assert metrics.t_ssim(flicker, static) == pytest.approx(expected, abs=1e-5)


def test_t_ssim_with_gt_is_one_when_changes_match() -> None:
    base, _ = make_base(1, h=24, w=48)
    gt = np.stack([np.roll(base**3, 4 * t, axis=1) for t in range(3)])  # a panning scene
    assert metrics.t_ssim(gt, gt.copy()) == pytest.approx(1.0, abs=1e-9)
    assert metrics.t_ssim(gt) < 0.9  # the scene moves: consecutive frames differ
    rng = np.random.default_rng(2)
    noisy = np.clip(gt + 0.02 * rng.standard_normal(gt.shape), 0, 1).astype(np.float32)
    assert metrics.t_ssim(noisy, gt) < 0.9  # noise new in every frame breaks the temporal structure
    # Documented limitation: a global flicker (one frame at half exposure) barely moves the
    # luminance term of SSIM near 0.5, so t-SSIM stays high; t-PSNR and MADB catch it.
    flicker = gt.copy()
    flicker[1] *= 0.5
    assert 0.99 < metrics.t_ssim(flicker, gt) < 1.0
    assert metrics.t_psnr(flicker, gt) < 25.0 < metrics.t_psnr(gt * 0.5, gt)  # a steady gain is no flicker
    assert metrics.madb(flicker) > 10 * metrics.madb(gt)


def test_psnr_std_population_and_cap() -> None:
    gt = uniform_seq([0.4, 0.4])
    pred = uniform_seq([0.5, 0.41])  # mu-law errors 0.1, 0.01 -> 20, 40 dB
    np.testing.assert_allclose(metrics.psnr_mu_per_frame(pred, gt), [20.0, 40.0], atol=1e-3)
    assert metrics.psnr_std(pred, gt) == pytest.approx(10.0, abs=1e-3)  # the sample std would be 14.14
    exact = uniform_seq([0.5, 0.4])  # second frame exact: inf, capped at 100 -> std of [20, 100]
    assert metrics.psnr_mu_per_frame(exact, gt)[1] == math.inf
    assert metrics.psnr_std(exact, gt) == pytest.approx(40.0, abs=1e-3)


# --- report ----------------------------------------------------------------------------------

NR_KEYS = {"t_psnr_nr", "t_ssim_nr", "l_avg", "lsd", "madb", "ab"}
FR_KEYS = {"psnr_l", "psnr_mu", "psnr_std", "ssim_l", "ssim_mu", "t_psnr", "t_ssim",
           "gt_l_avg", "gt_lsd", "gt_t_psnr_nr", "gt_t_ssim_nr"}


def _small_video() -> tuple[np.ndarray, np.ndarray]:
    base, rng = make_base(5, h=24, w=32)
    gt = np.stack([np.clip(base * (1 + 0.05 * t), 0, 1) ** 3 for t in range(4)]).astype(np.float32)
    pred = np.clip(gt + 0.01 * rng.standard_normal(gt.shape), 0, 1).astype(np.float32)
    return pred, gt


def test_sequence_report_keys_values_and_json() -> None:
    pred, gt = _small_video()
    rep = metrics.sequence_report(pred, gt)
    assert set(rep) == NR_KEYS | FR_KEYS
    assert all(type(v) is float and math.isfinite(v) for v in rep.values())
    json.loads(json.dumps(rep, allow_nan=False))
    # The report agrees with the separate functions.
    assert rep["psnr_mu"] == pytest.approx(float(np.mean(metrics.psnr_mu_per_frame(pred, gt))), abs=1e-9)
    per_frame_psnr_l = [metrics.psnr_l(p, g) for p, g in zip(pred, gt, strict=True)]
    assert rep["psnr_l"] == pytest.approx(np.mean(per_frame_psnr_l), abs=1e-9)
    per_frame_ssim_mu = [metrics.ssim_mu(p, g) for p, g in zip(pred, gt, strict=True)]
    assert rep["ssim_mu"] == pytest.approx(np.mean(per_frame_ssim_mu), abs=1e-6)
    per_frame_ssim_l = [metrics.ssim_l(p, g) for p, g in zip(pred, gt, strict=True)]
    assert rep["ssim_l"] == pytest.approx(np.mean(per_frame_ssim_l), abs=1e-6)
    assert rep["psnr_std"] == pytest.approx(metrics.psnr_std(pred, gt), abs=1e-9)
    assert rep["t_psnr"] == pytest.approx(metrics.t_psnr(pred, gt), abs=1e-9)
    assert rep["t_ssim"] == pytest.approx(metrics.t_ssim(pred, gt), abs=1e-9)
    assert rep["t_psnr_nr"] == pytest.approx(metrics.t_psnr(pred), abs=1e-9)
    assert rep["t_ssim_nr"] == pytest.approx(metrics.t_ssim(pred), abs=1e-9)
    assert rep["gt_t_ssim_nr"] == pytest.approx(metrics.t_ssim(gt), abs=1e-9)
    assert rep["gt_t_psnr_nr"] == pytest.approx(metrics.t_psnr(gt), abs=1e-9)
    assert rep["l_avg"] == pytest.approx(metrics.l_avg(pred), abs=1e-9)
    assert rep["lsd"] == pytest.approx(metrics.lsd(pred), abs=1e-9)
    assert rep["gt_lsd"] == pytest.approx(metrics.lsd(gt), abs=1e-9)
    assert rep["madb"] == pytest.approx(metrics.madb(pred), abs=1e-9)
    assert rep["ab"] == pytest.approx(metrics.ab(pred), abs=1e-9)
    assert rep["gt_lsd"] != rep["lsd"]


def test_sequence_report_without_gt_and_with_perfect_prediction() -> None:
    pred, gt = _small_video()
    rep = metrics.sequence_report(pred)
    assert set(rep) == NR_KEYS
    json.dumps(rep, allow_nan=False)
    perfect = metrics.sequence_report(gt, gt.copy())
    for key in ("psnr_l", "psnr_mu", "t_psnr"):
        assert perfect[key] == metrics.PSNR_CAP_DB
    assert perfect["psnr_std"] == 0.0
    assert perfect["ssim_mu"] == pytest.approx(1.0, abs=1e-9)
    assert perfect["lsd"] == perfect["gt_lsd"]
    json.dumps(perfect, allow_nan=False)


# --- validation ------------------------------------------------------------------------------

def test_shape_mismatch_and_wrong_rank_raise_input_error() -> None:
    img = np.zeros((16, 16, 3), np.float32)
    seq = np.zeros((3, 16, 16, 3), np.float32)
    with pytest.raises(InputError, match="differ in shape"):
        metrics.psnr_mu(img, np.zeros((16, 17, 3), np.float32))
    with pytest.raises(InputError, match="differ in shape"):
        metrics.t_psnr(seq, seq[:2])
    with pytest.raises(InputError, match="image"):
        metrics.ssim(img[..., 0], img[..., 0])
    with pytest.raises(InputError, match="sequence"):
        metrics.t_ssim(img)
    with pytest.raises(InputError, match="sequence"):
        metrics.sequence_report(img, img)
    with pytest.raises(InputError, match="channels"):
        metrics.psnr(np.zeros((4, 4, 2)), np.zeros((4, 4, 2)))
    with pytest.raises(InputError, match="empty"):
        metrics.psnr(np.zeros((0, 4, 3)), np.zeros((0, 4, 3)))


def test_non_finite_and_bad_arguments_raise_input_error() -> None:
    img = np.zeros((16, 16, 3), np.float32)
    bad = img.copy()
    bad[3, 4, 1] = np.nan
    with pytest.raises(InputError, match="NaN or Inf"):
        metrics.psnr_l(bad, img)
    bad[3, 4, 1] = np.inf
    with pytest.raises(InputError, match="NaN or Inf"):
        metrics.ssim_mu(img, bad)
    seq = np.zeros((3, 16, 16, 3), np.float32)
    seq[2, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN or Inf"):
        metrics.lsd(seq)
    with pytest.raises(InputError, match="data_range"):
        metrics.psnr(img, img, data_range=0.0)
    with pytest.raises(InputError, match="11 x 11"):
        metrics.ssim(np.zeros((8, 16, 3)), np.zeros((8, 16, 3)))
    with pytest.raises(InputError, match="float"):
        metrics.psnr_mu(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="at least 2 frames"):
        metrics.sequence_report(seq[:1])
