"""The real dual-camera rig: reference and anchor cameras, calibration, reconstruction.

    ros2 launch hdr_dcs rig.launch.py [camera_backend:=gige] [backend:=classical]

Camera settings (serials or IP addresses, pixel format, exposure roles, EV offsets,
packet size) are in config/rig_cameras.yaml, the calibration files in
config/calibration.yaml (``hdr-dcs calibrate stereo`` writes them).
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
    camera_backend = LaunchConfiguration("camera_backend")
    cameras = os.path.join(config, "rig_cameras.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("backend", default_value="classical",
                              description="reconstruction backend: classical, location or eafnet"),
        DeclareLaunchArgument("camera_backend", default_value="gige",
                              description="camera driver backend of both camera nodes: gige or sim"),
        Node(package="hdr_dcs", executable="camera_node", name="reference_camera",
             parameters=[cameras, {"backend": camera_backend}]),
        Node(package="hdr_dcs", executable="camera_node", name="anchor_camera",
             parameters=[cameras, {"backend": camera_backend}]),
        Node(package="hdr_dcs", executable="calibration_node", name="calibration",
             parameters=[os.path.join(config, "calibration.yaml")]),
        Node(package="hdr_dcs", executable="reconstruction_node", name="reconstruction",
             parameters=[os.path.join(config, "reconstruction.yaml"), {"backend": backend}]),
    ])
