"""hdr_dcs: stable HDR video from a dual-camera rig (constant reference + alternating anchors).

Subpackages, imported one way only (left never imports right):

    core  <-  models  <-  sim / io / eval  <-  nodes, cli

``core`` is framework-free: numpy, OpenCV and torch only, never rclpy.
"""

__version__ = "0.1.0"
