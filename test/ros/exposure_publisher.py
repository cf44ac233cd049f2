"""Child process of test_exposure_dds: publishes ExposureInfo messages, then exits.

Usage: python exposure_publisher.py TOPIC COUNT
Message i carries role i % 3, exposure_time_us 1000 + i, gain_db i / 4, sequence_id i,
stamp (i, 1000 * i) and frame_id "cam{i}".
"""

import sys
import time

import rclpy
from hdr_dcs_msgs.msg import ExposureInfo
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def main() -> None:
    topic, count = sys.argv[1], int(sys.argv[2])
    rclpy.init()
    node = rclpy.create_node("exposure_publisher")
    qos = QoSProfile(depth=count, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub = node.create_publisher(ExposureInfo, topic, qos)
    deadline = time.monotonic() + 20.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    for i in range(count):
        msg = ExposureInfo()
        msg.header.stamp.sec, msg.header.stamp.nanosec = i, 1000 * i
        msg.header.frame_id = f"cam{i}"
        msg.role = i % 3
        msg.exposure_time_us = 1000.0 + i
        msg.gain_db = i / 4
        msg.sequence_id = i
        pub.publish(msg)
    # Stay alive until the subscriber has had time to take everything.
    end = time.monotonic() + 3.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
