"""Simulated camera backend on a fake clock, and camera_node processes over real DDS."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hdr_dcs_msgs.msg import ExposureInfo
from rclpy.node import Node
from ros_helpers import REPO, node_process, ros_harness, wait_for
from sensor_msgs.msg import CameraInfo, Image

from hdr_dcs.camera import CameraBackend, CameraError
from hdr_dcs.camera.sim_backend import SimCameraBackend
from hdr_dcs.core.types import Role
from hdr_dcs.nodes.camera_node import PARAMETERS, validate_parameters
from hdr_dcs.nodes.qos import image_qos, latched_qos
from hdr_dcs.sim.rig import RigConfig
from hdr_dcs.sim.scenes import make_scene

SIZE = (96, 64)
NS = 10**9


@pytest.fixture(scope="module")
def scene():  # noqa: ANN201
    return make_scene("street", None, SIZE, 10.0)


class FakeNsClock:
    def __init__(self, t_ns: int) -> None:
        self.t = t_ns

    def __call__(self) -> int:
        return self.t


def _backend(camera: str, clock: FakeNsClock, scene, **kw) -> SimCameraBackend:  # noqa: ANN001
    return SimCameraBackend(camera, "street", RigConfig(baseline_px=(1.5, 0.0)), SIZE, 10.0, clock=clock,
                            scene=scene, **kw)


# -- backend, no ROS -------------------------------------------------------------------------
def test_sim_backends_share_one_timeline(scene) -> None:  # noqa: ANN001
    clock = FakeNsClock(1_700_000_000 * NS + 123_456_789)
    ref, anchor = _backend("reference", clock, scene, ground_truth=True), _backend("anchor", clock, scene)
    assert isinstance(ref, CameraBackend) and isinstance(anchor, CameraBackend)
    ref.open()
    anchor.open()
    assert ref.grab(0.0) is None  # nothing complete yet since open
    frames: dict[str, list] = {"reference": [], "anchor": []}
    for _ in range(60):  # 2 s in 1/30 s steps: every frame is due once
        clock.t += NS // 30
        for cam in (ref, anchor):
            frame = cam.grab(0.0)
            if frame is not None:
                frames[cam.camera].append(frame)
    refs, anchors = frames["reference"], frames["anchor"]
    assert 59 <= len(refs) <= 61 and 23 <= len(anchors) <= 25  # 30 Hz and 12 Hz
    assert [f.sequence_id for f in refs] == list(range(len(refs)))
    assert [f.sequence_id for f in anchors] == list(range(len(anchors)))
    assert ref.drop_counts() == {} and anchor.drop_counts() == {}
    # Stamps on the rig's grids: reference i / 30 s, anchor 0.02 s + k / 12 s (epoch 0).
    for f in refs:
        assert Fraction(f.stamp_ns * 30, NS).limit_denominator(10**6) % 1 < Fraction(1, 10**6)
        assert f.role == Role.REFERENCE and f.exposure_time_s == ref.reference_exposure_s
        assert f.pixels.shape == (SIZE[1], SIZE[0], 3) and f.pixels.dtype == np.uint8
        assert f.ground_truth is not None and f.ground_truth.dtype == np.float32
    for a, b in zip(anchors, anchors[1:], strict=False):
        assert b.stamp_ns - a.stamp_ns in (NS // 12, NS // 12 + 1)
        assert {a.role, b.role} == {Role.LOW, Role.HIGH}
    for f in anchors:
        ev = -2.0 if f.role == Role.LOW else 2.0
        assert f.exposure_time_s == pytest.approx(ref.reference_exposure_s * 2**ev, rel=1e-12)
        assert round((f.stamp_ns - 20_000_000) * 12 / NS) * NS / 12 == pytest.approx(f.stamp_ns - 20_000_000,
                                                                                     abs=2)
        assert f.ground_truth is None
    # The scene loops: frame i and frame i + 300 (10 s later) show the same scene instant.
    assert ref.scene_time_s(7) == pytest.approx(ref.scene_time_s(307))


def test_sim_backend_is_deterministic_across_instances(scene) -> None:  # noqa: ANN001
    clock = FakeNsClock(5 * NS)
    a, b = _backend("anchor", clock, scene), _backend("anchor", clock, make_scene("street", None, SIZE, 10.0))
    a.open()
    b.open()
    assert a.reference_exposure_s == b.reference_exposure_s
    fa, fb = a.render(41, 0), b.render(41, 0)
    assert fa.stamp_ns == fb.stamp_ns and fa.role == fb.role == Role.HIGH
    assert np.array_equal(fa.pixels, fb.pixels)


def test_sim_backend_skips_frames_when_rendering_falls_behind(scene) -> None:  # noqa: ANN001
    clock = FakeNsClock(10 * NS)
    ref = _backend("reference", clock, scene)
    ref.open()
    clock.t += NS // 30
    first = ref.grab(0.0)
    assert first is not None
    clock.t += 5 * NS // 30  # 5 frame intervals pass during one render
    late = ref.grab(0.0)
    assert late is not None
    assert late.sequence_id == first.sequence_id + 5  # newest complete frame; ids used up
    assert late.stamp_ns - first.stamp_ns == pytest.approx(5 * NS / 30, abs=1)
    assert ref.drop_counts() == {"render overrun": 4}


def test_sim_backend_grab_times_out_and_close_unblocks(scene) -> None:  # noqa: ANN001
    clock = FakeNsClock(20 * NS)  # a clock that does not move: nothing ever becomes due
    cam = _backend("anchor", clock, scene)
    with pytest.raises(CameraError, match="not open"):
        cam.grab(0.0)
    cam.open()
    start = time.monotonic()
    assert cam.grab(0.2) is None
    assert 0.15 <= time.monotonic() - start < 1.0
    threading.Timer(0.1, cam.close).start()
    start = time.monotonic()
    assert cam.grab(30.0) is None
    assert time.monotonic() - start < 1.0


def test_sim_backend_12_bit_codes_are_left_aligned_uint16(scene) -> None:  # noqa: ANN001
    from hdr_dcs.sim.camera import CameraModel

    model = CameraModel(bit_depth=12)
    cam = SimCameraBackend("anchor", "street", RigConfig(reference_camera=model, anchor_camera=model), SIZE,
                           clock=FakeNsClock(0), scene=scene)
    cam.open()
    frame = cam.render(1, 0)
    assert frame.pixels.dtype == np.uint16 and frame.bit_depth == 12
    assert np.all(frame.pixels % 16 == 0) and frame.pixels.max() > 255


def test_sim_backend_open_reports_a_bad_scene() -> None:
    cam = SimCameraBackend("reference", "desk_pan", RigConfig(), SIZE, exr_dir="/nonexistent")
    with pytest.raises(CameraError, match="not found"):
        cam.open()


def test_parameter_validation_reasons() -> None:
    defaults = {name: spec[0] for name, spec in PARAMETERS.items()}
    assert validate_parameters(defaults) is None
    cases = {
        "backend": ("usb3", "not available; available: sim, gige"),
        "encoding": ("yuv422", "encoding must be one of"),
        "camera": ("left", "camera must be"),
        "sim.publish_ground_truth": (True, ""),  # replaced below: a dict has one value per name
        "sim.rate_hz": (-1.0, "sim.rate_hz must be in (0, 1000]"),
        "sim.size": ([161, 120], "sim.size must be"),
        "sim.scene": ("moon", "sim.scene 'moon' is unknown"),
        "sim.ev_low": (1.0, "must bracket the reference"),
        "sim.bits": (9, "sim.bits must be 8, 10, 12 or 16"),
    }
    del cases["sim.publish_ground_truth"]
    for name, (value, reason) in cases.items():
        got = validate_parameters({**defaults, name: value})
        assert got is not None and reason in got, (name, got)
    assert "does not fit 8-bit codes: use rgb8 or bgr8" in validate_parameters({**defaults, "encoding": "rgb16"})
    assert validate_parameters({**defaults, "sim.bits": 12, "encoding": "rgb16"}) is None
    # gige settings are checked when the gige backend is selected
    gige = {**defaults, "backend": "gige"}
    assert validate_parameters(gige) is None
    assert validate_parameters({**gige, "encoding": "rgb16"}) is None  # the container follows the pixel format
    gige_cases = {
        "gige.pixel_format": ("YUV422_8", "gige.pixel_format 'YUV422_8' is not supported"),
        "gige.exposure_control": ("trigger", "anchor camera only"),
        "gige.frame_rate_hz": (0.0, "gige.frame_rate_hz must be in (0, 1000]"),
        "gige.packet_size": (100, "gige.packet_size must be 0 (negotiate) or 576..16384"),
        "gige.latch": ("middle", "gige.latch must be one of exposure_start, exposure_end"),
        "gige.region": ([0, 0, 10], "gige.region must be [x, y, width, height]"),
    }
    for name, (value, reason) in gige_cases.items():
        got = validate_parameters({**gige, name: value})
        assert got is not None and reason in got, (name, got)
    assert "reference camera" in validate_parameters({**gige, "camera": "anchor", "gige.auto_exposure": True})
    assert validate_parameters({**gige, "camera": "anchor", "gige.exposure_control": "trigger"}) is None
    anchor_gt = {**defaults, "camera": "anchor", "sim.publish_ground_truth": True}
    assert "only available on the reference camera" in validate_parameters(anchor_gt)


# -- camera_node processes over DDS ------------------------------------------------------------
def _camera_args(camera: str, *extra: str) -> list[str]:
    return ["-r", f"__node:={camera}_camera", "--params-file", str(REPO / "config" / "sim_cameras.yaml"),
            "-p", "sim.size:=[160,120]", *extra]


class Stream:
    """Images and ExposureInfos of one camera, collected with their wall arrival times."""

    def __init__(self, node: Node, camera: str) -> None:
        self.images: list[Image] = []
        self.exposures: list[ExposureInfo] = []
        self.arrivals: list[float] = []
        node.create_subscription(Image, f"/dcs/{camera}/image_raw", self._image, image_qos(depth=50))
        node.create_subscription(ExposureInfo, f"/dcs/{camera}/exposure", self.exposures.append,
                                 image_qos(depth=50))

    def _image(self, msg: Image) -> None:
        self.images.append(msg)
        self.arrivals.append(time.monotonic())

    def rate_hz(self) -> float:
        return (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0])

    def pairs(self) -> list[tuple[Image, ExposureInfo]]:
        """(image, exposure) with identical headers; every received exposure must pair."""
        by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in self.images}
        pairs = []
        for info in self.exposures:
            image = by_stamp.get((info.header.stamp.sec, info.header.stamp.nanosec))
            if image is not None:
                assert image.header.frame_id == info.header.frame_id
                pairs.append((image, info))
        return pairs


def _stamp_ns(msg) -> int:  # noqa: ANN001
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def test_reference_and_anchor_processes_agree(ros_domain: int, tmp_path: Path) -> None:
    ref_args = _camera_args("reference", "-p", "sim.publish_ground_truth:=true",
                            "-p", "publish_camera_info:=true")
    anc_args = _camera_args("anchor")
    with node_process("hdr_dcs.nodes.camera_node", ref_args, tmp_path / "reference.log") as ref_proc, \
            node_process("hdr_dcs.nodes.camera_node", anc_args, tmp_path / "anchor.log") as anc_proc, \
            ros_harness(ros_domain) as ros:
        node = ros.node("probe")
        ref, anchor = Stream(node, "reference"), Stream(node, "anchor")
        truth: list[Image] = []
        infos: list[CameraInfo] = []
        node.create_subscription(Image, "/dcs/ground_truth/hdr", truth.append, image_qos(depth=50))
        node.create_subscription(CameraInfo, "/dcs/reference/camera_info", infos.append, latched_qos())
        started = wait_for(lambda: len(ref.images) > 3 and len(anchor.images) > 3, 30.0)
        assert started, ref_proc.output() + anc_proc.output()
        time.sleep(2.0)
        assert ref_proc.alive() and anc_proc.alive()
    codes = (ref_proc.proc.returncode, anc_proc.proc.returncode)
    assert codes == (0, 0), ref_proc.output() + anc_proc.output()

    # Reference: rgb8 160x120, role REFERENCE, constant exposure, ~30 Hz, ids count frames.
    pairs = ref.pairs()
    assert len(pairs) >= 40
    image, info = pairs[0]
    assert (image.encoding, image.width, image.height, image.header.frame_id) == \
        ("rgb8", 160, 120, "reference_optical_frame")
    assert {i.role for _, i in pairs} == {ExposureInfo.ROLE_REFERENCE}
    t_ref_us = info.exposure_time_us
    assert all(i.exposure_time_us == t_ref_us for _, i in pairs)
    assert ref.rate_hz() == pytest.approx(30.0, rel=0.25)
    s0, n0 = info.sequence_id, _stamp_ns(info)
    for _, i in pairs:  # sequence ids advance exactly with the frame grid (drops use ids up)
        assert round((_stamp_ns(i) - n0) * 30 / NS) == i.sequence_id - s0
    gaps = [b.sequence_id - a.sequence_id for (_, a), (_, b) in zip(pairs, pairs[1:], strict=False)]
    assert min(gaps) >= 1 and gaps.count(1) >= 0.8 * len(gaps)

    # Ground truth and CameraInfo carry the reference image's stamps.
    stamps = {_stamp_ns(m) for m in ref.images}
    assert truth and truth[0].encoding == "32FC3" and {_stamp_ns(m) for m in truth} <= stamps
    assert infos and _stamp_ns(infos[-1]) in stamps and infos[-1].k[0] == 160.0

    # Anchor: LOW/HIGH alternating with its ids, -2/+2 EV around the same reference exposure.
    pairs = anchor.pairs()
    assert len(pairs) >= 15
    assert anchor.rate_hz() == pytest.approx(12.0, rel=0.25)
    assert pairs[0][0].header.frame_id == "anchor_optical_frame"
    for (_, a), (_, b) in zip(pairs, pairs[1:], strict=False):
        assert b.sequence_id > a.sequence_id
        if b.sequence_id - a.sequence_id == 1:
            assert {a.role, b.role} == {ExposureInfo.ROLE_LOW, ExposureInfo.ROLE_HIGH}
    low = [i.exposure_time_us for _, i in pairs if i.role == ExposureInfo.ROLE_LOW]
    high = [i.exposure_time_us for _, i in pairs if i.role == ExposureInfo.ROLE_HIGH]
    assert low and high
    assert high[0] / low[0] == pytest.approx(2.0 ** 4, rel=1e-9)
    assert low[0] * 4 == pytest.approx(t_ref_us, rel=1e-9)  # both processes derived the same exposure
    for _, i in pairs:  # the anchor grid: 0.02 s + k / 12 s after the common epoch
        k = (_stamp_ns(i) - 20_000_000) * 12 / NS
        assert k == pytest.approx(round(k), abs=1e-4)
        assert (round(k) % 2 == 0) == (i.role == ExposureInfo.ROLE_LOW)


def test_bad_parameters_are_refused_and_the_node_keeps_running(ros_domain: int, tmp_path: Path) -> None:
    with node_process("hdr_dcs.nodes.camera_node", _camera_args("reference"), tmp_path / "cam.log") as proc, \
            ros_harness(ros_domain) as ros:
        node = ros.node("operator")
        stream = Stream(node, "reference")
        assert wait_for(lambda: len(stream.images) > 3, 30.0), proc.output()
        refused = {
            "sim.rate_hz": (-5.0, "sim.rate_hz must be in (0, 1000], got -5.0"),
            "backend": ("usb3", "backend 'usb3' is not available"),
            "encoding": ("rgb16", "encoding 'rgb16' does not fit 8-bit codes"),
            "sim.scene": ("moon", "sim.scene 'moon' is unknown"),
            "camera": ("anchor", "read-only"),
        }
        results = ros.set_parameters(node, "/reference_camera", {k: v for k, (v, _) in refused.items()})
        for (name, (_, reason)), result in zip(refused.items(), results, strict=True):
            assert not result.successful, name
            assert reason in result.reason, (name, result.reason)
        n = len(stream.images)
        assert wait_for(lambda: len(stream.images) >= n + 10, 5.0), proc.output()  # still streaming
        assert all(m.width == 160 for m in stream.images)

        # A valid change restarts capture with it: 15 Hz frames on the 15 Hz grid.
        (result,) = ros.set_parameters(node, "/reference_camera", {"sim.rate_hz": 15.0})
        assert result.successful, result.reason
        mark = time.monotonic()
        assert wait_for(lambda: sum(t > mark + 0.5 for t in stream.arrivals) >= 12, 10.0), proc.output()
        late = [m for m, t in zip(stream.images, stream.arrivals, strict=True) if t > mark + 0.5]
        for m in late:
            assert round(_stamp_ns(m) * 15 / NS) * NS / 15 == pytest.approx(_stamp_ns(m), abs=2)
        assert proc.alive()
    assert proc.proc.returncode == 0, proc.output()


def test_invalid_startup_parameters_exit_with_one_readable_line(ros_domain: int, tmp_path: Path) -> None:
    args = ["-p", "backend:=gige", "-p", "gige.exposure_control:=sequencer"]
    with node_process("hdr_dcs.nodes.camera_node", args, tmp_path / "cam.log") as proc:
        proc.proc.wait(timeout=30)
    assert proc.proc.returncode == 2
    lines = proc.output().strip().splitlines()
    assert lines == ["camera_node: camera: invalid parameters: gige.exposure_control sequencer / trigger "
                     "alternate exposures: anchor camera only"]
