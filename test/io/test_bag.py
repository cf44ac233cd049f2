"""rosbag2 bags through hdr_dcs.io.bag: exact round trips (mcap and sqlite3), interoperability
with rclpy's serialisation in both directions, bags from other tools, and damaged bags."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.writer import StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.photometry import to_unit
from hdr_dcs.core.types import Exposure, Frame, Role
from hdr_dcs.io.bag import (
    CAMERA_INFO,
    DIAGNOSTIC_ARRAY,
    EXPOSURE_INFO,
    EXPOSURE_INFO_MSG,
    IMAGE,
    BagError,
    BagReader,
    BagWriter,
    Topics,
    calibration_from_msg,
    frame_from_messages,
    hdr_from_msg,
    make_typestore,
    read_frames,
)
from hdr_dcs.io.image_msg import image_to_numpy, numpy_to_image_fields

REPO = Path(__file__).resolve().parents[2]
STORAGES = ["mcap", "sqlite3"]
EXT = {"mcap": ".mcap", "sqlite3": ".db3"}
H, W = 24, 32
T0 = 1_700_000_000_123_456_789  # ns; a realistic epoch stamp with all nanosecond digits used
REF_PERIOD = 33_333_333


# --- a small rig bag ------------------------------------------------------------------------

def _codes(rng: np.random.Generator, dtype: type) -> np.ndarray:
    return rng.integers(0, np.iinfo(dtype).max, size=(H, W, 3), dtype=dtype, endpoint=True)


@dataclasses.dataclass
class RigBag:
    path: Path
    reference: list[Frame]
    anchor: list[Frame]
    anchor_receive_ns: list[int]
    ref_cal: CameraCalibration
    anchor_cal: CameraCalibration
    cal_stamp_ns: int
    ground_truth: list[np.ndarray]
    diagnostics_ns: int

    def expected_log_times(self) -> list[int]:
        times = [f.stamp_ns for f in self.reference for _ in range(2)]        # image + exposure
        times += [t for t in self.anchor_receive_ns for _ in range(2)]
        times += [self.cal_stamp_ns] * 2 + [f.stamp_ns for f in self.reference]  # infos, ground truth
        times += [self.diagnostics_ns]
        return sorted(times)


def write_rig_bag(path: Path, storage: str) -> RigBag:
    rng = np.random.default_rng(42)
    reference = [
        Frame(to_unit(_codes(rng, np.uint8)), T0 + i * REF_PERIOD, Role.REFERENCE,
              Exposure(0.01, 0.0), sequence_id=100 + i, frame_id="reference_optical")
        for i in range(5)
    ]
    anchor = [
        Frame(to_unit(_codes(rng, np.uint16)), T0 + 12_345_678 + i * 2 * REF_PERIOD,
              Role.LOW if i % 2 == 0 else Role.HIGH, Exposure(0.0025 if i % 2 == 0 else 0.04, 1.5),
              sequence_id=7 + i, frame_id="anchor_optical")
        for i in range(3)
    ]
    receive = [f.stamp_ns + 2_000_000 for f in anchor]  # the anchor's log time lags its stamp
    ref_cal = CameraCalibration.pinhole(W, H, 30.0)
    c, s = np.cos(0.02), np.sin(0.02)
    anchor_cal = CameraCalibration(
        W, H, k=[[31.5, 0, 15.2], [0, 31.4, 11.7], [0, 0, 1]],
        d=[-0.11, 0.02, 1e-4, -2e-4, 0.003, 0.01, -0.02, 0.001],
        r=[[c, 0, s], [0, 1, 0], [-s, 0, c]], p=[[30, 0, 16.5, 0], [0, 30, 11.5, 0], [0, 0, 1, 0]],
        distortion_model="rational_polynomial")
    ground_truth = [rng.lognormal(0.0, 3.0, size=(H, W, 3)).astype(np.float32) for _ in reference]
    cal_stamp = T0 - 1_000
    diag_ns = T0 + 50_000_000

    with BagWriter(path, storage=storage) as bag:
        # written out of log-time order on purpose: the reader must sort
        bag.write_camera_info("reference", ref_cal, cal_stamp, "reference_optical")
        bag.write_camera_info("anchor", anchor_cal, cal_stamp, "anchor_optical")
        for frame, recv in zip(anchor, receive, strict=True):
            bag.write_frame(frame, "anchor", "rgb16", receive_time_ns=recv)
        for frame, gt in zip(reference, ground_truth, strict=True):
            bag.write_frame(frame, "reference", "rgb8")
            bag.write_hdr("ground_truth", gt, frame.stamp_ns, "reference_optical")
        ts = bag.typestore
        status = ts.types["diagnostic_msgs/msg/DiagnosticStatus"](
            level=0, name="hdr_dcs: merge", message="ok", hardware_id="rig",
            values=[ts.types["diagnostic_msgs/msg/KeyValue"](key="fps", value="30.0")])
        diag = ts.types[DIAGNOSTIC_ARRAY](
            header=ts.types["std_msgs/msg/Header"](
                stamp=ts.types["builtin_interfaces/msg/Time"](sec=diag_ns // 10**9, nanosec=diag_ns % 10**9),
                frame_id=""),
            status=[status])
        bag.write_message("diagnostics", DIAGNOSTIC_ARRAY, diag, diag_ns)
    return RigBag(path, reference, anchor, receive, ref_cal, anchor_cal, cal_stamp, ground_truth, diag_ns)


@pytest.fixture(scope="module", params=STORAGES)
def rig(request, tmp_path_factory) -> RigBag:
    return write_rig_bag(tmp_path_factory.mktemp("rig") / f"rig_{request.param}", request.param)


@pytest.fixture(scope="module")
def rclpy_msgs():
    import hdr_dcs_msgs.msg
    import rclpy.serialization
    import sensor_msgs.msg

    return rclpy.serialization, sensor_msgs.msg, hdr_dcs_msgs.msg


def same_frame(a: Frame, b: Frame) -> bool:
    return (np.array_equal(a.pixels, b.pixels) and a.pixels.dtype == b.pixels.dtype == np.float32
            and (a.stamp_ns, a.role, a.exposure, a.sequence_id, a.frame_id)
            == (b.stamp_ns, b.role, b.exposure, b.sequence_id, b.frame_id))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def read_everything(path: Path) -> None:
    """Open a bag and read every message, deserialised and raw."""
    with BagReader(path) as bag:
        bag.topics()
        for _ in bag.messages():
            pass
        for _ in bag.raw_messages():
            pass


# --- the message definition ---------------------------------------------------------------

def test_embedded_exposure_info_definition_equals_msg_file():
    assert (REPO / "msg" / "msg" / "ExposureInfo.msg").read_text() == EXPOSURE_INFO_MSG


def test_typestore_is_cached_and_knows_exposure_info():
    ts = make_typestore()
    assert make_typestore() is ts
    assert EXPOSURE_INFO in ts.types and IMAGE in ts.types and DIAGNOSTIC_ARRAY in ts.types
    info = ts.types[EXPOSURE_INFO]
    assert (info.ROLE_REFERENCE, info.ROLE_LOW, info.ROLE_HIGH) == (0, 1, 2)


def test_exposure_info_hash_matches_the_built_package():
    """The type hash rosbags computes is the one rosidl generated for hdr_dcs_msgs, so
    ros2 bag play / ros2 topic match the bag's ExposureInfo to the installed type."""
    import json
    import sys
    json_path = Path(sys.prefix) / "share" / "hdr_dcs_msgs" / "msg" / "ExposureInfo.json"
    assert json_path.is_file(), f"{json_path} not installed (scripts/setup.sh builds hdr_dcs_msgs)"
    hashes = json.loads(json_path.read_text())["type_hashes"]
    built = next(h["hash_string"] for h in hashes if h["type_name"] == EXPOSURE_INFO)
    assert make_typestore().hash_rihs01(EXPOSURE_INFO) == built


# --- round trips ----------------------------------------------------------------------------

def test_topics_counts_and_times(rig: RigBag):
    t = Topics()
    with BagReader(rig.path) as bag:
        assert bag.topics() == {
            t.reference_image: (IMAGE, 5), t.reference_exposure: (EXPOSURE_INFO, 5),
            t.reference_info: (CAMERA_INFO, 1), t.anchor_image: (IMAGE, 3),
            t.anchor_exposure: (EXPOSURE_INFO, 3), t.anchor_info: (CAMERA_INFO, 1),
            t.ground_truth: (IMAGE, 5), t.diagnostics: (DIAGNOSTIC_ARRAY, 1),
        }
        times = rig.expected_log_times()
        assert bag.message_count == len(times) == 24
        assert (bag.start_ns, bag.end_ns) == (times[0], times[-1])
        assert bag.duration == bag.duration_ns == times[-1] - times[0]
        assert bag.duration_s == pytest.approx((times[-1] - times[0]) * 1e-9)


def test_messages_come_in_log_time_order(rig: RigBag):
    with BagReader(rig.path) as bag:
        items = list(bag.messages())
        assert [m.log_time_ns for m in items] == rig.expected_log_times()
        raw = list(bag.raw_messages())
        assert [(r.topic, r.log_time_ns) for r in raw] == [(m.topic, m.log_time_ns) for m in items]
        # image and exposure of one frame share their log time; pair counts by topic agree
        only = list(bag.messages([Topics().anchor_exposure]))
        assert [m.log_time_ns for m in only] == rig.anchor_receive_ns
        assert all(m.msgtype == EXPOSURE_INFO for m in only)
        assert list(bag.messages(["/not/in/this/bag"])) == []


def test_frames_round_trip_bit_exact(rig: RigBag):
    t = Topics()
    with BagReader(rig.path) as bag:
        msgs = list(bag.messages())
        for camera, frames in (("reference", rig.reference), ("anchor", rig.anchor)):
            images = [m.msg for m in msgs if m.topic == t.image(camera)]
            exposures = [m.msg for m in msgs if m.topic == t.exposure(camera)]
            encoding = "rgb8" if camera == "reference" else "rgb16"
            assert [i.encoding for i in images] == [encoding] * len(frames)
            assert [(i.height, i.width) for i in images] == [(H, W)] * len(frames)
            back = [frame_from_messages(i, e) for i, e in zip(images, exposures, strict=True)]
            assert len(back) == len(frames)
            for got, want in zip(back, frames, strict=True):
                assert same_frame(got, want)
            assert all(same_frame(g, w) for g, w in zip(read_frames(bag, camera), frames, strict=True))


def test_calibration_and_ground_truth_round_trip(rig: RigBag):
    t = Topics()
    with BagReader(rig.path) as bag:
        infos = {m.topic: m.msg for m in bag.messages([t.reference_info, t.anchor_info])}
        assert calibration_from_msg(infos[t.reference_info]) == rig.ref_cal
        assert calibration_from_msg(infos[t.anchor_info]) == rig.anchor_cal
        assert calibration_from_msg(infos[t.anchor_info], camera_name="anchor").camera_name == "anchor"
        assert infos[t.anchor_info].header.frame_id == "anchor_optical"
        gts = [m for m in bag.messages([t.ground_truth])]
        assert [m.log_time_ns for m in gts] == [f.stamp_ns for f in rig.reference]
        for m, want in zip(gts, rig.ground_truth, strict=True):
            assert m.msg.encoding == "32FC3"
            assert same_bits(hdr_from_msg(m.msg), want)


def test_diagnostics_round_trip(rig: RigBag):
    with BagReader(rig.path) as bag:
        (diag,) = list(bag.messages(["/diagnostics"]))
        assert diag.log_time_ns == rig.diagnostics_ns
        assert diag.msg.status[0].name == "hdr_dcs: merge"
        assert diag.msg.status[0].values[0].value == "30.0"


@pytest.mark.parametrize("encoding", ["bgr8", "bgr16", "rgba8", "8UC3", "16UC3", "32FC3"])
def test_other_colour_encodings_round_trip(tmp_path, encoding):
    rng = np.random.default_rng(1)
    dtype = np.float32 if encoding == "32FC3" else (np.uint16 if "16" in encoding else np.uint8)
    pixels = rng.random((H, W, 3), dtype=np.float32) if dtype is np.float32 else to_unit(_codes(rng, dtype))
    frame = Frame(pixels, 5_000_000_001, Role.HIGH, Exposure(0.02, 6.0), 3, "cam")
    with BagWriter(tmp_path / "b", storage="sqlite3") as bag:
        bag.write_frame(frame, "anchor", encoding)
    with BagReader(tmp_path / "b") as bag:
        image, exposure = [m.msg for m in bag.messages()]
        assert image.encoding == encoding
        assert same_frame(frame_from_messages(image, exposure), frame)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_frames_round_trip(tmp_path, encoding):
    dtype = np.uint8 if encoding == "mono8" else np.uint16
    codes = np.random.default_rng(2).integers(0, np.iinfo(dtype).max, (H, W), dtype=dtype, endpoint=True)
    pixels = np.repeat(to_unit(codes)[:, :, None], 3, axis=2)  # what to_rgb_unit makes of mono
    frame = Frame(pixels, 77, Role.REFERENCE, Exposure(1 / 30), 0, "mono")
    with BagWriter(tmp_path / "b") as bag:
        bag.write_frame(frame, "reference", encoding)
    with BagReader(tmp_path / "b") as bag:
        image, exposure = [m.msg for m in bag.messages()]
        assert np.array_equal(image_to_numpy(image), codes)
        assert same_frame(frame_from_messages(image, exposure), frame)


def test_remapped_topics(tmp_path):
    topics = dataclasses.replace(Topics(), reference_image="/cam0/image", reference_exposure="/cam0/exposure")
    frame = Frame(np.zeros((2, 3, 3), np.float32), 10, Role.REFERENCE, Exposure(0.01))
    with BagWriter(tmp_path / "b", topics=topics) as bag:
        bag.write_frame(frame, "reference")
        bag.write_hdr("/my/hdr", np.ones((2, 3, 3), np.float32), 10, "x")
    with BagReader(tmp_path / "b") as bag:
        assert set(bag.topics()) == {"/cam0/image", "/cam0/exposure", "/my/hdr"}
        assert [f.stamp_ns for f in read_frames(bag, "reference", topics)] == [10]


def test_verbatim_copy_between_storages(rig: RigBag, tmp_path):
    out = tmp_path / "copy"
    other = "sqlite3" if (rig.path / f"{rig.path.name}.mcap").exists() else "mcap"
    with BagReader(rig.path) as src, BagWriter(out, storage=other) as dst:
        for raw in src.raw_messages():
            dst.copy_message(raw)
        dst.write_hdr("hdr_image", rig.ground_truth[0], rig.reference[0].stamp_ns, "reference_optical")
    with BagReader(rig.path) as a, BagReader(out) as b:
        expected = {**a.topics(), Topics().hdr_image: (IMAGE, 1)}
        assert b.topics() == expected
        copied = [r for r in b.raw_messages() if r.topic != Topics().hdr_image]
        original = list(a.raw_messages())
        assert [(r.topic, r.msgtype, r.log_time_ns, r.data) for r in copied] == \
            [(r.topic, r.msgtype, r.log_time_ns, r.data) for r in original]
        assert {(r.topic, r.msgdef, r.rihs01) for r in copied} == \
            {(r.topic, r.msgdef, r.rihs01) for r in original}
        assert all(r.rihs01.startswith("RIHS01_") and r.msgdef for r in original)


# --- interoperability with rclpy ---------------------------------------------------------------

def test_rclpy_deserialises_the_bags_messages(rig: RigBag, rclpy_msgs):
    serialization, sensor_msgs, hdr_dcs_msgs = rclpy_msgs
    t = Topics()
    with BagReader(rig.path) as bag:
        raw = list(bag.raw_messages())
    by_topic: dict[str, list] = {}
    for r in raw:
        cls = {IMAGE: sensor_msgs.Image, CAMERA_INFO: sensor_msgs.CameraInfo,
               EXPOSURE_INFO: hdr_dcs_msgs.ExposureInfo}.get(r.msgtype)
        if cls is not None:
            by_topic.setdefault(r.topic, []).append(serialization.deserialize_message(r.data, cls))

    for camera, frames, encoding, dtype in (("reference", rig.reference, "rgb8", np.uint8),
                                             ("anchor", rig.anchor, "rgb16", np.uint16)):
        images, exposures = by_topic[t.image(camera)], by_topic[t.exposure(camera)]
        for image, exposure, frame in zip(images, exposures, frames, strict=True):
            codes = np.rint(frame.pixels * np.iinfo(dtype).max).astype(dtype)
            want = numpy_to_image_fields(codes, encoding)
            assert (image.height, image.width, image.encoding, image.step, image.is_bigendian) == \
                (want["height"], want["width"], want["encoding"], want["step"], 0)
            assert bytes(image.data) == want["data"]
            for header in (image.header, exposure.header):
                assert header.stamp.sec * 10**9 + header.stamp.nanosec == frame.stamp_ns
                assert header.frame_id == frame.frame_id
            assert exposure.role == int(frame.role)
            assert exposure.exposure_time_us == frame.exposure.exposure_time_s * 1e6
            assert exposure.gain_db == frame.exposure.gain_db
            assert exposure.sequence_id == frame.sequence_id
            assert same_frame(frame_from_messages(image, exposure), frame)  # rclpy messages too

    for topic, cal in ((t.reference_info, rig.ref_cal), (t.anchor_info, rig.anchor_cal)):
        (info,) = by_topic[topic]
        assert (info.width, info.height, info.distortion_model) == \
            (cal.width, cal.height, cal.distortion_model)
        np.testing.assert_array_equal(np.asarray(info.k), cal.k.ravel())
        np.testing.assert_array_equal(np.asarray(info.r), cal.r.ravel())
        np.testing.assert_array_equal(np.asarray(info.p), cal.p.ravel())
        np.testing.assert_array_equal(np.asarray(info.d), cal.d)
        assert calibration_from_msg(info) == cal

    for image, want in zip(by_topic[t.ground_truth], rig.ground_truth, strict=True):
        assert image.encoding == "32FC3"
        assert same_bits(hdr_from_msg(image), want)


def other_tools_exposure_msgdef() -> str:
    """ExposureInfo as ``ros2 bag record`` stores it: the .msg text (comments and all), then
    its dependencies."""
    generated, _ = make_typestore().generate_msgdef(EXPOSURE_INFO, ros_version=2)
    sep = "=" * 80 + "\n"
    return EXPOSURE_INFO_MSG + sep + generated.split(sep, 1)[1]


@pytest.mark.parametrize("storage", STORAGES)
def test_bag_of_rclpy_serialised_messages_is_read(tmp_path, storage, rclpy_msgs):
    serialization, sensor_msgs, hdr_dcs_msgs = rclpy_msgs
    rng = np.random.default_rng(3)
    codes = [_codes(rng, np.uint16) for _ in range(3)]
    stamps = [T0 + i * REF_PERIOD for i in range(3)]
    ts = make_typestore()
    path = tmp_path / "from_rclpy"
    with Writer(path, version=9, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        c_img = writer.add_connection("/dcs/reference/image_raw", IMAGE, typestore=ts)
        c_exp = writer.add_connection("/dcs/reference/exposure", EXPOSURE_INFO,
                                      msgdef=other_tools_exposure_msgdef(),
                                      rihs01=ts.hash_rihs01(EXPOSURE_INFO))
        c_info = writer.add_connection("/dcs/reference/camera_info", CAMERA_INFO, typestore=ts)
        info = sensor_msgs.CameraInfo(width=W, height=H, distortion_model="plumb_bob",
                                      d=[0.1, -0.2, 0.0, 0.0, 0.05],
                                      k=[30.0, 0, 15.5, 0, 30.0, 11.5, 0, 0, 1],
                                      r=[1.0, 0, 0, 0, 1, 0, 0, 0, 1],
                                      p=[30.0, 0, 15.5, 0, 0, 30, 11.5, 0, 0, 0, 1, 0])
        info.header.frame_id = "reference_optical"
        writer.write(c_info, T0 - 5, serialization.serialize_message(info))
        for i, (frame_codes, stamp) in enumerate(zip(codes, stamps, strict=True)):
            image = sensor_msgs.Image(**numpy_to_image_fields(frame_codes, "bgr16"))
            exposure = hdr_dcs_msgs.ExposureInfo(role=hdr_dcs_msgs.ExposureInfo.ROLE_REFERENCE,
                                                 exposure_time_us=8333.0, gain_db=2.5, sequence_id=40 + i)
            for msg in (image, exposure):
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
                msg.header.frame_id = "reference_optical"
            writer.write(c_img, stamp + 1_000, serialization.serialize_message(image))
            writer.write(c_exp, stamp + 1_500, serialization.serialize_message(exposure))

    with BagReader(path) as bag:
        assert bag.topics()["/dcs/reference/exposure"] == (EXPOSURE_INFO, 3)
        frames = list(read_frames(bag, "reference"))
        (info_msg,) = [m.msg for m in bag.messages(["/dcs/reference/camera_info"])]
    assert [f.stamp_ns for f in frames] == stamps
    assert [f.sequence_id for f in frames] == [40, 41, 42]
    for f, c in zip(frames, codes, strict=True):
        assert np.array_equal(f.pixels, to_unit(c[:, :, ::-1]))  # bgr16 -> RGB
        assert f.exposure == Exposure(8333.0 / 1e6, 2.5) and f.role is Role.REFERENCE
    cal = calibration_from_msg(info_msg)
    assert cal.calibrated and cal.distortion_model == "plumb_bob"
    np.testing.assert_array_equal(cal.d, [0.1, -0.2, 0.0, 0.0, 0.05])
    np.testing.assert_array_equal(cal.p[:, 3], 0.0)


@pytest.mark.parametrize("storage", STORAGES)
def test_the_bags_own_definitions_are_used(tmp_path, storage):
    """A bag from another tool with an extended ExposureInfo and a type unknown here: both
    deserialise with the definitions the bag carries."""
    extended = EXPOSURE_INFO_MSG + "float32 sensor_temperature_c\n"
    thing = "string name\nint64[] values\n"
    other = get_typestore(Stores.ROS2_KILTED)
    other.register(get_types_from_msg(extended, EXPOSURE_INFO))
    other.register(get_types_from_msg(thing, "other_msgs/msg/Thing"))
    path = tmp_path / "other_tool"
    with Writer(path, version=9, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        c_img = writer.add_connection("/dcs/anchor/image_raw", IMAGE, typestore=other)
        c_exp = writer.add_connection("/dcs/anchor/exposure", EXPOSURE_INFO, typestore=other)
        c_thing = writer.add_connection("/thing", "other_msgs/msg/Thing", typestore=other)
        header = other.types["std_msgs/msg/Header"](
            stamp=other.types["builtin_interfaces/msg/Time"](sec=3, nanosec=5), frame_id="anchor")
        image = other.types[IMAGE](header=header, **numpy_to_image_fields(
            np.full((2, 2), 1000, np.uint16), "mono16", as_numpy=True))
        exposure = other.types[EXPOSURE_INFO](header=header, role=2, exposure_time_us=40000.0, gain_db=0.0,
                                              sequence_id=9, sensor_temperature_c=41.5)
        writer.write(c_img, 3_000_000_005, other.serialize_cdr(image, IMAGE))
        writer.write(c_exp, 3_000_000_005, other.serialize_cdr(exposure, EXPOSURE_INFO))
        writer.write(c_thing, 3_000_000_006, other.serialize_cdr(
            other.types["other_msgs/msg/Thing"](name="x", values=np.array([1, -2], np.int64)),
            "other_msgs/msg/Thing"))
    with BagReader(path) as bag:
        msgs = {m.topic: m.msg for m in bag.messages()}
    assert msgs["/dcs/anchor/exposure"].sensor_temperature_c == 41.5
    assert msgs["/thing"].name == "x" and list(msgs["/thing"].values) == [1, -2]
    frame = frame_from_messages(msgs["/dcs/anchor/image_raw"], msgs["/dcs/anchor/exposure"])
    assert (frame.role, frame.sequence_id, frame.stamp_ns) == (Role.HIGH, 9, 3_000_000_005)
    assert np.all(frame.pixels == np.float32(1000) / np.float32(65535))
    # the shared store is untouched
    assert "sensor_temperature_c" not in {n for n, _ in make_typestore().fielddefs[EXPOSURE_INFO][1]}


# --- errors ---------------------------------------------------------------------------------

def test_overwrite_is_refused_unless_asked(tmp_path):
    path = tmp_path / "bag"
    frame = Frame(np.zeros((2, 2, 3), np.float32), 1, Role.REFERENCE, Exposure(0.01))
    with BagWriter(path) as bag:
        bag.write_frame(frame, "reference")
    with pytest.raises(BagError, match=r"exists already.*overwrite") as err:
        BagWriter(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with BagWriter(path, storage="sqlite3", overwrite=True) as bag:
        bag.write_frame(dataclasses.replace(frame, stamp_ns=2), "anchor")
    with BagReader(path) as bag:
        assert list(bag.topics()) == ["/dcs/anchor/image_raw", "/dcs/anchor/exposure"]
        assert bag.start_ns == 2


def test_overwrite_never_deletes_what_is_not_a_bag(tmp_path):
    precious = tmp_path / "project"
    (precious / "src").mkdir(parents=True)
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(BagError, match="not a bag folder"):
        BagWriter(precious, overwrite=True)
    a_file = tmp_path / "file.mcap"
    a_file.write_text("x")
    with pytest.raises(BagError, match="not a bag folder"):
        BagWriter(a_file, overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep me" and a_file.read_text() == "x"


def test_writer_argument_errors(tmp_path):
    with pytest.raises(BagError, match="storage"):
        BagWriter(tmp_path / "a", storage="rosbag1")
    assert not (tmp_path / "a").exists()
    frame = Frame(np.zeros((2, 2, 3), np.float32), 1, Role.REFERENCE, Exposure(0.01))
    with BagWriter(tmp_path / "b") as bag:
        with pytest.raises(InputError, match="camera"):
            bag.write_frame(frame, "left")
        with pytest.raises(BagError, match="unknown message type"):
            bag.write_message("/x", "nope_msgs/msg/Nope", b"\x00\x01\x00\x00", 1)
        bag.write_frame(frame, "reference")
        with pytest.raises(BagError, match="already carries"):
            bag.write_message("reference_image", CAMERA_INFO, b"", 1)
        with pytest.raises(InputError, match="NaN"):
            bag.write_hdr("ground_truth", np.full((2, 2, 3), np.nan, np.float32), 1, "")
        with pytest.raises(InputError, match="stamp_ns"):
            bag.write_frame(dataclasses.replace(frame, stamp_ns=-1), "reference")
        with pytest.raises(InputError, match="sequence_id"):
            bag.write_frame(dataclasses.replace(frame, sequence_id=2**32), "reference")


def test_partial_bag_is_removed_on_error(tmp_path):
    path = tmp_path / "bag"
    frame = Frame(np.zeros((2, 2, 3), np.float32), 1, Role.REFERENCE, Exposure(0.01))
    with pytest.raises(RuntimeError), BagWriter(path) as bag:
        bag.write_frame(frame, "reference")
        raise RuntimeError("stop")
    assert not path.exists()


def test_missing_path(tmp_path):
    with pytest.raises(BagError, match="bag not found") as err:
        BagReader(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_folder_that_is_not_a_bag(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(BagError, match=r"not a rosbag2 bag: it has no metadata\.yaml") as err:
        BagReader(tmp_path)
    assert str(tmp_path) in str(err.value)
    (tmp_path / "notes.csv").write_text("a,b")
    with pytest.raises(BagError, match=r"notes\.csv"):
        BagReader(tmp_path / "notes.csv")  # a plain file that is no storage file


@pytest.fixture(scope="module", params=STORAGES)
def pristine(request, tmp_path_factory) -> tuple[str, Path]:
    path = tmp_path_factory.mktemp("pristine") / f"bag_{request.param}"
    write_rig_bag(path, request.param)
    return request.param, path


def damaged_copy(pristine: tuple[str, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    storage, src = pristine
    dst = tmp_path / "damaged"
    shutil.copytree(src, dst)
    return dst, dst / "metadata.yaml", dst / f"{src.name}{EXT[storage]}"


def expect_bag_error(path: Path, *fragments: str) -> str:
    with pytest.raises(BagError) as err:
        read_everything(path)
    text = str(err.value)
    assert "\n" not in text
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text, text
    return text


@pytest.mark.parametrize("damage", ["garbled", "truncated", "not_a_mapping", "keys_missing", "empty"])
def test_corrupt_metadata_yaml(pristine, tmp_path, damage):
    bag, meta, _ = damaged_copy(pristine, tmp_path)
    text = meta.read_bytes()
    if damage == "garbled":
        meta.write_bytes(text[:200] + bytes(range(128, 256)) + text[400:])
    elif damage == "truncated":
        meta.write_bytes(text[: len(text) // 3])
    elif damage == "not_a_mapping":
        meta.write_text("- just\n- a list\n")
    elif damage == "keys_missing":
        meta.write_text("rosbag2_bagfile_information:\n  version: 9\n")
    else:
        meta.write_bytes(b"")
    assert expect_bag_error(bag, "metadata.yaml").startswith(f"corrupt {meta}: ")


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, -1])
def test_truncated_storage_file(pristine, tmp_path, keep):
    bag, _, storage_file = damaged_copy(pristine, tmp_path)
    data = storage_file.read_bytes()
    storage_file.write_bytes(data[: len(data) - 1] if keep == -1 else data[: int(len(data) * keep)])
    expect_bag_error(bag, storage_file.name)


def test_garbled_storage_file(pristine, tmp_path):
    bag, _, storage_file = damaged_copy(pristine, tmp_path)
    data = bytearray(storage_file.read_bytes())
    rng = np.random.default_rng(5)
    data[: len(data) // 2] = rng.integers(0, 256, len(data) // 2, dtype=np.uint8).tobytes()
    storage_file.write_bytes(bytes(data))
    expect_bag_error(bag, storage_file.name)


def test_garbled_db3_pages(tmp_path_factory, tmp_path):
    """Garbling everything after SQLite's first page (schema intact, tables' pages not)."""
    src = tmp_path_factory.mktemp("db") / "bag"
    write_rig_bag(src, "sqlite3")
    bag, _, db = damaged_copy(("sqlite3", src), tmp_path)
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page:] = np.random.default_rng(6).integers(0, 256, len(data) - page, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))
    expect_bag_error(bag)


def test_damage_anywhere_raises_only_bag_errors(pristine, tmp_path):
    """Truncation at many points and garbled bytes anywhere: reading either succeeds (the
    damage hit pixel bytes) or raises BagError; never a raw rosbags/sqlite/mcap exception."""
    _, src = pristine
    rng = np.random.default_rng(7)
    storage_name = next(p.name for p in src.iterdir() if p.suffix in (".mcap", ".db3"))
    original = (src / storage_name).read_bytes()
    failures = 0
    for trial in range(40):
        bag = tmp_path / f"t{trial}"
        shutil.copytree(src, bag)
        if trial % 2:
            data = original[: int(rng.integers(0, len(original)))]
        else:
            buf = bytearray(original)
            at = int(rng.integers(0, len(buf) - 64))
            buf[at:at + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
            data = bytes(buf)
        (bag / storage_name).write_bytes(data)
        try:
            read_everything(bag)
        except BagError as exc:
            failures += 1
            assert str(bag) in str(exc)
        shutil.rmtree(bag)
    assert failures >= 20  # every truncation fails


@pytest.mark.parametrize("storage", STORAGES)
def test_unknown_message_type(tmp_path, storage):
    path = tmp_path / "unknown"
    ts = make_typestore()
    with Writer(path, version=9, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        known = writer.add_connection("/dcs/ground_truth/hdr", IMAGE, typestore=ts)
        mystery = writer.add_connection("/mystery", "vendor_msgs/msg/Blob", msgdef="",
                                        rihs01="RIHS01_" + "0" * 64)
        garbled = writer.add_connection("/garbled", "vendor_msgs/msg/Other",
                                        msgdef="int32[ x", rihs01="RIHS01_" + "1" * 64)
        dangling = writer.add_connection("/dangling", "vendor_msgs/msg/Third",
                                         msgdef="Missing thing", rihs01="RIHS01_" + "2" * 64)
        stamp = ts.types["builtin_interfaces/msg/Time"](sec=0, nanosec=9)
        img = ts.types[IMAGE](
            header=ts.types["std_msgs/msg/Header"](stamp=stamp, frame_id="f"),
            **numpy_to_image_fields(np.ones((1, 1, 3), np.float32), "32FC3", as_numpy=True))
        writer.write(known, 9, ts.serialize_cdr(img, IMAGE))
        writer.write(mystery, 10, b"\x00\x01\x00\x00abc")
        writer.write(garbled, 11, b"\x00\x01\x00\x00xyz")
        writer.write(dangling, 12, b"\x00\x01\x00\x00")
    with BagReader(path) as bag:
        assert bag.topics()["/mystery"] == ("vendor_msgs/msg/Blob", 1)
        with pytest.raises(BagError, match=r"/mystery .*vendor_msgs/msg/Blob.*no definition") as err:
            bag.messages()
        assert str(path) in str(err.value)
        with pytest.raises(BagError, match=r"/garbled .*does not parse"):
            bag.messages(["/garbled"])
        with pytest.raises(BagError, match=r"/dangling .*undefined type vendor_msgs/msg/Missing"):
            bag.messages(["/dangling"])
        (gt,) = list(bag.messages(["/dcs/ground_truth/hdr"]))  # other topics stay readable
        assert hdr_from_msg(gt.msg).shape == (1, 1, 3)
        raw = list(bag.raw_messages())  # and the raw bytes of everything can still be copied
        assert [r.data[4:] for r in raw if r.topic != "/dcs/ground_truth/hdr"] == [b"abc", b"xyz", b""]


def test_corrupt_message_bytes(tmp_path):
    path = tmp_path / "bag"
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/dcs/reference/image_raw", IMAGE, typestore=make_typestore())
        writer.write(conn, 5, b"\x00\x01\x00\x00\xff\xff")  # a CDR header, then not an Image
    expected = r"cannot deserialise the sensor_msgs/msg/Image on /dcs/reference/image_raw at 5 ns"
    with BagReader(path) as bag, pytest.raises(BagError, match=expected):
        list(bag.messages())


def test_mismatched_stamps_raise_input_error(rig: RigBag):
    t = Topics()
    with BagReader(rig.path) as bag:
        images = [m.msg for m in bag.messages([t.reference_image])]
        exposures = [m.msg for m in bag.messages([t.reference_exposure])]
    frame_from_messages(images[0], exposures[0])
    with pytest.raises(InputError, match=r"stamp .* differ by -33333333 ns"):
        frame_from_messages(images[0], exposures[1])
    exposures[0].header.stamp.nanosec += 1  # one nanosecond is enough
    with pytest.raises(InputError, match="must be identical"):
        frame_from_messages(images[0], exposures[0])


def test_unpaired_frames_raise_input_error(tmp_path):
    frame = Frame(np.zeros((2, 2, 3), np.float32), 100, Role.LOW, Exposure(0.01), 0, "a")
    with BagWriter(tmp_path / "b") as bag:
        bag.write_frame(frame, "anchor")
        bag.write_image("anchor_image", np.zeros((2, 2), np.uint8), "mono8", 200, "a")
    with BagReader(tmp_path / "b") as bag:
        frames = read_frames(bag, "anchor")
        assert next(frames).stamp_ns == 100
        with pytest.raises(InputError, match=r"no partner of the same stamp .*an image at 200 ns"):
            next(frames)


def test_hdr_from_msg_checks(rig: RigBag):
    with BagReader(rig.path) as bag:
        (image, *_) = [m.msg for m in bag.messages([Topics().reference_image])]
    with pytest.raises(InputError, match="32FC3"):
        hdr_from_msg(image)
    ts = make_typestore()
    bad = ts.types[IMAGE](
        header=image.header,
        **numpy_to_image_fields(np.array([[[1.0, np.inf, 0.0]]], np.float32), "32FC3", as_numpy=True))
    with pytest.raises(InputError, match="NaN or Inf"):
        hdr_from_msg(bad)
