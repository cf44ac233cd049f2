"""The rig's calibration source: both cameras' CameraInfo and the camera response, latched,
and set_camera_info.

Publishes ``/dcs/reference/camera_info`` and ``/dcs/anchor/camera_info``
(sensor_msgs/CameraInfo, ``latched_qos()``: late subscribers get them) from two
camera_calibration_parsers YAML files, and serves ``/dcs/<camera>/set_camera_info``
(sensor_msgs/srv/SetCameraInfo, what ROS ``camera_calibration`` calls to commit a
calibration): the CameraInfo is validated, written back to the camera's YAML file
atomically, and republished. All names are remappable.

Also publishes ``/dcs/calibration/response`` (std_msgs/Float64MultiArray, latched): the
camera response of ``response_file`` (``hdr-dcs calibrate response``;
hdr_dcs.io.response_yaml) as its samples of f^-1 on a uniform grid of L in [0, 1]
(``data``; one dimension labelled "L"; a gamma file is tabulated at 256 samples), or an
empty array when ``response_file`` is "" (none: receivers use SPEC.md's gamma 2.2). The
reconstruction node uses it whenever its own ``response_file`` is "".

Parameters (read at start and whenever set; validated in the on-set callback):

- ``reference_calibration``, ``anchor_calibration`` (string, default ""): the YAML file of
  each camera. "" = uncalibrated: a CameraInfo with K all zero (SPEC.md: identity
  mapping) and the size ``<camera>_size``. Relative paths are resolved against
  ``calibration_dir``; ``file://`` and ``package://<pkg>/<path>`` URLs are accepted too.
- ``calibration_dir`` (string, default ""): base folder of relative paths; "" = the
  package's installed ``share/hdr_dcs/config`` folder when it exists, else the source
  tree's ``config`` folder (``config/calibration.yaml`` therefore names
  ``calibration/reference.yaml``).
- ``reference_frame_id``, ``anchor_frame_id`` (string): header.frame_id of each CameraInfo.
- ``reference_size``, ``anchor_size`` (integer array [width, height], default [640, 480]):
  image size published for an uncalibrated camera.
- ``response_file`` (string, default ""): the camera response file; relative paths,
  ``file://`` and ``package://`` as for the calibration files.
- ``republish_period_s`` (double, default 0 = never): also republish everything periodically.
- ``diagnostics_period_s`` (double, default 1.0, read-only): /diagnostics period.

A file that is missing or cannot be parsed (at start, or after its parameter changed):
the node logs it, reports ERROR on /diagnostics naming the file and the reason, and
publishes nothing for that camera (no guess: an uncalibrated CameraInfo would silently
change the registration), keeping the last good CameraInfo if it had one; the same for
the response file (nothing new published, the last good curve stays latched). It keeps
running and recovers when ``set_camera_info`` writes a valid file or the parameter is changed to
one. A refused ``set_camera_info`` (invalid CameraInfo, no file configured, write error)
returns success=false with a one-line status_message, is counted in diagnostics, and
changes nothing.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo
from sensor_msgs.srv import SetCameraInfo
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from hdr_dcs.camera import CAMERAS
from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.photometry import CameraResponse, TabulatedResponse
from hdr_dcs.core.registration import Registration
from hdr_dcs.io.bag import calibration_from_msg
from hdr_dcs.io.calibration_yaml import load_calibration, save_calibration
from hdr_dcs.io.response_yaml import describe_response, load_response_file

from .diagnostics import NodeDiagnostics
from .process import run_node
from .qos import latched_qos

__all__ = ["RESPONSE_TOPIC", "CalibrationNode", "calibration_from_camera_info", "default_config_dir", "main",
           "make_camera_info", "make_response_msg", "resolve_calibration_path"]

_REPO_CONFIG = Path(__file__).resolve().parents[2] / "config"
#: The camera response topic (std_msgs/Float64MultiArray, latched).
RESPONSE_TOPIC = "/dcs/calibration/response"
_RESPONSE_SAMPLES = 256         # a gamma response is tabulated at this many samples


# -- conversions and paths (no node state) -------------------------------------------------
def make_camera_info(calibration: CameraCalibration, frame_id: str, stamp: Any = None) -> CameraInfo:
    """A sensor_msgs/CameraInfo carrying ``calibration`` (D, K, R, P row-major; no binning,
    empty ROI). ``stamp``: a builtin_interfaces/Time (default zero)."""
    msg = CameraInfo()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.width, msg.height = int(calibration.width), int(calibration.height)
    msg.distortion_model = calibration.distortion_model
    msg.d = [float(v) for v in calibration.d]
    msg.k = np.asarray(calibration.k, dtype=np.float64).ravel()
    msg.r = np.asarray(calibration.r, dtype=np.float64).ravel()
    msg.p = np.asarray(calibration.p, dtype=np.float64).ravel()
    return msg


def make_response_msg(response: CameraResponse | None) -> Float64MultiArray:
    """A /dcs/calibration/response message: f^-1 at L = linspace(0, 1, N) in ``data`` (N
    samples of a TabulatedResponse, 256 of any other response), one dimension "L"; None ->
    an empty array (no response served)."""
    msg = Float64MultiArray()
    if response is None:
        return msg
    if isinstance(response, TabulatedResponse):
        samples = np.asarray(response.inverse_samples, dtype=np.float64)
    else:
        samples = response.inverse(np.linspace(0.0, 1.0, _RESPONSE_SAMPLES)).astype(np.float64)
        samples[0], samples[-1] = 0.0, 1.0          # exact ends, as TabulatedResponse requires
    msg.layout.dim = [MultiArrayDimension(label="L", size=samples.size, stride=samples.size)]
    msg.data = samples.tolist()
    return msg


def calibration_from_camera_info(msg: CameraInfo, camera_name: str = "",
                                 reference_size: tuple[int, int] | None = None) -> CameraCalibration:
    """Validate a CameraInfo and convert it to a CameraCalibration.

    Checks: positive image size, finite D/K/R/P, no binning or ROI, and, for a calibrated
    CameraInfo (K not all zero) with ``reference_size`` given, that the SPEC.md warp into
    the reference grid can be built (K, R, P[:, :3] invertible, a supported distortion
    model with a usable number of coefficients).

    Raises:
        InputError: one line saying what is wrong.
    """
    if msg.width <= 0 or msg.height <= 0:
        raise InputError(f"image size must be positive, got {msg.width}x{msg.height}")
    if msg.binning_x > 1 or msg.binning_y > 1:
        raise InputError(f"binning is not supported, got {msg.binning_x}x{msg.binning_y}")
    roi = msg.roi
    if roi.x_offset or roi.y_offset or roi.width or roi.height or roi.do_rectify:
        raise InputError("a region of interest is not supported: send an empty ROI")
    for name in ("d", "k", "r", "p"):
        values = np.asarray(getattr(msg, name), dtype=np.float64)
        if not np.all(np.isfinite(values)):
            raise InputError(f"{name.upper()} contains NaN or Inf: {values.tolist()}")
    calib = calibration_from_msg(msg, camera_name)
    if calib.calibrated and reference_size is not None:
        Registration(calib, reference_size)  # raises InputError when the maps cannot be built
    return calib


def default_config_dir() -> Path:
    """The installed ``share/hdr_dcs/config`` folder, else the source tree's ``config``."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            share = Path(get_package_share_directory("hdr_dcs")) / "config"
            if share.is_dir():
                return share
        except (PackageNotFoundError, OSError, ValueError):  # OSError: AMENT_PREFIX_PATH unset
            pass
    except ImportError:  # pragma: no cover - ament_index_python ships with rclpy
        pass
    return _REPO_CONFIG


def resolve_calibration_path(path: str, base_dir: str | Path | None = None) -> Path | None:
    """A calibration parameter value -> the file it names (None for "": uncalibrated).

    Accepts plain paths (``~`` expanded; relative ones joined to ``base_dir``, default
    ``default_config_dir()``), ``file:///abs/path`` and ``package://<pkg>/<relative path>``
    (relative to that package's share folder).

    Raises:
        InputError: an unknown URL scheme or package.
    """
    path = path.strip()
    if not path:
        return None
    if path.startswith("file://"):
        return Path(path[len("file://"):]).expanduser()
    if path.startswith("package://"):
        pkg, _, rest = path[len("package://"):].partition("/")
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            return Path(get_package_share_directory(pkg)) / rest
        except (PackageNotFoundError, OSError, ValueError):
            if pkg == "hdr_dcs":  # source checkout: share/hdr_dcs/<rest> mirrors the tree
                return _REPO_CONFIG.parent / rest
            raise InputError(f"{path}: package {pkg!r} not found") from None
    if "://" in path:
        raise InputError(f"{path}: unsupported URL scheme (use a path, file:// or package://)")
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    return Path(base_dir or default_config_dir()) / p


# -- parameters ------------------------------------------------------------------------------
_DEFAULTS: dict[str, Any] = {
    "reference_calibration": "",
    "anchor_calibration": "",
    "response_file": "",
    "calibration_dir": "",
    "reference_frame_id": "reference_optical_frame",
    "anchor_frame_id": "anchor_optical_frame",
    "reference_size": [640, 480],
    "anchor_size": [640, 480],
    "republish_period_s": 0.0,
    "diagnostics_period_s": 1.0,
}

_DESCRIPTIONS = {
    "reference_calibration": "reference camera calibration YAML (camera_calibration_parsers layout); "
                             "'' = uncalibrated; relative to calibration_dir",
    "anchor_calibration": "anchor camera calibration YAML; '' = uncalibrated; relative to calibration_dir",
    "response_file": f"camera response file (hdr-dcs calibrate response), served on {RESPONSE_TOPIC}; "
                     "'' = none (receivers use gamma 2.2); relative to calibration_dir",
    "calibration_dir": "base folder of relative calibration paths; '' = share/hdr_dcs/config "
                       "(source tree: config/)",
    "reference_frame_id": "header.frame_id of the reference CameraInfo",
    "anchor_frame_id": "header.frame_id of the anchor CameraInfo",
    "reference_size": "[width, height] published while the reference camera is uncalibrated",
    "anchor_size": "[width, height] published while the anchor camera is uncalibrated",
    "republish_period_s": "also republish the CameraInfos and the response every this many seconds "
                          "(0 = never; they are latched anyway)",
    "diagnostics_period_s": "period of the /diagnostics status (read at start)",
}


def validate_parameters(values: dict[str, Any]) -> str | None:
    """The reason the parameter set ``values`` is invalid, or None."""
    for camera in CAMERAS:
        size = list(values[f"{camera}_size"])
        if len(size) != 2 or any(v <= 0 for v in size):
            return f"{camera}_size must be [width, height] with positive values, got {size}"
        if not str(values[f"{camera}_frame_id"]).strip():
            return f"{camera}_frame_id must not be empty"
        try:
            resolve_calibration_path(values[f"{camera}_calibration"], values["calibration_dir"] or None)
        except InputError as exc:
            return f"{camera}_calibration: {exc}"
    try:
        resolve_calibration_path(values["response_file"], values["calibration_dir"] or None)
    except InputError as exc:
        return f"response_file: {exc}"
    period = values["republish_period_s"]
    if not (math.isfinite(period) and period >= 0):
        return f"republish_period_s must be >= 0 (0 = never), got {period}"
    period = values["diagnostics_period_s"]
    if not (math.isfinite(period) and period > 0):
        return f"diagnostics_period_s must be > 0, got {period}"
    return None


@dataclass
class _CameraState:
    """What the node knows about one camera's calibration."""

    camera: str
    path: Path | None = None
    calibration: CameraCalibration | None = None  # the one published (None: nothing yet)
    error: str | None = None


class CalibrationNode(Node):
    """Publishes both cameras' CameraInfo (latched) and serves set_camera_info; see the module
    docstring. ``**kwargs`` go to rclpy's Node (context, parameter_overrides, namespace...)."""

    def __init__(self, node_name: str = "calibration", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        for name, default in _DEFAULTS.items():
            self.declare_parameter(name, default, ParameterDescriptor(
                description=_DESCRIPTIONS[name], read_only=name == "diagnostics_period_s"))
        self._values = {name: self._param(name) for name in _DEFAULTS}
        reason = validate_parameters(self._values)
        if reason is not None:
            raise ValueError(f"{self.get_name()}: invalid parameters: {reason}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)

        self.diag = NodeDiagnostics(self, "calibration", hardware_id="calibration files",
                                    period_s=float(self._values["diagnostics_period_s"]))
        self.diag.ok("CameraInfos published")
        self._states = {camera: _CameraState(camera) for camera in CAMERAS}
        self._info_pubs = {
            camera: self.create_publisher(CameraInfo, f"/dcs/{camera}/camera_info", latched_qos())
            for camera in CAMERAS}
        self._set_info_services = [
            self.create_service(SetCameraInfo, f"/dcs/{camera}/set_camera_info",
                                lambda req, resp, c=camera: self._set_camera_info(c, req, resp))
            for camera in CAMERAS]
        self._response_pub = self.create_publisher(Float64MultiArray, RESPONSE_TOPIC, latched_qos())
        self._response: CameraResponse | None = None       # the one published (None: none)
        self._response_path: Path | None = None
        self._response_loaded = False                      # a message to publish exists
        self._timer = None
        for camera in CAMERAS:
            self._load(camera)
        self._load_response()
        self._schedule_republish()
        self.publish()
        self.publish_response()
        self.diag.publish()

    # -- parameters --------------------------------------------------------------------------
    def _param(self, name: str) -> Any:
        value = self.get_parameter(name).value
        return list(value) if name.endswith("_size") else value

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        values = dict(self._values)
        values.update({p.name: (list(p.value) if p.name.endswith("_size") else p.value)
                       for p in params if p.name in _DEFAULTS})
        reason = validate_parameters(values)
        return SetParametersResult(successful=reason is None, reason=reason or "")

    def _after_set_parameters(self, params: list[Parameter]) -> None:
        names = {p.name for p in params}
        self._values = {name: self._param(name) for name in _DEFAULTS}
        for camera in CAMERAS:
            if names & {f"{camera}_calibration", f"{camera}_size", "calibration_dir"}:
                self._load(camera)
            if names & {f"{camera}_calibration", f"{camera}_size", "calibration_dir", f"{camera}_frame_id"}:
                self.publish(camera)
        if names & {"response_file", "calibration_dir"}:
            self._load_response()
            self.publish_response()
        if "republish_period_s" in names:
            self._schedule_republish()

    def _schedule_republish(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        period = float(self._values["republish_period_s"])
        if period > 0:
            self._timer = self.create_timer(period, self._republish)

    def _republish(self) -> None:
        self.publish()
        self.publish_response()

    # -- state -----------------------------------------------------------------------------
    def calibration(self, camera: str) -> CameraCalibration | None:
        """The calibration currently published for ``camera`` (None: nothing published)."""
        return self._states[camera].calibration

    def calibration_path(self, camera: str) -> Path | None:
        """The file ``camera``'s calibration is read from and written to (None: uncalibrated)."""
        return self._states[camera].path

    def response(self) -> CameraResponse | None:
        """The camera response currently served (None: none, or nothing good loaded yet)."""
        return self._response

    def response_path(self) -> Path | None:
        """The response file (None: ``response_file`` is "")."""
        return self._response_path

    def _load_response(self) -> None:
        path = resolve_calibration_path(self._values["response_file"],
                                        self._values["calibration_dir"] or None)
        self._response_path = path
        self.diag.set("response file", str(path) if path else "(none)")
        if path is None:
            self._response, self._response_loaded = None, True
            self.diag.clear("response")
            self.diag.set("response", "none served (gamma 2.2)")
            return
        try:
            response = load_response_file(path).response
        except InputError as exc:
            self.get_logger().error(f"response: {exc}; publishing no new response until the file is fixed "
                                    "or the parameter changed")
            self.diag.error(f"response: {exc}", key="response")
            self.diag.set("response", "error" if not self._response_loaded else "error (last good kept)")
            return
        self._response, self._response_loaded = response, True
        self.diag.clear("response")
        self.diag.set("response", describe_response(response))

    def publish_response(self) -> None:
        """(Re)publish the camera response (an empty array when none is configured); nothing
        while no response file was ever loaded successfully."""
        if self._response_loaded:
            self._response_pub.publish(make_response_msg(self._response))
            self.diag.count("response published", RESPONSE_TOPIC)

    def _load(self, camera: str) -> None:
        state = self._states[camera]
        state.path = resolve_calibration_path(self._values[f"{camera}_calibration"],
                                              self._values["calibration_dir"] or None)
        if state.path is None:
            w, h = self._values[f"{camera}_size"]
            state.calibration = CameraCalibration.uncalibrated(int(w), int(h), camera)
            self._set_ok(camera, "uncalibrated")
            return
        try:
            state.calibration = load_calibration(state.path)
        except InputError as exc:
            state.error = str(exc)
            self.get_logger().error(f"{camera} calibration: {exc}; publishing no {camera} CameraInfo "
                                    "until set_camera_info writes a valid file")
            self.diag.error(f"{camera}: {exc}", key=camera)
            kept = "error" if state.calibration is None else "error (last good kept)"
            self.diag.set(f"{camera} state", kept)
            self.diag.set(f"{camera} file", str(state.path))
            return
        self._set_ok(camera, "calibrated" if state.calibration.calibrated else "uncalibrated (file)")

    def _set_ok(self, camera: str, what: str) -> None:
        state = self._states[camera]
        state.error = None
        self.diag.clear(camera)
        self.diag.set(f"{camera} state", what)
        self.diag.set(f"{camera} file", str(state.path) if state.path else "(none)")
        cal = state.calibration
        if cal is not None:
            self.diag.set(f"{camera} size", f"{cal.width}x{cal.height}")

    def publish(self, camera: str | None = None) -> None:
        """(Re)publish the CameraInfo of ``camera`` (default both) that has a calibration."""
        stamp = self.get_clock().now().to_msg()
        for cam in (camera,) if camera else CAMERAS:
            cal = self._states[cam].calibration
            if cal is not None:
                self._info_pubs[cam].publish(make_camera_info(cal, self._values[f"{cam}_frame_id"], stamp))
                self.diag.count("camera_info published", cam)

    # -- service -----------------------------------------------------------------------------
    def _set_camera_info(self, camera: str, request: Any, response: Any) -> Any:
        state = self._states[camera]
        ref = self._states["reference"].calibration
        ref_size = (ref.width, ref.height) if ref is not None else tuple(self._values["reference_size"])
        try:
            calib = calibration_from_camera_info(request.camera_info, camera, ref_size)
        except InputError as exc:
            return self._refuse(camera, response, f"invalid CameraInfo: {exc}")
        if state.path is None:
            return self._refuse(camera, response, f"no calibration file configured: set parameter "
                                                  f"{camera}_calibration to the file to write")
        try:
            save_calibration(state.path, calib)
        except InputError as exc:
            self.diag.warn(f"{camera}: set_camera_info could not save: {exc}", key=f"{camera} write")
            return self._refuse(camera, response, str(exc))
        self.diag.clear(f"{camera} write")
        state.calibration = calib
        self._set_ok(camera, "calibrated" if calib.calibrated else "uncalibrated (file)")
        self.publish(camera)
        self.diag.count("set_camera_info", "accepted")
        self.get_logger().info(f"{camera} calibration saved to {state.path} and republished")
        response.success = True
        response.status_message = f"{camera} calibration saved to {state.path}"
        return response

    def _refuse(self, camera: str, response: Any, reason: str) -> Any:
        message = f"{camera}: {reason}"
        self.get_logger().warning(f"set_camera_info refused: {message}")
        self.diag.count("set_camera_info", "refused")
        self.diag.set("set_camera_info last refusal", message)
        response.success = False
        response.status_message = message
        return response


def main(args: list[str] | None = None) -> int:
    """Console script ``calibration_node``: run CalibrationNode until SIGINT / SIGTERM."""
    return run_node("calibration_node", CalibrationNode, args)

if __name__ == "__main__":
    sys.exit(main())
