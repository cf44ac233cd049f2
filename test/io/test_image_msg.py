"""sensor_msgs/Image <-> numpy: bit-exact round trips (plain, rclpy, rosbags) and errors."""

from __future__ import annotations

import array
from types import SimpleNamespace

import numpy as np
import pytest

from hdr_dcs.core.errors import ImageEncodingError, InputError
from hdr_dcs.io.image_msg import (
    SUPPORTED_ENCODINGS,
    fill_image,
    image_to_numpy,
    lookup_encoding,
    numpy_to_image_fields,
    to_rgb_unit,
)

ENCODINGS = sorted(SUPPORTED_ENCODINGS)
REQUIRED = {"mono8", "mono16", "rgb8", "bgr8", "rgb16", "bgr16", "32FC1", "32FC3"}
# Row padding in bytes: none, and an odd amount (not a multiple of any element size).
PADDINGS = [0, 7]
ENDIANS = [False, True]
H, W = 5, 7


def random_pixels(encoding: str, seed: int = 0, height: int = H, width: int = W) -> np.ndarray:
    """Random pixels over the full code range; float32 from random bit patterns
    (NaN payloads, Inf, subnormals, -0.0 included) to make bit-exactness meaningful."""
    enc = lookup_encoding(encoding)
    rng = np.random.default_rng(seed)
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    if enc.dtype == np.float32:
        return rng.integers(0, 2**32, size=shape, dtype=np.uint32).view(np.float32)
    return rng.integers(0, np.iinfo(enc.dtype).max, size=shape, dtype=enc.dtype, endpoint=True)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype.itemsize != b.dtype.itemsize:
        return False
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    return bool(np.array_equal(a.astype(a.dtype.newbyteorder("="), copy=False).view(unsigned),
                               b.astype(b.dtype.newbyteorder("="), copy=False).view(unsigned)))


def as_message(fields: dict) -> SimpleNamespace:
    return SimpleNamespace(**fields)


@pytest.fixture(scope="module")
def ros_image():
    from sensor_msgs.msg import Image

    return Image


@pytest.fixture(scope="module")
def rclpy_serialization():
    import rclpy.serialization

    return rclpy.serialization


@pytest.fixture(scope="module")
def typestore():
    from rosbags import typesys

    return typesys.get_typestore(typesys.Stores.ROS2_KILTED)


def rosbags_image(ts, fields: dict):
    header = ts.types["std_msgs/msg/Header"](
        stamp=ts.types["builtin_interfaces/msg/Time"](sec=12, nanosec=345), frame_id="cam")
    return ts.types["sensor_msgs/msg/Image"](header=header, **fields)


def test_required_encodings_supported():
    assert REQUIRED <= SUPPORTED_ENCODINGS
    assert {"8UC1", "8UC3", "16UC1", "16UC3", "rgba8", "bgra8", "32FC4"} <= SUPPORTED_ENCODINGS


# --- bit-exact round trips ---------------------------------------------------------------

@pytest.mark.parametrize("big", ENDIANS, ids=["little", "big"])
@pytest.mark.parametrize("pad", PADDINGS, ids=["nopad", "pad"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_round_trip_plain(encoding, pad, big):
    enc = lookup_encoding(encoding)
    pixels = random_pixels(encoding, seed=len(encoding) + pad + big)
    row = W * enc.bytes_per_pixel
    fields = numpy_to_image_fields(pixels, encoding, step=row + pad, is_bigendian=big)

    assert (fields["height"], fields["width"], fields["encoding"]) == (H, W, encoding)
    assert fields["step"] == row + pad and fields["is_bigendian"] == int(big)
    assert isinstance(fields["data"], bytes) and len(fields["data"]) == (row + pad) * H
    rows = np.frombuffer(fields["data"], np.uint8).reshape(H, row + pad)
    assert not rows[:, row:].any(), "padding bytes must be zero"
    wire = enc.dtype.newbyteorder(">" if big else "<")
    assert rows[:, :row].tobytes() == np.ascontiguousarray(pixels, dtype=wire).tobytes()

    out = image_to_numpy(as_message(fields))
    assert out.dtype == enc.dtype and out.dtype.isnative
    assert out.flags.c_contiguous and out.flags.writeable and out.flags.owndata
    assert same_bits(out, pixels)


@pytest.mark.parametrize("big", ENDIANS, ids=["little", "big"])
@pytest.mark.parametrize("pad", PADDINGS, ids=["nopad", "pad"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_round_trip_rclpy_serialized(encoding, pad, big, ros_image, rclpy_serialization):
    pixels = random_pixels(encoding, seed=3)
    step = W * lookup_encoding(encoding).bytes_per_pixel + pad
    msg = ros_image(**numpy_to_image_fields(pixels, encoding, step=step, is_bigendian=big))
    msg.header.frame_id = "cam"
    assert same_bits(image_to_numpy(msg), pixels)

    raw = rclpy_serialization.serialize_message(msg)
    back = rclpy_serialization.deserialize_message(raw, ros_image)
    assert (back.step, back.is_bigendian, back.encoding) == (step, int(big), encoding)
    assert same_bits(image_to_numpy(back), pixels)


@pytest.mark.parametrize("big", ENDIANS, ids=["little", "big"])
@pytest.mark.parametrize("pad", PADDINGS, ids=["nopad", "pad"])
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_round_trip_rosbags_cdr(encoding, pad, big, typestore):
    pixels = random_pixels(encoding, seed=4)
    step = W * lookup_encoding(encoding).bytes_per_pixel + pad
    fields = numpy_to_image_fields(pixels, encoding, step=step, is_bigendian=big, as_numpy=True)
    assert isinstance(fields["data"], np.ndarray) and fields["data"].dtype == np.uint8
    msg = rosbags_image(typestore, fields)
    raw = typestore.serialize_cdr(msg, "sensor_msgs/msg/Image")
    back = typestore.deserialize_cdr(raw, "sensor_msgs/msg/Image")
    assert not back.data.flags.writeable  # rosbags hands out a read-only view of the buffer
    out = image_to_numpy(back)
    assert out.flags.writeable and out.flags.owndata
    assert same_bits(out, pixels)


@pytest.mark.parametrize("encoding", ["mono16", "bgr8", "32FC3"])
def test_rclpy_and_rosbags_interoperate(encoding, ros_image, rclpy_serialization, typestore):
    pixels = random_pixels(encoding, seed=5)
    msg = ros_image(**numpy_to_image_fields(pixels, encoding, step=W * 16 + 3, is_bigendian=True))
    via_rosbags = typestore.deserialize_cdr(
        bytes(rclpy_serialization.serialize_message(msg)), "sensor_msgs/msg/Image")
    assert same_bits(image_to_numpy(via_rosbags), pixels)

    rb = rosbags_image(typestore, numpy_to_image_fields(pixels, encoding, as_numpy=True))
    via_rclpy = rclpy_serialization.deserialize_message(
        bytes(typestore.serialize_cdr(rb, "sensor_msgs/msg/Image")), ros_image)
    assert same_bits(image_to_numpy(via_rclpy), pixels)


def test_fill_image_on_rclpy_and_rosbags_messages(ros_image, typestore):
    pixels = random_pixels("rgb16", seed=6)
    msg = ros_image()
    msg.header.frame_id = "ref"
    assert fill_image(msg, pixels, "rgb16", step=W * 6 + 2, is_bigendian=True) is msg
    assert msg.header.frame_id == "ref"
    assert (msg.height, msg.width, msg.step, msg.is_bigendian) == (H, W, W * 6 + 2, 1)
    assert same_bits(image_to_numpy(msg), pixels)

    rb = rosbags_image(typestore, numpy_to_image_fields(np.zeros((1, 1), np.uint8), "mono8", as_numpy=True))
    fill_image(rb, pixels, "rgb16")
    assert isinstance(rb.data, np.ndarray)
    kind = "sensor_msgs/msg/Image"
    back = typestore.deserialize_cdr(typestore.serialize_cdr(rb, kind), kind)
    assert back.header.frame_id == "cam"
    assert same_bits(image_to_numpy(back), pixels)


def test_big_endian_mono16_decodes_to_right_values():
    data = bytes([0x01, 0x02, 0xFF, 0x00, 0x00, 0xFF])
    msg = SimpleNamespace(height=1, width=3, encoding="mono16", is_bigendian=1, step=6, data=data)
    np.testing.assert_array_equal(image_to_numpy(msg), np.array([[0x0102, 0xFF00, 0x00FF]], np.uint16))
    msg.is_bigendian = 0
    np.testing.assert_array_equal(image_to_numpy(msg), np.array([[0x0201, 0x00FF, 0xFF00]], np.uint16))


def test_big_endian_32fc1_decodes_to_right_values():
    data = np.array([1.5, -2.0], ">f4").tobytes()
    msg = SimpleNamespace(height=1, width=2, encoding="32FC1", is_bigendian=True, step=8, data=data)
    out = image_to_numpy(msg)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, [[1.5, -2.0]])


@pytest.mark.parametrize("wrap", [bytes, bytearray, lambda b: array.array("B", b),
                                  lambda b: np.frombuffer(b, np.uint8).copy(), list],
                         ids=["bytes", "bytearray", "array", "ndarray", "list"])
def test_data_containers_and_ownership(wrap):
    pixels = random_pixels("bgr8", seed=7)
    fields = numpy_to_image_fields(pixels, "bgr8", step=W * 3 + 1)
    msg = as_message({**fields, "data": wrap(fields["data"])})
    out = image_to_numpy(msg)
    assert same_bits(out, pixels)
    assert out.flags.owndata and out.flags.writeable
    if not isinstance(msg.data, bytes):
        msg.data[0] ^= 0xFF  # mutating the message afterwards must not change the result
        assert not same_bits(image_to_numpy(msg), pixels)
    assert same_bits(out, pixels)


def test_trailing_bytes_are_ignored():
    fields = numpy_to_image_fields(np.arange(6, dtype=np.uint8).reshape(2, 3), "mono8")
    fields["data"] += b"\xAA\xBB"
    np.testing.assert_array_equal(image_to_numpy(as_message(fields)), [[0, 1, 2], [3, 4, 5]])


def test_fields_do_not_alias_the_input_array():
    pixels = random_pixels("mono8", seed=8)
    fields = numpy_to_image_fields(pixels, "mono8", as_numpy=True)
    assert not np.may_share_memory(fields["data"], pixels)
    expected = pixels.copy()
    pixels[:] = 0
    np.testing.assert_array_equal(fields["data"].reshape(H, W), expected)


def test_single_channel_accepts_trailing_axis_and_non_contiguous_input():
    base = random_pixels("16UC3", seed=9)
    plane = base[:, ::-1, 1]  # non-contiguous view
    out = image_to_numpy(as_message(numpy_to_image_fields(plane[:, :, None], "mono16")))
    np.testing.assert_array_equal(out, plane)


# --- to_rgb_unit -------------------------------------------------------------------------

def test_to_rgb_unit_mono16_divides_by_65535(ros_image):
    codes = np.array([[65535, 256, 0]], np.uint16)
    msg = ros_image(**numpy_to_image_fields(codes, "mono16", is_bigendian=True))
    out = to_rgb_unit(msg)
    assert out.shape == (1, 3, 3) and out.dtype == np.float32
    expected = np.array([1.0, np.float32(256) / np.float32(65535), 0.0], np.float32)
    for c in range(3):
        np.testing.assert_array_equal(out[0, :, c], expected)
    assert out[0, 0, 0] == 1.0 and out[0, 1, 0] == np.float32(256 / 65535)
    assert out[0, 1, 0] != np.float32(1.0)  # 256 is not 1.0, as dividing by 256 would say
    np.testing.assert_array_equal(to_rgb_unit(codes, "mono16"), out)


def test_to_rgb_unit_reorders_bgr_and_drops_alpha():
    bgr = np.array([[[10, 20, 255]]], np.uint8)
    np.testing.assert_allclose(to_rgb_unit(bgr, "bgr8")[0, 0], [1.0, 20 / 255, 10 / 255], rtol=1e-6)
    np.testing.assert_allclose(to_rgb_unit(bgr, "rgb8")[0, 0], [10 / 255, 20 / 255, 1.0], rtol=1e-6)
    bgra16 = np.array([[[0, 65535, 32768, 7]]], np.uint16)
    np.testing.assert_allclose(to_rgb_unit(bgra16, "bgra16")[0, 0], [32768 / 65535, 1.0, 0.0], rtol=1e-6)
    rgba8 = np.array([[[255, 0, 51, 0]]], np.uint8)
    np.testing.assert_allclose(to_rgb_unit(rgba8, "rgba8")[0, 0], [1.0, 0.0, 0.2], rtol=1e-6)


@pytest.mark.parametrize("encoding", ["mono8", "mono16", "rgb8", "bgr8", "rgb16", "bgr16", "8UC1",
                                      "8UC3", "16UC1", "16UC3", "rgba8", "bgra8", "32FC1", "32FC3",
                                      "32FC4"])
def test_to_rgb_unit_shape_range_for_every_colour_encoding(encoding):
    pixels = random_pixels(encoding, seed=10)
    if pixels.dtype == np.float32:
        pixels = np.random.default_rng(10).random(pixels.shape, dtype=np.float32)
    msg = as_message(numpy_to_image_fields(pixels, encoding, step=W * 16 + 1, is_bigendian=True))
    out = to_rgb_unit(msg)
    assert out.shape == (H, W, 3) and out.dtype == np.float32 and out.flags.c_contiguous
    assert out.min() >= 0.0 and out.max() <= 1.0
    if encoding.startswith("32F"):  # floats are passed through, not rescaled
        ref = pixels if pixels.ndim == 3 else pixels[:, :, None]
        np.testing.assert_array_equal(out, np.broadcast_to(ref[:, :, :3], (H, W, 3)))


def test_to_rgb_unit_max_code_for_12_bit():
    out = to_rgb_unit(np.array([[4095, 2048]], np.uint16), "mono16", max_code=4095)
    np.testing.assert_allclose(out[0, :, 0], [1.0, 2048 / 4095], rtol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_to_rgb_unit_refuses_nonfinite_floats(bad):
    pixels = np.full((2, 2, 3), 0.5, np.float32)
    pixels[1, 0, 2] = bad
    with pytest.raises(InputError, match="NaN or Inf"):
        to_rgb_unit(pixels, "32FC3")
    with pytest.raises(InputError, match="NaN or Inf"):
        to_rgb_unit(as_message(numpy_to_image_fields(pixels, "32FC3")))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: to_rgb_unit(np.zeros((2, 2), np.uint8)), "needs the encoding"),
    (lambda: to_rgb_unit(np.zeros((2, 2, 2), np.uint8), "8UC2"), "2 channels"),
    (lambda: to_rgb_unit(np.zeros((2, 2), np.uint16), "mono8"), "needs uint8"),
    (lambda: to_rgb_unit(as_message(numpy_to_image_fields(np.zeros((2, 2), np.uint8), "mono8")), "rgb8"),
     "given for a 'mono8' message"),
])
def test_to_rgb_unit_errors(call, match):
    with pytest.raises(ImageEncodingError, match=match):
        call()


# --- errors ------------------------------------------------------------------------------

def good_fields(**change) -> dict:
    fields = numpy_to_image_fields(np.zeros((4, 3, 3), np.uint16), "rgb16", step=20)
    fields.update(change)
    return fields


@pytest.mark.parametrize(("change", "match"), [
    ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422'"),
    ({"encoding": ""}, "unsupported image encoding '' "),
    ({"encoding": "RGB8"}, "unsupported image encoding 'RGB8'"),
    ({"encoding": None}, "encoding must be a string"),
    ({"step": 17}, r"step 17 < width \* bytes_per_pixel = 3 \* 6 = 18"),
    ({"data": bytes(79)}, "data has 79 bytes, step \\* height needs 80"),
    ({"data": b""}, "data has 0 bytes"),
    ({"height": 0}, "height must be positive, got 0"),
    ({"width": 0}, "width must be positive, got 0"),
    ({"width": -3}, "width must be positive, got -3"),
    ({"step": 0}, "step must be positive"),
    ({"height": 2.0}, "height must be an integer"),
    ({"height": True}, "height must be an integer"),
    ({"width": 2**33}, "does not fit the uint32 field"),
    ({"data": "not bytes"}, "data of type str is not a byte buffer"),
    ({"data": np.zeros(80, np.uint16)}, "data must hold bytes"),
    ({"data": [0, 1, 300]}, "not a sequence of bytes"),
])
def test_decode_errors(change, match):
    with pytest.raises(ImageEncodingError, match=match) as info:
        image_to_numpy(as_message(good_fields(**change)))
    assert "\n" not in str(info.value)


def test_decode_error_missing_field():
    fields = good_fields()
    del fields["step"]
    with pytest.raises(ImageEncodingError, match="has no 'step' field"):
        image_to_numpy(as_message(fields))


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    ((np.zeros((2, 2, 3), np.float64), "32FC3"), {},
     "32FC3 needs float32 pixels, got an array of dtype float64"),
    ((np.zeros((2, 2), np.uint8), "mono16"), {}, "mono16 needs uint16 pixels"),
    ((np.zeros((2, 2), np.int16), "mono16"), {}, "mono16 needs uint16 pixels"),
    ((np.zeros((2, 2, 3), np.uint8), "rgba8"), {},
     r"rgba8 needs an array of shape \(H, W, 4\), got \(2, 2, 3\)"),
    ((np.zeros((2, 2, 3), np.uint8), "mono8"), {}, r"shape \(H, W\) or \(H, W, 1\)"),
    ((np.zeros((2, 2, 3, 1), np.uint8), "rgb8"), {}, "needs an array of shape"),
    ((np.zeros((0, 2), np.uint8), "mono8"), {}, "must not be empty"),
    ((np.zeros((2, 2), np.uint8), "bayer_rggb8"), {}, "unsupported image encoding"),
    (([[1, 2]], "mono8"), {}, "expected a numpy array, got list"),
    ((np.zeros((2, 4, 3), np.uint8), "rgb8"), {"step": 11}, r"step 11 < width \* bytes_per_pixel = 12"),
    ((np.zeros((2, 4, 3), np.uint8), "rgb8"), {"step": 12.5}, "step must be an integer"),
])
def test_encode_errors(args, kwargs, match):
    with pytest.raises(ImageEncodingError, match=match) as info:
        numpy_to_image_fields(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_errors_are_input_errors():
    assert issubclass(ImageEncodingError, InputError) and issubclass(ImageEncodingError, ValueError)
