"""rosbag2 bags (sqlite3 and mcap) with the topics of SPEC.md, through ``rosbags`` only.

Nothing here imports rclpy: messages are ``rosbags`` dataclasses, serialised to CDR
exactly as ROS 2 does, so bags written here play with ``ros2 bag`` and deserialise with
``rclpy.serialization``; bags recorded by ROS 2 tools read here.

- ``BagWriter`` writes frames (image + ``hdr_dcs_msgs/ExposureInfo`` with one stamp),
  camera infos, HDR images (32FC3) and any other message, raw CDR bytes included.
- ``BagReader`` lists topics and yields messages in log-time order, deserialised with the
  bag's own message definitions when it carries them (so ExposureInfo from other tools
  works), or undeserialised for verbatim copying.
- ``frame_from_messages``, ``calibration_from_msg``, ``hdr_from_msg`` turn messages (rosbags
  or rclpy alike: duck-typed) into the project's types.

Units: every time is an ``int`` of nanoseconds (``*_ns``): header stamps are mid-exposure
times (SPEC.md), log times are when a message was recorded (by default its stamp).
Exposure times are seconds in ``Exposure`` and microseconds on the wire.

Every failure to read a bag is a ``BagError`` (an ``InputError``) with one line naming the
bag's path, never a raw exception from rosbags, sqlite or the mcap parser.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple

import numpy as np
from rosbags.interfaces import MessageDefinitionFormat, Nodetype
from rosbags.rosbag2 import Reader, Writer
from rosbags.rosbag2.writer import StoragePlugin
from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore
from ruamel.yaml import YAML

from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import ImageEncodingError, InputError
from hdr_dcs.core.photometry import from_unit, luminance
from hdr_dcs.core.types import Exposure, Frame, Role
from hdr_dcs.io.image_msg import image_to_numpy, lookup_encoding, numpy_to_image_fields, to_rgb_unit

__all__ = [
    "CAMERA_INFO",
    "DIAGNOSTIC_ARRAY",
    "EXPOSURE_INFO",
    "EXPOSURE_INFO_MSG",
    "IMAGE",
    "BagError",
    "BagMessage",
    "BagReader",
    "BagWriter",
    "RawBagMessage",
    "Topics",
    "calibration_from_msg",
    "frame_from_messages",
    "hdr_from_msg",
    "make_typestore",
    "read_frames",
    "stamp_ns_of",
]

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
EXPOSURE_INFO = "hdr_dcs_msgs/msg/ExposureInfo"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"

#: hdr_dcs_msgs/msg/ExposureInfo, identical to msg/msg/ExposureInfo.msg (a test checks it).
EXPOSURE_INFO_MSG = """\
std_msgs/Header header        # stamp: mid-exposure time of the frame; frame_id: camera optical frame
uint8 ROLE_REFERENCE=0
uint8 ROLE_LOW=1
uint8 ROLE_HIGH=2
uint8 role
float64 exposure_time_us      # the exposure actually used for this frame
float64 gain_db               # analog gain actually used (0 = unity)
uint32 sequence_id            # per-camera frame counter, increments by 1 per captured frame
"""

Camera = Literal["reference", "anchor"]
_CAMERAS = ("reference", "anchor")
_STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
_INT32_MAX = 2**31 - 1
_UINT32_MAX = 2**32 - 1
_UINT64_MAX = 2**64 - 1
_NS = 1_000_000_000


class BagError(InputError):
    """A bag that cannot be read or written: missing, not a bag, corrupt, unknown types."""


# --- type store ---------------------------------------------------------------------------

def _new_typestore() -> Typestore:
    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(EXPOSURE_INFO_MSG, EXPOSURE_INFO))
    return store


@functools.cache
def make_typestore() -> Typestore:
    """The ROS 2 Kilted types plus ``hdr_dcs_msgs/msg/ExposureInfo`` (one shared instance).

    Treat it as read-only: register extra types in a store of your own
    (``get_typestore(Stores.ROS2_KILTED)``), as ``BagReader`` and ``BagWriter`` do.
    """
    return _new_typestore()


def _parse_definition(msgtype: str, fmt: MessageDefinitionFormat, text: str) -> dict[str, Any]:
    """A bag connection's message definition -> rosbags typesdict (the type and its deps)."""
    if fmt == MessageDefinitionFormat.MSG:
        return dict(get_types_from_msg(text, msgtype))
    sep = "=" * 80 + "\n"
    typs: dict[str, Any] = {}
    if text.startswith(f"{sep}IDL: "):
        for section in text.split(sep)[1:]:
            _, idl = section.split("\n", 1)
            typs.update(get_types_from_idl(idl))
    else:
        typs.update(get_types_from_idl(text))
    return typs


def _same_fields(a: Any, b: Any) -> bool:
    """Whether two typesdict entries (consts, fields) describe the same wire layout."""
    return [(n.lower(), d) for n, d in a[1]] == [(n.lower(), d) for n, d in b[1]]


def _undefined_dependency(store: Typestore, msgtype: str) -> str | None:
    """The first type ``msgtype`` uses (transitively) that ``store`` does not define."""
    todo, done = [msgtype], set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        if name not in store.fielddefs:
            return name
        for _, desc in store.fielddefs[name][1]:
            while desc[0] in (Nodetype.ARRAY, Nodetype.SEQUENCE):
                desc = desc[1][0]
            if desc[0] == Nodetype.NAME:
                todo.append(desc[1])
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# --- topics and messages ------------------------------------------------------------------

@dataclass(frozen=True)
class Topics:
    """Topic names (SPEC.md defaults); remap with ``dataclasses.replace(Topics(), ...)``."""

    reference_image: str = "/dcs/reference/image_raw"
    reference_exposure: str = "/dcs/reference/exposure"
    reference_info: str = "/dcs/reference/camera_info"
    anchor_image: str = "/dcs/anchor/image_raw"
    anchor_exposure: str = "/dcs/anchor/exposure"
    anchor_info: str = "/dcs/anchor/camera_info"
    hdr_image: str = "/dcs/hdr/image"
    hdr_tonemapped: str = "/dcs/hdr/tonemapped"
    ground_truth: str = "/dcs/ground_truth/hdr"
    diagnostics: str = "/diagnostics"

    def image(self, camera: Camera) -> str:
        """The image topic of ``camera`` ("reference" or "anchor")."""
        return getattr(self, f"{_check_camera(camera)}_image")

    def exposure(self, camera: Camera) -> str:
        """The ExposureInfo topic of ``camera``."""
        return getattr(self, f"{_check_camera(camera)}_exposure")

    def info(self, camera: Camera) -> str:
        """The CameraInfo topic of ``camera``."""
        return getattr(self, f"{_check_camera(camera)}_info")

    def resolve(self, key_or_name: str) -> str:
        """A field name of this class (``"ground_truth"``) -> its topic; anything else is
        taken as a topic name as it is."""
        if not isinstance(key_or_name, str) or not key_or_name:
            raise BagError(f"a topic must be a non-empty string, got {key_or_name!r}")
        if key_or_name in _TOPIC_KEYS:
            return getattr(self, key_or_name)
        return key_or_name


_TOPIC_KEYS = frozenset(f.name for f in fields(Topics))


def _check_camera(camera: str) -> str:
    if camera not in _CAMERAS:
        raise InputError(f"camera must be 'reference' or 'anchor', got {camera!r}")
    return camera


class BagMessage(NamedTuple):
    """One deserialised message: ``msg`` is a rosbags dataclass of type ``msgtype``."""

    topic: str
    msgtype: str
    log_time_ns: int
    msg: Any


class RawBagMessage(NamedTuple):
    """One message as stored: CDR bytes plus what a writer needs to copy it verbatim.

    Attributes:
        msgdef: the connection's message definition text ("" when the bag has none).
        rihs01: the connection's type hash ("RIHS01_..."; "" when the bag has none).
    """

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes
    msgdef: str
    rihs01: str


# --- stamps -------------------------------------------------------------------------------

def _check_time_ns(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{what} must be an integer number of nanoseconds, got {value!r}")
    value = int(value)
    if value < 0 or value > _UINT64_MAX:
        raise InputError(f"{what} must be in [0, 2**64) ns, got {value}")
    return value


def _stamp(store: Typestore, stamp_ns: int) -> Any:
    stamp_ns = _check_time_ns(stamp_ns, "stamp_ns")
    sec, nanosec = divmod(stamp_ns, _NS)
    if sec > _INT32_MAX:
        raise InputError(f"stamp_ns {stamp_ns} does not fit builtin_interfaces/Time (int32 seconds)")
    return store.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def _header(store: Typestore, stamp_ns: int, frame_id: str) -> Any:
    if not isinstance(frame_id, str):
        raise InputError(f"frame_id must be a string, got {frame_id!r}")
    return store.types["std_msgs/msg/Header"](stamp=_stamp(store, stamp_ns), frame_id=frame_id)


def stamp_ns_of(msg: Any) -> int:
    """``msg.header.stamp`` in nanoseconds (rosbags or rclpy message)."""
    try:
        stamp = msg.header.stamp
        return int(stamp.sec) * _NS + int(stamp.nanosec)
    except AttributeError:
        raise InputError(f"{type(msg).__name__} has no header.stamp") from None


# --- conversions --------------------------------------------------------------------------

def _pixels_to_array(pixels: np.ndarray, encoding: str) -> np.ndarray:
    """Frame pixels ((H, W, 3) float RGB in [0, 1]) -> an array in ``encoding``'s layout.

    Integer encodings get codes ``from_unit`` rounds to nearest (bit-exact for pixels that
    came from codes of the same depth); mono takes Rec. 709 luminance of the (non-linear)
    values, exact for mono-derived frames whose three channels are equal; alpha is opaque.
    32F encodings carry the values as they are.
    """
    enc = lookup_encoding(encoding)
    if enc.order == "any":
        raise ImageEncodingError(f"{enc.name} has 2 channels: a frame cannot be written with it")
    rgb = np.asarray(pixels)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype.kind != "f":
        raise InputError(f"frame pixels must be (H, W, 3) float RGB, got {rgb.dtype} {rgb.shape}")
    if not np.all(np.isfinite(rgb)):
        raise InputError("frame pixels contain NaN or Inf")
    rgb = rgb.astype(np.float32, copy=False)
    if enc.order == "mono":
        values = luminance(rgb)[:, :, None]
    else:
        values = rgb if enc.order in ("rgb", "rgba") else rgb[:, :, ::-1]
        if enc.channels == 4:
            values = np.concatenate([values, np.ones_like(values[:, :, :1])], axis=2)
    if enc.dtype.kind == "f":
        return np.ascontiguousarray(values, dtype=np.float32)
    return from_unit(values, enc.dtype.type)


def frame_from_messages(image_msg: Any, exposure_msg: Any, *, max_code: int | None = None) -> Frame:
    """A sensor_msgs/Image and its hdr_dcs_msgs/ExposureInfo -> ``Frame``.

    Pixels become float32 (H, W, 3) RGB in [0, 1] (``to_rgb_unit``: codes / max code);
    ``stamp_ns`` and ``frame_id`` come from the image header; exposure_time_s =
    exposure_time_us / 1e6.

    Args:
        max_code: the largest code when the camera does not fill its dtype (4095 for 12-bit
            codes in mono16), else the dtype's maximum.
    Raises:
        InputError: the two header stamps differ (they must be identical, SPEC.md), an
            unknown role, a non-positive or non-finite exposure, or a bad image
            (ImageEncodingError).
    """
    image_stamp, exposure_stamp = stamp_ns_of(image_msg), stamp_ns_of(exposure_msg)
    if image_stamp != exposure_stamp:
        raise InputError(
            f"image stamp {image_stamp} ns and ExposureInfo stamp {exposure_stamp} ns differ "
            f"by {image_stamp - exposure_stamp} ns; they must be identical"
        )
    try:
        role = Role(int(exposure_msg.role))
    except ValueError:
        raise InputError(f"ExposureInfo role {exposure_msg.role} is not 0, 1 or 2") from None
    try:
        exposure = Exposure(float(exposure_msg.exposure_time_us) / 1e6, float(exposure_msg.gain_db))
    except ValueError as exc:
        raise InputError(f"ExposureInfo at {image_stamp} ns: {exc}") from None
    pixels = to_rgb_unit(image_msg, max_code=max_code)
    return Frame(pixels=pixels, stamp_ns=image_stamp, role=role, exposure=exposure,
                 sequence_id=int(exposure_msg.sequence_id), frame_id=str(image_msg.header.frame_id))


def calibration_from_msg(camera_info_msg: Any, camera_name: str = "") -> CameraCalibration:
    """A sensor_msgs/CameraInfo (rosbags or rclpy) -> ``CameraCalibration``.

    K, R (3x3) and P (3x4) are read row-major; D keeps its length. CameraInfo has no
    camera name: pass it when wanted.

    Raises:
        InputError: non-positive image size, wrong matrix sizes, NaN or Inf.
    """
    m = camera_info_msg
    try:
        return CameraCalibration(
            width=int(m.width), height=int(m.height),
            k=np.asarray(m.k, dtype=np.float64), d=np.asarray(m.d, dtype=np.float64),
            r=np.asarray(m.r, dtype=np.float64), p=np.asarray(m.p, dtype=np.float64),
            distortion_model=str(m.distortion_model), camera_name=camera_name,
        )
    except AttributeError as exc:
        raise InputError(f"{type(m).__name__} is not a CameraInfo message ({exc})") from None


def hdr_from_msg(image_msg: Any) -> np.ndarray:
    """A 32FC3 sensor_msgs/Image (``/dcs/hdr/image``, ``/dcs/ground_truth/hdr``) -> (H, W, 3)
    float32 RGB radiance (SPEC.md units: per second of exposure at unity gain), unclipped.

    Raises:
        ImageEncodingError: any encoding other than 32FC3, or a malformed image.
        InputError: NaN or Inf values.
    """
    encoding = getattr(image_msg, "encoding", None)
    if encoding != "32FC3":
        raise ImageEncodingError(f"an HDR image must be 32FC3, got {encoding!r}")
    hdr = image_to_numpy(image_msg)
    bad = int(np.count_nonzero(~np.isfinite(hdr)))
    if bad:
        raise InputError(f"HDR image contains {bad} NaN or Inf values")
    return hdr


# --- writer -------------------------------------------------------------------------------

def _is_removable_bag(path: Path) -> bool:
    """An empty folder, or a flat folder that holds a bag (metadata.yaml, .mcap or .db3)."""
    entries = list(path.iterdir())
    if any(e.is_dir() and not e.is_symlink() for e in entries):
        return False
    return not entries or any(e.name == "metadata.yaml" or e.suffix in (".mcap", ".db3") for e in entries)


class BagWriter:
    """Writes a rosbag2 bag (format version 9) with one connection per topic, made lazily.

    Use as a context manager (or call ``close()``). On an exception inside the ``with``
    block the partial bag is removed. Log times default to the header stamps.

    Args:
        path: the bag folder to create.
        storage: "mcap" or "sqlite3".
        topics: topic names (SPEC.md defaults).
        overwrite: replace an existing bag at ``path``; only an empty folder or a flat
            folder holding a bag is ever deleted.
    Raises:
        BagError: ``path`` exists (without ``overwrite``), or is not a bag, or an unknown
            storage.
    """

    def __init__(self, path: str | Path, storage: str = "mcap", topics: Topics | None = None,
                 overwrite: bool = False) -> None:
        self.path = Path(path)
        self.topics = topics if topics is not None else Topics()
        if storage not in _STORAGES:
            raise BagError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
        self.storage = storage
        if self.path.exists() or self.path.is_symlink():
            if not overwrite:
                raise BagError(f"{self.path} exists already; refusing to overwrite it "
                               "(pass overwrite=True to replace it)")
            if not self.path.is_dir() or self.path.is_symlink() or not _is_removable_bag(self.path):
                raise BagError(f"{self.path} exists and is not a bag folder; refusing to delete it")
            shutil.rmtree(self.path)
        self._store = make_typestore()
        self._private_store = False
        self._connections: dict[str, Any] = {}
        try:
            self._writer: Writer | None = Writer(self.path, version=9, storage_plugin=_STORAGES[storage])
            self._writer.open()
        except Exception as exc:
            raise BagError(f"cannot create bag {self.path}: {_one_line(exc)}") from exc

    # context manager
    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self) -> None:
        """Finish the bag (index, metadata.yaml). Idempotent."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.close()
            except Exception as exc:
                raise BagError(f"cannot finish bag {self.path}: {_one_line(exc)}") from exc

    def abort(self) -> None:
        """Stop writing and delete the partial bag."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.abort()
            finally:
                shutil.rmtree(self.path, ignore_errors=True)

    @property
    def typestore(self) -> Typestore:
        """The types this writer serialises with (use it to build messages)."""
        return self._store

    # connections
    def _ensure_type(self, msgtype: str, msgdef: str | None) -> None:
        if msgtype in self._store.fielddefs:
            return
        if not msgdef:
            raise BagError(f"unknown message type {msgtype!r}: pass its definition (msgdef)")
        fmt = MessageDefinitionFormat.IDL if msgdef.startswith("=" * 80 + "\nIDL: ") \
            else MessageDefinitionFormat.MSG
        try:
            typs = _parse_definition(msgtype, fmt, msgdef)
        except Exception as exc:
            raise BagError(f"cannot parse the definition of {msgtype}: {_one_line(exc)}") from exc
        if not self._private_store:
            self._store, self._private_store = _new_typestore(), True
        try:
            self._store.register({k: v for k, v in typs.items() if k not in self._store.fielddefs})
        except Exception as exc:
            raise BagError(f"cannot register {msgtype}: {_one_line(exc)}") from exc

    def _connection(self, topic: str, msgtype: str, msgdef: str | None = None,
                    rihs01: str | None = None) -> Any:
        conn = self._connections.get(topic)
        if conn is not None:
            if conn.msgtype != msgtype:
                raise BagError(f"topic {topic} already carries {conn.msgtype}, cannot write {msgtype}")
            return conn
        if self._writer is None:
            raise BagError(f"bag {self.path} is closed")
        if not (msgdef and rihs01):
            self._ensure_type(msgtype, msgdef)
            rihs01 = rihs01 or self._store.hash_rihs01(msgtype)
            msgdef = msgdef or self._store.generate_msgdef(msgtype, ros_version=2)[0]
        conn = self._writer.add_connection(topic, msgtype, msgdef=msgdef, rihs01=rihs01)
        self._connections[topic] = conn
        return conn

    # writing
    def write_message(self, topic: str, msgtype: str, msg: Any, log_time_ns: int, *,
                      msgdef: str | None = None, rihs01: str | None = None) -> None:
        """Write one message.

        Args:
            topic: a topic name or a ``Topics`` field name.
            msgtype: e.g. ``"diagnostic_msgs/msg/DiagnosticArray"``.
            msg: a rosbags message (serialised here with ``typestore``) or CDR bytes
                (``bytes``/``memoryview``/uint8 array, written verbatim).
            log_time_ns: the record time in ns.
            msgdef, rihs01: the type's definition and hash, needed only for types this
                writer does not know (as ``RawBagMessage`` carries them).
        """
        topic = self.topics.resolve(topic)
        log_time_ns = _check_time_ns(log_time_ns, "log_time_ns")
        conn = self._connection(topic, msgtype, msgdef, rihs01)
        if isinstance(msg, (bytes, bytearray, memoryview)):
            data: bytes | memoryview = bytes(msg)
        elif isinstance(msg, np.ndarray) and msg.dtype == np.uint8:
            data = msg.tobytes()
        else:
            self._ensure_type(msgtype, msgdef)
            try:
                data = self._store.serialize_cdr(msg, msgtype)
            except Exception as exc:
                raise BagError(f"cannot serialise a {type(msg).__name__} as {msgtype} on {topic}: "
                               f"{_one_line(exc)}") from exc
        assert self._writer is not None
        self._writer.write(conn, log_time_ns, data)

    def copy_message(self, raw: RawBagMessage, topic: str | None = None) -> None:
        """Write a message read by ``BagReader.raw_messages`` verbatim (same bytes, log time,
        type definition), on its own topic or on ``topic``."""
        self.write_message(topic or raw.topic, raw.msgtype, raw.data, raw.log_time_ns,
                           msgdef=raw.msgdef or None, rihs01=raw.rihs01 or None)

    def write_image(self, topic: str, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str,
                    receive_time_ns: int | None = None) -> None:
        """Write a sensor_msgs/Image from an array in ``encoding``'s layout and dtype
        (``numpy_to_image_fields``: (H, W) or (H, W, C), uint8/uint16/float32, never cast)."""
        image = self._image_msg(array, encoding, stamp_ns, frame_id)
        self.write_message(topic, IMAGE, image, stamp_ns if receive_time_ns is None else receive_time_ns)

    def _image_msg(self, array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
        fields_ = numpy_to_image_fields(array, encoding, as_numpy=True)
        return self._store.types[IMAGE](header=_header(self._store, stamp_ns, frame_id), **fields_)

    def write_frame(self, frame: Frame, camera: Camera, encoding: str = "rgb8",
                    receive_time_ns: int | None = None) -> None:
        """Write a frame as its camera's Image and ExposureInfo, both stamped ``frame.stamp_ns``
        with ``frame.frame_id``.

        Pixels ((H, W, 3) float RGB in [0, 1]) become codes of ``encoding`` rounded to
        nearest (``photometry.from_unit``): bit-exact for pixels that came from codes of that
        depth. Mono encodings store Rec. 709 luminance. ExposureInfo carries role,
        exposure_time_us = exposure_time_s * 1e6, gain_db and sequence_id.

        Args:
            camera: "reference" or "anchor" (the roles are not checked against it).
            receive_time_ns: log time of both messages; defaults to the stamp.
        """
        _check_camera(camera)
        seq = frame.sequence_id
        if isinstance(seq, bool) or not isinstance(seq, numbers.Integral) or not 0 <= seq <= _UINT32_MAX:
            raise InputError(f"sequence_id must be a uint32, got {seq!r}")
        try:
            role = int(Role(frame.role))
        except ValueError:
            raise InputError(f"frame role {frame.role!r} is not a Role (0, 1 or 2)") from None
        array = _pixels_to_array(frame.pixels, encoding)
        image = self._image_msg(array, encoding, frame.stamp_ns, frame.frame_id)
        info = self._store.types[EXPOSURE_INFO](
            header=_header(self._store, frame.stamp_ns, frame.frame_id),
            role=role,
            exposure_time_us=float(frame.exposure.exposure_time_s) * 1e6,
            gain_db=float(frame.exposure.gain_db),
            sequence_id=int(seq),
        )
        log_time = frame.stamp_ns if receive_time_ns is None else receive_time_ns
        self.write_message(self.topics.image(camera), IMAGE, image, log_time)
        self.write_message(self.topics.exposure(camera), EXPOSURE_INFO, info, log_time)

    def write_camera_info(self, camera: Camera, calibration: CameraCalibration, stamp_ns: int,
                          frame_id: str, receive_time_ns: int | None = None) -> None:
        """Write ``calibration`` as a sensor_msgs/CameraInfo on ``camera``'s info topic.

        D, K, R, P are flattened row-major; no binning, empty ROI.
        """
        ts = self._store
        roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                          do_rectify=False)
        msg = ts.types[CAMERA_INFO](
            header=_header(ts, stamp_ns, frame_id),
            height=int(calibration.height), width=int(calibration.width),
            distortion_model=str(calibration.distortion_model),
            d=np.ascontiguousarray(calibration.d, dtype=np.float64).ravel(),
            k=np.ascontiguousarray(calibration.k, dtype=np.float64).ravel(),
            r=np.ascontiguousarray(calibration.r, dtype=np.float64).ravel(),
            p=np.ascontiguousarray(calibration.p, dtype=np.float64).ravel(),
            binning_x=0, binning_y=0, roi=roi,
        )
        self.write_message(self.topics.info(camera), CAMERA_INFO, msg,
                           stamp_ns if receive_time_ns is None else receive_time_ns)

    def write_hdr(self, topic: str, hdr: np.ndarray, stamp_ns: int, frame_id: str,
                  receive_time_ns: int | None = None) -> None:
        """Write an HDR image as 32FC3 RGB (SPEC.md radiance units).

        Args:
            topic: ``"hdr_image"``, ``"ground_truth"`` (``Topics`` field names) or a topic name.
            hdr: (H, W, 3) float RGB radiance; float64 is cast to float32. Must be finite.
        """
        arr = np.asarray(hdr)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype.kind != "f":
            raise InputError(f"an HDR image must be (H, W, 3) float, got {arr.dtype} {arr.shape}")
        arr = arr.astype(np.float32, copy=False)
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise InputError(f"HDR image contains {bad} NaN or Inf values")
        self.write_image(topic, arr, "32FC3", stamp_ns, frame_id, receive_time_ns)


# --- reader -------------------------------------------------------------------------------

def _check_metadata(path: Path) -> list[str]:
    """A metadata.yaml that is not UTF-8 YAML holding a rosbag2_bagfile_information mapping
    -> BagError naming it (rosbags' own checks of the contents follow).

    Returns the names of the bag's storage files (for messages).
    """
    try:
        meta = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except Exception as exc:
        raise BagError(f"corrupt {path}: {_one_line(exc)}") from exc
    info = meta.get("rosbag2_bagfile_information") if isinstance(meta, dict) else None
    if not isinstance(info, dict):
        raise BagError(f"corrupt {path}: no rosbag2_bagfile_information mapping")
    missing = [key for key in _METADATA_KEYS if key not in info]
    if missing:
        raise BagError(f"corrupt {path}: rosbag2_bagfile_information lacks {', '.join(missing)}")
    files = info["relative_file_paths"]
    if not isinstance(files, list) or not files:
        raise BagError(f"corrupt {path}: relative_file_paths is not a list of files")
    return [Path(str(f)).name for f in files]


_METADATA_KEYS = ("version", "storage_identifier", "relative_file_paths", "duration", "starting_time",
                  "message_count", "topics_with_message_count")


class BagReader:
    """Reads a rosbag2 bag (a folder with metadata.yaml, or a bare .mcap / .db3 file).

    Opened on construction; use as a context manager (or call ``close()``).

    Raises:
        BagError: missing path, a folder that is not a bag, corrupt metadata.yaml or storage
            file (also while iterating), a message type neither in ROS 2 Kilted nor defined
            in the bag (when its topic is read).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._reader: Reader | None = None
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_dir():
            if not (self.path / "metadata.yaml").is_file():
                raise BagError(f"{self.path} is not a rosbag2 bag: it has no metadata.yaml")
            files = _check_metadata(self.path / "metadata.yaml")
            where = f"{self.path} ({', '.join(files)})" if files else str(self.path)
        else:
            where = str(self.path)
        self._where = where
        try:
            reader = Reader(self.path)
            reader.open()
        except Exception as exc:
            raise BagError(f"cannot read bag {where}: {_one_line(exc)}") from exc
        self._reader = reader
        try:
            self._connections = list(reader.connections)
            self._count = int(reader.message_count)
            self._start_ns = int(reader.start_time) if self._count else 0
            self._end_ns = int(reader.end_time) - 1 if self._count else 0
        except Exception as exc:
            self.close()
            raise BagError(f"cannot read bag {self.path}: {_one_line(exc)}") from exc
        self._store, self._unknown = self._build_typestore()

    def _build_typestore(self) -> tuple[Typestore, dict[str, str]]:
        """The bag's own definitions take precedence; ROS 2 Kilted + ExposureInfo otherwise.

        Returns the store and {msgtype: why it cannot be deserialised}.
        """
        shared = make_typestore()
        bag_typs: dict[str, Any] = {}
        unknown: dict[str, str] = {}
        seen: set[str] = set()
        for conn in self._connections:
            if conn.msgtype in seen:
                continue
            seen.add(conn.msgtype)
            if conn.msgdef.format == MessageDefinitionFormat.NONE or not conn.msgdef.data:
                continue
            try:
                bag_typs.update(_parse_definition(conn.msgtype, conn.msgdef.format, conn.msgdef.data))
            except Exception as exc:
                unknown[conn.msgtype] = f"its definition in the bag does not parse ({_one_line(exc)})"
        store = shared
        if any(name not in shared.fielddefs or not _same_fields(shared.fielddefs[name], typs)
               for name, typs in bag_typs.items()):
            store = get_typestore(Stores.EMPTY)
            try:
                store.register({**shared.fielddefs, **bag_typs})
            except Exception as exc:
                self.close()
                raise BagError(f"cannot read bag {self.path}: bad message definitions "
                               f"({_one_line(exc)})") from exc
        for msgtype in seen:
            if msgtype in unknown:
                continue
            if msgtype not in store.fielddefs:
                unknown[msgtype] = "it is not a ROS 2 Kilted type and the bag carries no definition"
            elif (missing := _undefined_dependency(store, msgtype)) is not None:
                unknown[msgtype] = f"its definition refers to the undefined type {missing}"
        return store, unknown

    # context manager
    def __enter__(self) -> BagReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the bag. Idempotent."""
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):  # closing a corrupt bag must not mask an error
                reader.close()

    # metadata
    @property
    def typestore(self) -> Typestore:
        """The types messages are deserialised with (the bag's own definitions first)."""
        return self._store

    def topics(self) -> dict[str, tuple[str, int]]:
        """{topic: (msgtype, message count)}. A topic recorded with several types lists them
        joined by ", "."""
        out: dict[str, tuple[str, int]] = {}
        for conn in self._connections:
            if conn.topic in out:
                msgtype, count = out[conn.topic]
                if conn.msgtype not in msgtype.split(", "):
                    msgtype = f"{msgtype}, {conn.msgtype}"
                out[conn.topic] = (msgtype, count + int(conn.msgcount))
            else:
                out[conn.topic] = (conn.msgtype, int(conn.msgcount))
        return out

    @property
    def message_count(self) -> int:
        """Number of messages in the bag."""
        return self._count

    @property
    def start_ns(self) -> int:
        """Log time of the first message in ns (0 for an empty bag)."""
        return self._start_ns

    @property
    def end_ns(self) -> int:
        """Log time of the last message in ns (0 for an empty bag)."""
        return self._end_ns

    @property
    def duration_ns(self) -> int:
        """``end_ns - start_ns`` in ns."""
        return self._end_ns - self._start_ns

    @property
    def duration(self) -> int:
        """Same as ``duration_ns`` (nanoseconds, like rosbags' ``Reader.duration``)."""
        return self.duration_ns

    @property
    def duration_s(self) -> float:
        """``duration_ns`` in seconds."""
        return self.duration_ns * 1e-9

    # messages
    def _selected(self, topics: Iterable[str] | None) -> list[Any]:
        if self._reader is None:
            raise BagError(f"bag {self.path} is closed")
        if topics is None:
            return list(self._connections)
        if isinstance(topics, str):
            topics = [topics]
        wanted = set(topics)
        return [c for c in self._connections if c.topic in wanted]

    def _iterate(self, connections: list[Any]) -> Iterator[tuple[Any, int, bytes]]:
        if not connections:
            return
        assert self._reader is not None
        try:
            yield from self._reader.messages(connections=connections)
        except Exception as exc:
            raise BagError(f"corrupt bag {self._where}: {_one_line(exc)}") from exc

    def raw_messages(self, topics: Iterable[str] | None = None) -> Iterator[RawBagMessage]:
        """Undeserialised messages (CDR bytes) in log-time order, of ``topics`` (names; all
        when None; names absent from the bag select nothing), for verbatim copying with
        ``BagWriter.copy_message``. Works for any message type."""
        connections = self._selected(topics)
        return self._raw(connections)

    def _raw(self, connections: list[Any]) -> Iterator[RawBagMessage]:
        for conn, log_time, data in self._iterate(connections):
            yield RawBagMessage(conn.topic, conn.msgtype, int(log_time), bytes(data),
                                conn.msgdef.data or "", conn.digest or "")

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
        """Deserialised messages in log-time order, of ``topics`` (names; all when None;
        names absent from the bag select nothing).

        Raises:
            BagError: at the call, when a selected topic has a type that cannot be
                deserialised; while iterating, for corrupt data.
        """
        connections = self._selected(topics)
        for conn in connections:
            if conn.msgtype in self._unknown:
                raise BagError(f"bag {self.path}: topic {conn.topic} has message type {conn.msgtype}, "
                               f"which cannot be read: {self._unknown[conn.msgtype]}")
        return self._deserialised(connections)

    def _deserialised(self, connections: list[Any]) -> Iterator[BagMessage]:
        store = self._store
        for conn, log_time, data in self._iterate(connections):
            try:
                msg = store.deserialize_cdr(data, conn.msgtype)
            except Exception as exc:
                raise BagError(f"corrupt bag {self._where}: cannot deserialise the {conn.msgtype} "
                               f"on {conn.topic} at {log_time} ns ({_one_line(exc)})") from exc
            yield BagMessage(conn.topic, conn.msgtype, int(log_time), msg)


def read_frames(reader: BagReader, camera: Camera, topics: Topics | None = None) -> Iterator[Frame]:
    """The frames of ``camera`` in a bag: each image paired with the ExposureInfo of exactly
    its stamp, in log-time order.

    Raises:
        InputError: an image without an ExposureInfo of the same stamp (or the reverse) on
            the camera's topics.
    """
    topics = topics or Topics()
    image_topic, exposure_topic = topics.image(camera), topics.exposure(camera)
    images: dict[int, Any] = {}
    exposures: dict[int, Any] = {}
    for item in reader.messages([image_topic, exposure_topic]):
        stamp = stamp_ns_of(item.msg)
        mine, other = (images, exposures) if item.topic == image_topic else (exposures, images)
        if stamp in other:
            partner = other.pop(stamp)
            image_msg, exposure_msg = (item.msg, partner) if mine is images else (partner, item.msg)
            yield frame_from_messages(image_msg, exposure_msg)
        else:
            mine[stamp] = item.msg
    if images or exposures:
        first = min([*images, *exposures])
        what = "image" if first in images else "ExposureInfo"
        raise InputError(f"{len(images) + len(exposures)} {camera} messages have no partner of the same "
                         f"stamp (first: an {what} at {first} ns)")
