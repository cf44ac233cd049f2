"""Camera calibration files in the camera_calibration_parsers YAML layout.

The layout ROS ``camera_calibration`` writes and ``camera_info_manager`` reads::

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
      data: [-0.1, 0.01, 0.0, 0.0, 0.0]
    rectification_matrix:
      rows: 3
      cols: 3
      data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    projection_matrix:
      rows: 3
      cols: 4
      data: [500.0, 0.0, 319.5, 0.0, 0.0, 500.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]

Reading (like camera_calibration_parsers): image_width, image_height and the four
matrices are required; ``camera_name`` defaults to "" and ``distortion_model`` to
"plumb_bob"; other keys are ignored. Each matrix needs integer ``rows`` and ``cols`` with
rows * cols == len(data); K and R must be 3x3, P 3x4, D a single row (or column) of any
length. Numbers may be written as YAML 1.1 or 1.2 floats (``1e-5`` is a number here, as
it is for yaml-cpp, although PyYAML alone would read it as a string).

Writing: the same layout, each float written with ``repr`` precision (always with a
decimal point, so any YAML reader sees a float), hence an exact round trip. Files are
written atomically: a temporary file in the same directory, fsync, then rename.

Every failure is an ``InputError`` with a one-line message that names the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from pathlib import Path

import numpy as np
import yaml

from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError

__all__ = ["calibration_from_yaml_text", "calibration_to_yaml_text", "load_calibration",
           "save_calibration", "yaml_float"]

_REQUIRED = ("image_width", "image_height", "camera_matrix", "distortion_coefficients",
             "rectification_matrix", "projection_matrix")


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats (``1e-5``, ``1.5E3``) as numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return _one_line(f"YAML syntax error{where}: {problem}")


def _integer(doc: dict, key: str, where: str) -> int:
    value = doc[key]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}{key} must be an integer, got {value!r}")
    return value


def _matrix(doc: dict, key: str, shape: tuple[int, int] | None, where: str) -> np.ndarray:
    """The ``{rows, cols, data}`` mapping ``doc[key]`` as a float64 (rows, cols) array.

    ``shape`` None: a single row or column of any length, returned flat.
    """
    node = doc[key]
    if not isinstance(node, dict):
        raise InputError(f"{where}{key} must be a mapping with rows, cols and data, got {node!r}")
    missing = [k for k in ("rows", "cols", "data") if k not in node]
    if missing:
        raise InputError(f"{where}{key} is missing {', '.join(missing)}")
    rows = _integer(node, "rows", f"{where}{key}.")
    cols = _integer(node, "cols", f"{where}{key}.")
    data = node["data"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise InputError(f"{where}{key}.data must be a list of numbers, got {data!r}")
    for i, v in enumerate(data):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{where}{key}.data[{i}] is not a number: {v!r}")
    if rows < 0 or cols < 0 or rows * cols != len(data):
        raise InputError(f"{where}{key} has rows={rows}, cols={cols} but {len(data)} values")
    values = np.array(data, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise InputError(f"{where}{key}.data contains NaN or Inf")
    if shape is None:
        if rows > 1 and cols > 1:
            raise InputError(f"{where}{key} must be a single row, got {rows}x{cols}")
        return values
    if (rows, cols) != shape:
        raise InputError(f"{where}{key} must be {shape[0]}x{shape[1]}, got {rows}x{cols}")
    return values.reshape(shape)


def _text(doc: dict, key: str, default: str, where: str) -> str:
    value = doc.get(key, default)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise InputError(f"{where}{key} must be a string, got {value!r}")


def calibration_from_yaml_text(text: str, source: str = "<text>") -> CameraCalibration:
    """Parse calibration YAML text (module docstring layout) into a CameraCalibration.

    Args:
        text: the YAML document.
        source: how to name the text in error messages (a file path, say).

    Raises:
        InputError: "<source>: ..." for a syntax error, a missing key, a malformed matrix
            or values CameraCalibration refuses.
    """
    where = f"{source}: "
    try:
        doc = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise InputError(f"{where}{_yaml_error(exc)}") from exc
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else f"a {type(doc).__name__}, not a mapping"
        raise InputError(f"{where}calibration YAML is {kind}")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise InputError(f"{where}missing key(s): {', '.join(missing)}")
    width = _integer(doc, "image_width", where)
    height = _integer(doc, "image_height", where)
    k = _matrix(doc, "camera_matrix", (3, 3), where)
    d = _matrix(doc, "distortion_coefficients", None, where)
    r = _matrix(doc, "rectification_matrix", (3, 3), where)
    p = _matrix(doc, "projection_matrix", (3, 4), where)
    model = _text(doc, "distortion_model", "plumb_bob", where)
    name = _text(doc, "camera_name", "", where)
    try:
        return CameraCalibration(width, height, k, d, r, p, model, name)
    except InputError as exc:
        raise InputError(f"{where}{exc}") from exc


def load_calibration(path: str | os.PathLike) -> CameraCalibration:
    """Read a camera_calibration_parsers YAML file.

    Raises:
        InputError: one line naming ``path``: missing or unreadable file, YAML syntax error,
            missing keys, rows * cols != len(data), non-numeric data, wrong matrix shapes.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{path}: calibration file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read calibration file: {_one_line(exc)}") from exc
    return calibration_from_yaml_text(text, str(path))


def yaml_float(x: float) -> str:
    """Shortest exact text of ``x`` that every YAML reader parses as a float."""
    s = repr(float(x))
    mantissa, e, exponent = s.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def _name(name: str) -> str:
    """``name`` as a YAML scalar: plain when it reads back unchanged, else double-quoted."""
    if name and "\n" not in name:
        try:
            if yaml.load(f"camera_name: {name}\n", Loader=_Loader) == {"camera_name": name}:
                return name
        except yaml.YAMLError:
            pass
    return json.dumps(name, ensure_ascii=False)


def _block(key: str, m: np.ndarray, rows: int, cols: int) -> str:
    data = ", ".join(yaml_float(v) for v in np.asarray(m, dtype=np.float64).ravel())
    return f"{key}:\n  rows: {rows}\n  cols: {cols}\n  data: [{data}]\n"


def calibration_to_yaml_text(calib: CameraCalibration) -> str:
    """The calibration as YAML text in the camera_calibration_parsers layout (exact floats)."""
    return (f"image_width: {int(calib.width)}\n"
            f"image_height: {int(calib.height)}\n"
            f"camera_name: {_name(calib.camera_name)}\n"
            + _block("camera_matrix", calib.k, 3, 3)
            + f"distortion_model: {_name(calib.distortion_model)}\n"
            + _block("distortion_coefficients", calib.d, 1, calib.d.size)
            + _block("rectification_matrix", calib.r, 3, 3)
            + _block("projection_matrix", calib.p, 3, 4))


def save_calibration(path: str | os.PathLike, calib: CameraCalibration) -> None:
    """Write ``calib`` to ``path`` atomically (temporary file in the same directory, fsync, rename).

    Readers see either the old file or the complete new one; on failure the temporary file is
    removed and an existing file at ``path`` is left untouched. A new file gets mode 0666
    minus the umask; an existing file keeps its permission bits.

    Raises:
        InputError: one line naming ``path`` when it cannot be written.
    """
    target = Path(path)
    data = calibration_to_yaml_text(calib).encode("utf-8")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = -1
    try:
        try:
            mode = os.stat(target).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode != 0o666:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        reason = exc.strerror or _one_line(exc)
        raise InputError(f"{path}: cannot write calibration file: {reason}") from exc
    try:  # make the rename itself durable; best effort (not every filesystem allows it)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
