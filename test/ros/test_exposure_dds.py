"""ExposureInfo crosses a process boundary over real DDS with every field intact."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import rclpy

from hdr_dcs_msgs.msg import ExposureInfo  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

pytestmark = pytest.mark.ros

COUNT = 12

def test_constants_match_spec() -> None:
    assert (ExposureInfo.ROLE_REFERENCE, ExposureInfo.ROLE_LOW, ExposureInfo.ROLE_HIGH) == (0, 1, 2)
    fields = ExposureInfo.get_fields_and_field_types()
    assert fields == {"header": "std_msgs/Header", "role": "uint8", "exposure_time_us": "double",
                      "gain_db": "double", "sequence_id": "uint32"}

def test_exposure_info_between_processes(ros_domain: int) -> None:
    topic = f"/test_{ros_domain}/exposure"
    child = subprocess.Popen([sys.executable, str(Path(__file__).with_name("exposure_publisher.py")),
                              topic, str(COUNT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rclpy.init()
    received: list[ExposureInfo] = []
    try:
        node = rclpy.create_node("exposure_subscriber")
        qos = QoSProfile(depth=COUNT, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(ExposureInfo, topic, received.append, qos)
        deadline = time.monotonic() + 30.0
        while len(received) < COUNT and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        node.destroy_node()
    finally:
        rclpy.shutdown()
        out, err = child.communicate(timeout=30)
    assert child.returncode == 0, err.decode()
    assert len(received) == COUNT
    for i, msg in enumerate(received):
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (i, 1000 * i)
        assert msg.header.frame_id == f"cam{i}"
        assert msg.role == i % 3
        assert msg.exposure_time_us == 1000.0 + i
        assert msg.gain_db == i / 4
        assert msg.sequence_id == i
