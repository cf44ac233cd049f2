"""The project's QoS profiles, so every node agrees on compatibility.

DDS matches a publisher and a subscription only when the publisher offers at least what
the subscription requests. Hence:

- images, exposures, HDR output: publishers are RELIABLE (``image_qos()``), which both
  RELIABLE and BEST_EFFORT subscriptions accept; a subscription picks
  ``image_qos(reliable=False)`` (sensor-data style: never blocks, drops under load) or
  ``image_qos()`` (recording, tests).
- CameraInfo: TRANSIENT_LOCAL + RELIABLE, depth 1 (``latched_qos()``), both from the
  calibration node (latched once) and from a camera node that publishes it with every
  image. A TRANSIENT_LOCAL subscription gets the last message on joining; it is
  compatible with both sources, so subscribe to camera_info with ``latched_qos()`` too.
- /diagnostics: ``diagnostics_qos()``, RELIABLE + VOLATILE, as diagnostic_updater and the
  diagnostic aggregator use.
"""

from __future__ import annotations

import os

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

__all__ = ["diagnostics_qos", "image_qos", "latched_qos"]


def image_qos(reliable: bool = True, depth: int = 10) -> QoSProfile:
    """Camera-stream QoS: KEEP_LAST ``depth``, VOLATILE, RELIABLE or BEST_EFFORT.

    Publishers use the default (reliable) so that every subscription matches;
    subscriptions choose ``reliable=False`` to drop rather than queue under load.
    """
    if depth < 1:
        raise ValueError(f"QoS depth must be at least 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos() -> QoSProfile:
    """'Latched' QoS (TRANSIENT_LOCAL, RELIABLE, KEEP_LAST 1): late subscribers get the last message."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def diagnostics_qos() -> QoSProfile:
    """QoS of /diagnostics: RELIABLE, VOLATILE, KEEP_LAST 10."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=10,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def prefer_async_publishing() -> None:
    """Fast DDS: publish from its own thread (``RMW_FASTRTPS_PUBLICATION_MODE=ASYNCHRONOUS``)
    unless the environment says otherwise. Call before ``rclpy.init``.

    Measured here with 640x480 frames at 30 Hz: in the default synchronous mode, publishing
    ~1 MB images and small ExposureInfos from one process delays some of the small messages
    by up to ~1 s (they wait for a DDS repair), which the grouper must then drop as late or
    missing; in asynchronous mode every message arrives in time (also with
    ``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` in every process). It also keeps the
    reconstruction's worker thread from blocking on sending 3.7 MB HDR frames.
    """
    os.environ.setdefault("RMW_FASTRTPS_PUBLICATION_MODE", "ASYNCHRONOUS")
