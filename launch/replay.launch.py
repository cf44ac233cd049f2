"""Reconstruction of a recorded rig: play the bag with the clock, e.g.

    ros2 launch hdr_dcs replay.launch.py
    ros2 bag play rig_recording --clock

(or `bag_player --ros-args -p bag:=rig_recording -p clock:=true` where ros2 bag is not
installed). The reconstruction node runs on the bag's time (use_sim_time).
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
        Node(package="hdr_dcs", executable="reconstruction_node", name="reconstruction",
             parameters=[os.path.join(config, "replay.yaml"), {"backend": backend}]),
    ])
