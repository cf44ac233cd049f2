"""Live replay == offline: a simulated bag played with /clock into the reconstruction node
(use_sim_time, config/replay.yaml) gives the frames `hdr-dcs reconstruct` writes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from ros_helpers import REPO, node_process, ros_harness, wait_for
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image

from hdr_dcs.cli.main import main as hdr_dcs
from hdr_dcs.io.bag import BagReader, hdr_from_msg, stamp_ns_of
from hdr_dcs.nodes.bag_player import message_class
from hdr_dcs.nodes.qos import diagnostics_qos, image_qos

NS = 10**9
INPUTS = ["/clock", "/dcs/reference/image_raw", "/dcs/reference/exposure", "/dcs/anchor/image_raw",
          "/dcs/anchor/exposure", "/dcs/reference/camera_info", "/dcs/anchor/camera_info"]


def _stamp(msg) -> int:
    return msg.header.stamp.sec * NS + msg.header.stamp.nanosec


def test_message_class_imports_rclpy_types() -> None:
    assert message_class("sensor_msgs/msg/Image") is Image
    assert message_class("hdr_dcs_msgs/msg/ExposureInfo").__name__ == "ExposureInfo"
    with pytest.raises(ValueError, match="not available"):
        message_class("nope_msgs/msg/Nothing")


def test_live_replay_gives_the_offline_frames(ros_domain: int, tmp_path: Path) -> None:
    bag, offline_bag = tmp_path / "rig", tmp_path / "offline"
    assert hdr_dcs(["generate", str(bag), "--seconds", "1", "--size", "64x48", "--scene", "street"]) == 0
    assert hdr_dcs(["reconstruct", str(bag), str(offline_bag), "--backend", "classical"]) == 0
    with BagReader(offline_bag) as reader:
        offline = {stamp_ns_of(m.msg): hdr_from_msg(m.msg) for m in reader.messages(["/dcs/hdr/image"])}
        n_reference = reader.topics()["/dcs/reference/image_raw"][1]
    with BagReader(bag) as reader:
        start_ns, end_ns = reader.start_ns, reader.end_ns
    assert len(offline) == n_reference == 30

    recon_args = ["--params-file", str(REPO / "config" / "replay.yaml"), "-p", "diagnostics_period_s:=0.25"]
    player_args = ["-p", f"bag:={bag}", "-p", "clock:=true",
                   "-p", f"wait_for_subscribers:=[{', '.join(INPUTS)}]"]
    with node_process("hdr_dcs.nodes.reconstruction_node", recon_args, tmp_path / "recon.log") as recon, \
            ros_harness(ros_domain) as ros:
        node = ros.node("replay_probe")
        hdr: list[Image] = []
        clock: list[Clock] = []
        diagnostics: list[DiagnosticArray] = []
        node.create_subscription(Image, "/dcs/hdr/image", hdr.append, image_qos(depth=100))
        node.create_subscription(Clock, "/clock", clock.append, 100)
        node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, diagnostics_qos())
        assert wait_for(lambda: node.count_publishers("/dcs/hdr/image") > 0 or not recon.alive(), 30.0)
        assert recon.alive(), recon.output()
        with node_process("hdr_dcs.nodes.bag_player", player_args, tmp_path / "player.log") as player:
            player.proc.wait(timeout=30)
        assert player.proc.returncode == 0, player.output()
        assert "played" in player.output()
        # the last frames come out when the node sees no more input (idle_flush_s)
        assert wait_for(lambda: len(hdr) >= len(offline), 10.0), recon.output()
        time.sleep(0.3)
        assert recon.alive()
    assert recon.proc.returncode == 0, recon.output()

    # /clock follows the bag's log times (= the stamps here: 0 .. ~1 s), and the node runs on it:
    # its diagnostics are stamped in bag time, not wall time.
    ticks = [c.clock.sec * NS + c.clock.nanosec for c in clock]
    assert ticks == sorted(ticks) and all(start_ns <= t <= end_ns for t in ticks)
    stamps = [_stamp(d) for d in diagnostics if d.status[0].name.startswith("reconstruction")]
    assert stamps and all(start_ns < s <= end_ns for s in stamps), stamps

    live = [_stamp(m) for m in hdr]
    assert len(live) == len(set(live)) == len(offline)
    assert live == sorted(offline)
    worst = 0.0
    for msg in hdr:
        ref = offline[_stamp(msg)]
        got = hdr_from_msg(msg)
        assert msg.header.frame_id == "reference_optical_frame"
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)
        worst = max(worst, float(np.max(np.abs(got - ref))))
    assert worst == 0.0  # the same deterministic pipeline on the same inputs: bit-identical
