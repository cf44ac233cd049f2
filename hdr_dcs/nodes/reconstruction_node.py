"""The reconstruction node: both cameras in, one HDR frame per reference frame out.

A thin shell over ``hdr_dcs.pipeline.ReconstructionPipeline`` (the same pipeline the
offline bag tools run, so a replayed bag gives the offline outputs).

Subscribes (absolute defaults, remappable):

- ``/dcs/{reference,anchor}/image_raw`` (sensor_msgs/Image) and ``/dcs/{reference,anchor}/exposure``
  (hdr_dcs_msgs/ExposureInfo): ``image_qos(input_reliable)``;
- ``/dcs/{reference,anchor}/camera_info`` (sensor_msgs/CameraInfo): ``latched_qos()``. An
  all-zero K means uncalibrated (identity registration); an unchanged CameraInfo (by
  value) changes nothing, so the registration maps are rebuilt only when a calibration
  really changes ("registration rebuilds" in diagnostics).
- ``/dcs/calibration/response`` (std_msgs/Float64MultiArray): ``latched_qos()``. The
  camera response the calibration node serves: ``data`` holds f^-1 sampled on a uniform
  grid of L in [0, 1] (hdr_dcs.core.photometry.TabulatedResponse); empty data = none
  (gamma 2.2). Used while ``response_file`` is ""; a change rebuilds the pipeline (after
  flushing it, "pipeline restarts: response changed"). A curve that is not a valid
  response (not increasing, ends not 0 and 1) is refused with a WARN, the last one kept.

Publishes:

- ``/dcs/hdr/image``: 32FC3, RGB, linear radiance in SPEC.md units;
- ``/dcs/hdr/tonemapped``: bgr8 (only with ``publish_tonemapped``);
  both with header.stamp and frame_id of the reference frame they were reconstructed from,
  exactly one per reference frame unless that frame was dropped with a counted reason.
  RELIABLE, KEEP_LAST 30; a flush that releases many frames at once publishes them in
  bursts of 10, waiting (at most 0.5 s) for reliable subscribers to acknowledge each;
- ``/diagnostics``: see "Diagnostics" below.

Threading
---------
Callbacks only stamp the arrival time and append the message to one FIFO queue; a worker
thread converts the messages (``to_rgb_unit``, exposure_time_us * 1e-6, CameraInfo ->
CameraCalibration) and feeds the pipeline in arrival order, then publishes its outputs.
The queue holds at most ``queue_size`` images (ExposureInfos and CameraInfos are tiny and
always kept, up to a hard cap). When an image arrives with the queue full, the *oldest
queued image* is removed ("queue overflow", counted per camera); everything else keeps its
order, so the dropped image's ExposureInfo still reaches the grouper, which then drops
that frame as "missing image": both counts tell the story, and the grouper's accounting
(every frame in ends in exactly one fate) holds.

Parameter changes that need a new pipeline (backend, fallback_backend, device, weights,
response_file, grouper.*), like a newly served response, travel through the same queue:
the worker flushes the current pipeline (publishing what it held), then builds the new
one, keeping the calibrations and the registration cache. A reference stamp more than 1 s
older than the newest one (a bag loop, a clock reset) does the same ("pipeline restarts:
time jumped back").

End of stream: when no reference message arrives for ``idle_flush_s`` (wall time) the
pipeline is flushed, so the last frames of a stream come out instead of waiting for
frames that never come. On shutdown (SIGINT / SIGTERM, or ``close()``) the queue is
drained, the pipeline flushed and the outputs published before the node exits.

Camera response
---------------
Every backend linearises pixels with the camera response: ``response_file`` when set,
else the curve served on /dcs/calibration/response, else SPEC.md's gamma 2.2; the
"response" diagnostics value says which ("gamma 2.2 (default)", "tabulated (256 samples),
file /path/to.yaml", "tabulated (256 samples), served by the calibration node"). A
``response_file`` that cannot be used (missing, corrupt: see hdr_dcs.io.response_yaml) is
not refused as a parameter: the node reports ERROR on /diagnostics naming the file and the
reason, runs with what it would use without the file, and keeps running; setting the
parameter to a good file (or "") recovers.

Backends that fail to load
--------------------------
A learned backend can fail to load (missing or mismatched weights, no CUDA).
The node then reports ERROR on /diagnostics naming the backend and the reason, and runs
``fallback_backend`` (default "classical") so that the video keeps flowing; with
``fallback_backend: ""`` it runs no backend and drops every frame as "backend
unavailable". Either way it keeps running, and setting ``backend`` to a working one
recovers.

Parameters (declared with descriptors; validated together in the on-set callback; a
refused set returns the reason and changes nothing)
------------------------------------------------------------------------------------
- ``backend`` (classical): classical, location or eafnet.
- ``fallback_backend`` (classical): used when ``backend`` fails to load; "" = none.
- ``device`` (cpu): torch device of learned backends (cpu, cuda, cuda:N).
- ``weights`` (""): weights file of a learned backend; "" = the shipped weights.
- ``response_file`` (""): camera response file (``hdr-dcs calibrate response``): a path
  (relative to the working directory), ``file://`` or ``package://`` URL; "" = the curve
  served by the calibration node, else gamma 2.2. See "Camera response".
- ``grouper.reorder_delay_s`` (0.1), ``grouper.max_anchor_age_s`` (0.5),
  ``grouper.max_pair_gap_s`` (0.2), ``grouper.clock_offset_s`` (0.0, anchor clock minus
  reference clock), ``grouper.wait_for_future_anchor`` (true): see core.grouper.GrouperConfig.
- ``max_code`` (0): largest image code when a camera does not fill its dtype (4095 for
  12-bit codes in mono16); 0 = the dtype's maximum.
- ``publish_tonemapped`` (true).
- ``queue_size`` (12): images waiting for the worker (both cameras): under overload the
  latency grows by up to queue_size / input rate (~0.3 s at 30 + 12 Hz) before frames drop.
- ``idle_flush_s`` (1.0): see above; 0 = never.
- ``input_reliable`` (true, read-only): RELIABLE image/exposure subscriptions; false =
  BEST_EFFORT (sensor-data style).
- ``diagnostics_period_s`` (1.0, read-only).
- ``use_sim_time`` (rclpy's standard parameter): nothing the node stamps uses wall time;
  outputs carry the reference frame's stamp. Only durations (queue waits, processing
  times, idle detection) are measured on the monotonic clock.

Diagnostics (``reconstruction: reconstruction``)
------------------------------------------------
Images received and input rate per camera; output rate; latency percentiles ("receive to
publish": arrival of the reference image -> publication of its output, node clock; "stamp
to publish"; "queue wait"; "processing": pipeline time per output); queue depth;
"dropped: <camera>: <reason>" (grouper drops, conversion errors, queue overflow, backend
unavailable / error); "anchor pair age" percentiles; groups without anchors; backend name
and device; the camera response in use ("response"); registration builds and rebuilds; the
backend's latency in frames; pipeline restarts by cause. WARN when no output for 3 s, while
the queue overflows or when a served response was refused; ERROR while the requested
backend or response_file cannot be loaded.

Transport
---------
``main()`` makes Fast DDS publish asynchronously unless ``RMW_FASTRTPS_PUBLICATION_MODE``
is set (``prefer_async_publishing``): sending a 3.7 MB HDR frame then never blocks the
worker, and large and small messages from one process do not delay each other by a DDS
repair (measured: up to ~1 s in synchronous mode at 640x480, 30 Hz).
"""

from __future__ import annotations

import array
import contextlib
import math
import os
import re
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from hdr_dcs_msgs.msg import ExposureInfo
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.duration import Duration
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Float64MultiArray, Header

from hdr_dcs.backends import BACKENDS, Backend, HdrOutput, make_backend
from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.grouper import DropReason, GrouperConfig
from hdr_dcs.core.photometry import DEFAULT_RESPONSE, CameraResponse, TabulatedResponse
from hdr_dcs.core.types import FrameGroup
from hdr_dcs.io.image_msg import numpy_to_image_fields, reject_reason, to_rgb_unit
from hdr_dcs.io.response_yaml import describe_response, load_response_file
from hdr_dcs.pipeline import CAMERAS, PipelineConfig, PipelineOutput, ReconstructionPipeline

from .calibration_node import RESPONSE_TOPIC, calibration_from_camera_info, resolve_calibration_path
from .diagnostics import NodeDiagnostics
from .process import run_node
from .qos import image_qos, latched_qos, prefer_async_publishing

__all__ = ["PARAMETERS", "RESPONSE_TOPIC", "ReconstructionNode", "ReconstructionSettings", "main",
           "resolve_response_path", "served_response", "validate_parameters"]

_NS = 10**9
_SUB_DEPTH = 30                  # DDS history of the image/exposure subscriptions
_PUB_DEPTH = 30                  # DDS history of the outputs
_BURST = 10                      # outputs published at once before waiting for reliable readers
_QUEUE_HARD_CAP = 8              # total queued items <= this * queue_size + 64
_BACKWARDS_RESET_NS = _NS        # a reference stamp this far behind the newest: restart
_SIZE_ADOPT_FRAMES = 15          # consecutive images of a new size before following it
_RECEIVED_KEEP = 4096            # reference stamps remembered with their arrival time
_WORKER_TICK_S = 0.05
_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps|xpu(:\d+)?)$")

UNAVAILABLE = "backend unavailable"
BACKEND_ERROR = "backend error"
OVERFLOW = "queue overflow"

#: parameter name -> (default, description, read_only)
PARAMETERS: dict[str, tuple[Any, str, bool]] = {
    "backend": ("classical", f"reconstruction backend: {', '.join(BACKENDS)}", False),
    "fallback_backend": ("classical", "backend run when `backend` fails to load (ERROR on /diagnostics); "
                                      "'' = none: frames are dropped as 'backend unavailable'", False),
    "device": ("cpu", "torch device of learned backends: cpu, cuda, cuda:N", False),
    "weights": ("", "weights file of a learned backend; '' = the shipped weights", False),
    "response_file": ("", "camera response file (hdr-dcs calibrate response; relative to the working "
                          "directory, file:// or package://); '' = the curve served on "
                          f"{RESPONSE_TOPIC}, else gamma 2.2", False),
    "grouper.reorder_delay_s": (GrouperConfig.reorder_delay_s,
                                "how late a message may arrive (and an image wait for its ExposureInfo), s",
                                False),
    "grouper.max_anchor_age_s": (GrouperConfig.max_anchor_age_s,
                                 "largest |reference stamp - anchor pair stamp| for a pair to be used, s",
                                 False),
    "grouper.max_pair_gap_s": (GrouperConfig.max_pair_gap_s,
                               "largest time between the low and the high frame of a pair, s", False),
    "grouper.clock_offset_s": (GrouperConfig.clock_offset_s, "anchor clock minus reference clock, s", False),
    "grouper.wait_for_future_anchor": (GrouperConfig.wait_for_future_anchor,
                                       "true: nearest anchor pair (waits for pairs after the frame); "
                                       "false: causal, lower latency", False),
    "max_code": (0, "largest image code when a camera does not fill its dtype (4095: 12-bit codes in "
                    "mono16); 0 = the dtype's maximum", False),
    "publish_tonemapped": (True, "also publish /dcs/hdr/tonemapped (bgr8)", False),
    "queue_size": (12, "images waiting for the worker thread (both cameras); when full, the oldest "
                       "image is dropped ('queue overflow')", False),
    "idle_flush_s": (1.0, "flush the pipeline when no reference message arrived for this long "
                          "(wall time, s); 0 = never", False),
    "input_reliable": (True, "RELIABLE image/exposure subscriptions; false = BEST_EFFORT", True),
    "diagnostics_period_s": (1.0, "period of the /diagnostics status, s", True),
}

_PIPELINE_PARAMETERS = ("backend", "fallback_backend", "device", "weights", "response_file",
                        "grouper.reorder_delay_s",
                        "grouper.max_anchor_age_s", "grouper.max_pair_gap_s", "grouper.clock_offset_s",
                        "grouper.wait_for_future_anchor")


# -- settings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReconstructionSettings:
    """All parameters of a ReconstructionNode, validated."""

    backend: str = "classical"
    fallback_backend: str = "classical"
    device: str = "cpu"
    weights: str = ""
    response_file: str = ""
    grouper: GrouperConfig = field(default_factory=GrouperConfig)
    max_code: int = 0
    publish_tonemapped: bool = True
    queue_size: int = 12
    idle_flush_s: float = 1.0
    input_reliable: bool = True
    diagnostics_period_s: float = 1.0

    @classmethod
    def from_parameters(cls, values: dict[str, Any]) -> ReconstructionSettings:
        """Settings from {parameter name: value} (every name of ``PARAMETERS``); ValueError
        when the grouper settings are invalid."""
        grouper = GrouperConfig(
            reorder_delay_s=float(values["grouper.reorder_delay_s"]),
            max_anchor_age_s=float(values["grouper.max_anchor_age_s"]),
            max_pair_gap_s=float(values["grouper.max_pair_gap_s"]),
            clock_offset_s=float(values["grouper.clock_offset_s"]),
            wait_for_future_anchor=bool(values["grouper.wait_for_future_anchor"]))
        return cls(backend=values["backend"], fallback_backend=values["fallback_backend"],
                   device=values["device"], weights=values["weights"],
                   response_file=values["response_file"].strip(), grouper=grouper,
                   max_code=int(values["max_code"]), publish_tonemapped=bool(values["publish_tonemapped"]),
                   queue_size=int(values["queue_size"]), idle_flush_s=float(values["idle_flush_s"]),
                   input_reliable=bool(values["input_reliable"]),
                   diagnostics_period_s=float(values["diagnostics_period_s"]))

    def pipeline_key(self) -> tuple:
        """What a pipeline is built from: a change needs a new pipeline."""
        return (self.backend, self.fallback_backend, self.device, self.weights, self.response_file,
                self.grouper)

    def backend_options(self, name: str) -> dict[str, Any]:
        """Keyword arguments of ``make_backend(name)``: learned backends get device and weights."""
        if name == "classical":
            return {}
        return {"device": self.device, "weights": self.weights or None}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_parameters(values: dict[str, Any]) -> str | None:
    """The reason the parameter set ``values`` (every name of ``PARAMETERS``) is invalid, or None."""
    if values["backend"] not in BACKENDS:
        return f"backend {values['backend']!r} is unknown; choose one of {', '.join(BACKENDS)}"
    fallback = values["fallback_backend"]
    if fallback and fallback not in BACKENDS:
        return f"fallback_backend {fallback!r} is unknown; choose one of {', '.join(BACKENDS)} or '' (none)"
    if not _DEVICE.match(values["device"]):
        return f"device {values['device']!r} is not a torch device: use cpu, cuda or cuda:N"
    weights = values["weights"]
    if weights and not Path(weights).expanduser().is_file():
        return f"weights file {weights!r} not found ('' = the shipped weights)"
    try:
        resolve_response_path(values["response_file"])
    except InputError as exc:     # only the form; a missing or bad file is a diagnostics ERROR
        return f"response_file: {exc}"
    for name in ("grouper.reorder_delay_s", "grouper.max_anchor_age_s", "grouper.max_pair_gap_s"):
        value = values[name]
        if not (_finite(value) and 0 <= value <= 10):
            return f"{name} must be in [0, 10] s, got {value}"
    offset = values["grouper.clock_offset_s"]
    if not _finite(offset):
        return f"grouper.clock_offset_s must be finite, got {offset}"
    if not (0 <= values["max_code"] <= 65535):
        return f"max_code must be in [0, 65535] (0 = the dtype's maximum), got {values['max_code']}"
    if not (1 <= values["queue_size"] <= 10_000):
        return f"queue_size must be in [1, 10000], got {values['queue_size']}"
    idle = values["idle_flush_s"]
    if not (_finite(idle) and idle >= 0):
        return f"idle_flush_s must be >= 0 (0 = never), got {idle}"
    period = values["diagnostics_period_s"]
    if not (_finite(period) and period > 0):
        return f"diagnostics_period_s must be > 0, got {period}"
    try:
        ReconstructionSettings.from_parameters(values)
    except ValueError as exc:
        return str(exc)
    return None


# -- helpers ----------------------------------------------------------------------------------
def resolve_response_path(value: str) -> Path | None:
    """A ``response_file`` value -> the file (None for ""): plain paths relative to the working
    directory, ``file://`` and ``package://`` URLs. InputError for another URL scheme."""
    return resolve_calibration_path(value, Path.cwd())


def served_response(msg: Float64MultiArray) -> TabulatedResponse | None:
    """The response a /dcs/calibration/response message carries (None: empty = none served).

    Raises:
        InputError: samples that are not a valid TabulatedResponse, with the reason.
    """
    samples = np.asarray(msg.data, dtype=np.float64)
    if samples.size == 0:
        return None
    return TabulatedResponse.from_array(samples)


class _UnavailableBackend:
    """No backend could be loaded: every group is dropped (and reported by ``on_drop``)."""

    name = "none"
    latency_frames = 0

    def __init__(self, on_drop: Callable[[int], None]) -> None:
        self._on_drop = on_drop

    def reset(self) -> None:
        pass

    def push(self, group: FrameGroup) -> list[HdrOutput]:
        self._on_drop(group.reference.stamp_ns)
        return []

    def flush(self) -> list[HdrOutput]:
        return []


class _Item(NamedTuple):
    """One queued message (or a control item for the worker)."""

    kind: str            # "image", "exposure", "info", "response", "reconfigure", "flush"
    camera: str
    msg: Any
    received_ns: int     # node clock at arrival (reference images: the latency start)
    queued_s: float      # monotonic, for the queue wait


_IMAGE, _EXPOSURE, _INFO, _RECONFIGURE, _FLUSH = "image", "exposure", "info", "reconfigure", "flush"
_RESPONSE = "response"


def _time_msg(stamp_ns: int) -> Time:
    sec, nanosec = divmod(int(stamp_ns), _NS)
    return Time(sec=sec, nanosec=nanosec)


def _stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * _NS + int(stamp.nanosec)


def _image_msg(pixels: np.ndarray, encoding: str, header: Header) -> Image:
    fields = numpy_to_image_fields(pixels, encoding)
    msg = Image(header=header, height=fields["height"], width=fields["width"], encoding=encoding,
                is_bigendian=fields["is_bigendian"], step=fields["step"])
    msg.data = array.array("B", fields["data"])
    return msg


def _zero_k(msg: CameraInfo) -> bool:
    return not np.any(np.asarray(msg.k, dtype=np.float64))


# -- node -------------------------------------------------------------------------------------
class ReconstructionNode(Node):
    """The reconstruction node (see the module docstring for topics, parameters, threading).

    The constructor loads the backend (or its fallback) before it subscribes, then starts
    the worker thread; ``close()`` (also called by
    ``destroy_node``) drains the queue, flushes and stops it. ``**kwargs`` go to rclpy's
    Node (context, cli_args, parameter_overrides...).

    Raises:
        ValueError: invalid parameters, with the reason (rclpy's ParameterException for a
            wrongly typed override).
    """

    def __init__(self, node_name: str = "reconstruction", **kwargs: Any) -> None:
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._images_queued = 0
        self._stopping = False
        self._worker: threading.Thread | None = None
        super().__init__(node_name, **kwargs)
        for name, (default, description, read_only) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description,
                                                                      read_only=read_only))
        self._values = {name: self.get_parameter(name).value for name in PARAMETERS}
        reason = validate_parameters(self._values)
        if reason is not None:
            raise ValueError(f"{self.get_name()}: invalid parameters: {reason}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self._settings = ReconstructionSettings.from_parameters(self._values)
        s = self._settings

        self.diag = NodeDiagnostics(self, "reconstruction", hardware_id=s.backend,
                                    period_s=s.diagnostics_period_s)
        self.diag.expect("output", within_s=3.0, what="output frames")
        self.diag.ok("reconstructing")
        self.diag.set("queue size", s.queue_size)
        self.diag.set("queue depth", 0)

        # worker state (touched by the worker thread only, after construction)
        self._pipeline: ReconstructionPipeline | None = None
        self._pipeline_key: tuple | None = None
        self._calibration: dict[str, CameraCalibration | None] = {}
        self._sizes: dict[str, tuple[int, ...]] = {}
        self._size_candidates: dict[str, tuple[tuple[int, ...], int]] = {}
        self._received: OrderedDict[int, int] = OrderedDict()   # reference stamp -> arrival (node clock)
        self._newest_reference_ns: int | None = None
        self._last_reference_s = time.monotonic()
        self._dirty = False                                       # reference input since the last flush
        self._retired_without_anchors = 0
        self._lock = threading.Lock()                             # counters read by other threads
        self._frames_out = 0
        self._images_in = {camera: 0 for camera in CAMERAS}
        self._exposures_in = {camera: 0 for camera in CAMERAS}
        self._served: TabulatedResponse | None = None            # from the calibration node
        self._response: CameraResponse = DEFAULT_RESPONSE         # what the backend uses

        # The backend is loaded before subscribing: no message waits for a model to load.
        self._ensure_pipeline(self._settings)
        out_qos = image_qos(depth=_PUB_DEPTH)
        self._hdr_pub = self.create_publisher(Image, "/dcs/hdr/image", out_qos)
        self._tonemapped_pub = self.create_publisher(Image, "/dcs/hdr/tonemapped", out_qos)
        qos = image_qos(reliable=s.input_reliable, depth=_SUB_DEPTH)
        for camera in CAMERAS:
            self.create_subscription(Image, f"/dcs/{camera}/image_raw",
                                     lambda msg, c=camera: self._on_image(c, msg), qos)
            self.create_subscription(ExposureInfo, f"/dcs/{camera}/exposure",
                                     lambda msg, c=camera: self._on_exposure(c, msg), qos)
            self.create_subscription(CameraInfo, f"/dcs/{camera}/camera_info",
                                     lambda msg, c=camera: self._enqueue(_INFO, c, msg), latched_qos())
        self.create_subscription(Float64MultiArray, RESPONSE_TOPIC,
                                 lambda msg: self._enqueue(_RESPONSE, "", msg), latched_qos())

        self._worker = threading.Thread(target=self._work, name=f"{self.get_name()} worker", daemon=True)
        self._worker.start()

    # -- public ----------------------------------------------------------------------------------
    @property
    def settings(self) -> ReconstructionSettings:
        return self._settings

    @property
    def response(self) -> CameraResponse:
        """The camera response the current backend uses."""
        return self._response

    @property
    def frames_out(self) -> int:
        """HDR frames published so far."""
        with self._lock:
            return self._frames_out

    def images_received(self, camera: str) -> int:
        """Image messages of ``camera`` received by the callbacks so far."""
        with self._lock:
            return self._images_in[camera]

    def exposures_received(self, camera: str) -> int:
        """ExposureInfo messages of ``camera`` received by the callbacks so far."""
        with self._lock:
            return self._exposures_in[camera]

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Process everything queued so far, then flush the pipeline and publish what it held.
        Blocks; returns False on timeout (or when the worker is not running)."""
        done = threading.Event()
        if not self._enqueue(_FLUSH, "", done, force=True):
            return False
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Drain the queue, flush the pipeline, publish, wait for the outputs to be
        acknowledged, stop the worker (idempotent)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        worker = self._worker
        if worker is not None and worker.is_alive() and threading.current_thread() is not worker:
            worker.join(timeout=timeout_s)
        if self.context.ok() and hasattr(self, "_tonemapped_pub"):
            self._wait_for_readers(2.0)

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()

    # -- parameters ------------------------------------------------------------------------------
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        values = dict(self._values)
        values.update({p.name: p.value for p in params if p.name in PARAMETERS})
        reason = validate_parameters(values)
        if reason is not None:
            self.get_logger().warning(f"parameter change refused: {reason}")
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        self._values = {name: self.get_parameter(name).value for name in PARAMETERS}
        self._settings = ReconstructionSettings.from_parameters(self._values)
        self.diag.set("queue size", self._settings.queue_size)
        if any(p.name in _PIPELINE_PARAMETERS or p.name == "publish_tonemapped" for p in params):
            self._enqueue(_RECONFIGURE, "", self._settings, force=True)

    # -- callbacks (executor thread): stamp and queue, nothing else --------------------------------
    def _on_image(self, camera: str, msg: Image) -> None:
        with self._lock:
            self._images_in[camera] += 1
        self.diag.count("received", f"{camera} images")
        self.diag.rate(f"{camera} input").tick()
        self._enqueue(_IMAGE, camera, msg)

    def _on_exposure(self, camera: str, msg: ExposureInfo) -> None:
        with self._lock:
            self._exposures_in[camera] += 1
        self._enqueue(_EXPOSURE, camera, msg)

    def _enqueue(self, kind: str, camera: str, msg: Any, force: bool = False) -> bool:
        now_ns = self.get_clock().now().nanoseconds if kind == _IMAGE else 0
        item = _Item(kind, camera, msg, now_ns, time.monotonic())
        overflow: list[_Item] = []
        with self._cond:
            if self._stopping and not force:
                return False
            limit = self._settings.queue_size
            if kind == _IMAGE:
                while self._images_queued >= limit:
                    index = next(i for i, q in enumerate(self._queue) if q.kind == _IMAGE)
                    overflow.append(self._queue[index])
                    del self._queue[index]
                    self._images_queued -= 1
                self._images_queued += 1
            elif len(self._queue) >= _QUEUE_HARD_CAP * limit + 64:
                index = next((i for i, q in enumerate(self._queue) if q.kind in (_EXPOSURE, _INFO)), None)
                if index is not None:
                    overflow.append(self._queue[index])
                    del self._queue[index]
            self._queue.append(item)
            self._cond.notify()
        for lost in overflow:
            self.diag.count("dropped", f"{lost.camera}: {OVERFLOW}")
            self.diag.warn("queue overflow: reconstruction is slower than the input", key="queue")
        return True

    # -- worker thread -----------------------------------------------------------------------------
    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    if not self._queue and not self._stopping:
                        self._cond.wait(_WORKER_TICK_S)
                    item = self._queue.popleft() if self._queue else None
                    if item is not None and item.kind == _IMAGE:
                        self._images_queued -= 1
                    depth = len(self._queue)
                    stop = item is None and self._stopping
                if stop:
                    break
                self.diag.set("queue depth", depth)
                if item is None:
                    self.diag.clear("queue")
                    self._idle_check()
                    continue
                self.diag.latency("queue wait").record(time.monotonic() - item.queued_s)
                try:
                    self._handle(item)
                except Exception as exc:  # a bug: report it loudly, keep the video going
                    self.diag.count("dropped", f"{item.camera or 'node'}: internal error")
                    self.diag.error(f"internal error: {type(exc).__name__}: {exc}", key="internal")
                    self.get_logger().error(f"internal error handling a {item.kind} item: "
                                            f"{type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
                    if item.kind == _FLUSH:
                        item.msg.set()
            self._flush_pipeline()
        except Exception as exc:  # the final flush failed
            self.get_logger().error(f"worker thread failed: {type(exc).__name__}: {exc}")
            self.diag.error(f"worker thread failed: {type(exc).__name__}: {exc}", key="worker")
            raise

    def _handle(self, item: _Item) -> None:
        kind = item.kind
        if kind == _IMAGE:
            self._on_image_item(item)
        elif kind == _EXPOSURE:
            self._on_exposure_item(item)
        elif kind == _INFO:
            self._on_info_item(item)
        elif kind == _RESPONSE:
            self._on_response_item(item)
        elif kind == _RECONFIGURE:
            settings: ReconstructionSettings = item.msg
            assert self._pipeline is not None
            self._pipeline.config = replace(self._pipeline.config, tonemapped=settings.publish_tonemapped)
            if settings.pipeline_key() != self._pipeline_key:
                self._rebuild_pipeline(settings, "reconfigured")
        elif kind == _FLUSH:
            self._flush_pipeline()
            item.msg.set()

    def _on_image_item(self, item: _Item) -> None:
        camera, msg = item.camera, item.msg
        try:
            stamp = _stamp_ns(msg)
            pixels = to_rgb_unit(msg, max_code=self._settings.max_code or None)
        except InputError as exc:
            self._reject(camera, "image", reject_reason(msg, exc), exc)
            return
        if not self._check_size(camera, pixels.shape):
            return
        if camera == "reference":
            newest = self._newest_reference_ns
            if newest is not None and stamp < newest - _BACKWARDS_RESET_NS:
                self.get_logger().warning(f"reference stamps jumped back by {(newest - stamp) / _NS:.3f} s: "
                                          "flushing and restarting the pipeline")
                self._restart_pipeline(self._settings, "time jumped back")
                newest = None
            self._newest_reference_ns = stamp if newest is None else max(newest, stamp)
            self._received[stamp] = item.received_ns
            while len(self._received) > _RECEIVED_KEEP:
                self._received.popitem(last=False)
            self._mark_reference()
        pipeline = self._pipeline
        assert pipeline is not None
        self._run(lambda: pipeline.add_image(camera, stamp, pixels, str(msg.header.frame_id)))

    def _on_exposure_item(self, item: _Item) -> None:
        camera, msg = item.camera, item.msg
        try:
            stamp = _stamp_ns(msg)
            role = int(msg.role)
            exposure_s = float(msg.exposure_time_us) * 1e-6
            gain_db = float(msg.gain_db)
            sequence_id = int(msg.sequence_id)
            frame_id = str(msg.header.frame_id)
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            self._reject(camera, "exposure", "malformed ExposureInfo", exc)
            return
        if camera == "reference":
            self._mark_reference()
        pipeline = self._pipeline
        assert pipeline is not None
        # NaN / non-positive exposures are the grouper's "bad exposure" drops (counted there).
        self._run(lambda: pipeline.add_exposure(camera, stamp, role, exposure_s, gain_db, sequence_id,
                                                frame_id))

    def _on_info_item(self, item: _Item) -> None:
        camera, msg = item.camera, item.msg
        calibration: CameraCalibration | None
        try:
            if _zero_k(msg):
                calibration = None      # SPEC.md: all-zero K = uncalibrated (identity)
            else:
                ref = self._calibration.get("reference")
                size = (ref.width, ref.height) if ref is not None else (int(msg.width), int(msg.height))
                calibration = calibration_from_camera_info(msg, camera, size)
        except (InputError, ValueError, TypeError) as exc:
            self._reject(camera, "camera_info", "invalid CameraInfo", exc)
            self.diag.warn(f"{camera} CameraInfo refused: {exc}", key=f"{camera} camera_info")
            return
        self.diag.clear(f"{camera} camera_info")
        if camera in self._calibration and self._calibration[camera] == calibration:
            return
        self._calibration[camera] = calibration
        assert self._pipeline is not None
        self._pipeline.set_calibration(camera, calibration)
        self.diag.set(f"{camera} calibration", "calibrated" if calibration is not None else "uncalibrated")
        self.get_logger().info(f"{camera} calibration {'set' if calibration is not None else 'cleared'}")

    def _on_response_item(self, item: _Item) -> None:
        try:
            served = served_response(item.msg)
        except (InputError, ValueError, TypeError) as exc:
            self.diag.warn(f"response on {RESPONSE_TOPIC} refused: {exc}", key="served response")
            self.get_logger().warning(f"response on {RESPONSE_TOPIC} refused (last one kept): {exc}")
            return
        self.diag.clear("served response")
        if served == self._served:
            return
        self._served = served
        self.get_logger().info(f"calibration node serves {'no response' if served is None else 'a response'}")
        if not self._settings.response_file:     # an own response_file takes precedence
            self._rebuild_pipeline(self._settings, "response changed")

    def _reject(self, camera: str, what: str, reason: str, exc: BaseException) -> None:
        self.diag.count("dropped", f"{camera}: {reason}")
        self.get_logger().warning(f"{camera} {what} rejected ({reason}): {exc}", throttle_duration_sec=5.0)

    def _check_size(self, camera: str, shape: tuple[int, ...]) -> bool:
        """True when an image of ``shape`` is accepted; a camera that keeps sending another
        size for ``_SIZE_ADOPT_FRAMES`` images is followed (with a pipeline restart)."""
        expected = self._sizes.setdefault(camera, shape)
        if shape == expected:
            self._size_candidates.pop(camera, None)
            return True
        candidate, n = self._size_candidates.get(camera, (shape, 0))
        n = n + 1 if candidate == shape else 1
        self._size_candidates[camera] = (shape, n)
        if n >= _SIZE_ADOPT_FRAMES:
            self.get_logger().warning(f"{camera} images changed size to {shape[1]}x{shape[0]}: following it")
            self._sizes[camera] = shape
            self._size_candidates.pop(camera, None)
            self._restart_pipeline(self._settings, "image size changed")
            return True
        reason = f"size {shape[1]}x{shape[0]}, expected {expected[1]}x{expected[0]}"
        self._reject(camera, "image", reason, InputError(reason))
        return False

    def _mark_reference(self) -> None:
        self._last_reference_s = time.monotonic()
        self._dirty = True

    def _idle_check(self) -> None:
        idle = self._settings.idle_flush_s
        if self._dirty and idle > 0 and time.monotonic() - self._last_reference_s >= idle:
            self._flush_pipeline()

    # -- pipeline ----------------------------------------------------------------------------------
    def _resolve_response(self, settings: ReconstructionSettings) -> tuple[CameraResponse, str]:
        """The camera response to use and how to describe it (module docstring, "Camera
        response"); ERROR on /diagnostics when ``response_file`` cannot be used."""
        if self._served is not None:
            fallback: tuple[CameraResponse, str] = (
                self._served, f"{describe_response(self._served)}, served by the calibration node")
        else:
            fallback = (DEFAULT_RESPONSE, f"{describe_response(DEFAULT_RESPONSE)} (default)")
        if not settings.response_file:
            self.diag.clear("response")
            return fallback
        try:
            path = resolve_response_path(settings.response_file)
            response = load_response_file(path or "").response
        except InputError as exc:
            problem = f"response_file {settings.response_file!r} unusable: {exc}; using {fallback[1]}"
            self.diag.error(problem, key="response")
            self.get_logger().error(problem)
            return fallback[0], f"{fallback[1]} (response_file failed)"
        self.diag.clear("response")
        return response, f"{describe_response(response)}, file {path}"

    def _make_backend(self, settings: ReconstructionSettings,
                      response: CameraResponse) -> tuple[Backend, str]:
        """The backend to run (with ``response``) and how to describe it; ERROR on /diagnostics
        when the requested one cannot be loaded."""
        try:
            backend = make_backend(settings.backend, **settings.backend_options(settings.backend),
                                   response=response)
            self.diag.clear("backend")
            return backend, settings.backend
        except Exception as exc:  # InputError, OSError, torch/CUDA errors: report, keep running
            problem = f"backend {settings.backend!r} failed to load: {' '.join(str(exc).split())}"
        fallback = settings.fallback_backend
        if fallback and fallback != settings.backend:
            try:
                backend = make_backend(fallback, **settings.backend_options(fallback), response=response)
                self.diag.error(f"{problem}; running fallback {fallback!r}", key="backend")
                self.get_logger().error(f"{problem}; running fallback backend {fallback!r}")
                return backend, f"{fallback} (fallback for {settings.backend})"
            except Exception as exc:
                problem += f"; fallback {fallback!r} failed too: {' '.join(str(exc).split())}"
        self.diag.error(f"{problem}; dropping every frame ({UNAVAILABLE})", key="backend")
        self.get_logger().error(f"{problem}; dropping every frame ({UNAVAILABLE})")
        return _UnavailableBackend(self._drop_unavailable), "none"

    def _drop_unavailable(self, stamp_ns: int) -> None:
        self.diag.count("dropped", f"reference: {UNAVAILABLE}")
        self._received.pop(stamp_ns, None)

    def _ensure_pipeline(self, settings: ReconstructionSettings) -> None:
        old = self._pipeline
        response, response_described = self._resolve_response(settings)
        backend, described = self._make_backend(settings, response)
        options = {**settings.backend_options(settings.backend), "response": response}
        config = PipelineConfig(backend=settings.backend, backend_options=options,
                                grouper=settings.grouper, tonemapped=settings.publish_tonemapped)
        pipeline = ReconstructionPipeline(config, backend=backend)
        if old is not None:
            pipeline.registration = old.registration    # maps survive a rebuild
        for camera, calibration in self._calibration.items():
            pipeline.set_calibration(camera, calibration)
        self._pipeline = pipeline
        self._pipeline_key = settings.pipeline_key()
        self._response = response
        self.diag.set("response", response_described)
        learned = settings.backend != "classical" and described == settings.backend
        self.diag.set("backend", described)
        self.diag.set("device", settings.device if learned else "cpu")
        self.diag.set("backend latency (frames)", pipeline.latency_frames)
        self.diag.hardware_id = described
        self._update_values()

    def _rebuild_pipeline(self, settings: ReconstructionSettings, why: str) -> None:
        """A new pipeline for ``settings``: at once when nothing was fed yet, else after
        flushing the current one (counted as a restart for ``why``)."""
        assert self._pipeline is not None
        if sum(self._pipeline.grouper_stats.frames_in.values()) == 0:
            self._ensure_pipeline(settings)
        else:
            self.get_logger().info(f"rebuilding the pipeline ({why}): flushing it first")
            self._restart_pipeline(settings, why)

    def _restart_pipeline(self, settings: ReconstructionSettings, why: str) -> None:
        self._flush_pipeline()
        pipeline = self._pipeline
        if pipeline is not None:
            self._retired_without_anchors += pipeline.grouper_stats.groups_without_anchors
        self.diag.count("pipeline restarts", why)
        self._newest_reference_ns = None
        self._ensure_pipeline(settings)

    def _flush_pipeline(self) -> None:
        self._dirty = False
        if self._pipeline is not None:
            self._run(self._pipeline.flush)

    def _run(self, call: Callable[[], list[PipelineOutput]]) -> None:
        """One pipeline call: account its drops, publish its outputs."""
        pipeline = self._pipeline
        assert pipeline is not None
        before = pipeline.grouper_stats.groups_out
        t0 = time.perf_counter()
        try:
            outputs = call()
        except Exception as exc:  # a backend failing on a frame must not stop the video
            lost = max(pipeline.grouper_stats.groups_out - before, 1)
            self.diag.count("dropped", f"reference: {BACKEND_ERROR}", lost)
            self.get_logger().error(f"reconstruction failed ({lost} frame(s) lost): "
                                    f"{type(exc).__name__}: {exc}", throttle_duration_sec=5.0)
            outputs = []
        elapsed = time.perf_counter() - t0
        for drop in pipeline.pop_drops():
            self.diag.count("dropped", f"{drop.camera}: {drop.reason}")
            if drop.camera == "reference" and drop.reason != DropReason.DUPLICATE:
                self._received.pop(drop.stamp_ns, None)
        if outputs:
            per_frame = elapsed / len(outputs)
            for i, out in enumerate(outputs):
                if i and i % _BURST == 0:   # a flush releases many frames: let reliable readers keep up
                    self._wait_for_readers(0.5)
                self.diag.latency("processing").record(per_frame)
                self._publish(out)
            self._update_values()

    def _wait_for_readers(self, timeout_s: float) -> None:
        for pub in (self._hdr_pub, self._tonemapped_pub):
            with contextlib.suppress(Exception):
                pub.wait_for_all_acked(Duration(seconds=timeout_s))

    def _publish(self, out: PipelineOutput) -> None:
        header = Header(stamp=_time_msg(out.stamp_ns), frame_id=out.frame_id)
        self._hdr_pub.publish(_image_msg(np.ascontiguousarray(out.hdr, dtype=np.float32), "32FC3", header))
        if out.tonemapped is not None and self._settings.publish_tonemapped:
            self._tonemapped_pub.publish(_image_msg(np.ascontiguousarray(out.tonemapped), "bgr8", header))
        now_ns = self.get_clock().now().nanoseconds
        received = self._received.pop(out.stamp_ns, None)
        if received is not None:
            self.diag.latency("receive to publish").record((now_ns - received) * 1e-9)
        self.diag.latency("stamp to publish").record((now_ns - out.stamp_ns) * 1e-9)
        if out.info.get("anchors_used"):
            age = out.info.get("anchor_age_s")
            if age is not None:
                self.diag.latency("anchor pair age").record(float(age))
        else:
            self.diag.count("outputs", "without anchors used")
        self.diag.rate("output").tick()
        with self._lock:
            self._frames_out += 1

    def _update_values(self) -> None:
        pipeline = self._pipeline
        if pipeline is None:
            return
        stats = pipeline.grouper_stats
        with self._lock:
            frames_out = self._frames_out
        self.diag.set("frames out", frames_out)
        self.diag.set("groups without anchors", self._retired_without_anchors + stats.groups_without_anchors)
        self.diag.set("pending frames", stats.pending.get("reference", 0))
        self.diag.set("registration builds", pipeline.registration.builds)
        self.diag.set("registration rebuilds", pipeline.registration.rebuilds)
        self.diag.set("registration failures", pipeline.registration_failures)


# -- main -------------------------------------------------------------------------------------
def main(args: list[str] | None = None) -> int:
    """Console script ``reconstruction_node``: run a ReconstructionNode until SIGINT/SIGTERM,
    then publish what is still buffered and exit 0."""
    return run_node("reconstruction_node", ReconstructionNode, args, before_destroy=lambda node: node.close())


if __name__ == "__main__":
    sys.exit(main())
