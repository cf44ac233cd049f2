"""Play a rosbag2 bag into the ROS graph: this project's stand-in for ``ros2 bag play --clock``.

(``ros2 bag`` is not installable from PyPI, see notes/ros2-from-pip.md.) Every message is
published as the CDR bytes stored in the bag (rclpy publishes ``bytes`` as a serialised
message, no deserialisation), on its recorded topic (remap with ``-r /from:=/to`` as for
any node), at the pace of the bag's log times divided by ``rate``. Then the node waits
until reliable subscribers have acknowledged every message, lingers ``linger_s`` and exits 0.

QoS: RELIABLE, KEEP_LAST ``depth``, VOLATILE; sensor_msgs/CameraInfo topics are latched
(``latched_qos()``: TRANSIENT_LOCAL, depth 1), like the calibration node's. ``main()``
publishes asynchronously (``qos.prefer_async_publishing``): in Fast DDS's
synchronous mode, 640x480 images at 30 Hz delayed the small ExposureInfos by up to ~1 s.
To replay a bag that already holds /dcs/hdr/*, list the input ``topics``.

Parameters (read at start):

- ``bag`` (string, required): the bag folder, or a bare .mcap / .db3 file.
- ``rate`` (1.0): playback speed multiplier (> 0).
- ``clock`` (false): publish rosgraph_msgs/Clock on /clock: the playback time (the first
  log time when playing starts, then advancing at ``rate``, never past the bag's end;
  monotonic within a pass), ``clock_rate_hz`` times per second while playing, so nodes
  with ``use_sim_time`` run on the bag's time. It stops with the bag.
- ``clock_rate_hz`` (100.0).
- ``topics`` (string array, [] = all): play only these topics.
- ``loop`` (false): start over at the end (the clock jumps back; the reconstruction node
  restarts its pipeline when that happens).
- ``start_delay_s`` (0.0): wait this long after start-up before playing.
- ``wait_for_subscribers`` (string array, []): before playing, wait until each of these
  topics has at least one matched subscription (at most ``wait_timeout_s``), then 0.2 s more
  for the subscriptions to see the publishers too.
- ``wait_timeout_s`` (10.0).
- ``depth`` (100): publisher history depth.
- ``linger_s`` (1.0): time to stay up after the last message, once every reliable
  subscriber has acknowledged everything (or 10 s have passed).

Message types are imported from their Python packages (``sensor_msgs/msg/Image`` ->
``sensor_msgs.msg.Image``); a topic whose type cannot be imported is skipped with a warning.
"""

from __future__ import annotations

import importlib
import math
import sys
import threading
import time
from typing import Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from hdr_dcs.core.errors import InputError
from hdr_dcs.io.bag import CAMERA_INFO, BagReader

from .process import run_node
from .qos import latched_qos

__all__ = ["PARAMETERS", "BagPlayer", "main", "message_class"]

_NS = 10**9
_MAX_SLEEP_S = 0.05
_ACK_TIMEOUT_S = 10.0

#: parameter name -> (default, description)
PARAMETERS: dict[str, tuple[Any, str]] = {
    "bag": ("", "the bag to play: a folder, or a bare .mcap / .db3 file"),
    "rate": (1.0, "playback speed multiplier (> 0)"),
    "clock": (False, "publish /clock (rosgraph_msgs/Clock) following the bag's log time"),
    "clock_rate_hz": (100.0, "how often /clock is published, Hz"),
    "topics": ([""], "play only these topics; [] = all"),
    "loop": (False, "start over at the end of the bag"),
    "start_delay_s": (0.0, "wait this long before playing, s"),
    "wait_for_subscribers": ([""], "wait until each of these topics has a subscriber before playing"),
    "wait_timeout_s": (10.0, "longest wait for wait_for_subscribers, s"),
    "depth": (100, "publisher history depth"),
    "linger_s": (1.0, "stay up this long after the last message, s"),
}


def message_class(msgtype: str) -> type:
    """``"pkg/msg/Name"`` -> the rclpy message class ``pkg.msg.Name`` (InputError if missing)."""
    try:
        pkg, kind, name = msgtype.split("/")
        return getattr(importlib.import_module(f"{pkg}.{kind}"), name)
    except (ValueError, ImportError, AttributeError) as exc:
        raise InputError(f"message type {msgtype!r} is not available in this Python environment "
                         f"({exc})") from None


def _strings(value: Any) -> list[str]:
    return [v for v in (value or []) if v]


class BagPlayer(Node):
    """Publishes a bag's messages at their recorded pace (see the module docstring).

    Playback runs in a thread of its own; ``done`` is set when it has finished (lingering
    included). ``**kwargs`` go to rclpy's Node.

    Raises:
        ValueError: invalid parameters or an unreadable bag, with the reason.
    """

    def __init__(self, node_name: str = "bag_player", **kwargs: Any) -> None:
        # Before Node.__init__: rclpy may destroy a half-built node (context shutdown).
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reader: BagReader | None = None
        super().__init__(node_name, **kwargs)
        for name, (default, description) in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=description, read_only=True)
            self.declare_parameter(name, default, descriptor)
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        if not p["bag"]:
            raise ValueError("parameter 'bag' is required (the bag to play)")
        if not (math.isfinite(p["rate"]) and p["rate"] > 0):
            raise ValueError(f"rate must be > 0, got {p['rate']}")
        if not (math.isfinite(p["clock_rate_hz"]) and p["clock_rate_hz"] > 0):
            raise ValueError(f"clock_rate_hz must be > 0, got {p['clock_rate_hz']}")
        if p["depth"] < 1:
            raise ValueError(f"depth must be >= 1, got {p['depth']}")
        self.rate = float(p["rate"])
        self.publish_clock = bool(p["clock"])
        self.clock_period_s = 1.0 / float(p["clock_rate_hz"])
        self.loop = bool(p["loop"])
        self.start_delay_s = max(float(p["start_delay_s"]), 0.0)
        self.wait_for = _strings(p["wait_for_subscribers"])
        self.wait_timeout_s = float(p["wait_timeout_s"])
        self.linger_s = max(float(p["linger_s"]), 0.0)
        try:
            self.reader = BagReader(p["bag"])
        except InputError as exc:
            raise ValueError(str(exc)) from None
        available = self.reader.topics()
        wanted = _strings(p["topics"]) or sorted(available)
        missing = [t for t in wanted if t not in available]
        if missing:
            self.get_logger().warning(f"topics not in the bag: {', '.join(missing)}")
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(p["depth"]),
                         reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)
        self._topic_pubs: dict[str, Any] = {}
        for topic in wanted:
            if topic not in available:
                continue
            msgtype = available[topic][0]
            try:
                cls = message_class(msgtype)
            except InputError as exc:
                self.get_logger().warning(f"skipping {topic}: {exc}")
                continue
            topic_qos = latched_qos() if msgtype == CAMERA_INFO else qos
            self._topic_pubs[topic] = self.create_publisher(cls, topic, topic_qos)
        if not self._topic_pubs:
            names = ", ".join(sorted(available)) or "none"
            raise ValueError(f"{p['bag']}: nothing to play (topics: {names})")
        self._clock_pub = self.create_publisher(Clock, "/clock", 10) if self.publish_clock else None
        self.published = 0
        self.error: str | None = None
        self.done = threading.Event()
        self._clock_lock = threading.Lock()
        self._timebase: tuple[float, int, int] | None = None
        self._thread = threading.Thread(target=self._play, name="bag playback", daemon=True)
        self._thread.start()

    # -- playback thread ---------------------------------------------------------------------------
    def _play(self) -> None:
        clock_thread = None
        try:
            self._stop.wait(self.start_delay_s)
            self._wait_for_subscribers()
            if self.publish_clock:
                clock_thread = threading.Thread(target=self._clock_loop, name="bag clock", daemon=True)
                clock_thread.start()
            while not self._stop.is_set():
                self._play_once()
                if not self.loop:
                    break
            with self._clock_lock:
                self._timebase = None             # the clock stops with the bag
            self.get_logger().info(f"played {self.published} messages")
            self._wait_for_acks(_ACK_TIMEOUT_S)
            self._stop.wait(self.linger_s)
        except Exception as exc:  # report, then let main() exit non-zero
            self.error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"playback failed: {self.error}")
        finally:
            with self._clock_lock:
                self._timebase = None
            self.done.set()

    def _wait_for_acks(self, timeout_s: float) -> None:
        """Until every reliable subscriber acknowledged everything (at most ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        for pub in self._topic_pubs.values():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stop.is_set():
                return
            pub.wait_for_all_acked(Duration(seconds=remaining))

    def _wait_for_subscribers(self) -> None:
        if not self.wait_for:
            return
        deadline = time.monotonic() + self.wait_timeout_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            if all(self.count_subscribers(topic) > 0 for topic in self.wait_for):
                self._stop.wait(0.2)
                return
            self._stop.wait(0.02)
        self.get_logger().warning(f"no subscriber on some of {', '.join(self.wait_for)} after "
                                  f"{self.wait_timeout_s:.1f} s: playing anyway")

    def _play_once(self) -> None:
        """One pass over the bag: message i goes out when the playback time reaches its log time."""
        timebase: tuple[float, int] | None = None
        for raw in self.reader.raw_messages(list(self._topic_pubs)):
            if self._stop.is_set():
                return
            if timebase is None:
                timebase = (time.monotonic(), raw.log_time_ns)
                with self._clock_lock:
                    self._timebase = (*timebase, self.reader.end_ns)
                    if self._clock_pub is not None:
                        self._publish_clock(raw.log_time_ns)
            target = timebase[0] + (raw.log_time_ns - timebase[1]) * 1e-9 / self.rate
            while not self._stop.is_set():
                remaining = target - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(remaining, _MAX_SLEEP_S))
            self._topic_pubs[raw.topic].publish(raw.data)
            self.published += 1

    def _clock_loop(self) -> None:
        """/clock = the playback time (monotonic within a pass), ``clock_rate_hz`` times a second."""
        while not self._stop.is_set() and not self.done.is_set():
            with self._clock_lock:
                if self._timebase is not None:
                    wall0, bag0, end = self._timebase
                    self._publish_clock(min(bag0 + int((time.monotonic() - wall0) * self.rate * _NS), end))
            self._stop.wait(self.clock_period_s)

    def _publish_clock(self, t_ns: int) -> None:
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), _NS)
        self._clock_pub.publish(msg)

    # -- shutdown ----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop playing (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
            thread.join(timeout=5.0)
        if self.reader is not None:
            self.reader.close()

    def destroy_node(self) -> None:
        self.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``bag_player``: play a bag, then exit (0, or 1 if playback failed)."""
    errors: list[str] = []
    code = run_node("bag_player", BagPlayer, args, is_done=lambda node: node.done.is_set(),
                    before_destroy=lambda node: errors.append(node.error) if node.error else None)
    if errors:
        print(f"bag_player: {errors[0]}", file=sys.stderr)
        return 1
    return code

if __name__ == "__main__":
    sys.exit(main())
