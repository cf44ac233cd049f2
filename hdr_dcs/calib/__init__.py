"""Calibration of the rig from recorded images: stereo geometry and camera response.

Framework-free (never imports rclpy); the ``hdr-dcs calibrate`` subcommands are thin
shells around these modules.
"""
