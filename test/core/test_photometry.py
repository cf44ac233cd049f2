"""Photometry: normalisation, responses, radiance <-> pixel values, masks, GLA."""

from __future__ import annotations

import numpy as np
import pytest

from hdr_dcs.core.errors import InputError
from hdr_dcs.core.photometry import (
    GammaResponse,
    TabulatedResponse,
    from_unit,
    global_luminance_alignment,
    luminance,
    noise_floor_mask,
    radiance,
    reexpose,
    saturation_mask,
    to_unit,
)
from hdr_dcs.core.types import Exposure


def test_to_unit_divides_by_code_maximum() -> None:
    assert to_unit(np.array([0, 128, 255], np.uint8)).tolist() == pytest.approx([0, 128 / 255, 1])
    # 16-bit: divided by 65535, never by 256 (that would lose the range HDR needs).
    assert to_unit(np.array([256, 65535], np.uint16)).tolist() == pytest.approx([256 / 65535, 1.0])
    assert to_unit(np.array([4095], np.uint16), max_code=4095)[0] == pytest.approx(1.0)


def test_to_unit_rejects_nan_and_odd_dtypes() -> None:
    with pytest.raises(InputError, match="NaN"):
        to_unit(np.array([0.5, np.nan], np.float32))
    with pytest.raises(InputError, match="dtype"):
        to_unit(np.array(["a"]))


def test_from_unit_round_trips_codes() -> None:
    codes = np.arange(256, dtype=np.uint8)
    assert np.array_equal(from_unit(to_unit(codes)), codes)
    codes16 = np.arange(0, 65536, 7, dtype=np.uint16)
    assert np.array_equal(from_unit(to_unit(codes16), np.uint16), codes16)


def test_gamma_response_is_spec_default_and_inverts() -> None:
    f = GammaResponse()
    x = np.linspace(0, 1, 101, dtype=np.float32)
    assert np.allclose(f.forward(x), x ** (1 / 2.2), atol=1e-6)
    assert np.allclose(f.inverse(f.forward(x)), x, atol=1e-6)
    # The slope of f^-1 matches a finite difference.
    v = np.array([0.3], np.float32)
    fd = (f.inverse(v + 1e-3) - f.inverse(v - 1e-3)) / 2e-3
    assert f.inverse_slope(v)[0] == pytest.approx(fd[0], rel=1e-3)


def test_tabulated_response_round_trip_and_validation() -> None:
    levels = np.linspace(0, 1, 256)
    table = TabulatedResponse.from_array(levels ** 2.4)  # a calibrated-looking curve
    x = np.linspace(0, 1, 50, dtype=np.float32)
    assert np.allclose(table.inverse(table.forward(x)), x, atol=2e-3)
    assert np.allclose(table.inverse(np.float32(0.5)), 0.5 ** 2.4, atol=1e-3)
    with pytest.raises(InputError, match="increasing"):
        TabulatedResponse.from_array(np.array([0.0, 0.6, 0.5, 1.0]))
    with pytest.raises(InputError, match="0 -> 0"):
        TabulatedResponse.from_array(np.array([0.1, 0.5, 1.0]))


def test_radiance_and_reexposure_follow_spec_units() -> None:
    exp = Exposure(exposure_time_s=0.004, gain_db=6.0)
    assert exp.gain_linear == pytest.approx(10 ** 0.3)
    hdr = np.array([[[10.0, 20.0, 40.0]]], np.float32)
    values = reexpose(hdr, exp)
    assert np.allclose(values, (hdr * 0.004 * 10 ** 0.3) ** (1 / 2.2), rtol=1e-5)
    assert np.allclose(radiance(values, exp), hdr, rtol=1e-4)
    # Beyond full scale the pixel clips and radiance is only a lower bound.
    assert reexpose(np.full((1, 1, 3), 1e6, np.float32), exp).max() == 1.0


def test_exposure_validation_and_ev() -> None:
    with pytest.raises(ValueError):
        Exposure(0.0)
    with pytest.raises(ValueError):
        Exposure(float("nan"))
    assert Exposure(0.004).ev_relative_to(Exposure(0.001)) == pytest.approx(2.0)
    assert Exposure(0.001, 6.0206).ev_relative_to(Exposure(0.001)) == pytest.approx(1.0, abs=1e-4)


def test_masks() -> None:
    img = np.array([[[0.99, 0.2, 0.2], [0.01, 0.02, 0.0], [0.5, 0.5, 0.5]]], np.float32)
    assert saturation_mask(img).tolist() == [[True, False, False]]
    assert noise_floor_mask(img).tolist() == [[False, True, False]]


def test_luminance_weights() -> None:
    assert luminance(np.array([1.0, 1.0, 1.0], np.float32)) == pytest.approx(1.0, abs=1e-6)
    assert luminance(np.array([0.0, 1.0, 0.0], np.float32)) == pytest.approx(0.7152)


def test_global_luminance_alignment_hand_computed() -> None:
    ref = np.full((2, 2, 3), 0.4, np.float32)
    low = np.array([[[0.1] * 3, [0.1] * 3], [[0.1] * 3, [0.3] * 3]], np.float32)  # mean 0.15
    aligned = global_luminance_alignment(low, ref)
    # Scaled by mean(ref) / mean(low) = 0.4 / 0.15, i.e. towards the reference.
    assert aligned[0, 0, 0] == pytest.approx(0.1 * 0.4 / 0.15, rel=1e-5)
    assert aligned[1, 1, 0] == pytest.approx(0.8, rel=1e-5)
    high = np.full((2, 2, 3), 0.9, np.float32)
    assert np.allclose(global_luminance_alignment(high, ref), 0.4)
    # Clipped to [0, 1]; batched over leading dims.
    batch = np.stack([low, high])
    out = global_luminance_alignment(batch, np.stack([ref, ref]))
    assert out.shape == batch.shape and out.max() <= 1.0
    assert np.allclose(out[1], 0.4)
