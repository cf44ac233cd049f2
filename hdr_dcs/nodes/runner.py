"""The simulated rig's node graph in one process (what ``launch/sim_rig.launch.py`` starts).

``launch`` is not installable here (notes/ros2-from-pip.md), so this is the project's own
way to run the graph: the same four nodes with the same names —

- ``reference_camera``, ``anchor_camera``: CameraNode, ``config/sim_cameras.yaml``;
- ``calibration``: CalibrationNode, ``config/calibration.yaml``;
- ``reconstruction``: ReconstructionNode, ``config/reconstruction.yaml``;

configured from the same parameter files, passed exactly as the launch file and the ROS
command line do (``--ros-args --params-file FILE -p name:=value``), spinning on one
MultiThreadedExecutor in one process (one DDS participant: the nodes match at once). A
``RigMonitor`` node can be added to watch the outputs.

Overrides: ``{"reference_camera": ["sim.size:=[320,240]"], ...}`` (the ``-p`` syntax: values
are YAML, typed as on the ROS command line); ``parse_set(["reconstruction.backend=location"])``
builds them from ``NODE.PARAM=VALUE`` strings.

Calibration at another size: the calibration files describe the rig at the size they
name (640x480 for config/calibration/). When the simulated cameras run at another size,
the graph writes the simulated rig's exact calibration for that size into ``workdir`` and
points the calibration node at it (a scaled camera needs a scaled CameraInfo; the
registration would otherwise warp with the wrong K). Likewise, when the simulated anchor
camera runs slower than config/reconstruction.yaml's grouper settings assume (30 Hz, a pair
per 5 frames), ``grouper.max_pair_gap_s`` / ``max_anchor_age_s`` are widened to 1.2 anchor
frame intervals (unless overridden); ``notes`` lists both adaptations.

Shutdown (``stop()``): cameras first, then the reconstruction node processes everything it
received and flushes, so every reference frame published comes out (or is counted as
dropped), then the rest.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from hdr_dcs_msgs.msg import ExposureInfo
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image

from hdr_dcs.camera import CAMERAS
from hdr_dcs.core.errors import InputError
from hdr_dcs.io.bag import hdr_from_msg
from hdr_dcs.io.calibration_yaml import load_calibration, save_calibration
from hdr_dcs.io.image_msg import image_to_numpy
from hdr_dcs.sim.rig import calibrations

from .calibration_node import CalibrationNode, default_config_dir, resolve_calibration_path
from .camera_node import CameraNode
from .diagnostics import StatusReport
from .qos import diagnostics_qos, image_qos, prefer_async_publishing
from .reconstruction_node import ReconstructionNode

__all__ = ["NODE_FILES", "RigGraph", "RigMonitor", "StoredFrame", "parse_set"]

_NS = 10**9

#: node name -> its parameter file in the config folder (as in launch/sim_rig.launch.py)
NODE_FILES = {
    "reference_camera": "sim_cameras.yaml",
    "anchor_camera": "sim_cameras.yaml",
    "calibration": "calibration.yaml",
    "reconstruction": "reconstruction.yaml",
}


def parse_set(items: Iterable[str]) -> dict[str, list[str]]:
    """``["NODE.PARAM=VALUE", ...]`` -> ``{node: ["PARAM:=VALUE", ...]}``; InputError when malformed."""
    out: dict[str, list[str]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        node, dot, param = target.partition(".")
        if not sep or not dot or not param:
            raise InputError(f"--set {item!r}: expected NODE.PARAM=VALUE, "
                             "e.g. reconstruction.backend=classical")
        if node not in NODE_FILES:
            raise InputError(f"--set {item!r}: unknown node {node!r}; one of {', '.join(NODE_FILES)}")
        try:
            yaml.safe_load(value)
        except yaml.YAMLError:
            raise InputError(f"--set {item!r}: the value is not valid YAML") from None
        out.setdefault(node, []).append(f"{param}:={value}")
    return out


def _ros_args(param_file: Path, overrides: list[str]) -> list[str]:
    args = ["--ros-args", "--params-file", str(param_file)]
    for item in overrides:
        args += ["-p", item]
    return args


@dataclass
class StoredFrame:
    """A frame the monitor kept: pixels (codes or radiance) with what is needed to use them."""

    stamp_ns: int
    pixels: np.ndarray
    encoding: str = ""
    exposure_time_us: float | None = None
    gain_db: float = 0.0
    role: int = 0
    arrival_ns: int = 0


@dataclass
class _Stream:
    frames: dict[int, StoredFrame] = field(default_factory=dict)
    count: int = 0
    stamps: list[int] = field(default_factory=list)
    arrivals: list[int] = field(default_factory=list)


class RigMonitor(Node):
    """Watches the rig: counts every reference/anchor image and HDR output and keeps the
    pixels of the most recent ones (with ``keep_pixels``) for scoring and pictures: the last
    ``max_frames`` outputs, and ``max_frames + input_slack`` of each input stream (the
    outputs trail the inputs by the reconstruction's latency), and the latest diagnostics.

    Callbacks only copy the message data; nothing is converted to float until asked.
    """

    def __init__(self, node_name: str = "rig_monitor", *, max_frames: int = 300, input_slack: int = 64,
                 keep_pixels: bool = True, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.max_frames = max_frames
        self.input_slack = input_slack
        self.keep_pixels = keep_pixels
        names = ("reference", "anchor", "hdr", "tonemapped", "ground_truth")
        self.streams = {name: _Stream() for name in names}
        self.exposures: dict[str, dict[int, ExposureInfo]] = {c: {} for c in CAMERAS}
        self.diagnostics: dict[str, Any] = {}
        self._lock = threading.Lock()
        qos = image_qos(depth=50)
        for camera in CAMERAS:
            self.create_subscription(Image, f"/dcs/{camera}/image_raw",
                                     lambda m, c=camera: self._image(c, m), qos)
            self.create_subscription(ExposureInfo, f"/dcs/{camera}/exposure",
                                     lambda m, c=camera: self._exposure(c, m), qos)
        self.create_subscription(Image, "/dcs/hdr/image", lambda m: self._image("hdr", m), qos)
        self.create_subscription(Image, "/dcs/hdr/tonemapped", lambda m: self._image("tonemapped", m), qos)
        self.create_subscription(Image, "/dcs/ground_truth/hdr",
                                 lambda m: self._image("ground_truth", m), qos)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, diagnostics_qos())

    def count(self, stream: str) -> int:
        with self._lock:
            return self.streams[stream].count

    def stamps(self, stream: str) -> list[int]:
        """Stamps of every message of ``stream`` received, in arrival order."""
        with self._lock:
            return list(self.streams[stream].stamps)

    def arrivals(self, stream: str) -> list[int]:
        """Arrival times (node clock, ns) of every message of ``stream``, in arrival order."""
        with self._lock:
            return list(self.streams[stream].arrivals)

    def frames(self, stream: str) -> dict[int, StoredFrame]:
        with self._lock:
            return dict(self.streams[stream].frames)

    def _image(self, stream: str, msg: Image) -> None:
        stamp = msg.header.stamp.sec * _NS + msg.header.stamp.nanosec
        arrival = self.get_clock().now().nanoseconds
        pixels = None
        if self.keep_pixels:
            try:
                pixels = hdr_from_msg(msg) if msg.encoding == "32FC3" else image_to_numpy(msg)
            except InputError as exc:
                self.get_logger().warning(f"{stream}: unusable image: {exc}", throttle_duration_sec=5.0)
        limit = self.max_frames if stream in ("hdr", "tonemapped") else self.max_frames + self.input_slack
        with self._lock:
            s = self.streams[stream]
            s.count += 1
            s.stamps.append(stamp)
            s.arrivals.append(arrival)
            if pixels is not None:
                s.frames[stamp] = StoredFrame(stamp, pixels, msg.encoding, arrival_ns=arrival)
                while len(s.frames) > limit:          # keep the most recent ones
                    del s.frames[next(iter(s.frames))]

    def _exposure(self, camera: str, msg: ExposureInfo) -> None:
        stamp = msg.header.stamp.sec * _NS + msg.header.stamp.nanosec
        with self._lock:
            exposures = self.exposures[camera]
            exposures[stamp] = msg
            while len(exposures) > 4 * (self.max_frames + self.input_slack):
                del exposures[next(iter(exposures))]

    def exposure(self, camera: str, stamp_ns: int) -> ExposureInfo | None:
        with self._lock:
            return self.exposures[camera].get(stamp_ns)

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {"level": int.from_bytes(status.level, "little")
                                             if isinstance(status.level, bytes) else int(status.level),
                                             "message": status.message,
                                             "values": {kv.key: kv.value for kv in status.values}}


class RigGraph:
    """The simulated rig's four nodes (plus an optional monitor) in one process.

    Args:
        config_dir: folder of the parameter files (default: the package's config folder).
        overrides: ``{node: ["param:=value", ...]}`` (see ``parse_set``).
        workdir: calibrations for another image size are written into its ``calibration``
            folder (default: a new temporary folder).
        domain_id: ROS_DOMAIN_ID (default: the environment's).
        monitor: also start a RigMonitor (``monitor_options`` go to it).
    """

    def __init__(self, config_dir: Path | None = None, overrides: dict[str, list[str]] | None = None,
                 workdir: Path | None = None, domain_id: int | None = None, monitor: bool = True,
                 monitor_options: dict[str, Any] | None = None, threads: int | None = None) -> None:
        self.config_dir = (Path(config_dir) if config_dir else default_config_dir()).resolve()
        self.overrides = {node: list(items) for node, items in (overrides or {}).items()}
        for node, name in NODE_FILES.items():
            if not (self.config_dir / name).is_file():
                raise InputError(f"parameter file {self.config_dir / name} of node {node!r} not found")
        self.workdir = Path(workdir).resolve() if workdir is not None else None
        self.notes: list[str] = []
        self.context = Context()
        prefer_async_publishing()
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=SignalHandlerOptions.NO)
        self.executor = MultiThreadedExecutor(num_threads=threads, context=self.context)
        self.nodes: dict[str, Node] = {}
        self.monitor: RigMonitor | None = None
        self._spinner: threading.Thread | None = None
        self._closed = False
        try:
            if monitor:
                monitor_node = RigMonitor(context=self.context, **(monitor_options or {}))
                self.monitor = self._add("rig_monitor", monitor_node)
            # The reconstruction node first, so that it sees the cameras' first frames.
            self.reconstruction: ReconstructionNode = self._add("reconstruction", ReconstructionNode(
                "reconstruction", context=self.context, cli_args=self._args("reconstruction")))
            self.cameras: dict[str, CameraNode] = {}
            for camera in CAMERAS:
                name = f"{camera}_camera"
                self.cameras[camera] = self._add(name, CameraNode(name, context=self.context,
                                                                  cli_args=self._args(name)))
            self._fit_calibration_to_cameras()
            self._fit_grouper_to_cameras()
            self.calibration: CalibrationNode = self._add("calibration", CalibrationNode(
                "calibration", context=self.context, cli_args=self._args("calibration")))
        except BaseException:
            self.close()
            raise

    # -- construction ----------------------------------------------------------------------------
    def _args(self, node: str) -> list[str]:
        return _ros_args(self.config_dir / NODE_FILES[node], self.overrides.get(node, []))

    def _add(self, name: str, node: Any) -> Any:
        self.nodes[name] = node
        self.executor.add_node(node)
        return node

    def _calibration_parameters(self) -> dict[str, Any]:
        doc = yaml.safe_load((self.config_dir / NODE_FILES["calibration"]).read_text()) or {}
        section = doc.get("calibration", doc.get("/calibration", {})) or {}
        params = dict(section.get("ros__parameters", {}) or {})
        for item in self.overrides.get("calibration", []):
            name, _, value = item.partition(":=")
            params[name] = yaml.safe_load(value)
        return params

    def _fit_calibration_to_cameras(self) -> None:
        """Point the calibration node at calibrations of the cameras' image size when its
        files describe another size (see the module docstring)."""
        params = self._calibration_parameters()
        base = params.get("calibration_dir") or self.config_dir
        extra: list[str] = []
        if not params.get("calibration_dir"):
            extra.append(f"calibration_dir:={self.config_dir}")
        for camera, node in self.cameras.items():
            sim = node.settings.sim
            size = tuple(sim.size_wh)
            try:
                path = resolve_calibration_path(str(params.get(f"{camera}_calibration", "")), base)
            except InputError:
                continue  # the calibration node reports it
            if path is None:
                if tuple(params.get(f"{camera}_size", (640, 480))) != size:
                    extra.append(f"{camera}_size:=[{size[0]}, {size[1]}]")
                continue
            try:
                current = load_calibration(path)
            except InputError:
                continue  # the calibration node reports it
            if (current.width, current.height) == size:
                continue
            ref, anchor = calibrations(size, sim.rig())
            target = self._workdir() / f"{camera}.yaml"
            save_calibration(target, ref if camera == "reference" else anchor)
            extra.append(f"{camera}_calibration:={target}")
            self.notes.append(f"{path.name} is {current.width}x{current.height}; the {camera} camera runs at "
                              f"{size[0]}x{size[1]}: using the simulated rig's calibration for that size "
                              f"({target})")
        self.overrides["calibration"] = extra + self.overrides.get("calibration", [])

    def _fit_grouper_to_cameras(self) -> None:
        """Widen the reconstruction's pairing window and anchor age limit when the simulated
        anchor camera is slower than they assume (config/reconstruction.yaml is for 30 Hz with
        a pair per 5 frames: 83 ms between anchor frames); values set with overrides stay."""
        rig = self.cameras["reference"].settings.sim.rig()
        interval = 1.0 / rig.effective_anchor_rate_hz        # between a low and a high frame
        grouper = self.reconstruction.settings.grouper
        explicit = {item.partition(":=")[0] for item in self.overrides.get("reconstruction", [])}
        wanted = {"grouper.max_pair_gap_s": (grouper.max_pair_gap_s, round(1.2 * interval, 4)),
                  "grouper.max_anchor_age_s": (grouper.max_anchor_age_s, round(1.2 * interval, 4))}
        changes = [Parameter(name, value=new) for name, (old, new) in wanted.items()
                   if name not in explicit and old < new]
        if not changes:
            return
        for result in self.reconstruction.set_parameters(changes):
            if not result.successful:
                raise InputError(f"reconstruction: {result.reason}")
        self.notes.append("the anchor camera takes a frame every {:.0f} ms: {}".format(
            interval * 1e3, ", ".join(f"reconstruction {p.name} = {p.value}" for p in changes)))

    def _workdir(self) -> Path:
        if self.workdir is None:
            import tempfile

            self.workdir = Path(tempfile.mkdtemp(prefix="hdr_dcs_rig_"))
        path = self.workdir / "calibration"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- running ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Spin every node on the executor in a background thread."""
        self._spinner = threading.Thread(target=self._spin, name="rig executor", daemon=True)
        self._spinner.start()

    def _spin(self) -> None:
        with contextlib.suppress(Exception):
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.1)

    def published(self, camera: str) -> int:
        """Frames ``camera`` has published (its diagnostics' output counter)."""
        return self.cameras[camera].diag.rate("output").total

    def stop_cameras(self) -> None:
        for node in self.cameras.values():
            node.stop()

    def drain(self, timeout_s: float = 10.0) -> bool:
        """After ``stop_cameras``: wait until the reconstruction node received every image
        and every ExposureInfo the cameras published, then flush it (its outputs are
        published). True when complete."""
        deadline = time.monotonic() + timeout_s
        recon = self.reconstruction

        def received_all() -> bool:
            return all(recon.images_received(c) >= self.published(c)
                       and recon.exposures_received(c) >= self.published(c) for c in CAMERAS)

        while time.monotonic() < deadline and not received_all():
            time.sleep(0.02)
        complete = received_all()
        return recon.flush(max(deadline - time.monotonic(), 1.0)) and complete

    def reports(self) -> dict[str, StatusReport]:
        """Each node's current diagnostics status."""
        return {name: node.diag.report() for name, node in self.nodes.items() if hasattr(node, "diag")}

    def close(self) -> None:
        """Stop the cameras, flush the reconstruction node, destroy everything (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for name in ("reference_camera", "anchor_camera", "reconstruction", "calibration", "rig_monitor"):
            node = self.nodes.get(name)
            if node is None:
                continue
            with contextlib.suppress(Exception):
                self.executor.remove_node(node)
            with contextlib.suppress(Exception):
                node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        if self._spinner is not None:
            self._spinner.join(timeout=5.0)
        with contextlib.suppress(Exception):
            self.executor.shutdown(timeout_sec=1.0)

    def __enter__(self) -> RigGraph:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
