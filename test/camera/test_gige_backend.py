"""The GigE backend against Aravis' real fake GigE Vision camera on loopback (GVCP control
and GVSP streaming over UDP, discovered by the real Aravis stack): exposure roles with
read-back, brightness agreeing with the published exposure, pixel formats, unplugging and
replugging, a lossy stream. Nothing is mocked."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from fake_gige import expected_scale, fake_camera, ramp_scale

from hdr_dcs.camera import CameraError, CapturedFrame
from hdr_dcs.camera.gige_backend import GigECameraBackend, GigESettings
from hdr_dcs.core.types import Role

ADDRESS = "127.0.0.1"
SMALL = (0, 0, 64, 48)


def grab_n(backend: GigECameraBackend, n: int, timeout_s: float = 20.0) -> list[CapturedFrame]:
    frames: list[CapturedFrame] = []
    deadline = time.monotonic() + timeout_s
    while len(frames) < n and time.monotonic() < deadline:
        frame = backend.grab(0.5)
        if frame is not None:
            frames.append(frame)
    assert len(frames) == n, f"{len(frames)} of {n} frames; drops {backend.drop_counts()}"
    return frames


def capture(camera: str, settings: GigESettings, serial: str, n: int, timeout_s: float = 20.0,
            lost_per_thousand: int = 0) -> tuple[list[CapturedFrame], GigECameraBackend, dict[str, str]]:
    """Start a fake camera, open the backend on it, grab ``n`` frames; the frames, the
    (closed) backend and its status values just before closing."""
    with fake_camera(ADDRESS, serial, lost_per_thousand):
        cam = GigECameraBackend(camera, settings)
        cam.open()
        try:
            frames = grab_n(cam, n, timeout_s)
            status = cam.status_values()
        finally:
            cam.close()
    return frames, cam, status


def test_anchor_alternates_read_back_exposures_that_match_the_frames(tmp_path) -> None:
    settings = GigESettings(device="GVA1", pixel_format="Mono8", region=SMALL, frame_rate_hz=20.0,
                            exposure_us=8000.0, ev_low=-1.5, ev_high=2.0)
    with fake_camera(ADDRESS, "GVA1", log=tmp_path / "cam.log"):
        cam = GigECameraBackend("anchor", settings)
        cam.open()
        try:
            assert "trigger" in cam.description and "GVA1" in cam.description
            frames = grab_n(cam, 12)
            status = cam.status_values()
        finally:
            cam.close()
    roles = [f.role for f in frames]
    assert roles == [Role.LOW, Role.HIGH] * 6
    assert frames[0].exposure_time_us == 2828.0  # 8000 * 2**-1.5 = 2828.43 requested
    low_us, high_us = 8000.0 * 2 ** -1.5, 8000.0 * 2 ** 2.0
    for f in frames:
        want = low_us if f.role == Role.LOW else high_us
        # the fake camera keeps whole microseconds: what it reports, not what was asked for
        assert f.exposure_time_us == math.floor(want)
        # the frame's brightness says which exposure it had, and it is the published one
        assert ramp_scale(f.pixels) == pytest.approx(expected_scale(f.exposure_time_us), abs=0.02), f.role
        assert f.pixels.shape == (48, 64) and f.pixels.dtype == np.uint8 and f.bit_depth == 8
    stamps = [f.stamp_ns for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    # paced at 20 Hz by the host: 11 intervals of 50 ms
    assert (stamps[-1] - stamps[0]) * 1e-9 == pytest.approx(11 / 20.0, rel=0.25)
    assert abs(time.time_ns() - stamps[-1]) < 5e9
    ids = [f.sequence_id for f in frames]
    assert ids == list(range(ids[0], ids[0] + 12))
    assert status["exposure control"] == "trigger" and status["stamps"] == "host (camera clock mapped)"
    assert cam.drop_counts() == {}


def test_anchor_follows_the_reference_exposure() -> None:
    settings = GigESettings(device=ADDRESS, pixel_format="Mono8", region=SMALL, frame_rate_hz=25.0,
                            exposure_us=10000.0, ev_low=-1.0, ev_high=1.0)
    with fake_camera(ADDRESS, "GVA2"):
        cam = GigECameraBackend("anchor", settings)
        cam.open()
        try:
            grab_n(cam, 2)
            cam.set_reference_exposure(20000.0)
            frames = grab_n(cam, 4)
        finally:
            cam.close()
    got = sorted({round(f.exposure_time_us) for f in frames})
    assert got == [10000, 40000]


def test_reference_slow_auto_exposure_publishes_only_certain_exposures() -> None:
    # The ramp's median code is ~0.5 of full scale at 10 ms, brighter than the 0.4 target:
    # the auto exposure shortens the exposure by at most 0.5 EV per second, and the
    # frames exposed around each change are dropped, never mislabelled.
    settings = GigESettings(device=ADDRESS, pixel_format="Mono8", region=SMALL, frame_rate_hz=30.0,
                            exposure_us=20000.0, auto_exposure=True)
    frames, cam, _ = capture("reference", settings, "GVR1", 75, timeout_s=30.0)
    exposures = [f.exposure_time_us for f in frames]
    assert exposures[0] == 20000.0 and exposures[-1] < 20000.0
    changes = [(a, b) for a, b in zip(exposures, exposures[1:], strict=False) if a != b]
    assert 1 <= len(changes) <= 4
    # at most 0.5 EV per change (one per second), up to the camera's 1 us quantisation
    assert all(a * 2 ** -0.5 - 1.0 <= b < a for a, b in changes), changes
    assert all(f.role == Role.REFERENCE for f in frames)
    assert cam.drop_counts().get("exposure uncertain", 0) >= len(changes)
    for f in frames:
        assert ramp_scale(f.pixels) == pytest.approx(expected_scale(f.exposure_time_us), abs=0.02)


def test_free_running_anchor_drops_the_frames_it_cannot_be_sure_of() -> None:
    settings = GigESettings(device=ADDRESS, pixel_format="Mono8", region=SMALL, frame_rate_hz=30.0,
                            exposure_us=10000.0, exposure_control="free_run")
    frames, cam, _ = capture("anchor", settings, "GVA3", 8)
    assert [f.role for f in frames] == [Role.LOW, Role.HIGH] * 4
    for f in frames:
        assert ramp_scale(f.pixels) == pytest.approx(expected_scale(f.exposure_time_us), abs=0.02)
    assert cam.drop_counts()["exposure uncertain"] >= 7


@pytest.mark.parametrize(("fmt", "shape", "dtype"), [("Mono16", (48, 64), np.uint16), ("RGB8", (48, 64, 3), np.uint8),
                                                     ("BayerRG8", (48, 64, 3), np.uint8)])
def test_pixel_formats(fmt: str, shape: tuple[int, ...], dtype: type) -> None:
    settings = GigESettings(device=ADDRESS, pixel_format=fmt, region=SMALL, frame_rate_hz=30.0)
    frame = capture("reference", settings, "GVF1", 1)[0][0]
    assert frame.pixels.shape == shape and frame.pixels.dtype == dtype
    assert frame.bit_depth == (16 if fmt == "Mono16" else 8)
    assert frame.pixels.max() > frame.pixels.min()  # the ramp, not a blank buffer


def test_open_errors_are_one_readable_line() -> None:
    with fake_camera(ADDRESS, "GVE1"):
        with pytest.raises(CameraError, match=r"camera NOPE not found; seen: GVE1 at 127.0.0.1"):
            GigECameraBackend("reference", GigESettings(device="NOPE")).open()
        with pytest.raises(CameraError, match="pixel format BayerRG12 not offered by the camera"):
            GigECameraBackend("reference", GigESettings(device="GVE1", pixel_format="BayerRG12")).open()
    with pytest.raises(CameraError, match="anchor camera only"):
        GigECameraBackend("reference", GigESettings(exposure_control="trigger"))


def test_unplugged_camera_raises_and_reopens_when_back() -> None:
    settings = GigESettings(device=ADDRESS, pixel_format="Mono8", region=SMALL, frame_rate_hz=20.0, timeout_s=1.0)
    with fake_camera(ADDRESS, "GVD1") as fake:
        cam = GigECameraBackend("anchor", settings)
        cam.open()
        grab_n(cam, 3)
        fake.stop()
        start = time.monotonic()
        with pytest.raises(CameraError, match="not answering|control lost|no frame"):
            while time.monotonic() - start < 15.0:
                cam.grab(0.5)
        assert time.monotonic() - start < 10.0
        cam.close()
        with pytest.raises(CameraError):
            cam.open()
        fake.start()
        cam.open()
        try:
            frames = grab_n(cam, 4)
        finally:
            cam.close()
    assert [f.role for f in frames] == [Role.LOW, Role.HIGH] * 2


def test_lossy_stream_loses_frames_counts_them_and_keeps_going() -> None:
    # 10 % of the stream packets are dropped by the camera; without resends whole frames
    # are lost, and each loss is counted by its buffer status.
    settings = GigESettings(device=ADDRESS, pixel_format="Mono8", region=(0, 0, 256, 192), frame_rate_hz=30.0,
                            packet_resend=False, packet_size=1400)
    frames, cam, status = capture("reference", settings, "GVL1", 10, timeout_s=30.0, lost_per_thousand=100)
    drops = cam.drop_counts()
    assert sum(drops.values()) > 0, drops
    assert int(status["stream missing packets"]) > 0
    assert all(f.pixels.shape == (192, 256) for f in frames)
    ids = [f.sequence_id for f in frames]
    assert ids == sorted(ids) and ids[-1] - ids[0] + 1 > len(ids)  # the lost frames used ids up


# -- the sequencer path ---------------------------------------------------------------------------
# No camera with a GenICam sequencer and chunk data can run here (Aravis' fake camera has
# neither), so these two tests drive the backend's sequencer code with a stand-in device
# that records the SFNC feature writes and a stand-in buffer carrying chunk data. What they
# show: the configuration written, and that roles and exposures come from each frame's
# chunk, never from the request.
class _Status:
    value_nick = "success"


class _Buffer:
    def __init__(self, frame_id: int, chunk_exposure_us: float | None) -> None:
        self.frame_id, self.chunk = frame_id, chunk_exposure_us

    def get_system_timestamp(self) -> int:
        return time.time_ns()

    def get_timestamp(self) -> int:
        return 1_000_000 + self.frame_id * 33_000_000

    def get_status(self) -> _Status:
        return _Status()

    def get_frame_id(self) -> int:
        return self.frame_id

    def get_data(self) -> bytes:
        return bytes(range(64)) * 48

    def get_image_width(self) -> int:
        return 64

    def get_image_height(self) -> int:
        return 48


class _NoChunk(Exception):
    pass


class _Chunks:
    def get_float_value(self, buffer: _Buffer, name: str) -> float:
        assert name == "ChunkExposureTime"
        if buffer.chunk is None:
            raise _NoChunk(name)
        return buffer.chunk


class _Device:
    def __init__(self) -> None:
        self.writes: list[tuple[str, object]] = []

    def set_string_feature_value(self, name: str, value: str) -> None:
        self.writes.append((name, value))

    def set_integer_feature_value(self, name: str, value: int) -> None:
        self.writes.append((name, value))

    def execute_command(self, name: str) -> None:
        self.writes.append((name, None))


class _SequencerCamera:
    def __init__(self) -> None:
        self.device = _Device()
        self.exposure = 0.0

    def get_device(self) -> _Device:
        return self.device

    def set_exposure_time(self, value: float) -> None:
        self.exposure = value
        self.device.writes.append(("ExposureTime", value))

    def set_chunk_mode(self, on: bool) -> None:
        self.device.writes.append(("ChunkModeActive", on))

    def set_chunk_state(self, name: str, on: bool) -> None:
        self.device.writes.append((f"Chunk{name}", on))

    def create_chunk_parser(self) -> _Chunks:
        return _Chunks()


def test_sequencer_configuration_is_two_sets_that_alternate() -> None:
    cam = GigECameraBackend("anchor", GigESettings(exposure_us=8000.0, ev_low=-2.0, ev_high=1.0))
    stand_in = _SequencerCamera()
    cam._configure_sequencer(None, stand_in)
    w = stand_in.device.writes
    assert w[:2] == [("SequencerMode", "Off"), ("SequencerConfigurationMode", "On")]
    assert w[2:8] == [("SequencerSetSelector", 0), ("ExposureTime", 2000.0), ("SequencerPathSelector", 0),
                      ("SequencerSetNext", 1), ("SequencerTriggerSource", "FrameStart"), ("SequencerSetSave", None)]
    assert w[8:14] == [("SequencerSetSelector", 1), ("ExposureTime", 16000.0), ("SequencerPathSelector", 0),
                       ("SequencerSetNext", 0), ("SequencerTriggerSource", "FrameStart"), ("SequencerSetSave", None)]
    assert w[14:] == [("SequencerSetStart", 0), ("SequencerConfigurationMode", "Off"), ("SequencerMode", "On"),
                      ("ChunkModeActive", True), ("ChunkExposureTime", True)]


def test_sequencer_frames_take_role_and_exposure_from_their_chunk() -> None:
    cam = GigECameraBackend("anchor", GigESettings(exposure_us=8000.0, ev_low=-2.0, ev_high=1.0))
    cam._mode, cam._chunks, cam._glib_error = "sequencer", _Chunks(), _NoChunk
    frames = [cam._frame(_Buffer(i, us)) for i, us in enumerate([1999.0, 15990.0, None, 16001.0, 2001.0])]
    assert [f.role if f else None for f in frames] == [Role.LOW, Role.HIGH, None, Role.HIGH, Role.LOW]
    assert [f.exposure_time_us for f in frames if f] == pytest.approx([1999.0, 15990.0, 16001.0, 2001.0])
    assert cam.drop_counts() == {"exposure uncertain": 1}
    assert [f.sequence_id for f in frames if f] == [0, 1, 3, 4]


def test_a_stream_that_never_arrives_is_an_error_not_silence() -> None:
    # Every stream packet lost (-r 1000): the camera answers its registers but no frame
    # arrives; after timeout_s the backend says so (the node then reports and reopens).
    settings = GigESettings(device=ADDRESS, pixel_format="Mono8", region=SMALL, timeout_s=1.0, packet_resend=False)
    with fake_camera(ADDRESS, "GVS1", lost_per_thousand=1000):
        cam = GigECameraBackend("reference", settings)
        cam.open()
        start = time.monotonic()
        try:
            with pytest.raises(CameraError, match=r"no frame for 1 s \(none dropped so far; check the network"):
                while time.monotonic() - start < 10.0:
                    assert cam.grab(0.25) is None
        finally:
            cam.close()
    assert 0.9 < time.monotonic() - start < 5.0
