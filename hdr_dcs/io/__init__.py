"""Framework-free I/O: sensor_msgs/Image <-> numpy (``image_msg``), EXR files (``exr``).

Nothing here imports rclpy: the image functions are duck-typed so they work with rclpy
messages and with ``rosbags`` message objects alike. Import the submodules directly
(``from hdr_dcs.io.image_msg import image_to_numpy``); this package imports neither, so
using one does not load the other's dependencies (OpenEXR).
"""
