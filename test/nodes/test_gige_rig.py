"""The rig graph on two real GigE Vision cameras: Aravis' fake camera at 127.0.0.1
(reference) and 127.0.0.2 (anchor), driven by camera_node processes configured exactly as
launch/rig.launch.py configures them (config/rig_cameras.yaml, backend gige), with the
calibration and reconstruction nodes, over DDS. Nothing is mocked; only the device
selection, region and pixel format are overridden for the loopback cameras, and the
calibration node serves identity calibrations at their size (the rig's calibration files
describe other cameras)."""

from __future__ import annotations

import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from fake_gige import expected_scale, fake_camera, ramp_scale
from hdr_dcs_msgs.msg import ExposureInfo
from ros_helpers import REPO, node_process, ros_harness, wait_for
from sensor_msgs.msg import Image

from hdr_dcs.io.image_msg import image_to_numpy
from hdr_dcs.nodes.qos import diagnostics_qos, image_qos

CONFIG = REPO / "config"
REFERENCE, ANCHOR = "127.0.0.1", "127.0.0.2"
LOW, HIGH = 1, 2  # ExposureInfo roles


def _camera_args(camera: str, address: str, *extra: str) -> list[str]:
    """What rig.launch.py passes (parameter file + backend), plus the loopback device."""
    return ["-r", f"__node:={camera}_camera", "--params-file", str(CONFIG / "rig_cameras.yaml"),
            "-p", "backend:=gige", "-p", f"gige.device:={address}", "-p", "gige.region:=[0,0,160,120]",
            "-p", "gige.pixel_format:=Mono8", *extra]


def _stamp(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


class Probe:
    """Everything the test listens to."""

    def __init__(self, node) -> None:
        self.hdr: list[Image] = []
        self.anchor_images: dict[int, Image] = {}
        self.anchor_exposures: list[ExposureInfo] = []
        self.reference_exposures: list[ExposureInfo] = []
        self.status: dict[str, DiagnosticStatus] = {}
        self.history: list[tuple[str, int, str]] = []
        node.create_subscription(Image, "/dcs/hdr/image", self.hdr.append, image_qos(depth=50))
        node.create_subscription(Image, "/dcs/anchor/image_raw",
                                 lambda m: self.anchor_images.__setitem__(_stamp(m.header), m), image_qos(depth=50))
        node.create_subscription(ExposureInfo, "/dcs/anchor/exposure", self.anchor_exposures.append,
                                 image_qos(depth=50))
        node.create_subscription(ExposureInfo, "/dcs/reference/exposure", self.reference_exposures.append,
                                 image_qos(depth=50))
        node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, diagnostics_qos())

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for s in msg.status:
            self.status[s.name] = s
            self.history.append((s.name, s.level[0], s.message))

    def values(self, name: str) -> dict[str, str]:
        s = self.status.get(name)
        return {kv.key: kv.value for kv in s.values} if s else {}


def test_rig_launch_configuration_on_two_gige_cameras(ros_domain: int, tmp_path: Path) -> None:
    calibration = ["--params-file", str(CONFIG / "calibration.yaml"), "-p", "reference_calibration:=''",
                   "-p", "anchor_calibration:=''", "-p", "reference_size:=[160,120]", "-p", "anchor_size:=[160,120]"]
    recon = ["--params-file", str(CONFIG / "reconstruction.yaml"), "-p", "diagnostics_period_s:=0.5"]
    with fake_camera(REFERENCE, "GVREF", log=tmp_path / "fake_ref.log"), \
            fake_camera(ANCHOR, "GVANC", log=tmp_path / "fake_anc.log"), \
            ros_harness(ros_domain) as ros, \
            node_process("hdr_dcs.nodes.calibration_node", calibration, tmp_path / "cal.log"), \
            node_process("hdr_dcs.nodes.reconstruction_node", recon, tmp_path / "recon.log") as recon_proc, \
            node_process("hdr_dcs.nodes.camera_node", _camera_args("reference", REFERENCE),
                         tmp_path / "ref.log") as ref_proc, \
            node_process("hdr_dcs.nodes.camera_node", _camera_args("anchor", ANCHOR),
                         tmp_path / "anc.log") as anc_proc:
        probe = Probe(ros.node("probe"))
        procs = (recon_proc, ref_proc, anc_proc)
        ok = wait_for(lambda: len(probe.hdr) >= 20 and len(probe.anchor_exposures) >= 12
                      or not all(p.alive() for p in procs), 90.0)
        assert ok and all(p.alive() for p in procs), \
            f"{len(probe.hdr)} HDR, {len(probe.anchor_exposures)} anchors\n" + \
            "\n".join(p.output()[-2000:] for p in procs)
        time.sleep(1.2)  # one more diagnostics period of every node
        ref_values, anc_values = probe.values("reference_camera: camera"), probe.values("anchor_camera: camera")
        recon_values = probe.values("reconstruction: reconstruction")

    # HDR frames: 32FC3 in the reference grid, stamped like reference frames
    reference_stamps = {_stamp(m.header) for m in probe.reference_exposures}
    assert all(m.encoding == "32FC3" and (m.width, m.height) == (160, 120) for m in probe.hdr)
    assert sum(_stamp(m.header) in reference_stamps for m in probe.hdr) >= 15

    # the anchor alternates low / high around the reference's 10 ms by -2 / +2 EV, as read back
    roles = [m.role for m in probe.anchor_exposures]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)) and set(roles) == {LOW, HIGH}, roles
    for m in probe.anchor_exposures:
        assert m.exposure_time_us == (2500.0 if m.role == LOW else 40000.0)
    # ... and the frames are as bright as the exposures they are published with
    checked = 0
    for m in probe.anchor_exposures:
        image = probe.anchor_images.get(_stamp(m.header))
        if image is not None:
            assert image.encoding == "mono8"
            scale = ramp_scale(image_to_numpy(image))
            assert abs(scale - expected_scale(m.exposure_time_us)) < 0.02, (m.role, scale)
            checked += 1
    assert checked >= 10
    assert all(m.role == 0 and m.exposure_time_us == 10000.0 for m in probe.reference_exposures)

    # diagnostics say how each camera is driven and stamped, and that nothing was lost
    assert ref_values["exposure control"] == "free_run" and anc_values["exposure control"] == "trigger"
    assert ref_values["stamps"] == anc_values["stamps"] == "host (camera clock mapped)"
    assert float(anc_values["following reference exposure (us)"]) == 10000.0
    assert "GVANC" in anc_values["backend"]
    assert int(recon_values["frames out"]) >= 20


def test_unplugged_anchor_is_reported_and_the_rig_recovers(ros_domain: int, tmp_path: Path) -> None:
    with fake_camera(ANCHOR, "GVANC", log=tmp_path / "fake.log") as fake, ros_harness(ros_domain) as ros, \
            node_process("hdr_dcs.nodes.camera_node",
                         _camera_args("anchor", ANCHOR, "-p", "gige.timeout_s:=1.0", "-p", "follow_reference:=false"),
                         tmp_path / "anc.log") as proc:
        probe = Probe(ros.node("probe"))
        assert wait_for(lambda: len(probe.anchor_exposures) >= 6 or not proc.alive(), 30.0), proc.output()
        fake.stop()
        name = "anchor_camera: camera"

        def reported_error() -> bool:
            s = probe.status.get(name)
            return s is not None and s.level[0] == 2 and ("camera lost" in s.message or "cannot open" in s.message)

        assert wait_for(reported_error, 20.0), probe.history[-5:]
        assert proc.alive()
        before = len(probe.anchor_exposures)
        fake.start()
        assert wait_for(lambda: len(probe.anchor_exposures) >= before + 6, 30.0), proc.output()[-2000:]
        assert wait_for(lambda: probe.status[name].level[0] == 0, 10.0), probe.history[-5:]
        assert proc.alive()
        roles = [m.role for m in probe.anchor_exposures[before:]]
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
        lost = [m for n, level, m in probe.history if n == name and level == 2]
    assert any("camera lost" in m for m in lost), lost


def test_lossy_stream_is_reported_and_nothing_crashes(ros_domain: int, tmp_path: Path) -> None:
    # 5 % of stream packets lost on purpose (-r 50), resends off: whole frames are lost
    args = _camera_args("reference", REFERENCE, "-p", "gige.packet_resend:=false", "-p",
                        "gige.region:=[0,0,320,240]", "-p", "gige.packet_size:=1400")
    with fake_camera(REFERENCE, "GVLOSSY", lost_per_thousand=50, log=tmp_path / "fake.log"), \
            ros_harness(ros_domain) as ros, \
            node_process("hdr_dcs.nodes.camera_node", args, tmp_path / "ref.log") as proc:
        probe = Probe(ros.node("probe"))
        name = "reference_camera: camera"

        def dropped() -> int:
            return sum(int(v) for k, v in probe.values(name).items() if k.startswith("dropped:"))

        assert wait_for(lambda: dropped() >= 3 and len(probe.reference_exposures) >= 20 or not proc.alive(), 40.0), \
            (probe.values(name), proc.output()[-2000:])
        assert proc.alive()
        values = probe.values(name)
    ids = [m.sequence_id for m in probe.reference_exposures]
    assert ids == sorted(ids) and ids[-1] - ids[0] + 1 > len(ids)  # lost frames leave gaps
    assert int(values["stream missing packets"]) > 0
