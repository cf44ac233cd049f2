"""Classical merge: recovery of saturated and noisy regions, motion rejection, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from hdr_dcs.core.errors import InputError
from hdr_dcs.core.merge import MergeConfig, age_weight, estimate_shift, merge, reference_only
from hdr_dcs.core.photometry import to_unit
from hdr_dcs.core.types import AnchorPair, Exposure, Frame, FrameGroup, Role
from hdr_dcs.sim.camera import CameraModel

T_REF = 0.004
REF, LOW, HIGH = Exposure(T_REF), Exposure(T_REF / 4), Exposure(T_REF * 4)


def scene(h: int = 96, w: int = 128, seed: int = 0, block: int = 8) -> np.ndarray:
    """Textured radiance spanning ~1 .. 2000 units: dark, mid and over-bright parts."""
    rng = np.random.default_rng(seed)
    base = np.exp(rng.uniform(np.log(2.0), np.log(60.0), size=(h // block, w // block, 3))).astype(np.float32)
    img = np.kron(base, np.ones((block, block, 1), np.float32))
    img[: h // 3, : w // 3] *= 30.0  # a bright window: saturates the reference
    img[-h // 4:, -w // 4:] *= 0.05  # a deep shadow: noisy in the reference
    return img


def capture(hdr: np.ndarray, exp: Exposure, role: Role, rng: np.random.Generator | None,
            stamp_ns: int = 0) -> Frame:
    return Frame(to_unit(CameraModel().capture(hdr, exp, rng)), stamp_ns, role, exp)


def group(ref_hdr: np.ndarray, low_hdr: np.ndarray | None = None, high_hdr: np.ndarray | None = None,
          rng: np.random.Generator | None = None, age_s: float = 0.0) -> FrameGroup:
    low_hdr = ref_hdr if low_hdr is None else low_hdr
    high_hdr = ref_hdr if high_hdr is None else high_hdr
    pair = AnchorPair(capture(low_hdr, LOW, Role.LOW, rng), capture(high_hdr, HIGH, Role.HIGH, rng))
    return FrameGroup(capture(ref_hdr, REF, Role.REFERENCE, rng), pair, age_s)


def rel_err(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Median over the masked pixels of the largest per-channel relative error."""
    return float(np.median((np.abs(a[mask] - b[mask]) / b[mask]).max(axis=-1)))


def test_recovers_reference_saturated_region_from_low_anchor() -> None:
    hdr = scene()
    g = group(hdr)
    result = merge(g)
    sat = g.reference.pixels.max(-1) >= 0.97
    assert sat.mean() > 0.05
    # Recoverable: the low anchor is not saturated there.
    ok = sat & (g.anchors.low.pixels.max(-1) < 0.9)
    assert ok.sum() > 100
    assert rel_err(result.hdr, hdr, ok) < 0.02
    assert rel_err(reference_only(g.reference), hdr, ok) > 0.3
    assert result.anchors_used and result.reason == ""
    recoverable_fraction = ok.sum() / sat.sum()
    assert result.stats["saturated_recovered_fraction"] > 0.9 * recoverable_fraction


def test_high_anchor_reduces_noise_in_shadows() -> None:
    hdr = scene()
    errs_merged, errs_ref = [], []
    for seed in range(3):
        g = group(hdr, rng=np.random.default_rng(seed))
        shadow = np.zeros(hdr.shape[:2], bool)
        shadow[-20:, -28:] = True
        errs_merged.append(np.mean((merge(g).hdr[shadow] - hdr[shadow]) ** 2))
        errs_ref.append(np.mean((reference_only(g.reference)[shadow] - hdr[shadow]) ** 2))
    # 4x the exposure: the high anchor is far less noisy; the merge must exploit it.
    assert np.mean(errs_merged) < 0.3 * np.mean(errs_ref)


def test_object_only_in_anchors_leaves_no_ghost() -> None:
    hdr = scene()
    moved = hdr.copy()
    moved[40:64, 60:90] = 5.0  # something dark in the anchors that the reference does not show
    g = group(hdr, low_hdr=moved, high_hdr=moved)
    result = merge(g)
    region = np.zeros(hdr.shape[:2], bool)
    region[40:64, 60:90] = True
    assert rel_err(result.hdr, hdr, region) < 0.03
    assert result.stats["high_rejected_fraction"] > 0.03


def test_darker_object_under_saturated_reference_is_rejected() -> None:
    hdr = scene()
    moved = hdr.copy()
    moved[2:26, 2:36] = 3.0  # inside the bright window: the anchors see a dark object there
    g = group(hdr, low_hdr=moved, high_hdr=moved)
    result = merge(g)
    ref_sat = g.reference.pixels.max(-1) >= 0.97
    region = np.zeros(hdr.shape[:2], bool)
    region[6:22, 6:32] = True
    region &= ref_sat
    assert region.sum() > 50
    # Never darker than what the saturated reference proves.
    bound = reference_only(g.reference)
    assert np.all(result.hdr[region] >= bound[region] * 0.999)


def test_missing_anchors_fall_back_to_reference() -> None:
    hdr = scene()
    ref = capture(hdr, REF, Role.REFERENCE, None)
    result = merge(FrameGroup(ref, None))
    assert not result.anchors_used and result.reason == "no anchor pair"
    assert np.array_equal(result.hdr, reference_only(ref))


def test_stale_anchors_count_less_then_not_at_all() -> None:
    cfg = MergeConfig()
    ages = [0.0, 0.05, 0.2, 0.4]
    weights = [age_weight(a, cfg) for a in ages]
    assert weights[0] == 1.0 and all(a > b for a, b in zip(weights, weights[1:]))
    assert age_weight(cfg.max_anchor_age_s + 0.01, cfg) == 0.0
    hdr = scene()
    result = merge(group(hdr, age_s=cfg.max_anchor_age_s + 0.1))
    assert not result.anchors_used and "too old" in result.reason


def test_global_shift_is_estimated_and_compensated() -> None:
    import cv2

    hdr = cv2.GaussianBlur(scene(seed=3, block=2), (0, 0), 1.0)

    m = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.0]])
    shifted = cv2.warpAffine(hdr, m, (hdr.shape[1], hdr.shape[0]), borderMode=cv2.BORDER_REFLECT)
    g = group(hdr, low_hdr=shifted, high_hdr=shifted)
    dx, dy, _ = estimate_shift(g.reference, g.anchors.high, CameraModel().response)
    assert (dx, dy) == pytest.approx((-3.0, 2.0), abs=0.15)
    with_comp = merge(g)
    without = merge(g, cfg=MergeConfig(compensate_motion=False))
    sat = g.reference.pixels.max(-1) >= 0.97
    recoverable = sat & (g.anchors.low.pixels.max(-1) < 0.9)
    recoverable[:, :8] = recoverable[:8, :] = False  # shifted in from outside the frame
    assert rel_err(with_comp.hdr, hdr, recoverable) < 0.05
    assert rel_err(without.hdr, hdr, recoverable) > 2 * rel_err(with_comp.hdr, hdr, recoverable)


def test_photometric_mismatch_is_corrected() -> None:
    hdr = scene()
    g = group(hdr)
    # The anchor camera's real exposure was 0.3 EV longer than reported.
    brighter = capture(hdr, Exposure(T_REF * 4 * 2 ** 0.3), Role.HIGH, None)
    mis = FrameGroup(g.reference, AnchorPair(g.anchors.low, Frame(brighter.pixels, 0, Role.HIGH, HIGH)))
    result = merge(mis)
    assert result.stats["high_alignment_ev"] == pytest.approx(0.3, abs=0.05)
    shadow = np.zeros(hdr.shape[:2], bool)
    shadow[-20:, -28:] = True
    assert rel_err(result.hdr, hdr, shadow) < 0.05


def test_bad_input_is_rejected_clearly() -> None:
    hdr = scene()
    g = group(hdr)
    bad = g.anchors.low.pixels.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        merge(FrameGroup(g.reference, AnchorPair(Frame(bad, 0, Role.LOW, LOW), g.anchors.high)))
    small = Frame(g.anchors.low.pixels[:50], 0, Role.LOW, LOW)
    with pytest.raises(InputError, match="registered"):
        merge(FrameGroup(g.reference, AnchorPair(small, g.anchors.high)))
    with pytest.raises(InputError, match="float32"):
        merge(FrameGroup(Frame(g.reference.pixels.astype(np.float64), 0, Role.REFERENCE, REF)))
