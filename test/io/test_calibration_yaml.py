"""camera_calibration_parsers YAML files: exact round trip, real-world files, every malformed case."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError
from hdr_dcs.io import calibration_yaml
from hdr_dcs.io.calibration_yaml import (
    calibration_from_yaml_text,
    calibration_to_yaml_text,
    load_calibration,
    save_calibration,
)

# What ROS 2 camera_calibration (cameracalibrator) writes to ost.yaml: numpy-printed
# matrices, "0." style floats, line-wrapped flow sequences.
CAMERA_CALIBRATION_OUTPUT = """\
image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [ 606.81473,    0.     ,  321.51567,
            0.     ,  605.71063,  244.77545,
            0.     ,    0.     ,    1.     ]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [0.140733, -0.285393, 0.002162, -0.000917, 0.000000]
rectification_matrix:
  rows: 3
  cols: 3
  data: [ 1.,  0.,  0.,
          0.,  1.,  0.,
          0.,  0.,  1.]
projection_matrix:
  rows: 3
  cols: 4
  data: [ 617.60181,    0.     ,  320.82839,    0.     ,
            0.     ,  618.6709 ,  244.41536,    0.     ,
            0.     ,    0.     ,    1.     ,    0.     ]
"""

# What camera_calibration_parsers (yaml-cpp) writes: block mappings, integers for whole
# numbers and exponents without a decimal point, which PyYAML alone reads as strings.
YAML_CPP_OUTPUT = """\
image_width: 1280
image_height: 720
camera_name: anchor
camera_matrix:
  rows: 3
  cols: 3
  data: [912.5, 0, 639.5, 0, 912.5, 359.5, 0, 0, 1]
distortion_model: rational_polynomial
distortion_coefficients:
  rows: 1
  cols: 8
  data: [0.25, -0.03, 1.2e-05, -4E-6, 0, 0.6, 2e+1, -1.5e-3]
rectification_matrix:
  rows: 3
  cols: 3
  data: [0.9998, -0.0175, 0.0087, 0.0175, 0.9998, 0, -0.0087, 0.0002, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [900, 0, 652.25, 0, 0, 900, 361, 0, 0, 0, 1, 0]
"""


def _awkward() -> CameraCalibration:
    """Floats whose text needs every digit of repr (and exponents, a subnormal, -0.0)."""
    k = np.array([[1 / 3, 0.0, 319.50000000000006], [0.0, 2 / 3 * 1000, 1e-17], [0.0, -0.0, 1.0]])
    r = np.array([[np.cos(0.1), -np.sin(0.1), 5e-324], [np.sin(0.1), np.cos(0.1), 0.0], [1e300, 0.0, 1.0]])
    p = np.hstack([k, np.array([[-123456789.12345679], [np.nextafter(1.0, 2.0)], [1e-5]])])
    d = np.array([-0.2856373894, 0.1, np.pi * 1e-6, -np.e * 1e16, 1e22])
    return CameraCalibration(1920, 1080, k, d, r, p, "plumb_bob", "narrow_stereo")


def _bits(c: CameraCalibration) -> tuple:
    return (c.width, c.height, c.camera_name, c.distortion_model, c.k.tobytes(), c.d.tobytes(),
            c.r.tobytes(), c.p.tobytes())


# --- round trip and layout -----------------------------------------------------------------

CALIBRATIONS = {
    "awkward": _awkward(),
    "pinhole": CameraCalibration.pinhole(640, 480, 500.0, camera_name="reference"),
    "uncalibrated_no_d": CameraCalibration(320, 240, np.zeros((3, 3)), np.zeros(0), np.eye(3),
                                           np.zeros((3, 4))),
    "rational": CameraCalibration(64, 48, np.diag([50.0, 51.0, 1.0]), np.arange(8) * 0.01, np.eye(3),
                                  np.zeros((3, 4)), "rational_polynomial", "cam"),
    "equidistant": CameraCalibration(64, 48, np.diag([50.0, 51.0, 1.0]), [0.1, -0.01, 1e-3, -1e-4],
                                     np.eye(3), np.zeros((3, 4)), "equidistant", "fisheye"),
}


@pytest.mark.parametrize("name", list(CALIBRATIONS))
def test_round_trip_is_exact(name: str, tmp_path: Path) -> None:
    calib = CALIBRATIONS[name]
    assert _bits(calibration_from_yaml_text(calibration_to_yaml_text(calib))) == _bits(calib)
    path = tmp_path / "calib.yaml"
    save_calibration(path, calib)
    loaded = load_calibration(path)
    assert loaded == calib and _bits(loaded) == _bits(calib)
    save_calibration(str(path), loaded)  # str paths too; idempotent text
    assert path.read_text() == calibration_to_yaml_text(calib)


@pytest.mark.parametrize("camera_name", ["", "narrow_stereo", "123", "true", "null", "yes", "1e5", "~",
                                         "-", "a: b", "# x", " padded ", "x:y", "[a]", "'q", '"dq',
                                         "with\nnewline", "名字"])
def test_camera_names_round_trip(camera_name: str) -> None:
    calib = CameraCalibration.pinhole(4, 3, 1.0, camera_name=camera_name)
    text = calibration_to_yaml_text(calib)
    assert calibration_from_yaml_text(text).camera_name == camera_name
    assert len(text.splitlines()) == 20


def test_layout_is_camera_calibration_parsers() -> None:
    calib = CameraCalibration.pinhole(640, 480, 500.0, camera_name="reference", d=[-0.1, 0.01, 1e-5, 0, 0])
    assert calibration_to_yaml_text(calib) == """\
image_width: 640
image_height: 480
camera_name: reference
camera_matrix:
  rows: 3
  cols: 3
  data: [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.1, 0.01, 1.0e-05, 0.0, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
projection_matrix:
  rows: 3
  cols: 4
  data: [500.0, 0.0, 319.5, 0.0, 0.0, 500.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


def test_loads_camera_calibration_output(tmp_path: Path) -> None:
    path = tmp_path / "ost.yaml"
    path.write_text(CAMERA_CALIBRATION_OUTPUT)
    calib = load_calibration(path)
    assert (calib.width, calib.height) == (640, 480)
    assert calib.camera_name == "narrow_stereo" and calib.distortion_model == "plumb_bob"
    np.testing.assert_array_equal(calib.k, [[606.81473, 0, 321.51567], [0, 605.71063, 244.77545], [0, 0, 1]])
    np.testing.assert_array_equal(calib.d, [0.140733, -0.285393, 0.002162, -0.000917, 0.0])
    np.testing.assert_array_equal(calib.r, np.eye(3))
    np.testing.assert_array_equal(calib.p, [[617.60181, 0, 320.82839, 0], [0, 618.6709, 244.41536, 0],
                                            [0, 0, 1, 0]])
    assert calib.calibrated
    assert calib.k.dtype == calib.d.dtype == calib.p.dtype == np.float64


def test_loads_yaml_cpp_output_with_exponents() -> None:
    calib = calibration_from_yaml_text(YAML_CPP_OUTPUT)
    assert (calib.width, calib.height, calib.camera_name) == (1280, 720, "anchor")
    assert calib.distortion_model == "rational_polynomial"
    np.testing.assert_array_equal(calib.d, [0.25, -0.03, 1.2e-05, -4e-6, 0, 0.6, 20.0, -1.5e-3])
    assert calib.p[1, 2] == 361.0 and calib.k[0, 0] == 912.5


def test_optional_keys_default_like_camera_calibration_parsers() -> None:
    text = "\n".join(line for line in CAMERA_CALIBRATION_OUTPUT.splitlines()
                     if not line.startswith(("camera_name", "distortion_model")))
    calib = calibration_from_yaml_text(text + "\nextra_key: ignored\n")
    assert calib.camera_name == "" and calib.distortion_model == "plumb_bob"
    assert calibration_from_yaml_text(CAMERA_CALIBRATION_OUTPUT.replace(
        "camera_name: narrow_stereo", "camera_name: 42")).camera_name == "42"
    assert calibration_from_yaml_text(CAMERA_CALIBRATION_OUTPUT.replace(
        "camera_name: narrow_stereo", "camera_name:")).camera_name == ""


def test_distortion_may_be_a_column_or_empty() -> None:
    column = CAMERA_CALIBRATION_OUTPUT.replace("  rows: 1\n  cols: 5", "  rows: 5\n  cols: 1")
    np.testing.assert_array_equal(calibration_from_yaml_text(column).d,
                                  [0.140733, -0.285393, 0.002162, -0.000917, 0.0])
    empty = CAMERA_CALIBRATION_OUTPUT.replace(
        "  rows: 1\n  cols: 5\n  data: [0.140733, -0.285393, 0.002162, -0.000917, 0.000000]",
        "  rows: 1\n  cols: 0\n  data: []")
    assert calibration_from_yaml_text(empty).d.shape == (0,)


# --- malformed files -----------------------------------------------------------------------

MALFORMED = {  # name: (file text, expected message fragment)
    "yaml_syntax": ("image_width: 640\ncamera_matrix: {rows: 3, cols: 3, data: [1, 2\n",
                    r"YAML syntax error at line \d+"),
    "tab_indent": ("image_width: 640\n\tcamera_name: x\n", "YAML syntax error"),
    "empty": ("", "calibration YAML is empty"),
    "not_mapping": ("- 1\n- 2\n", "is a list, not a mapping"),
    "scalar": ("hello\n", "is a str, not a mapping"),
    "missing_projection": (CAMERA_CALIBRATION_OUTPUT.split("projection_matrix")[0],
                           "missing key.*projection_matrix"),
    "missing_width": (CAMERA_CALIBRATION_OUTPUT.replace("image_width: 640\n", ""),
                      "missing key.*image_width"),
    "count_mismatch": (CAMERA_CALIBRATION_OUTPUT.replace("  cols: 5", "  cols: 4"),
                       "distortion_coefficients has rows=1, cols=4 but 5 values"),
    "too_few_values": (CAMERA_CALIBRATION_OUTPUT.replace("data: [ 1.,  0.,  0.,\n", "data: [ 1.,  0.,\n"),
                       "rectification_matrix has rows=3, cols=3 but 8 values"),
    "non_numeric": (CAMERA_CALIBRATION_OUTPUT.replace("0.140733", "abc"),
                    r"distortion_coefficients.data\[0\] is not a number: 'abc'"),
    "bool_value": (CAMERA_CALIBRATION_OUTPUT.replace("0.140733", "true"),
                   r"distortion_coefficients.data\[0\] is not a number: True"),
    "null_value": (CAMERA_CALIBRATION_OUTPUT.replace("0.140733", "null"), r"data\[0\] is not a number: None"),
    "nested_value": (CAMERA_CALIBRATION_OUTPUT.replace("0.140733", "[1]"), r"data\[0\] is not a number"),
    "nan_value": (CAMERA_CALIBRATION_OUTPUT.replace("0.140733", ".nan"), "contains NaN or Inf"),
    "k_wrong_shape": (CAMERA_CALIBRATION_OUTPUT.replace("camera_matrix:\n  rows: 3\n  cols: 3",
                                                        "camera_matrix:\n  rows: 1\n  cols: 9"),
                      "camera_matrix must be 3x3, got 1x9"),
    "p_wrong_shape": (CAMERA_CALIBRATION_OUTPUT.replace("projection_matrix:\n  rows: 3\n  cols: 4",
                                                        "projection_matrix:\n  rows: 4\n  cols: 3"),
                      "projection_matrix must be 3x4, got 4x3"),
    "d_2d": (CAMERA_CALIBRATION_OUTPUT.replace(
        "  rows: 1\n  cols: 5\n  data: [0.140733, -0.285393, 0.002162, -0.000917, 0.000000]",
        "  rows: 2\n  cols: 2\n  data: [1, 2, 3, 4]"),
        "distortion_coefficients must be a single row, got 2x2"),
    "matrix_not_mapping": (CAMERA_CALIBRATION_OUTPUT.replace(
        "rectification_matrix:\n  rows: 3\n  cols: 3\n  data:", "rectification_matrix:\n  -"),
        "rectification_matrix must be a mapping"),
    "missing_rows": (CAMERA_CALIBRATION_OUTPUT.replace("camera_matrix:\n  rows: 3\n", "camera_matrix:\n"),
                     "camera_matrix is missing rows"),
    "data_not_list": (CAMERA_CALIBRATION_OUTPUT.replace(
        "  data: [0.140733, -0.285393, 0.002162, -0.000917, 0.000000]", "  data: 0.14"),
        "distortion_coefficients.data must be a list"),
    "rows_not_int": (CAMERA_CALIBRATION_OUTPUT.replace("camera_matrix:\n  rows: 3",
                                                       "camera_matrix:\n  rows: 3.5"),
                     r"camera_matrix.rows must be an integer, got 3.5"),
    "width_not_int": (CAMERA_CALIBRATION_OUTPUT.replace("image_width: 640", "image_width: wide"),
                      "image_width must be an integer, got 'wide'"),
    "width_bool": (CAMERA_CALIBRATION_OUTPUT.replace("image_width: 640", "image_width: yes"),
                   "image_width must be an integer, got True"),
    "width_zero": (CAMERA_CALIBRATION_OUTPUT.replace("image_width: 640", "image_width: 0"),
                   "image size must be positive"),
    "model_not_text": (CAMERA_CALIBRATION_OUTPUT.replace("distortion_model: plumb_bob",
                                                         "distortion_model: [a]"),
                       "distortion_model must be a string"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_file_raises_one_line_input_error(case: str, tmp_path: Path) -> None:
    text, fragment = MALFORMED[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=fragment) as info:
        load_calibration(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    with pytest.raises(InputError, match=fragment):
        calibration_from_yaml_text(text)


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InputError, match=f"^{re.escape(str(missing))}: calibration file not found$"):
        load_calibration(missing)
    with pytest.raises(InputError, match=f"^{re.escape(str(tmp_path))}: cannot read calibration file"):
        load_calibration(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"image_width: \xff\xfe\n")
    with pytest.raises(InputError, match=f"^{re.escape(str(binary))}: cannot read calibration file.*utf-8"):
        load_calibration(binary)


# --- atomic writes -------------------------------------------------------------------------


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_save_replaces_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "anchor.yaml"
    save_calibration(path, CALIBRATIONS["pinhole"])
    save_calibration(path, CALIBRATIONS["awkward"])
    assert load_calibration(path) == CALIBRATIONS["awkward"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anchor.yaml"]


@pytest.mark.parametrize("failing", ["replace", "fsync", "write"])
def test_failed_save_keeps_old_file_and_removes_temporary(failing: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "anchor.yaml"
    save_calibration(path, CALIBRATIONS["pinhole"])
    before = path.read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if failing == "write":
        real_fdopen = os.fdopen

        class Failing:
            def __init__(self, f: object) -> None:
                self.f = f

            def __enter__(self) -> Failing:
                return self

            def __exit__(self, *exc: object) -> None:
                self.f.close()  # type: ignore[attr-defined]

            def write(self, data: bytes) -> None:
                self.f.write(data[: len(data) // 2])  # type: ignore[attr-defined]
                self.f.flush()  # type: ignore[attr-defined]
                boom()

        monkeypatch.setattr(calibration_yaml.os, "fdopen", lambda *a, **k: Failing(real_fdopen(*a, **k)))
    else:
        monkeypatch.setattr(calibration_yaml.os, failing, boom)
    expected = f"^{re.escape(str(path))}: cannot write calibration file: No space left on device$"
    with pytest.raises(InputError, match=expected):
        save_calibration(path, CALIBRATIONS["awkward"])
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_save_permission_denied_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only directory does to an unprivileged user (simulated: works as root too)."""
    path = tmp_path / "anchor.yaml"
    real_open = os.open

    def denied(file: object, flags: int, *args: object, **kwargs: object) -> int:
        if flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(calibration_yaml.os, "open", denied)
    expected = f"^{re.escape(str(path))}: cannot write calibration file: Permission denied$"
    with pytest.raises(InputError, match=expected):
        save_calibration(path, CALIBRATIONS["pinhole"])
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_save_into_read_only_directory(tmp_path: Path) -> None:
    """A folder the process may not write into. Root writes into any ordinary folder, so as
    root the folder is /sys, where the kernel refuses new files to everyone."""
    if os.geteuid() == 0:
        folder, reason = Path("/sys"), "(Permission denied|Read-only file system)"
    else:
        folder, reason = tmp_path / "ro", "Permission denied"
        folder.mkdir()
        folder.chmod(0o555)
    before = sorted(folder.iterdir())
    try:
        with pytest.raises(InputError, match=f"cannot write calibration file: {reason}$"):
            save_calibration(folder / "anchor.yaml", CALIBRATIONS["pinhole"])
        assert sorted(folder.iterdir()) == before
    finally:
        if folder != Path("/sys"):
            folder.chmod(0o755)


def test_save_into_missing_or_non_directory_parent(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot write calibration file: No such file or directory"):
        save_calibration(tmp_path / "missing" / "anchor.yaml", CALIBRATIONS["pinhole"])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write calibration file: Not a directory"):
        save_calibration(blocker / "anchor.yaml", CALIBRATIONS["pinhole"])
    with pytest.raises(InputError, match="cannot write calibration file"):
        save_calibration(tmp_path, CALIBRATIONS["pinhole"])  # a directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_save_keeps_existing_mode_and_new_files_follow_umask(tmp_path: Path) -> None:
    path = tmp_path / "anchor.yaml"
    old = os.umask(0o022)
    try:
        save_calibration(path, CALIBRATIONS["pinhole"])
        assert path.stat().st_mode & 0o777 == 0o644
        path.chmod(0o640)
        save_calibration(path, CALIBRATIONS["awkward"])
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
