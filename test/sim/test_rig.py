"""Camera model and dual-camera rig simulation."""

from __future__ import annotations

import numpy as np
import pytest

from hdr_dcs.core.photometry import radiance, to_unit
from hdr_dcs.core.types import Exposure, Role
from hdr_dcs.sim.camera import CameraModel
from hdr_dcs.sim.scene import CameraPath, Layer, LayeredScene, disc_layer
from hdr_dcs.sim.rig import RigConfig, simulate


def toy_scene() -> LayeredScene:
    rng = np.random.default_rng(0)
    bg = np.exp(rng.uniform(0.0, 6.0, size=(80, 120, 3))).astype(np.float32)
    disc = disc_layer(np.full((40, 40, 3), 30.0, np.float32), 16, (20, 20), (0.0, 20.0), (60.0, 0.0))
    return LayeredScene((64, 48), (Layer(bg, None, 1.0, (-4.0, -4.0)), disc), (), CameraPath(pan_px_s=(20.0, 5.0)))


def test_noise_free_capture_inverts_within_quantisation() -> None:
    hdr = np.full((4, 4, 3), 20.0, np.float32)
    exp = Exposure(0.005)
    for bits in (8, 12, 16):
        cam = CameraModel(bit_depth=bits)
        codes = cam.capture(hdr, exp)
        assert codes.dtype == (np.uint8 if bits == 8 else np.uint16)
        back = radiance(to_unit(codes), exp)
        assert np.allclose(back, hdr, rtol=2.2 * 2 ** -bits / 0.47 + 1e-4)
    # 12-bit codes are left-aligned in 16 bits.
    assert CameraModel(bit_depth=12).capture(np.full((1, 1, 3), 1e6, np.float32), exp).max() == 65520


def test_noise_scales_with_signal_and_gain() -> None:
    cam = CameraModel(bit_depth=16)
    hdr = np.full((200, 200, 3), 10.0, np.float32)
    rng = np.random.default_rng(1)
    x_low_gain = cam.sensor_signal(hdr, Exposure(0.01, 0.0), rng)
    x_high_gain = cam.sensor_signal(hdr / 4, Exposure(0.01, 12.0412), rng)  # same mean signal
    assert x_low_gain.mean() == pytest.approx(0.1, rel=0.01)
    assert x_high_gain.mean() == pytest.approx(0.1, rel=0.01)
    assert x_high_gain.std() > 1.8 * x_low_gain.std()


def test_rig_is_deterministic_from_seed() -> None:
    a = simulate(toy_scene().render_exposure, 10, RigConfig(seed=5))
    b = simulate(toy_scene().render_exposure, 10, RigConfig(seed=5))
    c = simulate(toy_scene().render_exposure, 10, RigConfig(seed=6))
    assert all(np.array_equal(x.pixels, y.pixels) for x, y in zip(a.reference, b.reference))
    assert all(np.array_equal(x.pixels, y.pixels) for x, y in zip(a.anchors, b.anchors))
    assert not np.array_equal(a.reference[0].pixels, c.reference[0].pixels)


def test_rig_timing_roles_and_exposures() -> None:
    cfg = RigConfig(reference_rate_hz=30.0, anchor_period_frames=5, ev_low=-2, ev_high=2, seed=0)
    seq = simulate(toy_scene().render_exposure, 20, cfg)
    assert len(seq.reference) == 20 and seq.ground_truth.shape == (20, 48, 64, 3)
    stamps = np.array([f.stamp_ns for f in seq.reference])
    assert np.allclose(np.diff(stamps), 1e9 / 30, atol=1)
    assert [f.role for f in seq.anchors][:8] == [Role.LOW, Role.HIGH] * 4
    assert [f.sequence_id for f in seq.anchors] == list(range(len(seq.anchors)))
    t_ref = seq.reference_exposure.exposure_time_s
    assert seq.anchors[0].exposure.exposure_time_s == pytest.approx(t_ref / 4)
    assert seq.anchors[1].exposure.exposure_time_s == pytest.approx(t_ref * 4)
    # One pair per 5 reference frames (1/6 s at 30 Hz).
    lows = np.array([f.stamp_ns for f in seq.anchors if f.role == Role.LOW])
    assert np.allclose(np.diff(lows), 1e9 / 6, atol=1)


def test_motion_blur_grows_with_exposure() -> None:
    scene = toy_scene()
    sharp = scene.render_exposure(0.1, 0.0)
    blurred = scene.render_exposure(0.1, 0.1)
    grad = lambda im: np.abs(np.diff(np.log(im), axis=1)).mean()  # noqa: E731
    assert grad(blurred) < 0.8 * grad(sharp)
