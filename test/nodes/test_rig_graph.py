"""The simulated rig's graph as separate processes (camera_node x2, calibration_node,
reconstruction_node) over DDS, and the same graph in one process (nodes.runner).

Exactness: the reconstruction node is up before the cameras start, the cameras are stopped
first, and the node then flushes the frames in flight (idle_flush_s / RigGraph.drain), so
every reference frame it received comes out exactly once, stamped like it.
"""

from __future__ import annotations

import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from ros_helpers import REPO, node_process, ros_harness, wait_for
from sensor_msgs.msg import CameraInfo, Image

from hdr_dcs.io.calibration_yaml import save_calibration
from hdr_dcs.nodes.qos import diagnostics_qos, image_qos, latched_qos
from hdr_dcs.nodes.runner import RigGraph, parse_set
from hdr_dcs.sim.rig import RigConfig, calibrations

NS = 10**9
SIZE = (96, 64)
CONFIG = REPO / "config"


def _stamp(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def test_rig_as_separate_processes_outputs_every_reference_frame_once(ros_domain: int,
                                                                       tmp_path: Path) -> None:
    ref_cal, anchor_cal = calibrations(SIZE, RigConfig(baseline_px=(1.5, 0.0)))
    (tmp_path / "calibration").mkdir()
    # the files config/calibration.yaml names, for the small size
    save_calibration(tmp_path / "calibration" / "reference.yaml", ref_cal)
    save_calibration(tmp_path / "calibration" / "anchor.yaml", anchor_cal)
    size = f"sim.size:=[{SIZE[0]},{SIZE[1]}]"
    cameras = {c: ["-r", f"__node:={c}_camera", "--params-file", str(CONFIG / "sim_cameras.yaml"), "-p", size]
               for c in ("reference", "anchor")}
    calibration = ["--params-file", str(CONFIG / "calibration.yaml"), "-p", f"calibration_dir:={tmp_path}"]
    recon = ["--params-file", str(CONFIG / "reconstruction.yaml"), "-p", "idle_flush_s:=0.5",
             "-p", "diagnostics_period_s:=0.25", "-p", "queue_size:=1000"]
    with ros_harness(ros_domain) as ros, \
            node_process("hdr_dcs.nodes.reconstruction_node", recon, tmp_path / "recon.log") as recon_proc, \
            node_process("hdr_dcs.nodes.calibration_node", calibration, tmp_path / "cal.log") as cal_proc:
        node = ros.node("probe")
        refs: list[Image] = []
        hdr: list[Image] = []
        infos: list[CameraInfo] = []
        status: dict[str, DiagnosticStatus] = {}
        node.create_subscription(Image, "/dcs/reference/image_raw", refs.append, image_qos(depth=100))
        node.create_subscription(Image, "/dcs/hdr/image", hdr.append, image_qos(depth=100))
        node.create_subscription(CameraInfo, "/dcs/anchor/camera_info", infos.append, latched_qos())
        node.create_subscription(DiagnosticArray, "/diagnostics",
                                 lambda m: status.update({s.name: s for s in m.status}), diagnostics_qos())

        def recon_values() -> dict[str, str]:
            s = status.get("reconstruction: reconstruction")
            return {kv.key: kv.value for kv in s.values} if s else {}

        def up() -> bool:
            return bool(recon_values() and infos) or not (recon_proc.alive() and cal_proc.alive())

        ready = wait_for(up, 30.0)
        assert ready and recon_proc.alive() and cal_proc.alive(), recon_proc.output() + cal_proc.output()
        assert infos[-1].width == SIZE[0] and infos[-1].p[2] == ref_cal.p[0, 2] + 1.5

        camera_node = "hdr_dcs.nodes.camera_node"
        with node_process(camera_node, cameras["reference"], tmp_path / "ref.log") as ref_proc, \
                node_process(camera_node, cameras["anchor"], tmp_path / "anc.log") as anc_proc:
            assert wait_for(lambda: len(refs) > 0 or not ref_proc.alive(), 30.0), ref_proc.output()
            # Stream until the probe and the node have taken in 40 reference frames and the
            # node 6 anchor frames (discovery of freshly started processes takes a variable
            # time on a loaded machine, and each camera is discovered on its own).
            def streamed() -> bool:
                values = recon_values()
                return (len(refs) >= 40 and int(values.get("received: reference images", 0)) >= 40
                        and int(values.get("received: anchor images", 0)) >= 6)

            assert wait_for(lambda: streamed() or not (ref_proc.alive() and anc_proc.alive()), 60.0), \
                sorted(recon_values().items())
            assert ref_proc.alive() and anc_proc.alive(), ref_proc.output() + anc_proc.output()
        assert (ref_proc.proc.returncode, anc_proc.proc.returncode) == (0, 0)

        published = sorted({_stamp(m) for m in refs})
        assert len(published) >= 40

        # The cameras are gone: after idle_flush_s the node publishes what it still held.
        def finished() -> bool:
            values = recon_values()
            received = values.get("received: reference images")
            return received is not None and values.get("frames out") == received and len(hdr) >= int(received)

        assert wait_for(finished, 10.0), f"{len(hdr)} {len(published)} {sorted(recon_values().items())}"
        time.sleep(0.3)
        values = recon_values()
        assert recon_proc.alive()

    out = [_stamp(m) for m in hdr]
    assert len(out) == len(set(out)) and out == sorted(out)
    # Exactly the reference frames the node received, each once: its own count says every frame
    # it received came out, and where the probe and the node both listened (a process that
    # has just started may miss the first frames while DDS discovery completes), the stamps
    # are the same, up to the last frame the camera published.
    received = int(values["received: reference images"])
    assert len(out) == received >= 40
    start = max(out[0], published[0])
    assert [s for s in out if s >= start] == [s for s in published if s >= start]
    assert out[-1] == published[-1]
    assert not [k for k in values if k.startswith("dropped: reference")], values
    assert values["reference calibration"] == values["anchor calibration"] == "calibrated"
    assert values["registration builds"] == "1"
    assert all(m.header.frame_id == "reference_optical_frame" and m.encoding == "32FC3" for m in hdr)


def test_parse_set() -> None:
    assert parse_set(["reconstruction.backend=location", "reference_camera.sim.size=[96, 64]"]) == \
        {"reconstruction": ["backend:=location"], "reference_camera": ["sim.size:=[96, 64]"]}
    for bad in ("backend=classical", "reconstruction.backend", "camera.x=1"):
        try:
            parse_set([bad])
        except ValueError as exc:
            assert bad in str(exc)
        else:
            raise AssertionError(bad)


def test_rig_in_one_process_drains_exactly(ros_domain: int, tmp_path: Path) -> None:
    sim = [f"sim.size:=[{SIZE[0]}, {SIZE[1]}]", "sim.rate_hz:=30.0"]
    overrides = {"reference_camera": [*sim], "anchor_camera": [*sim],
                 # Exactness, not load shedding, is under test here: a queue that never overflows.
                 "reconstruction": ["idle_flush_s:=0.0", "queue_size:=1000"]}
    with RigGraph(overrides=overrides, workdir=tmp_path, domain_id=ros_domain) as graph:
        assert any("96x64" in note for note in graph.notes)  # calibrations written for the small size
        graph.start()
        mon = graph.monitor
        assert wait_for(lambda: mon.count("reference") > 0, 30.0)
        assert wait_for(lambda: graph.published("reference") >= 40, 60.0)
        graph.stop_cameras()
        assert graph.drain(timeout_s=10.0)
        assert wait_for(lambda: mon.count("hdr") >= graph.reconstruction.frames_out, 5.0)
        time.sleep(0.2)
        reports = graph.reports()
        refs, out = mon.stamps("reference"), mon.stamps("hdr")
        published = graph.published("reference")
    assert len(refs) == published >= 30
    assert sorted(out) == out and len(set(out)) == len(out)
    recon = reports["reconstruction"]
    missing = sorted(set(refs) - set(out))
    assert set(out) == set(refs), (f"missing {[refs.index(m) for m in missing]} of {len(refs)}; "
                                   f"{sorted(recon.values)}")
    assert recon.value("received: reference images") == str(published)
    assert not [k for k, _ in recon.values if k.startswith("dropped: reference")], recon.values
    assert recon.value("reference calibration") == "calibrated"
    assert set(reports) == {"reference_camera", "anchor_camera", "calibration", "reconstruction"}
