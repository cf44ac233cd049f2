"""Camera response files: the curve every backend uses in place of SPEC.md's gamma 2.2.

A calibrated response (``hdr-dcs calibrate response`` writes it)::

    # hdr_dcs camera response: f^-1 at L = linspace(0, 1, N) (SPEC.md: H = f^-1(L) / (t g))
    kind: tabulated
    inverse_samples: [0.0, 1.6e-05, ..., 1.0]   # N >= 2, strictly increasing, 0 -> 0, 1 -> 1
    method: debevec                             # metadata from here on: optional, not read
    camera_name: reference
    exposures_us: [1000.0, 3500.0, 9000.0]
    trusted_range: [0.0118, 0.9804]

or a gamma curve, f(x) = x ** (1 / gamma)::

    gamma: 2.2                                  # "kind: gamma" may be given too

Reading: ``kind`` is "tabulated" or "gamma" (without it, the file's keys decide);
numbers may be YAML 1.1 or 1.2 floats (``1e-5``); every other key is metadata, returned
as it is. Writing: floats with ``repr`` precision (an exact round trip), atomically (a
temporary file in the same folder, then rename).

Every failure is an ``InputError`` with one line that names the file.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hdr_dcs.core.errors import InputError
from hdr_dcs.core.photometry import DEFAULT_RESPONSE, CameraResponse, GammaResponse, TabulatedResponse

from .calibration_yaml import yaml_float

__all__ = ["ResponseFile", "describe_response", "load_response", "load_response_file",
           "response_from_yaml_text", "response_to_yaml_text", "save_response"]

_KINDS = ("tabulated", "gamma")
_GAMMA_RANGE = (0.1, 10.0)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats (``1e-5``, ``1.5E3``) as numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


@dataclass(frozen=True)
class ResponseFile:
    """A response file's contents.

    Attributes:
        response: the curve (GammaResponse or TabulatedResponse).
        metadata: every other key of the file (method, camera_name, exposures_us, ...).
    """

    response: CameraResponse
    metadata: dict[str, Any] = field(default_factory=dict)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def describe_response(response: CameraResponse) -> str:
    """A short description: "gamma 2.2", "tabulated (256 samples)"."""
    if isinstance(response, GammaResponse):
        return f"gamma {response.gamma:g}"
    if isinstance(response, TabulatedResponse):
        return f"tabulated ({len(response.inverse_samples)} samples)"
    return type(response).__name__


def response_from_yaml_text(text: str, source: str = "<text>") -> ResponseFile:
    """Parse a response file's text (module docstring layout).

    Raises:
        InputError: "<source>: ..." for a syntax error, a missing or unknown kind, samples
            that are not numbers or not a valid curve, a gamma out of [0.1, 10].
    """
    where = f"{source}: "
    try:
        doc = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InputError(f"{where}YAML syntax error{at}: {_one_line(getattr(exc, 'problem', None) or exc)}") \
            from exc
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else f"a {type(doc).__name__}, not a mapping"
        raise InputError(f"{where}response file is {kind}")
    kind = doc.get("kind")
    if kind is None:
        kind = "gamma" if "gamma" in doc and "inverse_samples" not in doc else "tabulated"
    if kind not in _KINDS:
        raise InputError(f"{where}kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    metadata = {k: v for k, v in doc.items() if k not in ("kind", "gamma", "inverse_samples")}
    if kind == "gamma":
        gamma = doc.get("gamma")
        if not _number(gamma) or not math.isfinite(gamma) or not _GAMMA_RANGE[0] <= gamma <= _GAMMA_RANGE[1]:
            raise InputError(f"{where}gamma must be a number in [{_GAMMA_RANGE[0]}, {_GAMMA_RANGE[1]}], "
                             f"got {gamma!r}")
        return ResponseFile(GammaResponse(float(gamma)), metadata)
    samples = doc.get("inverse_samples")
    if samples is None:
        raise InputError(f"{where}missing key inverse_samples (a tabulated response)")
    if not isinstance(samples, list):
        raise InputError(f"{where}inverse_samples must be a list of numbers, got {type(samples).__name__}")
    for i, v in enumerate(samples):
        if not _number(v):
            raise InputError(f"{where}inverse_samples[{i}] is not a number: {v!r}")
    try:
        response = TabulatedResponse.from_array(np.asarray(samples, dtype=np.float64))
    except InputError as exc:
        raise InputError(f"{where}{exc}") from exc
    return ResponseFile(response, metadata)


def load_response_file(path: str | os.PathLike) -> ResponseFile:
    """Read a response file: the curve and its metadata.

    Raises:
        InputError: one line naming ``path``: missing or unreadable file, or bad contents.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{path}: response file not found") from exc
    except IsADirectoryError as exc:
        raise InputError(f"{path}: is a folder, not a response file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read response file: {_one_line(exc)}") from exc
    return response_from_yaml_text(text, str(path))


def load_response(path: str | os.PathLike | None) -> CameraResponse:
    """The curve in ``path``; None or "" -> ``DEFAULT_RESPONSE`` (SPEC.md's gamma 2.2).

    Raises:
        InputError: one line naming ``path`` (see ``load_response_file``).
    """
    if path is None or not str(path).strip():
        return DEFAULT_RESPONSE
    return load_response_file(Path(str(path).strip()).expanduser()).response


def _scalar(value: Any) -> str:
    """One metadata value as YAML flow text (numbers exact)."""
    if isinstance(value, bool) or value is None:
        return yaml.safe_dump(value, default_flow_style=True).splitlines()[0]
    if isinstance(value, (float, np.floating)):
        return yaml_float(float(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    return yaml.safe_dump(str(value), default_flow_style=True, width=1 << 20).splitlines()[0]


def response_to_yaml_text(response: CameraResponse, metadata: dict[str, Any] | None = None) -> str:
    """The file text of ``response`` (GammaResponse or TabulatedResponse) and its metadata
    (plain values: str, numbers, bools, lists of them)."""
    lines = ["# hdr_dcs camera response: f^-1 at L = linspace(0, 1, N) (SPEC.md: H = f^-1(L) / (t g))"]
    if isinstance(response, GammaResponse):
        lines += ["kind: gamma", f"gamma: {yaml_float(response.gamma)}"]
    elif isinstance(response, TabulatedResponse):
        lines += ["kind: tabulated",
                  "inverse_samples: [" + ", ".join(yaml_float(v) for v in response.inverse_samples) + "]"]
    else:
        raise InputError(f"cannot write a {type(response).__name__}: only gamma and tabulated responses")
    for key, value in (metadata or {}).items():
        if key in ("kind", "gamma", "inverse_samples") or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise InputError(f"metadata key {key!r} is reserved or not a plain name")
        lines.append(f"{key}: {_scalar(value)}")
    return "\n".join(lines) + "\n"


def save_response(path: str | os.PathLike, response: CameraResponse, **metadata: Any) -> None:
    """Write ``response`` and ``metadata`` to ``path`` atomically (temporary file, rename).

    Raises:
        InputError: one line naming ``path`` when it cannot be written.
    """
    target = Path(path)
    data = response_to_yaml_text(response, metadata).encode("utf-8")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError(f"{path}: cannot write response file: {exc.strerror or _one_line(exc)}") from exc
