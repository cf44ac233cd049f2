"""CalibrationNode: latched CameraInfos, set_camera_info round trips, broken files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from ros_helpers import REPO, node_process, ros_harness, wait_for
from sensor_msgs.msg import CameraInfo
from sensor_msgs.srv import SetCameraInfo

from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError
from hdr_dcs.io.calibration_yaml import load_calibration
from hdr_dcs.nodes.calibration_node import (
    CalibrationNode,
    calibration_from_camera_info,
    make_camera_info,
    resolve_calibration_path,
)
from hdr_dcs.nodes.qos import diagnostics_qos, latched_qos
from hdr_dcs.sim.rig import RigConfig, calibrations

CONFIG = REPO / "config"


def _same(msg: CameraInfo, calib: CameraCalibration) -> bool:
    """The CameraInfo carries exactly ``calib`` (camera names aside: CameraInfo has none)."""
    got = calibration_from_camera_info(msg, calib.camera_name)
    return got == calib


@pytest.fixture
def calib_dir(tmp_path: Path) -> Path:
    """Copies of the example calibration files, free to be rewritten."""
    target = tmp_path / "calibration"
    shutil.copytree(CONFIG / "calibration", target)
    return target


def _subscribe(ros, node, camera: str) -> list[CameraInfo]:  # noqa: ANN001
    received: list[CameraInfo] = []
    node.create_subscription(CameraInfo, f"/dcs/{camera}/camera_info", received.append, latched_qos())
    return received


def test_example_files_describe_the_simulated_rig() -> None:
    ref, anchor = calibrations((640, 480), RigConfig(baseline_px=(1.5, 0.0)))
    assert load_calibration(CONFIG / "calibration" / "reference.yaml") == ref
    assert load_calibration(CONFIG / "calibration" / "anchor.yaml") == anchor


def test_resolve_calibration_path(tmp_path: Path) -> None:
    assert resolve_calibration_path("") is None
    assert resolve_calibration_path("  ") is None
    assert resolve_calibration_path("cal/a.yaml", tmp_path) == tmp_path / "cal" / "a.yaml"
    assert resolve_calibration_path("/abs/a.yaml", tmp_path) == Path("/abs/a.yaml")
    assert resolve_calibration_path("file:///abs/a.yaml") == Path("/abs/a.yaml")
    # Default base: the installed share/hdr_dcs/config, else the source tree's config/.
    assert resolve_calibration_path("calibration/reference.yaml").is_file()
    assert resolve_calibration_path("package://hdr_dcs/config/calibration/anchor.yaml").is_file()
    with pytest.raises(InputError, match="unsupported URL scheme"):
        resolve_calibration_path("http://example.org/a.yaml")


def test_camera_info_validation_messages() -> None:
    ref, anchor = calibrations((64, 48), RigConfig(baseline_px=(1.5, 0.0)))
    msg = make_camera_info(anchor, "anchor_optical_frame")
    assert calibration_from_camera_info(msg, "anchor", (64, 48)) == anchor
    bad = make_camera_info(anchor, "f")
    bad.k[0] = float("nan")
    with pytest.raises(InputError, match="K contains NaN"):
        calibration_from_camera_info(bad)
    bad = make_camera_info(anchor, "f")
    bad.width = 0
    with pytest.raises(InputError, match="size must be positive"):
        calibration_from_camera_info(bad)
    bad = make_camera_info(anchor, "f")
    bad.k = np.array([1.0, 0, 0, 0, 0, 0, 0, 0, 0])  # singular K
    with pytest.raises(InputError, match="singular"):
        calibration_from_camera_info(bad, "anchor", (64, 48))


def test_late_subscriber_gets_latched_camera_infos(ros_domain: int, calib_dir: Path) -> None:
    with ros_harness(ros_domain) as ros:
        node = ros.add(CalibrationNode(context=ros.context, parameter_overrides=[
            Parameter("reference_calibration", value="reference.yaml"),
            Parameter("anchor_calibration", value=""),  # uncalibrated
            Parameter("calibration_dir", value=str(calib_dir)),
            Parameter("anchor_size", value=[320, 240]),
        ]))
        assert node.calibration_path("reference") == calib_dir / "reference.yaml"
        listener = ros.node("late_listener")  # created after the node published
        ref_infos, anchor_infos = _subscribe(ros, listener, "reference"), _subscribe(ros, listener, "anchor")
        assert wait_for(lambda: ref_infos and anchor_infos, 10.0)
        assert _same(ref_infos[0], load_calibration(calib_dir / "reference.yaml"))
        assert ref_infos[0].header.frame_id == "reference_optical_frame"
        assert (anchor_infos[0].width, anchor_infos[0].height) == (320, 240)
        assert not np.any(anchor_infos[0].k) and anchor_infos[0].header.frame_id == "anchor_optical_frame"


def test_set_camera_info_writes_the_file_and_republishes(ros_domain: int, calib_dir: Path) -> None:
    with ros_harness(ros_domain) as ros:
        ros.add(CalibrationNode(context=ros.context, parameter_overrides=[
            Parameter("reference_calibration", value=str(calib_dir / "reference.yaml")),
            Parameter("anchor_calibration", value=str(calib_dir / "anchor.yaml")),
        ]))
        client_node = ros.node("calibrator")
        anchor_infos = _subscribe(ros, client_node, "anchor")
        assert wait_for(lambda: anchor_infos, 10.0)
        client = client_node.create_client(SetCameraInfo, "/dcs/anchor/set_camera_info")

        new = CameraCalibration.pinhole(640, 480, 612.5, "anchor", r=np.eye(3), p_shift_px=(2.25, -0.5),
                                        d=np.array([-0.1, 0.01, 0.001, -0.002, 0.0]))
        response = ros.call(client, SetCameraInfo.Request(camera_info=make_camera_info(new, "x")))
        assert response.success, response.status_message
        assert str(calib_dir / "anchor.yaml") in response.status_message
        assert load_calibration(calib_dir / "anchor.yaml") == new  # round trip, exact
        assert wait_for(lambda: len(anchor_infos) >= 2, 5.0)
        assert _same(anchor_infos[-1], new)

        # Refused: NaN, non-positive size; nothing written, the node keeps serving.
        bad = make_camera_info(new, "x")
        bad.p[3] = float("inf")
        response = ros.call(client, SetCameraInfo.Request(camera_info=bad))
        assert not response.success
        assert response.status_message.startswith("anchor: invalid CameraInfo: P contains NaN or Inf")
        bad = make_camera_info(new, "x")
        bad.height = 0
        response = ros.call(client, SetCameraInfo.Request(camera_info=bad))
        assert not response.success and "size must be positive" in response.status_message
        assert load_calibration(calib_dir / "anchor.yaml") == new
        late = _subscribe(ros, ros.node("late_listener"), "anchor")
        assert wait_for(lambda: late, 5.0) and _same(late[0], new)


def test_missing_file_reports_error_and_recovers_through_set_camera_info(ros_domain: int,
                                                                        calib_dir: Path) -> None:
    missing = calib_dir / "new" / "anchor.yaml"
    missing.parent.mkdir()
    with ros_harness(ros_domain) as ros:
        listener = ros.node("listener")
        statuses: list[DiagnosticStatus] = []
        listener.create_subscription(DiagnosticArray, "/diagnostics",
                                     lambda m: statuses.extend(m.status), diagnostics_qos())
        ref_infos, anchor_infos = _subscribe(ros, listener, "reference"), _subscribe(ros, listener, "anchor")
        node = ros.add(CalibrationNode(context=ros.context, parameter_overrides=[
            Parameter("reference_calibration", value=str(calib_dir / "reference.yaml")),
            Parameter("anchor_calibration", value=str(missing)),
            Parameter("diagnostics_period_s", value=0.2),
        ]))
        assert wait_for(lambda: any(s.level == DiagnosticStatus.ERROR for s in statuses), 10.0)
        error = next(s for s in statuses if s.level == DiagnosticStatus.ERROR)
        assert error.name == "calibration: calibration"
        assert error.message == f"anchor: {missing}: calibration file not found"
        assert wait_for(lambda: ref_infos, 5.0)
        assert not anchor_infos and node.calibration("anchor") is None  # nothing guessed

        client = listener.create_client(SetCameraInfo, "/dcs/anchor/set_camera_info")
        fixed = calibrations((640, 480), RigConfig(baseline_px=(1.5, 0.0)))[1]
        response = ros.call(client, SetCameraInfo.Request(camera_info=make_camera_info(fixed, "x")))
        assert response.success, response.status_message
        assert load_calibration(missing).k.tolist() == fixed.k.tolist()
        assert wait_for(lambda: anchor_infos, 5.0) and _same(anchor_infos[0], fixed)
        n = len(statuses)
        assert wait_for(lambda: len(statuses) > n and statuses[-1].level == DiagnosticStatus.OK, 5.0)


def test_calibration_node_process_from_the_config_file(ros_domain: int, tmp_path: Path) -> None:
    args = ["--params-file", str(CONFIG / "calibration.yaml")]
    with node_process("hdr_dcs.nodes.calibration_node", args, tmp_path / "calibration.log") as proc, \
            ros_harness(ros_domain) as ros:
        listener = ros.node("listener")
        ref_infos, anchor_infos = _subscribe(ros, listener, "reference"), _subscribe(ros, listener, "anchor")
        assert wait_for(lambda: ref_infos and anchor_infos, 20.0), proc.output()
        ref, anchor = calibrations((640, 480), RigConfig(baseline_px=(1.5, 0.0)))
        assert _same(ref_infos[0], ref) and _same(anchor_infos[0], anchor)
        assert proc.alive()
    assert proc.proc.returncode == 0, proc.output()


def test_parameter_changes_are_validated_and_applied(ros_domain: int, calib_dir: Path) -> None:
    with ros_harness(ros_domain) as ros:
        node = ros.add(CalibrationNode(context=ros.context, parameter_overrides=[
            Parameter("reference_calibration", value=str(calib_dir / "reference.yaml")),
            Parameter("anchor_calibration", value=str(calib_dir / "anchor.yaml")),
        ]))
        operator = ros.node("operator")
        anchor_infos = _subscribe(ros, operator, "anchor")
        assert wait_for(lambda: anchor_infos, 10.0)
        good = node.calibration("anchor")

        (result,) = ros.set_parameters(operator, "/calibration", {"republish_period_s": -1.0})
        assert not result.successful and "republish_period_s must be >= 0" in result.reason
        (result,) = ros.set_parameters(operator, "/calibration", {"reference_size": [640, 0]})
        assert not result.successful and "reference_size must be [width, height]" in result.reason

        (result,) = ros.set_parameters(operator, "/calibration", {"republish_period_s": 0.05})
        assert result.successful
        n = len(anchor_infos)
        assert wait_for(lambda: len(anchor_infos) >= n + 5, 5.0)  # periodic republishing

        # A corrupt file set at run time: ERROR, and the last good calibration stays.
        corrupt = calib_dir / "corrupt.yaml"
        corrupt.write_text("image_width: [unclosed\n")
        (result,) = ros.set_parameters(operator, "/calibration", {"anchor_calibration": str(corrupt)})
        assert result.successful
        report = node.diag.report()
        assert report.level == 2 and report.message.startswith(f"anchor: {corrupt}: YAML syntax error")
        assert node.calibration("anchor") == good
        (result,) = ros.set_parameters(operator, "/calibration", {"anchor_calibration": ""})
        assert result.successful
        assert node.diag.report().level == 0
        assert wait_for(lambda: not np.any(anchor_infos[-1].k), 5.0)  # uncalibrated now


def test_response_is_served_latched_and_used_by_the_reconstruction_node(ros_domain: int,
                                                                        tmp_path: Path) -> None:
    from std_msgs.msg import Float64MultiArray

    from hdr_dcs.core.photometry import DEFAULT_RESPONSE, GammaResponse, TabulatedResponse
    from hdr_dcs.io.response_yaml import save_response
    from hdr_dcs.nodes.reconstruction_node import ReconstructionNode

    curve = TabulatedResponse.from_array(np.linspace(0.0, 1.0, 256) ** 1.8)
    save_response(tmp_path / "response.yaml", curve, method="debevec")
    with ros_harness(ros_domain) as ros:
        calib = ros.add(CalibrationNode(context=ros.context, parameter_overrides=[
            Parameter("reference_calibration", value=""), Parameter("anchor_calibration", value=""),
            Parameter("calibration_dir", value=str(tmp_path)),
            Parameter("response_file", value="response.yaml")]))
        assert calib.response() == curve and calib.response_path() == tmp_path / "response.yaml"
        operator = ros.node("late_listener")          # joins after the node published: latched
        served: list[Float64MultiArray] = []
        operator.create_subscription(Float64MultiArray, "/dcs/calibration/response", served.append,
                                     latched_qos())
        assert wait_for(lambda: served, 10.0)
        assert tuple(served[0].data) == curve.inverse_samples
        assert (served[0].layout.dim[0].label, served[0].layout.dim[0].size) == ("L", 256)

        recon = ros.add(ReconstructionNode(context=ros.context))
        assert wait_for(lambda: recon.response == curve, 10.0)
        assert recon.diag.report().value("response") == \
            "tabulated (256 samples), served by the calibration node"

        # its own response_file takes precedence; "" goes back to the served curve
        (tmp_path / "g24.yaml").write_text("gamma: 2.4\n")
        g24 = str(tmp_path / "g24.yaml")
        (result,) = ros.set_parameters(operator, "/reconstruction", {"response_file": g24})
        assert result.successful and wait_for(lambda: recon.response == GammaResponse(2.4), 5.0)
        assert recon.diag.report().value("response") == f"gamma 2.4, file {g24}"
        (result,) = ros.set_parameters(operator, "/reconstruction", {"response_file": ""})
        assert result.successful and wait_for(lambda: recon.response == curve, 5.0)

        # a corrupt file on the calibration node: ERROR there, the last good curve stays served
        corrupt = tmp_path / "corrupt.yaml"
        corrupt.write_text("inverse_samples: [0.0, 0.9, 0.5, 1.0]\n")
        (result,) = ros.set_parameters(operator, "/calibration", {"response_file": str(corrupt)})
        assert result.successful
        report = calib.diag.report()
        assert report.level == 2
        assert report.message.startswith(f"response: {corrupt}: a tabulated response must be")
        assert calib.response() == curve and recon.response == curve

        # no response file: an empty array, receivers fall back to gamma 2.2
        (result,) = ros.set_parameters(operator, "/calibration", {"response_file": ""})
        assert result.successful and calib.diag.report().level == 0
        assert wait_for(lambda: recon.response == DEFAULT_RESPONSE, 5.0)
        assert wait_for(lambda: len(served[-1].data) == 0, 5.0)
        assert recon.diag.report().value("response") == "gamma 2.2 (default)"
        (result,) = ros.set_parameters(operator, "/calibration", {"response_file": "ftp://x/r.yaml"})
        assert not result.successful
        assert "response_file: ftp://x/r.yaml: unsupported URL scheme" in result.reason
