"""The simulated dual-camera rig: two simulated cameras, calibration, reconstruction.

    ros2 launch hdr_dcs sim_rig.launch.py [backend:=classical]

The same graph runs in one process with `hdr-dcs rig` (same parameter files).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("hdr_dcs"), "config")
    backend = LaunchConfiguration("backend")
    return LaunchDescription([
        DeclareLaunchArgument("backend", default_value="classical",
                              description="reconstruction backend: classical, location or eafnet"),
        Node(package="hdr_dcs", executable="camera_node", name="reference_camera",
             parameters=[os.path.join(config, "sim_cameras.yaml")]),
        Node(package="hdr_dcs", executable="camera_node", name="anchor_camera",
             parameters=[os.path.join(config, "sim_cameras.yaml")]),
        Node(package="hdr_dcs", executable="calibration_node", name="calibration",
             parameters=[os.path.join(config, "calibration.yaml")]),
        Node(package="hdr_dcs", executable="reconstruction_node", name="reconstruction",
             parameters=[os.path.join(config, "reconstruction.yaml"), {"backend": backend}]),
    ])
