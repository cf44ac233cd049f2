"""Pixel formats, stamp mapping and exposure roles of the GigE backend (pure logic)."""

from __future__ import annotations

import numpy as np
import pytest

from hdr_dcs.camera import CameraError
from hdr_dcs.camera.exposure import AnchorExposures, SlowAutoExposure
from hdr_dcs.camera.pixels import decode_pixels
from hdr_dcs.camera.stamps import ClockMapper
from hdr_dcs.core.types import Role

RGB = (200, 100, 50)
LAYOUTS = {"RG": "RGGB", "GR": "GRBG", "GB": "GBRG", "BG": "BGGR"}


@pytest.mark.parametrize("pattern", sorted(LAYOUTS))
@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_bayer_patterns_demosaic_to_the_right_colour(pattern: str, bits: int) -> None:
    """A flat colour mosaiced in PFNC's layout (the pattern names the 2x2 block at (0, 0))
    comes back as that colour, left-aligned to 16 bits above 8."""
    dtype = np.uint8 if bits == 8 else np.uint16
    mosaic = np.zeros((8, 10), dtype)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        mosaic[dy::2, dx::2] = RGB["RGB".index(LAYOUTS[pattern][k])] << (bits - 8)
    out = decode_pixels(mosaic.astype("<u2" if bits > 8 else np.uint8).tobytes(), f"Bayer{pattern}{bits}", 10, 8)
    scale = 1 if bits == 8 else 256
    assert out.dtype == dtype and out.shape == (8, 10, 3)
    assert tuple(int(v) for v in out[4, 4]) == tuple(v * scale for v in RGB)


def test_mono_and_rgb_layouts() -> None:
    mono12 = decode_pixels(np.array([0, 1, 4095, 2048, 7, 9], "<u2").tobytes(), "Mono12", 3, 2)
    assert mono12.dtype == np.uint16 and mono12.tolist() == [[0, 16, 65520], [32768, 112, 144]]
    assert decode_pixels(bytes([1, 2, 3, 4, 5, 6]), "BGR8", 2, 1).tolist() == [[[3, 2, 1], [6, 5, 4]]]
    assert decode_pixels(bytes([1, 2, 3, 4, 5, 6]), "RGB8", 2, 1).tolist() == [[[1, 2, 3], [4, 5, 6]]]
    # trailing bytes (chunk data, padding) are ignored
    assert decode_pixels(bytes(range(10)), "Mono8", 4, 2).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_bad_buffers_are_camera_errors() -> None:
    with pytest.raises(CameraError, match="needs 24 bytes, the buffer has 23"):
        decode_pixels(bytes(23), "Mono16", 4, 3)
    with pytest.raises(CameraError, match="'Mono12p' is not supported"):
        decode_pixels(bytes(100), "Mono12p", 4, 3)


def test_clock_mapper_removes_host_jitter() -> None:
    """Camera clock: steady 30 Hz from an arbitrary origin. Host receive times: the same
    instants + offset + exposure + transfer + a random latency >= 0. The mapped stamps
    keep the camera's spacing and land on the true mid-exposure within the smallest
    latency seen."""
    rng = np.random.default_rng(0)
    offset = 1_700_000_000 * 10**9
    exposure = 0.01
    payload = 640 * 480  # 8-bit mono
    mapper = ClockMapper(link_bps=1e9)
    transfer = int(payload * 8 / 1e9 * 1e9)
    errors = []
    for k in range(200):
        camera = 5_000_000 + k * 33_333_333
        jitter = int(rng.exponential(3e6)) + 200_000  # >= 0.2 ms
        receive = camera + offset + int(exposure * 1e9) + transfer + jitter
        result = mapper.stamp(camera, receive, exposure, payload)
        true_mid = camera + offset + int(exposure * 0.5e9)
        errors.append(result.stamp_ns - true_mid)
    assert result.source == "host (camera clock mapped)"
    late = np.array(errors[50:])
    # after 50 frames the minimum is within 0.5 ms of the true one, and constant
    assert np.all((late >= 0) & (late < 500_000)) and np.ptp(late) < 300_000
    # the raw receive times jitter by milliseconds
    assert rng.exponential(3e6, 150).std() > 2e6


def test_clock_mapper_sources() -> None:
    mapper = ClockMapper(latch="exposure_end")
    ptp = mapper.stamp(1_000_000_000, 1_050_000_000, 0.02, 0, ptp=True)
    assert ptp.source == "ptp" and ptp.stamp_ns == 1_000_000_000 - 10_000_000
    host = mapper.stamp(0, 2_000_000_000, 0.02, 0)
    assert host.source == "host (receive time)" and host.stamp_ns == 2_000_000_000 - 10_000_000
    with pytest.raises(ValueError, match="latch"):
        ClockMapper(latch="middle")


def test_anchor_exposures_and_slow_auto_exposure() -> None:
    anchors = AnchorExposures(8000.0, -2.0, 3.0, bounds_us=(10.0, 50000.0))
    assert anchors.exposure_us(Role.LOW) == 2000.0
    assert anchors.exposure_us(Role.HIGH) == 50000.0  # 64000 clamped to the camera's maximum
    assert [AnchorExposures.next_role(r) for r in (None, Role.LOW, Role.HIGH)] == [Role.LOW, Role.HIGH, Role.LOW]
    with pytest.raises(ValueError):
        anchors.exposure_us(Role.REFERENCE)

    ae = SlowAutoExposure(target=0.4, max_ev_per_s=0.5, deadband_ev=0.25)
    mid = np.full((32, 32), int(0.4 * 255), np.uint8)
    assert ae.update(mid, 10000.0, 1.0, (10.0, 1e6)) is None  # on target: no change
    bright = np.full((32, 32), 250, np.uint8)
    darker = ae.update(bright, 10000.0, 1.0, (10.0, 1e6))
    assert darker == pytest.approx(10000.0 * 2 ** -0.5)  # slew-limited
    dark16 = np.full((32, 32), 6000, np.uint16)
    assert ae.update(dark16, 10000.0, 0.5, (10.0, 1e6)) == pytest.approx(10000.0 * 2 ** 0.25)
