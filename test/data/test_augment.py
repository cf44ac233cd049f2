"""Geometric augmentation of whole windows and the rig randomisation (hdr_dcs.data.augment)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hdr_dcs.core.errors import InputError
from hdr_dcs.core.photometry import luminance
from hdr_dcs.data.augment import (
    ExposedRenderer,
    RigRandomization,
    SpatialTransform,
    augment_window,
    draw_rig,
    random_transform,
    transform_window,
)
from hdr_dcs.data.windows import Anchors, Window
from hdr_dcs.sim.rig import simulate


def _uniform_window(image: np.ndarray, T: int = 3) -> Window:  # noqa: N803
    """Every frame, anchor and ground truth is ``image``: a consistent transform keeps them equal."""
    h, w = image.shape[:2]
    valid = np.ones((h, w), bool)
    valid[:, :2] = False
    anchors = Anchors(image.copy(), image.copy(), 0.001, 0.016, 10, 20, valid)
    return Window(np.stack([image] * T), np.full(T, 0.004), np.arange(T, dtype=np.int64), anchors,
                  np.stack([image] * T), dataclasses.replace(anchors, low_stamp_ns=30), "u", 0)


@pytest.mark.parametrize("seed", range(6))
def test_same_transform_for_every_tensor(seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = rng.random((32, 40, 3)).astype(np.float32)
    out = augment_window(_uniform_window(image), rng, crop=16, avoid_invalid=False)
    ref = out.reference[0]
    assert ref.shape == (16, 16, 3)
    for arr in (*out.reference, *out.gt, out.low, out.high, out.alt_anchors.low, out.alt_anchors.high):
        assert np.array_equal(arr, ref)
    # the mask moved with the pixels: it is False exactly where the image's first columns went
    col = np.zeros((32, 40, 3), np.float32)
    col[:, :2] = 1.0
    win = _uniform_window(col)
    rng2 = np.random.default_rng(seed)
    t = random_transform(rng2, (32, 40), 16)
    moved = transform_window(win, t)
    assert np.array_equal(~moved.anchors.valid, moved.low[..., 0] == 1.0)


def test_crops_stay_in_bounds_and_avoid_invalid_pixels() -> None:
    rng = np.random.default_rng(1)
    valid = np.ones((40, 50), bool)
    valid[:, :6] = False
    valid[-3:, :] = False
    for _ in range(300):
        t = random_transform(rng, (40, 50), (12, 20), valid=valid)
        assert t.y0 >= 0 and t.y0 + t.h <= 40 and t.x0 >= 0 and t.x0 + t.w <= 50
        assert t.x0 >= 6 and t.y0 + t.h <= 37
        assert t.k in (0, 2)  # non-square crop: half turns only, every sample the same shape
        assert t.output_size((40, 50)) == (12, 20)
    with pytest.raises(InputError):
        random_transform(rng, (10, 10), 11)
    ks = {random_transform(rng, (40, 50), 16).k for _ in range(100)}
    assert ks == {0, 1, 2, 3}


def test_quarter_turns_and_flips_are_exact_permutations() -> None:
    image = np.arange(6 * 8 * 3, dtype=np.float32).reshape(6, 8, 3)
    for k in range(4):
        for fv in (False, True):
            for fh in (False, True):
                t = SpatialTransform(1, 2, 4, 5, fv, fh, k)
                out = t.apply(image)
                crop = image[1:5, 2:7]
                assert np.array_equal(np.sort(out, axis=None), np.sort(crop, axis=None))
                expect = np.rot90(crop[::-1 if fv else 1, ::-1 if fh else 1], k, axes=(0, 1))
                assert np.array_equal(out, expect)
                # torch, channels first, gives the same pixels
                chw = torch.from_numpy(np.moveaxis(image, -1, 0).copy())
                assert np.array_equal(t.apply(chw, channels_last=False).numpy(), np.moveaxis(expect, -1, 0))
    once = SpatialTransform(k=1)
    x = image
    for _ in range(4):
        x = once.apply(x)
    assert np.array_equal(x, image)


def test_rig_draws_are_seeded_and_in_range() -> None:
    rand = RigRandomization()
    a = draw_rig(np.random.default_rng(5), rand, min_period_frames=5)
    b = draw_rig(np.random.default_rng(5), rand, min_period_frames=5)
    assert a == b
    seen_bits = set()
    for s in range(40):
        d = draw_rig(np.random.default_rng(s), rand, min_period_frames=7)
        c = d.config
        assert 1.5 <= c.ev_high <= 3.0 and c.ev_low == -c.ev_high
        assert c.anchor_period_frames == 7
        assert 0.0 <= c.gain_db <= 12.0 and 0.25 <= d.exposure_target <= 0.55
        assert 2000 <= c.reference_camera.full_well_e <= 40000 and 1 <= c.reference_camera.read_noise_e <= 15
        assert c.reference_camera is c.anchor_camera
        assert np.hypot(*c.baseline_px) <= 4.0
        seen_bits.add(c.reference_camera.bit_depth)
    assert seen_bits == {8, 12}


def test_exposed_renderer_hits_the_target_median(make_toy_scene) -> None:
    scene = make_toy_scene(moving=False)
    rand = RigRandomization(read_noise_e=(1.0, 1.0), full_well_e=(1e6, 1e6), gain_db=(0.0, 0.0))
    draw = draw_rig(np.random.default_rng(2), rand, 5)
    render = ExposedRenderer.for_target(scene.render_exposure, draw)
    seq = simulate(render, 2, draw.config)
    median = float(np.median(luminance(seq.reference[0].pixels ** 2.2) ** (1 / 2.2)))
    assert median == pytest.approx(draw.exposure_target, abs=0.03)
    # the anchors keep their exact EV spacing (no cap by the frame interval)
    low, high = seq.anchors[0], seq.anchors[1]
    ref = seq.reference[0].exposure.scale
    assert np.log2(high.exposure.scale / ref) == pytest.approx(draw.config.ev_high)
    assert np.log2(low.exposure.scale / ref) == pytest.approx(draw.config.ev_low)
