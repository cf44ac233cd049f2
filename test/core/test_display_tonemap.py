"""Display tone mapper: format, curve, colour, and above all temporal behaviour."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest

from hdr_dcs.core.display_tonemap import (
    DisplayToneMapper,
    DisplayToneMapperConfig,
    DisplayToneState,
    srgb_encode,
)
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.photometry import luminance

H, W = 120, 160


def make_scene(seed: int = 0, scale: float = 1.0, height: int = H, width: int = W) -> np.ndarray:
    """(H, W, 3) float32 radiance: ~5 EV of gradient, texture and coloured tints around 1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    ev = 3.0 * xx / width - 1.5 + np.sin(yy / 7.0) * np.cos(xx / 9.0)
    blocks = rng.standard_normal((height // 4 + 1, width // 4 + 1)).repeat(4, 0).repeat(4, 1)
    ev += 0.5 * blocks[:height, :width]
    tint = 0.6 + 0.4 * np.stack([np.sin(xx / 20.0) ** 2, np.cos(yy / 15.0) ** 2,
                                 np.sin((xx + yy) / 25.0) ** 2], axis=-1)
    tint /= luminance(tint)[..., None]
    return (scale * (2.0**ev)[..., None] * tint).astype(np.float32)


def run(mapper: DisplayToneMapper, frames: Callable[[float], np.ndarray], rate_hz: float,
        t0: float, t1: float) -> list[tuple[float, np.ndarray]]:
    """Feed frames(t) at rate_hz for stamps in [t0, t1); returns (stamp, output) pairs."""
    out = []
    for i in range(round((t1 - t0) * rate_hz)):
        t = t0 + i / rate_hz
        out.append((t, mapper(frames(t), t)))
    return out


def mean_code(image: np.ndarray, mask: np.ndarray | None = None) -> float:
    return float(image[mask].astype(np.float64).mean() if mask is not None else image.mean())


# -- format and curve --------------------------------------------------------------------


def test_output_format() -> None:
    out = DisplayToneMapper()(make_scene(), 0.0)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    assert out.flags["C_CONTIGUOUS"]
    # A mid-tone scene is exposed around the middle of the code range, using most of it.
    assert 80 < out.mean() < 150
    assert out.min() < 40 and out.max() > 220


def test_channel_order_is_bgr() -> None:
    scene = np.full((H, W, 3), 1.0, np.float32)
    scene[:40, :, :] = (4.0, 0.0, 0.0)      # pure red stripe, luminance ~0.85
    scene[80:, :, :] = (0.0, 0.0, 6.0)      # pure blue stripe, luminance ~0.43
    out = DisplayToneMapper()(scene, 0.0)
    red, grey, blue = out[20, 80], out[60, 80], out[100, 80]
    assert red[2] > 200 and red[0] == red[1] < 60
    assert blue[0] > 200 and blue[1] == blue[2] < 60
    assert grey[0] == grey[1] == grey[2]


def test_matches_reference_formula() -> None:
    """Golden path in float64: exposure, extended Reinhard, gamut mix, sRGB, BGR."""
    scene = make_scene(3)
    scene[10:20, 10:20] = (16.0, 0.8, 0.2)  # bright saturated orange: needs gamut mapping
    mapper = DisplayToneMapper()
    out = mapper(scene, 0.0)
    state = mapper.state
    assert state is not None
    p = scene.astype(np.float64)
    y = luminance(p)
    lum = y * 0.18 * 2.0**-state.key_ev
    white = 0.18 * 2.0**state.white_range_ev
    ld = np.minimum(lum * (1 + lum / white**2) / (1 + lum), 1.0)
    c = p * (ld / y)[..., None]
    peak = c.max(axis=-1)
    t = np.where(peak > 1.0, (1.0 - ld) / np.maximum(peak - ld, 1e-12), 1.0)[..., None]
    mixed = t * c + (1 - t) * ld[..., None]
    lin = np.clip(mixed, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    expected = np.rint(srgb * 255)[..., ::-1]
    assert np.abs(out.astype(int) - expected).max() <= 1
    assert np.all(out[10:20, 10:20, 2] == 255)                     # red channel saturates ...
    assert 100 < out[15, 15, 1] < 255 and out[15, 15, 0] < out[15, 15, 1]  # ... hue kept


def test_highlight_desaturation_can_be_disabled() -> None:
    scene = make_scene(3)
    scene[10:20, 10:20] = (16.0, 0.8, 0.2)
    mixed = DisplayToneMapper()(scene, 0.0)
    clipped = DisplayToneMapper(DisplayToneMapperConfig(desaturate_highlights=False))(scene, 0.0)
    assert mixed[15, 15, 2] == clipped[15, 15, 2] == 255
    assert clipped[15, 15, 1] < mixed[15, 15, 1] - 30       # clipping keeps G and B low ...
    in_gamut = clipped.max(axis=-1) < 255
    assert in_gamut.mean() > 0.9
    np.testing.assert_array_equal(mixed[in_gamut], clipped[in_gamut])  # ... others agree


def test_monotonic_in_radiance() -> None:
    ramp = np.geomspace(1e-3, 1e3, W, dtype=np.float32)
    tints = np.array([[1, 1, 1], [1.0, 0.5, 0.1], [0.1, 0.3, 1.0], [0.2, 1.0, 0.2]], np.float32)
    scene = np.repeat(tints[:, None, :] * ramp[None, :, None], H // 4, axis=0)
    out = DisplayToneMapper()(scene, 0.0).astype(int)
    assert np.all(np.diff(out, axis=1) >= 0)
    assert out[:, 0].max() < 10 and out[:, -1].min() > 240         # spans black to white
    assert np.all(out[0, -1] == 255)
    assert len(np.unique(out[0, :, 1])) > 100                       # and is not a step


def test_srgb_encode_golden() -> None:
    linear = np.array([-1.0, 0.0, 0.0031308, 0.18, 0.5, 1.0, 7.0])
    assert srgb_encode(linear).tolist() == [0, 0, 10, 118, 188, 255, 255]


def test_first_frame_initialises_without_fade_in() -> None:
    scene = make_scene(1)
    mapper = DisplayToneMapper()
    first = mapper(scene, 10.0)
    assert mapper.last_stats.reset
    state = mapper.state
    assert state is not None and state.key_ev == mapper.last_stats.measured_key_ev
    assert state.exposure_ev == pytest.approx(math.log2(0.18) - state.key_ev)
    later = run(mapper, lambda t: scene, 30.0, 10.0 + 1 / 30, 13.0)[-1][1]
    np.testing.assert_array_equal(first, later)


# -- temporal behaviour -------------------------------------------------------------------


def test_static_noisy_scene_is_bit_identical_after_settling() -> None:
    clean = make_scene(2)
    rng = np.random.default_rng(7)

    def noisy(t: float) -> np.ndarray:
        if t < 1.0:  # start on a darker scene so that the mapper has to adapt and settle
            return clean / 16
        gain = 1.0 + 0.03 * rng.standard_normal(clean.shape).astype(np.float32)
        return clean * gain

    mapper = DisplayToneMapper()
    run(mapper, noisy, 30.0, 0.0, 1.0)
    dark_key = mapper.state.key_ev
    run(mapper, noisy, 30.0, 1.0, 6.0)
    settled = mapper.state
    assert settled.key_ev - dark_key > 3.5                          # it did adapt (4 EV)
    assert not settled.key_adapting and not settled.white_adapting
    states, clean_outputs = [], []
    for i in range(60):
        t = 6.0 + i / 30
        frame = clean if i in (10, 11, 59) else noisy(t)
        out = mapper(frame, t)
        states.append((mapper.state.key_ev, mapper.state.white_range_ev))
        if frame is clean:
            clean_outputs.append(out)
    assert all(s == (settled.key_ev, settled.white_range_ev) for s in states)
    np.testing.assert_array_equal(clean_outputs[0], clean_outputs[1])
    np.testing.assert_array_equal(clean_outputs[0], clean_outputs[2])


def test_exposure_invariance() -> None:
    scene = make_scene(4)
    mapper = DisplayToneMapper()
    before = run(mapper, lambda t: scene, 30.0, 0.0, 1.0)[-1][1]
    key_before = mapper.state.key_ev
    after = run(mapper, lambda t: scene * 8, 30.0, 1.0, 6.0)[-1][1]
    assert mapper.state.key_ev - key_before == pytest.approx(3.0, abs=1 / 32)
    diff = np.abs(after.astype(int) - before.astype(int))
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 3


def test_small_light_switching_on_does_not_pump() -> None:
    scene = make_scene(5)
    light = np.zeros((H, W), bool)
    side = round(math.sqrt(0.02 * H * W))
    light[30:30 + side, 90:90 + side] = True
    lit = scene.copy()
    lit[light] *= 1000.0
    rest = ~light
    mapper = DisplayToneMapper()
    before = mean_code(run(mapper, lambda t: scene, 30.0, 0.0, 1.0)[-1][1], rest)
    key_before = mapper.state.key_ev
    outputs = run(mapper, lambda t: lit, 30.0, 1.0, 4.0)
    assert abs(mapper.last_stats.measured_key_ev - key_before) < 0.125  # barely measured
    assert max(abs(mean_code(out, rest) - before) for _, out in outputs) < 2.0
    assert mean_code(outputs[-1][1], light) > 250                        # the light is white


def test_global_brightening_is_followed_smoothly() -> None:
    scene = make_scene(6)
    mapper = DisplayToneMapper()
    before = mean_code(run(mapper, lambda t: scene, 30.0, 0.0, 1.0)[-1][1])
    means = [mean_code(out) for _, out in run(mapper, lambda t: scene * 4, 30.0, 1.0, 5.0)]
    assert means[0] - before > 20                     # the step itself shows (2 EV brighter)
    steps = np.diff(means)
    assert np.all(steps <= 0.05)                      # then it only darkens back ...
    assert np.abs(steps).max() < 4.0                  # ... by a few codes per frame at most
    assert np.abs(steps[:15]).max() > 1.0             # (it does move right away)
    settle = next(i for i, m in enumerate(means) if abs(m - before) < 1.5)
    assert settle / 30.0 < 3.5                        # converged within a few seconds
    assert abs(means[-1] - before) < 1.0


@pytest.mark.parametrize("pair", [(15.0, 60.0), (30.0, 24.0)])
def test_adaptation_runs_on_stamps_not_frames(pair: tuple[float, float]) -> None:
    scene = make_scene(7)

    def frames(t: float) -> np.ndarray:
        return scene if t < 1.0 else scene * 4

    probes = (1 / 3, 4 / 3, 5 / 3, 2.0, 3.0, 14 / 3)     # on the grid of 15, 24, 30, 60 Hz
    keys: dict[float, list[float]] = {}
    for rate in pair:
        mapper = DisplayToneMapper()
        keys[rate] = []
        for i in range(round(5.0 * rate)):
            t = i / rate
            mapper(frames(t), t)
            if any(abs(t - probe) < 1e-9 for probe in probes):
                keys[rate].append(mapper.state.key_ev)
    slow, fast = (np.array(keys[rate]) for rate in pair)
    assert slow.shape == fast.shape == (len(probes),)
    start, end = slow[0], slow[-1]
    assert end - start == pytest.approx(2.0, abs=1 / 32)
    # The only difference is when each stream first sees the change: a frame applies its
    # measurement over the interval since the previous frame, at most max_rate * dt.
    bound = 2.0 * abs(1 / pair[0] - 1 / pair[1]) + 0.01
    assert np.abs(slow - fast).max() < bound, (slow, fast)
    assert np.abs(slow - fast)[-3:].max() < 0.04      # and the difference fades
    # At the probes in between the state is really in transit, not at either end.
    assert np.all((slow[1:4] - start > 0.3) & (end - slow[1:4] > 0.3))


def test_variable_frame_rate_matches_fixed() -> None:
    scene = make_scene(8)
    rng = np.random.default_rng(0)
    jittered = np.cumsum(rng.uniform(1 / 60, 1 / 12, 200))
    jittered = jittered[jittered < 4.0]
    fixed = DisplayToneMapper()
    variable = DisplayToneMapper()
    fixed(scene, 0.0)
    variable(scene, 0.0)
    run(fixed, lambda t: scene * 0.25, 30.0, 1 / 30, 1.5)
    for t in jittered[jittered < 1.5]:
        variable(scene * 0.25, float(t))
    assert abs(fixed.state.key_ev - variable.state.key_ev) < 0.08


def test_stamp_going_backwards_resets() -> None:
    scene = make_scene(9)
    mapper = DisplayToneMapper()
    run(mapper, lambda t: scene, 30.0, 100.0, 101.0)
    mapper(scene * 16, 50.0)                          # bag loop: back in time
    assert mapper.last_stats.reset
    assert mapper.state.key_ev == mapper.last_stats.measured_key_ev  # taken directly
    assert mapper.state.stamp_s == 50.0
    no_reset = DisplayToneMapper(DisplayToneMapperConfig(reset_on_backwards=False))
    run(no_reset, lambda t: scene, 30.0, 100.0, 101.0)
    key = no_reset.state.key_ev
    no_reset(scene * 16, 50.0)
    assert not no_reset.last_stats.reset and no_reset.state.key_ev == key


def test_time_jump_and_explicit_reset() -> None:
    scene = make_scene(10)
    mapper = DisplayToneMapper(DisplayToneMapperConfig(max_stamp_gap_s=2.0))
    mapper(scene, 0.0)
    mapper(scene * 16, 1.0)                           # within the gap: adapts gradually
    assert not mapper.last_stats.reset
    assert mapper.state.key_ev < mapper.last_stats.measured_key_ev - 1.0
    mapper(scene * 16, 3.5)                           # 2.5 s gap: re-initialised
    assert mapper.last_stats.reset
    assert mapper.state.key_ev == mapper.last_stats.measured_key_ev
    mapper.reset()
    assert mapper.state is None
    mapper(scene, 3.6)
    assert mapper.last_stats.reset
    assert mapper.state.key_ev == mapper.last_stats.measured_key_ev


def test_black_frames_hold_the_state() -> None:
    mapper = DisplayToneMapper()
    black = np.zeros((H, W, 3), np.float32)
    assert not mapper(black, 0.0).any() and mapper.state is None
    scene = make_scene(11)
    mapper(scene, 0.1)
    state = mapper.state
    out = mapper(black, 0.2)
    assert not out.any()
    assert (mapper.state.key_ev, mapper.state.white_range_ev) == (state.key_ev, state.white_range_ev)
    assert mapper.state.stamp_s == 0.2


# -- robustness ---------------------------------------------------------------------------


def test_bad_pixels_are_repaired_and_counted() -> None:
    scene = make_scene(12)
    bad = scene.copy()
    bad[0, :10, 0] = np.nan
    bad[1, :4, :] = np.nan
    bad[2, :3, 1] = np.inf
    bad[3, :2, 2] = -np.inf
    bad[4, :5, 0] = -1.0
    mapper = DisplayToneMapper()
    out = mapper(bad, 0.0)
    stats = mapper.last_stats
    assert stats.nonfinite_pixels == 10 + 4 + 3 + 2
    assert stats.negative_pixels == 5
    assert np.all(out[1, :4] == 0)                      # all-NaN pixels are black
    assert np.all(out[2, :3] == 255)                    # +Inf is brightest
    clean = DisplayToneMapper()(scene, 0.0)
    assert np.abs(out[10:].astype(int) - clean[10:]).max() <= 1  # the rest is as without
    mapper(scene, 1 / 30)
    assert mapper.last_stats.nonfinite_pixels == 0 and mapper.last_stats.negative_pixels == 0


def test_all_nan_frame_does_not_raise() -> None:
    mapper = DisplayToneMapper()
    out = mapper(np.full((H, W, 3), np.nan, np.float32), 0.0)
    assert not out.any() and mapper.last_stats.nonfinite_pixels == H * W


def test_extreme_values_stay_finite() -> None:
    scene = make_scene(13) * 1e-6
    scene[0, 0] = 3e38
    scene[0, 1] = 1e-40                                  # denormal
    out = DisplayToneMapper()(scene, 0.0)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert 60 < out.mean() < 160


@pytest.mark.parametrize("bad", [
    np.zeros((H, W), np.float32),
    np.zeros((H, W, 4), np.float32),
    np.zeros((0, W, 3), np.float32),
    np.zeros((H, W, 3), np.uint8),
    np.zeros((H, W, 3), np.int32),
    [[[0.0, 0.0, 0.0]]],
])
def test_wrong_shape_or_dtype_raises(bad: object) -> None:
    with pytest.raises(InputError):
        DisplayToneMapper()(bad, 0.0)  # type: ignore[arg-type]


def test_nonfinite_stamp_raises() -> None:
    with pytest.raises(InputError, match="stamp"):
        DisplayToneMapper()(make_scene(), math.nan)


def test_float64_input_accepted() -> None:
    scene = make_scene(14)
    a = DisplayToneMapper()(scene, 0.0)
    b = DisplayToneMapper()(scene.astype(np.float64), 0.0)
    np.testing.assert_array_equal(a, b)


def test_frame_size_change() -> None:
    mapper = DisplayToneMapper()
    mapper(make_scene(15), 0.0)
    small = mapper(make_scene(15, height=30, width=40), 1 / 30)
    assert small.shape == (30, 40, 3)
    tiny = mapper(np.ones((1, 1, 3), np.float32), 2 / 30)
    assert tiny.shape == (1, 1, 3)


# -- config and state ---------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"middle_grey": 0.0},
    {"key_percentiles": (80.0, 20.0)},
    {"white_percentile": 101.0},
    {"white_range_ev": (3.0, 2.0)},
    {"key_time_constant_s": 0.0},
    {"max_rate_ev_per_s": -1.0},
    {"dead_band_ev": 0.01, "settle_ev": 0.02},
    {"max_stamp_gap_s": 0.0},
    {"stats_max_side": 0},
])
def test_config_validation(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DisplayToneMapperConfig(**kwargs)  # type: ignore[arg-type]


def test_config_and_state_are_read_only() -> None:
    config = DisplayToneMapperConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dead_band_ev = 0.0  # type: ignore[misc]
    mapper = DisplayToneMapper(config)
    mapper(make_scene(), 0.0)
    state = mapper.state
    assert isinstance(state, DisplayToneState)
    assert state.white_ev == state.key_ev + state.white_range_ev
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.key_ev = 0.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        mapper.state = None  # type: ignore[misc]
