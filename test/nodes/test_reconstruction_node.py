"""ReconstructionNode: parameter validation, and a node process fed a simulated rig over DDS."""

from __future__ import annotations

import array
import math
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from hdr_dcs_msgs.msg import ExposureInfo
from rclpy.node import Node
from ros_helpers import REPO, node_process, ros_harness, wait_for
from sensor_msgs.msg import CameraInfo, Image

from hdr_dcs.core.photometry import from_unit
from hdr_dcs.core.types import Frame
from hdr_dcs.io.bag import hdr_from_msg
from hdr_dcs.io.image_msg import numpy_to_image_fields
from hdr_dcs.nodes.calibration_node import make_camera_info
from hdr_dcs.nodes.qos import diagnostics_qos, image_qos, latched_qos
from hdr_dcs.nodes.reconstruction_node import PARAMETERS, validate_parameters
from hdr_dcs.sim.rig import RigConfig, simulate
from hdr_dcs.sim.scenes import make_scene

NS = 10**9
EPOCH_NS = 1000 * NS          # stamps of the simulated stream start here
SIZE = (64, 48)
MODULE = "hdr_dcs.nodes.reconstruction_node"


# -- no ROS ----------------------------------------------------------------------------------
def test_parameter_validation_reasons() -> None:
    defaults = {name: spec[0] for name, spec in PARAMETERS.items()}
    assert validate_parameters(defaults) is None
    cases = {
        "backend": ("magic", "backend 'magic' is unknown"),
        "fallback_backend": ("magic", "fallback_backend 'magic' is unknown"),
        "device": ("toaster", "device 'toaster' is not a torch device"),
        "weights": ("/nonexistent/w.pt", "weights file '/nonexistent/w.pt' not found"),
        "grouper.reorder_delay_s": (-0.1, "grouper.reorder_delay_s must be in [0, 10] s"),
        "grouper.max_anchor_age_s": (math.inf, "grouper.max_anchor_age_s must be in [0, 10] s"),
        "grouper.clock_offset_s": (math.nan, "grouper.clock_offset_s must be finite"),
        "queue_size": (0, "queue_size must be in [1, 10000]"),
        "idle_flush_s": (-1.0, "idle_flush_s must be >= 0"),
        "max_code": (70000, "max_code must be in [0, 65535]"),
    }
    for name, (value, reason) in cases.items():
        got = validate_parameters({**defaults, name: value})
        assert got is not None and reason in got, (name, got)
    for name, value in {"backend": "location", "fallback_backend": "", "device": "cuda:1"}.items():
        assert validate_parameters({**defaults, name: value}) is None, name


def test_config_files_set_only_declared_parameters() -> None:
    import yaml

    def flatten(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flatten(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    for name in ("reconstruction.yaml", "replay.yaml"):
        doc = yaml.safe_load((REPO / "config" / name).read_text())
        params = flatten(doc["reconstruction"]["ros__parameters"])
        unknown = set(params) - set(PARAMETERS) - {"use_sim_time"}
        assert not unknown, (name, unknown)
        values = {n: params.get(n, spec[0]) for n, spec in PARAMETERS.items()}
        assert validate_parameters(values) is None, name
    assert flatten(yaml.safe_load((REPO / "config" / "replay.yaml").read_text()))[
        "reconstruction.ros__parameters.use_sim_time"] is True


def test_queue_drops_the_oldest_image_and_keeps_the_order(ros_domain: int) -> None:
    """queue_size 2, worker blocked: a third waiting image pushes out the oldest one; its
    ExposureInfo stays (the grouper will drop that frame as "missing image")."""
    import threading

    from rclpy.parameter import Parameter

    from hdr_dcs.nodes.reconstruction_node import ReconstructionNode

    with ros_harness(ros_domain) as ros:
        node = ReconstructionNode(context=ros.context, parameter_overrides=[Parameter("queue_size", value=2)])
        handled: list[tuple[str, str, int]] = []
        started, release = threading.Event(), threading.Event()

        def handle(item) -> None:  # the node's _Item
            handled.append((item.kind, item.camera, _stamp(item.msg)))
            started.set()
            release.wait(5.0)

        node._handle = handle  # the worker calls this for every item
        try:
            def send(kind: str, camera: str, stamp: int) -> None:
                msg = Image(header=_header(stamp, "")) if kind == "image" else \
                    ExposureInfo(header=_header(stamp, ""))
                if kind == "image":
                    node._on_image(camera, msg)
                else:
                    node._enqueue(kind, camera, msg)

            send("image", "reference", 1)
            assert started.wait(5.0)                       # the worker is busy with it
            for kind, camera, stamp in [("exposure", "reference", 1), ("image", "anchor", 2),
                                        ("exposure", "anchor", 2), ("image", "reference", 3),
                                        ("exposure", "reference", 3), ("image", "reference", 4)]:
                send(kind, camera, stamp)
            release.set()
            assert wait_for(lambda: len(handled) == 6, 5.0), handled
            assert handled == [("image", "reference", 1), ("exposure", "reference", 1),
                               ("exposure", "anchor", 2),           # its image was pushed out
                               ("image", "reference", 3), ("exposure", "reference", 3),
                               ("image", "reference", 4)]
            assert node.diag.counts("dropped") == {"anchor: queue overflow": 1}
            assert node.diag.report().level == 1  # WARN while it overflows
        finally:
            release.set()
            node.destroy_node()


# -- a node process fed over DDS -------------------------------------------------------------
@pytest.fixture(scope="module")
def rig():
    scene = make_scene("street", None, SIZE, 2.0)
    return simulate(scene.render_exposure, 45, RigConfig(baseline_px=(1.5, 0.0)))


def _header(stamp_ns: int, frame_id: str):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    sec, nanosec = divmod(stamp_ns, NS)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _stamp(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def _image(frame: Frame, stamp_ns: int, *, step_delta: int = 0, encoding: str = "rgb8") -> Image:
    fields = numpy_to_image_fields(from_unit(frame.pixels, np.uint8), "rgb8")
    msg = Image(header=_header(stamp_ns, frame.frame_id), height=fields["height"], width=fields["width"],
                encoding=encoding, is_bigendian=0, step=fields["step"] + step_delta)
    msg.data = array.array("B", fields["data"])
    return msg


def _exposure(frame: Frame, stamp_ns: int, exposure_us: float | None = None) -> ExposureInfo:
    us = frame.exposure.exposure_time_s * 1e6 if exposure_us is None else exposure_us
    return ExposureInfo(header=_header(stamp_ns, frame.frame_id), role=int(frame.role), exposure_time_us=us,
                        gain_db=frame.exposure.gain_db, sequence_id=frame.sequence_id)


class RigPublisher:
    """Publishes a simulated rig's frames (image, then ExposureInfo) and CameraInfos."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.images = {c: node.create_publisher(Image, f"/dcs/{c}/image_raw", image_qos(depth=100))
                       for c in ("reference", "anchor")}
        self.exposures = {c: node.create_publisher(ExposureInfo, f"/dcs/{c}/exposure", image_qos(depth=100))
                          for c in ("reference", "anchor")}
        self.infos = {c: node.create_publisher(CameraInfo, f"/dcs/{c}/camera_info", latched_qos())
                      for c in ("reference", "anchor")}

    def matched(self) -> bool:
        pubs = [*self.images.values(), *self.exposures.values(), *self.infos.values()]
        return all(p.get_subscription_count() > 0 for p in pubs)

    def publish_infos(self, rig) -> None:
        ref = make_camera_info(rig.reference_calibration, "reference_optical_frame")
        self.infos["reference"].publish(ref)
        self.infos["anchor"].publish(make_camera_info(rig.anchor_calibration, "anchor_optical_frame"))

    def publish(self, events: list, speed: float = 3.0) -> None:
        """``events``: (camera, image msg or None, exposure msg or None, stamp) in stamp order,
        published at ``speed`` times their stamp pace."""
        t0, s0 = time.monotonic(), events[0][3]
        for camera, image, exposure, stamp in events:
            delay = t0 + (stamp - s0) / NS / speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if image is not None:
                self.images[camera].publish(image)
            if exposure is not None:
                self.exposures[camera].publish(exposure)


class DiagnosticsProbe:
    """The latest status of the reconstruction node on /diagnostics."""

    def __init__(self, node: Node, prefix: str = "reconstruction") -> None:
        self.latest: DiagnosticStatus | None = None
        self.prefix = prefix
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on, diagnostics_qos())

    def _on(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(self.prefix):
                self.latest = status

    def values(self) -> dict[str, str]:
        return {kv.key: kv.value for kv in self.latest.values} if self.latest else {}

    def value(self, key: str, default: str = "0") -> str:
        return self.values().get(key, default)


class Outputs:
    def __init__(self, node: Node) -> None:
        self.hdr: list[Image] = []
        self.tonemapped: list[Image] = []
        node.create_subscription(Image, "/dcs/hdr/image", self.hdr.append, image_qos(depth=200))
        node.create_subscription(Image, "/dcs/hdr/tonemapped", self.tonemapped.append, image_qos(depth=200))

    def stamps(self) -> list[int]:
        return [_stamp(m) for m in self.hdr]


def _broken_location(tmp_path: Path) -> list[str]:
    """Arguments selecting a learned backend that cannot load: a weights file that is not one."""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    return ["-p", "backend:=location", "-p", f"weights:={junk}"]


def _events(rig, corrupt: dict[int, str]) -> tuple[list, set[int]]:
    """Publishing events in stamp order; ``corrupt``: reference index -> what to break.
    Returns the events and the stamps of the reference frames that must come out."""
    frames = [("reference", i, f) for i, f in enumerate(rig.reference)] + \
             [("anchor", i, f) for i, f in enumerate(rig.anchors)]
    frames.sort(key=lambda e: e[2].stamp_ns)
    events, expected = [], set()
    for camera, i, f in frames:
        stamp = EPOCH_NS + f.stamp_ns
        image, exposure = _image(f, stamp), _exposure(f, stamp)
        what = corrupt.get(i) if camera == "reference" else None
        if what == "step":
            image = _image(f, stamp, step_delta=-1)
        elif what == "encoding":
            image = _image(f, stamp, encoding="yuv422_weird")
        elif what == "nan":
            exposure = _exposure(f, stamp, exposure_us=math.nan)
        elif camera == "reference":
            expected.add(stamp)
        events.append((camera, image, exposure, stamp))
    return events, expected


def test_every_reference_frame_comes_out_once_despite_bad_inputs(ros_domain: int, tmp_path: Path,
                                                                  rig) -> None:
    corrupt = {5: "step", 9: "encoding", 13: "nan"}
    events, expected = _events(rig, corrupt)
    args = ["-p", "idle_flush_s:=0.0", "-p", "diagnostics_period_s:=0.2", "-p", "queue_size:=100",
            *_broken_location(tmp_path)]
    with node_process(MODULE, args, tmp_path / "recon.log") as proc, ros_harness(ros_domain) as ros:
        node = ros.node("rig_feeder")
        feeder, outputs, diag = RigPublisher(node), Outputs(node), DiagnosticsProbe(node)
        assert wait_for(lambda: (feeder.matched() and diag.latest is not None) or not proc.alive(), 30.0)
        assert proc.alive(), proc.output()
        time.sleep(0.3)

        # The learned backend cannot load: loud ERROR, the classical fallback keeps the video flowing.
        assert diag.latest.level == DiagnosticStatus.ERROR
        assert "backend 'location' failed to load: checkpoint" in diag.latest.message
        assert "running fallback 'classical'" in diag.latest.message
        assert diag.value("backend") == "classical (fallback for location)"

        feeder.publish_infos(rig)
        feeder.publish(events)
        # the node keeps producing after the bad inputs (frames 5, 9, 13 of 45)
        assert wait_for(lambda: len(outputs.hdr) >= len(expected) - 8, 20.0), proc.output()
        want = {
            "dropped: reference: malformed image": "1",
            "dropped: reference: unsupported encoding 'yuv422_weird'": "1",
            "dropped: reference: bad exposure": "1",
            "dropped: reference: missing image": "2",
        }
        assert wait_for(lambda: all(diag.value(k) == v for k, v in want.items()), 10.0), diag.values()
        values = diag.values()
        assert {k for k in values if k.startswith("dropped:")} == set(want), values
        assert values["registration builds"] == "1" and values["registration rebuilds"] == "0"
        assert values["reference calibration"] == "calibrated"
        for key in ("receive to publish p50 (ms)", "processing p90 (ms)", "queue depth", "output rate (Hz)",
                    "reference input rate (Hz)", "anchor pair age p50 (ms)", "backend latency (frames)"):
            assert key in values, key

        # Bad parameter values are refused with a reason, and the node keeps running.
        refused = {
            "queue_size": (0, "queue_size must be in [1, 10000], got 0"),
            "backend": ("magic", "backend 'magic' is unknown"),
            "grouper.reorder_delay_s": (-1.0, "grouper.reorder_delay_s must be in [0, 10] s, got -1.0"),
            "device": ("toaster", "device 'toaster' is not a torch device"),
            "input_reliable": (False, "read-only"),
        }
        results = ros.set_parameters(node, "/reconstruction", {k: v for k, (v, _) in refused.items()})
        for (name, (_, reason)), result in zip(refused.items(), results, strict=True):
            assert not result.successful, name
            assert reason in result.reason, (name, result.reason)
        assert proc.alive()

        # SIGINT: the node publishes the frames it still held, then exits 0.
        n = len(outputs.hdr)
        assert n < len(expected)  # some frames were still buffered (idle flush is off) ...
        assert proc.stop() == 0, proc.output()
        assert wait_for(lambda: len(outputs.hdr) >= len(expected), 5.0), proc.output()
        time.sleep(0.2)
    stamps = outputs.stamps()
    assert len(stamps) == len(set(stamps))  # ... and each frame comes out exactly once
    assert set(stamps) == expected, (sorted(expected - set(stamps)), sorted(set(stamps) - expected))
    assert stamps == sorted(stamps)
    assert [_stamp(m) for m in outputs.tonemapped] == stamps
    first = outputs.hdr[0]
    assert (first.encoding, first.width, first.height, first.header.frame_id) == \
        ("32FC3", SIZE[0], SIZE[1], "reference_optical_frame")
    assert outputs.tonemapped[0].encoding == "bgr8"
    hdr = hdr_from_msg(first)
    assert hdr.dtype == np.float32 and np.all(hdr >= 0) and hdr.max() > 0


def test_without_a_backend_frames_are_dropped_then_a_working_backend_recovers(ros_domain: int, tmp_path: Path,
                                                                             rig) -> None:
    events, _ = _events(rig, {})
    args = [*_broken_location(tmp_path), "-p", "fallback_backend:=''", "-p", "diagnostics_period_s:=0.2",
            "-p", "idle_flush_s:=0.3", "-p", "queue_size:=100"]
    with node_process(MODULE, args, tmp_path / "recon.log") as proc, ros_harness(ros_domain) as ros:
        node = ros.node("rig_feeder")
        feeder, outputs, diag = RigPublisher(node), Outputs(node), DiagnosticsProbe(node)
        assert wait_for(lambda: (feeder.matched() and diag.latest is not None) or not proc.alive(), 30.0)
        assert proc.alive(), proc.output()
        time.sleep(0.3)
        feeder.publish_infos(rig)
        feeder.publish(events[:40], speed=4.0)
        sent = sum(1 for camera, *_ in events[:40] if camera == "reference")
        key = "dropped: reference: backend unavailable"
        assert wait_for(lambda: diag.value(key) == str(sent), 10.0), f"{sent} {sorted(diag.values().items())}"
        assert diag.latest.level == DiagnosticStatus.ERROR
        assert "dropping every frame (backend unavailable)" in diag.latest.message
        assert diag.value("backend") == "none"
        assert outputs.hdr == [] and proc.alive()

        # Switching to a backend that loads rebuilds the pipeline; the video starts again.
        (result,) = ros.set_parameters(node, "/reconstruction", {"backend": "classical"})
        assert result.successful, result.reason
        assert wait_for(lambda: diag.value("backend") == "classical", 5.0), diag.values()
        feeder.publish(events[40:], speed=4.0)
        later = {stamp for camera, _, _, stamp in events[40:] if camera == "reference"}
        assert wait_for(lambda: len(outputs.hdr) >= len(later) - 1, 10.0), (diag.values(), proc.output())
        assert diag.latest.level == DiagnosticStatus.OK, diag.latest.message
        assert diag.value("pipeline restarts: reconfigured") == "1"
        stamps = outputs.stamps()
        assert len(stamps) == len(set(stamps)) and set(stamps) <= later
    assert proc.proc.returncode == 0, proc.output()


def test_a_bad_response_file_is_reported_and_the_node_keeps_running(ros_domain: int, tmp_path: Path,
                                                                    rig) -> None:
    """Missing, then corrupt response_file: ERROR on /diagnostics naming the file, frames still
    reconstructed (with gamma 2.2); a good file recovers; a bad URL scheme is refused."""
    from rclpy.parameter import Parameter

    from hdr_dcs.core.photometry import DEFAULT_RESPONSE, TabulatedResponse
    from hdr_dcs.io.response_yaml import save_response
    from hdr_dcs.nodes.reconstruction_node import ReconstructionNode

    missing = tmp_path / "missing.yaml"
    events, _ = _events(rig, {})
    with ros_harness(ros_domain) as ros:
        feeder_node = ros.node("rig_feeder")
        feeder, outputs, diag = RigPublisher(feeder_node), Outputs(feeder_node), DiagnosticsProbe(feeder_node)
        node = ros.add(ReconstructionNode(context=ros.context, parameter_overrides=[
            Parameter("response_file", value=str(missing)), Parameter("diagnostics_period_s", value=0.2),
            Parameter("idle_flush_s", value=0.3), Parameter("queue_size", value=100)]))
        assert wait_for(lambda: diag.latest is not None and feeder.matched(), 15.0)
        assert diag.latest.level == DiagnosticStatus.ERROR
        assert diag.latest.message == (f"response_file '{missing}' unusable: {missing}: response file not "
                                       "found; using gamma 2.2 (default)")
        assert diag.value("response") == "gamma 2.2 (default) (response_file failed)"
        assert node.response == DEFAULT_RESPONSE

        feeder.publish_infos(rig)
        feeder.publish(events[:20], speed=4.0)          # the video keeps flowing
        sent = sum(1 for camera, *_ in events[:20] if camera == "reference")
        assert wait_for(lambda: len(outputs.hdr) >= sent - 1, 10.0), diag.values()

        corrupt = tmp_path / "corrupt.yaml"
        corrupt.write_text("inverse_samples: [0.0, 0.5\n")
        (result,) = ros.set_parameters(feeder_node, "/reconstruction", {"response_file": str(corrupt)})
        assert result.successful, result.reason
        assert wait_for(lambda: "YAML syntax error" in node.diag.report().message, 5.0)
        assert node.diag.report().level == 2         # ERROR

        good = tmp_path / "good.yaml"
        curve = TabulatedResponse.from_array(np.linspace(0.0, 1.0, 256) ** 1.8)
        save_response(good, curve)
        (result,) = ros.set_parameters(feeder_node, "/reconstruction", {"response_file": str(good)})
        assert result.successful, result.reason
        assert wait_for(lambda: node.response == curve, 5.0)
        report = node.diag.report()
        assert report.value("response") == f"tabulated (256 samples), file {good}"
        assert report.level < 2 and "response" not in report.message, report.message
        assert wait_for(lambda: diag.value("response") == f"tabulated (256 samples), file {good}", 5.0)

        (result,) = ros.set_parameters(feeder_node, "/reconstruction", {"response_file": "http://x/r.yaml"})
        assert not result.successful
        assert "response_file: http://x/r.yaml: unsupported URL scheme" in result.reason
        assert node.response == curve
