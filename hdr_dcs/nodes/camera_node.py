"""One camera of the rig as a ROS 2 node: images + ExposureInfo (+ CameraInfo, ground truth).

Publishes (absolute defaults, remappable; ``<camera>`` is ``reference`` or ``anchor``):

- ``/dcs/<camera>/image_raw`` (sensor_msgs/Image, ``image_qos()``): rgb8/bgr8 for 8-bit
  codes, rgb16/bgr16 for 10/12/16-bit codes (left-aligned, full scale 65535); a mono
  backend's frames go out as mono8/mono16;
- ``/dcs/<camera>/exposure`` (hdr_dcs_msgs/ExposureInfo, ``image_qos()``): role, the
  exposure and gain the frame really had, sequence_id; its header is identical to the
  image's (stamp = mid-exposure time on the node clock). Published right after the image;
- ``/dcs/<camera>/camera_info`` (sensor_msgs/CameraInfo, ``latched_qos()``), only with
  ``publish_camera_info``: with every image, same header. Off by default: the
  calibration node is the rig's source of CameraInfo;
- ``/dcs/ground_truth/hdr`` (32FC3 RGB radiance, same header as the image), simulated
  reference camera with ``sim.publish_ground_truth`` only;
- ``/diagnostics``: output rate, frames dropped by reason, capture (render or transfer)
  and publish times, exposure in use, backend; WARN when no frame for ~2 s, ERROR when the camera
  cannot be opened (the node retries every 2 s and keeps running).

Capture runs in a thread of its own (never the executor), which publishes directly.

Parameters (declared with descriptors; validated together in the on-set callback; a
rejected set returns the reason and changes nothing). Changing a backend or ``sim.*``
parameter at run time restarts the capture with the new settings:

- ``camera`` (read-only): ``reference`` or ``anchor``.
- ``backend``: ``sim`` (the simulated rig) or ``gige`` (a GigE Vision camera through
  Aravis, ``camera.gige_backend``); anything else is refused.
- ``frame_id``: header.frame_id; "" = ``<camera>_optical_frame``.
- ``encoding``: ``rgb8`` (default) or ``bgr8`` for 8-bit codes, ``rgb16``/``bgr16`` for 10/12/16.
- ``publish_camera_info`` (false) and ``camera_info_url``: a calibration YAML (path,
  ``file://`` or ``package://``; relative to the package's config folder, see
  ``calibration_node.resolve_calibration_path``); "" = the backend's own calibration
  (simulator: the simulated rig's) or else uncalibrated.
- ``sim.scene`` (street), ``sim.size`` [w, h], ``sim.rate_hz`` (reference rate, 30),
  ``sim.anchor_period_frames`` (5: anchor rate = 2 * rate / period),
  ``sim.anchor_phase_s`` (0.02), ``sim.ev_low`` / ``sim.ev_high`` (-2 / +2),
  ``sim.baseline_px`` [x, y] (anchor disparity at the working distance), ``sim.seed``
  (noise), ``sim.epoch_s`` (node-clock time of reference frame 0; default 0 = a common
  epoch for all processes), ``sim.loop_s`` (scene loop, 10 s), ``sim.bits`` (8, 10, 12,
  16), ``sim.publish_ground_truth`` (reference only), ``sim.exr_dir`` (EXR scenes). Both
  simulated cameras must get the same ``sim.*`` values: they then render the same scene
  at the same instants without talking to each other (``camera.sim_backend``).
- ``gige.*`` (see ``PARAMETERS`` and ``camera.gige_backend``): device, pixel_format,
  region, frame_rate_hz, gain_db, exposure_us, ev_low / ev_high, exposure_control,
  auto_exposure, packet_size, packet_resend, packet_timeout_ms, frame_retention_ms,
  timeout_s, latch, link_mbps. With ``follow_reference`` (default) a gige anchor
  camera centres its EV offsets on the exposure in /dcs/reference/exposure. Its
  diagnostics add the exposure control in use, the stamp source (ptp or host) and the
  stream's resent / missing packet counts; a camera that disconnects is reported as an
  ERROR and reopened every 2 s until it answers again.
- ``diagnostics_period_s`` (1.0, read-only).

Run two of them with distinct node names, e.g.
``camera_node --ros-args -r __node:=reference_camera --params-file config/sim_cameras.yaml``.
"""

from __future__ import annotations

import array
import math
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from hdr_dcs_msgs.msg import ExposureInfo
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from hdr_dcs.camera import CAMERAS, CameraBackend, CameraError, CapturedFrame, NsClock
from hdr_dcs.camera.gige_backend import EXPOSURE_CONTROLS, GigESettings
from hdr_dcs.camera.stamps import LATCHES
from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError
from hdr_dcs.io.calibration_yaml import load_calibration
from hdr_dcs.io.image_msg import numpy_to_image_fields
from hdr_dcs.sim.camera import CameraModel
from hdr_dcs.sim.rig import RigConfig
from hdr_dcs.sim.scenes import SCENES

from .calibration_node import make_camera_info, resolve_calibration_path
from .diagnostics import NodeDiagnostics
from .process import run_node
from .qos import image_qos, latched_qos

__all__ = ["BACKENDS", "CameraNode", "CameraSettings", "SimSettings", "main", "make_backend",
           "validate_parameters"]

_ENCODINGS = {8: ("rgb8", "bgr8"), 16: ("rgb16", "bgr16")}
_RETRY_S = 2.0
_GRAB_TIMEOUT_S = 0.5


# -- settings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimSettings:
    """The ``sim.*`` parameters."""

    scene: str = "street"
    size_wh: tuple[int, int] = (640, 480)
    rate_hz: float = 30.0
    anchor_period_frames: int = 5
    anchor_phase_s: float = 0.02
    ev_low: float = -2.0
    ev_high: float = 2.0
    baseline_px: tuple[float, float] = (1.5, 0.0)
    seed: int = 0
    epoch_s: float = 0.0
    loop_s: float = 10.0
    bits: int = 8
    publish_ground_truth: bool = False
    exr_dir: str = ""

    def rig(self) -> RigConfig:
        """The simulated rig these settings describe."""
        model = CameraModel(bit_depth=self.bits)
        return RigConfig(reference_rate_hz=self.rate_hz, anchor_period_frames=self.anchor_period_frames,
                         anchor_phase_s=self.anchor_phase_s, ev_low=self.ev_low, ev_high=self.ev_high,
                         baseline_px=self.baseline_px, seed=self.seed, reference_camera=model,
                         anchor_camera=model)


@dataclass(frozen=True)
class CameraSettings:
    """All parameters of a CameraNode, validated."""

    camera: str = "reference"
    backend: str = "sim"
    frame_id: str = ""
    encoding: str = "rgb8"
    publish_camera_info: bool = False
    camera_info_url: str = ""
    diagnostics_period_s: float = 1.0
    follow_reference: bool = True
    sim: SimSettings = SimSettings()
    gige: GigESettings = GigESettings()

    @property
    def optical_frame(self) -> str:
        """``frame_id``, or ``<camera>_optical_frame`` when it is empty."""
        return self.frame_id or f"{self.camera}_optical_frame"

    @classmethod
    def from_parameters(cls, values: dict[str, Any]) -> CameraSettings:
        """Settings from a {parameter name: value} mapping (all names of ``PARAMETERS``)."""
        def sim_value(field: str) -> Any:
            return _convert(field, values["sim.size" if field == "size_wh" else f"sim.{field}"])

        sim = SimSettings(**{field: sim_value(field) for field in SimSettings.__dataclass_fields__})
        gige = GigESettings(**{field: _convert(field, values[f"gige.{field}"])
                               for field in GigESettings.__dataclass_fields__})
        return cls(**{field: values[field] for field in cls.__dataclass_fields__ if field not in ("sim", "gige")},
                   sim=sim, gige=gige)

    def needs_restart(self, other: CameraSettings) -> bool:
        """True when going from ``other`` to these settings needs a new backend."""
        return (self.camera, self.backend, self.sim, self.gige) != (other.camera, other.backend, other.sim,
                                                                    other.gige)


def _convert(field: str, value: Any) -> Any:
    if field == "size_wh":
        return tuple(int(v) for v in value)
    if field == "baseline_px":
        return tuple(float(v) for v in value)
    if field == "region":
        return tuple(int(v) for v in value)
    return value


#: parameter name -> (default, description, read_only)
PARAMETERS: dict[str, tuple[Any, str, bool]] = {
    "camera": ("reference", "which camera of the rig: reference or anchor", True),
    "backend": ("sim", "camera backend: sim (simulated rig) or gige (GigE Vision through Aravis)", False),
    "frame_id": ("", "header.frame_id; '' = <camera>_optical_frame", False),
    "encoding": ("rgb8", "rgb8 or bgr8 for 8-bit codes; rgb16 or bgr16 for 10/12/16-bit codes", False),
    "publish_camera_info": (False, "also publish CameraInfo with every image (the calibration node "
                                   "is the default source)", False),
    "camera_info_url": ("", "calibration YAML for publish_camera_info; '' = the backend's own "
                            "calibration (sim) or uncalibrated", False),
    "diagnostics_period_s": (1.0, "period of the /diagnostics status, s", True),
    "follow_reference": (True, "gige anchor: centre the EV offsets on the reference camera's exposure "
                               "(/dcs/reference/exposure)", False),
    "sim.scene": ("street", f"simulated scene: {', '.join(SCENES)} or procedural_<seed>", False),
    "sim.size": ([640, 480], "[width, height], even, at least 16", False),
    "sim.rate_hz": (30.0, "reference camera frame rate, Hz", False),
    "sim.anchor_period_frames": (5, "reference frames per anchor low+high pair", False),
    "sim.anchor_phase_s": (0.02, "time of anchor frame 0 after reference frame 0, s", False),
    "sim.ev_low": (-2.0, "low anchor exposure relative to the reference, stops (<= 0)", False),
    "sim.ev_high": (2.0, "high anchor exposure relative to the reference, stops (>= 0)", False),
    "sim.baseline_px": ([1.5, 0.0], "anchor disparity at the working distance [x, y], px", False),
    "sim.seed": (0, "noise seed", False),
    "sim.epoch_s": (0.0, "node-clock time of reference frame 0, s (same in every process)", False),
    "sim.loop_s": (10.0, "the scene loops with this period, s", False),
    "sim.bits": (8, "code bit depth: 8, 10, 12 or 16", False),
    "sim.publish_ground_truth": (False, "reference camera: publish /dcs/ground_truth/hdr", False),
    "sim.exr_dir": ("", "OpenEXR sample images for EXR scenes; '' = default place", False),
    "gige.device": ("", "serial number, IP address or Aravis device id; '' = the first camera found", False),
    "gige.pixel_format": ("", "PFNC pixel format (Mono8, Mono12, BayerRG8, BayerRG12, RGB8...); "
                              "'' = keep the camera's", False),
    "gige.region": ([0, 0, 0, 0], "[x, y, width, height] px; width/height 0 = keep the camera's", False),
    "gige.frame_rate_hz": (30.0, "reference: acquisition rate; anchor: frame (trigger) rate, Hz", False),
    "gige.gain_db": (0.0, "analog gain, dB", False),
    "gige.exposure_us": (10000.0, "reference exposure, us; the anchor's EV base until the reference's "
                                  "exposure is known", False),
    "gige.ev_low": (-2.0, "anchor low exposure relative to the base, stops", False),
    "gige.ev_high": (2.0, "anchor high exposure relative to the base, stops", False),
    "gige.exposure_control": ("auto", f"anchor exposure switching: {', '.join(EXPOSURE_CONTROLS)} "
                                      "(auto = sequencer if the camera has one, else software trigger)", False),
    "gige.auto_exposure": (False, "reference: slow auto exposure (never alternates)", False),
    "gige.packet_size": (0, "GVSP packet size, bytes; 0 = negotiate (use jumbo frames: MTU 9000)", False),
    "gige.packet_resend": (True, "request lost packets again", False),
    "gige.packet_timeout_ms": (20.0, "wait for a missing packet before asking for a resend, ms", False),
    "gige.frame_retention_ms": (100.0, "give up on an incomplete frame after, ms", False),
    "gige.timeout_s": (2.0, "no frame for this long: check the camera (unreachable = reconnect)", False),
    "gige.latch": ("exposure_start", f"where the camera latches its timestamp: {', '.join(LATCHES)}", False),
    "gige.link_mbps": (1000.0, "link rate for the stamp's transfer-time correction, Mbit/s", False),
}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_parameters(values: dict[str, Any]) -> str | None:
    """The reason the parameter set ``values`` (every name of ``PARAMETERS``) is invalid, or None."""
    camera = values["camera"]
    if camera not in CAMERAS:
        return f"camera must be 'reference' or 'anchor', got {camera!r}"
    if values["backend"] not in BACKENDS:
        return f"backend {values['backend']!r} is not available; available: {', '.join(BACKENDS)}"
    region = list(values["gige.region"])
    if len(region) != 4:
        return f"gige.region must be [x, y, width, height], got {region}"
    if values["backend"] == "gige":
        gige = GigESettings(**{f: _convert(f, values[f"gige.{f}"]) for f in GigESettings.__dataclass_fields__})
        reason = gige.validate(camera)
        if reason is not None:
            return reason
    bits = values["sim.bits"]
    if bits not in (8, 10, 12, 16):
        return f"sim.bits must be 8, 10, 12 or 16, got {bits}"
    container = 8 if bits == 8 else 16
    if values["encoding"] not in _ENCODINGS[8] + _ENCODINGS[16]:
        return f"encoding must be one of {', '.join(_ENCODINGS[8] + _ENCODINGS[16])}, got {values['encoding']!r}"
    if values["backend"] == "sim" and values["encoding"] not in _ENCODINGS[container]:
        return (f"encoding {values['encoding']!r} does not fit {bits}-bit codes: use "
                f"{' or '.join(_ENCODINGS[container])}")
    if not (values["diagnostics_period_s"] > 0):
        return f"diagnostics_period_s must be > 0, got {values['diagnostics_period_s']}"
    try:
        resolve_calibration_path(values["camera_info_url"])
    except InputError as exc:
        return f"camera_info_url: {exc}"
    scene = values["sim.scene"]
    if scene not in SCENES and not re.fullmatch(r"procedural_\d+", scene):
        return f"sim.scene {scene!r} is unknown; choose one of {', '.join(SCENES)} or procedural_<seed>"
    size = list(values["sim.size"])
    if len(size) != 2 or any(v < 16 or v % 2 for v in size) or any(v > 8192 for v in size):
        return f"sim.size must be [width, height], even, between 16 and 8192, got {size}"
    rate = values["sim.rate_hz"]
    if not (_finite(rate) and 0 < rate <= 1000):
        return f"sim.rate_hz must be in (0, 1000], got {rate}"
    if values["sim.anchor_period_frames"] < 1:
        return f"sim.anchor_period_frames must be at least 1, got {values['sim.anchor_period_frames']}"
    phase = values["sim.anchor_phase_s"]
    if not (_finite(phase) and phase >= 0):
        return f"sim.anchor_phase_s must be >= 0, got {phase}"
    low, high = values["sim.ev_low"], values["sim.ev_high"]
    if not (_finite(low) and _finite(high) and -10 <= low <= 0 <= high <= 10 and low < high):
        return f"sim.ev_low / sim.ev_high must bracket the reference: -10 <= ev_low <= 0 <= ev_high <= 10, " \
               f"ev_low < ev_high; got {low} / {high}"
    baseline = list(values["sim.baseline_px"])
    if len(baseline) != 2 or not all(_finite(v) for v in baseline):
        return f"sim.baseline_px must be [x, y] finite pixels, got {baseline}"
    if values["sim.seed"] < 0:
        return f"sim.seed must be >= 0, got {values['sim.seed']}"
    if not _finite(values["sim.epoch_s"]):
        return f"sim.epoch_s must be finite, got {values['sim.epoch_s']}"
    loop = values["sim.loop_s"]
    if not (_finite(loop) and loop * rate >= 1):
        return f"sim.loop_s must be at least one reference frame interval, got {loop}"
    if values["sim.publish_ground_truth"] and camera != "reference":
        return "sim.publish_ground_truth is only available on the reference camera"
    return None


# -- backends ---------------------------------------------------------------------------------
def _make_sim(settings: CameraSettings, clock: NsClock) -> CameraBackend:
    from hdr_dcs.camera.sim_backend import SimCameraBackend

    sim = settings.sim
    return SimCameraBackend(settings.camera, sim.scene, sim.rig(), sim.size_wh, sim.loop_s, sim.epoch_s,
                            clock, sim.exr_dir or None, sim.publish_ground_truth)


def _make_gige(settings: CameraSettings, clock: NsClock) -> CameraBackend:
    from hdr_dcs.camera.gige_backend import GigECameraBackend

    return GigECameraBackend(settings.camera, settings.gige, clock)


#: backend name -> factory(settings, node clock)
BACKENDS: dict[str, Callable[[CameraSettings, NsClock], CameraBackend]] = {"sim": _make_sim, "gige": _make_gige}


def make_backend(settings: CameraSettings, clock: NsClock) -> CameraBackend:
    """The (unopened) backend ``settings`` select."""
    return BACKENDS[settings.backend](settings, clock)


def _time_msg(stamp_ns: int) -> Time:
    sec, nanosec = divmod(int(stamp_ns), 10**9)
    return Time(sec=sec, nanosec=nanosec)


def _image_msg(pixels: np.ndarray, encoding: str, header: Any) -> Image:
    fields = numpy_to_image_fields(pixels, encoding)
    msg = Image(header=header, height=fields["height"], width=fields["width"], encoding=encoding,
                is_bigendian=fields["is_bigendian"], step=fields["step"])
    msg.data = array.array("B", fields["data"])  # array.array: no per-byte field check
    return msg


# -- node -------------------------------------------------------------------------------------
class CameraNode(Node):
    """A camera of the rig (see the module docstring for topics and parameters).

    The capture thread starts in the constructor; ``destroy_node`` stops it and closes the
    backend. ``**kwargs`` go to rclpy's Node (context, parameter_overrides, namespace...).

    Raises:
        ValueError: invalid parameters, with the reason (rclpy's ParameterException for a
            wrongly typed override).
    """

    def __init__(self, node_name: str = "camera", **kwargs: Any) -> None:
        # Before Node.__init__: rclpy may destroy a half-built node (context shutdown).
        self._restart = threading.Event()  # settings changed: reopen the backend
        self._stop = threading.Event()  # node shutting down
        self._wake = threading.Event()  # either of them: cut retry waits short
        self._backend_lock = threading.Lock()
        self._backend: CameraBackend | None = None
        self._thread: threading.Thread | None = None
        super().__init__(node_name, **kwargs)
        for name, (default, description, read_only) in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=description, read_only=read_only)
            self.declare_parameter(name, default, descriptor)
        self._values = {name: self._param(name) for name in PARAMETERS}
        reason = validate_parameters(self._values)
        if reason is not None:
            raise ValueError(f"{self.get_name()}: invalid parameters: {reason}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self._settings = CameraSettings.from_parameters(self._values)
        camera = self._settings.camera

        self._image_pub = self.create_publisher(Image, f"/dcs/{camera}/image_raw", image_qos())
        self._exposure_pub = self.create_publisher(ExposureInfo, f"/dcs/{camera}/exposure", image_qos())
        self._info_pub = self.create_publisher(CameraInfo, f"/dcs/{camera}/camera_info", latched_qos())
        self._truth_pub = (self.create_publisher(Image, "/dcs/ground_truth/hdr", image_qos())
                           if camera == "reference" else None)
        if camera == "anchor":  # the anchor's exposures are centred on the reference's
            self.create_subscription(ExposureInfo, "/dcs/reference/exposure", self._on_reference_exposure,
                                     image_qos(reliable=False, depth=1))

        self.diag = NodeDiagnostics(self, "camera", hardware_id=self._settings.backend,
                                    period_s=self._settings.diagnostics_period_s)
        rate = self._settings.gige.frame_rate_hz if self._settings.backend == "gige" else self._settings.sim.rate_hz
        self.diag.expect("output", within_s=2.0 + 3.0 / rate, what="frames")
        self.diag.ok("streaming")
        self.diag.set("backend", self._settings.backend)

        self._info_cache: tuple[str, CameraCalibration | None] | None = None
        self._thread = threading.Thread(target=self._capture_loop, name=f"{self.get_name()} capture",
                                        daemon=True)
        self._thread.start()

    @property
    def settings(self) -> CameraSettings:
        """The settings in use (replaced atomically when parameters change)."""
        return self._settings

    # -- parameters --------------------------------------------------------------------------
    def _param(self, name: str) -> Any:
        value = self.get_parameter(name).value
        return list(value) if isinstance(PARAMETERS[name][0], list) else value

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        values = dict(self._values)
        for p in params:
            if p.name in PARAMETERS:
                values[p.name] = list(p.value) if isinstance(PARAMETERS[p.name][0], list) else p.value
        reason = validate_parameters(values)
        if reason is not None:
            self.get_logger().warning(f"parameter change refused: {reason}")
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        self._values = {name: self._param(name) for name in PARAMETERS}
        old, new = self._settings, CameraSettings.from_parameters(self._values)
        self._settings = new
        self._info_cache = None
        if new.needs_restart(old):
            self.get_logger().info("camera settings changed: restarting capture")
            self._restart.set()
            self._wake.set()
            with self._backend_lock:
                if self._backend is not None:
                    self._backend.close()

    def _on_reference_exposure(self, msg: ExposureInfo) -> None:
        if not self._settings.follow_reference:
            return
        with self._backend_lock:
            backend = self._backend
        follow = getattr(backend, "set_reference_exposure", None)
        if follow is not None:
            follow(float(msg.exposure_time_us), float(msg.gain_db))
            self.diag.set("following reference exposure (us)", round(float(msg.exposure_time_us), 3))

    # -- capture thread ------------------------------------------------------------------------
    def _now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def _capture_loop(self) -> None:
        while not self._stop.is_set():
            self._restart.clear()
            self._wake.clear()
            settings = self._settings
            try:
                backend = make_backend(settings, self._now_ns)
                backend.open()
            except Exception as exc:  # CameraError, or a backend bug: report, retry, keep running
                reason = str(exc) if isinstance(exc, CameraError) else f"{type(exc).__name__}: {exc}"
                self._report_error(f"cannot open camera: {reason}")
                self._wake.wait(_RETRY_S)
                continue
            with self._backend_lock:
                self._backend = backend
            if self._restart.is_set() or self._stop.is_set():
                backend.close()
            self.diag.clear("backend")
            self.diag.set("backend", f"{settings.backend}: {backend.description}")
            self.get_logger().info(f"capturing: {backend.description}")
            try:
                self._stream(backend, settings)
            except CameraError as exc:
                self._report_error(f"camera lost: {exc}")
                self._wake.wait(_RETRY_S)
            except Exception as exc:  # the node must keep running; report and retry
                if self._stop.is_set() or not self.context.ok():
                    break
                self._report_error(f"capture failed: {type(exc).__name__}: {exc}")
                self._wake.wait(_RETRY_S)
            finally:
                with self._backend_lock:
                    self._backend = None
                backend.close()

    def _report_error(self, message: str) -> None:
        if self._stop.is_set():
            return
        self.get_logger().error(f"{message} (retrying every {_RETRY_S:.0f} s)")
        self.diag.error(message, key="backend")

    def _stream(self, backend: CameraBackend, opened_with: CameraSettings) -> None:
        drops: dict[str, int] = {}
        last_seq: int | None = None
        last_status_s = 0.0
        new_drops = 0
        while not (self._stop.is_set() or self._restart.is_set()):
            frame = backend.grab(_GRAB_TIMEOUT_S)
            # Drops are reported as they happen, also while no frame gets through.
            for reason, n in backend.drop_counts().items():
                if n > drops.get(reason, 0):
                    self.diag.count("dropped", reason, n - drops.get(reason, 0))
                    new_drops += n - drops.get(reason, 0)
                    drops[reason] = n
            settings = self._settings  # frame_id, encoding order, camera info apply live
            if frame is None or settings.needs_restart(opened_with):
                continue
            start = time.perf_counter()
            if last_seq is not None:
                gap = (frame.sequence_id - last_seq - 1) & 0xFFFFFFFF
                if 0 < gap - new_drops < 1 << 31:
                    self.diag.count("dropped", "sequence gap", gap - new_drops)
            last_seq, new_drops = frame.sequence_id, 0
            self.publish_frame(frame, settings)
            status_values = getattr(backend, "status_values", None)
            if status_values is not None and time.monotonic() - last_status_s > 0.5:
                last_status_s = time.monotonic()
                for key, value in status_values().items():
                    self.diag.set(key, value)
            self.diag.latency("capture").record(frame.delay_s)
            self.diag.latency("publish").record(time.perf_counter() - start)
            self.diag.latency("stamp to publish").record((self._now_ns() - frame.stamp_ns) * 1e-9)

    # -- publishing ------------------------------------------------------------------------------
    def publish_frame(self, frame: CapturedFrame, settings: CameraSettings) -> None:
        """Publish one captured frame: image, ExposureInfo, CameraInfo and ground truth as set."""
        header = Header(stamp=_time_msg(frame.stamp_ns), frame_id=settings.optical_frame)
        pixels = frame.pixels
        bits = 8 if pixels.dtype == np.uint8 else 16  # the codes' container decides (a GigE
        encoding = f"{settings.encoding[:3]}{bits}"   # camera's format can change at run time)
        if pixels.ndim == 2:  # a mono camera
            encoding = f"mono{bits}"
        elif encoding.startswith("bgr"):
            pixels = pixels[:, :, ::-1]
        self._image_pub.publish(_image_msg(pixels, encoding, header))

        info = ExposureInfo(header=header, role=int(frame.role),
                            exposure_time_us=float(frame.exposure_time_us), gain_db=float(frame.gain_db),
                            sequence_id=int(frame.sequence_id))
        self._exposure_pub.publish(info)

        if settings.publish_camera_info:
            calibration = self._camera_info_calibration(settings, frame)
            if calibration is not None:
                self._info_pub.publish(make_camera_info(calibration, header.frame_id, header.stamp))
        if frame.ground_truth is not None and self._truth_pub is not None:
            truth = np.ascontiguousarray(frame.ground_truth, dtype=np.float32)
            self._truth_pub.publish(_image_msg(truth, "32FC3", header))

        self.diag.rate("output").tick()
        self.diag.set(f"exposure {frame.role.name.lower()} (us)", round(frame.exposure_time_us, 3))
        self.diag.set("gain (dB)", frame.gain_db)
        self.diag.set("sequence id", frame.sequence_id)
        self.diag.set("size", f"{frame.size_wh[0]}x{frame.size_wh[1]}")

    def _camera_info_calibration(self, settings: CameraSettings,
                                 frame: CapturedFrame) -> CameraCalibration | None:
        """The calibration published with each image (cached until parameters change)."""
        url = settings.camera_info_url
        cache = self._info_cache
        if cache is not None and cache[0] == url:
            return cache[1]
        calibration: CameraCalibration | None
        try:
            path = resolve_calibration_path(url)
            if path is not None:
                calibration = load_calibration(path)
            else:
                with self._backend_lock:
                    backend = self._backend
                calibration = backend.calibration() if backend is not None else None
                if calibration is None:
                    calibration = CameraCalibration.uncalibrated(*frame.size_wh, settings.camera)
            self.diag.clear("camera_info")
        except InputError as exc:
            calibration = None
            self.get_logger().error(f"camera_info_url: {exc}; publishing no CameraInfo")
            self.diag.error(f"camera_info_url: {exc}", key="camera_info")
        self._info_cache = (url, calibration)
        return calibration

    # -- shutdown --------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the capture thread and close the backend (idempotent)."""
        self._stop.set()
        self._wake.set()
        with self._backend_lock:
            if self._backend is not None:
                self._backend.close()
        thread = self._thread
        if thread is not None and thread.is_alive() and threading.current_thread() is not thread:
            thread.join(timeout=5.0)

    def destroy_node(self) -> None:
        self.stop()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console script ``camera_node``: run a CameraNode until SIGINT / SIGTERM."""
    return run_node("camera_node", CameraNode, args)

if __name__ == "__main__":
    sys.exit(main())
