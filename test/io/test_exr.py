"""EXR read/write on the OpenEXR sample images, written files, and every Damaged file."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import OpenEXR
import pytest

from hdr_dcs.core.errors import ExrError, InputError
from hdr_dcs.io.exr import COMPRESSIONS, read_exr, write_exr

# (file, (H, W), max radiance from the data README or measured, whether negatives occur)
SAMPLES = [
    ("ScanLines/Desk.exr", (874, 644), 234.0, True),
    ("ScanLines/StillLife.exr", (846, 1240), 492.0, False),
    ("ScanLines/CandleGlass.exr", (810, 1000), 413.0, True),
    ("ScanLines/Cannon.exr", (566, 780), 2.64, False),
    ("ScanLines/Carrots.exr", (400, 600), 0.966, True),
    ("Tiles/GoldenGate.exr", (860, 1262), 686.0, False),
]
NAN_INF = "TestImages/BrightRingsNanInf.exr"
WIDE = "TestImages/WideFloatRange.exr"
N_DAMAGED = 186  # 185 fuzzed files + README.rst (not an EXR either, so refused too)


def _damaged_names() -> list[str]:
    """The Damaged/ file names, at collection time, from the directory the ``exr_dir``
    fixture points at (reading still goes through the fixture). test/conftest.py is loaded
    by path: ``import conftest`` would get whichever conftest pytest imported last."""
    spec = importlib.util.spec_from_file_location(
        "_hdr_dcs_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
    root_conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(root_conftest)
    folder = root_conftest.exr_images_dir() / "Damaged"
    names = sorted(os.listdir(folder)) if folder.is_dir() else []
    return names or ["<Damaged directory missing>"]


def raw_channels(path: Path) -> dict[str, np.ndarray]:
    """The file's part-0 channels as the bindings return them (the reference)."""
    with OpenEXR.File(str(path), separate_channels=True) as f:
        return {name: np.array(ch.pixels) for name, ch in f.channels().items()}


def assert_exr_error(path: Path, match: str | None = None, **kwargs) -> ExrError:
    with pytest.raises(ExrError, match=match) as info:
        read_exr(path, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    assert path.name in text
    return info.value


# --- the sample images -------------------------------------------------------------------

@pytest.mark.parametrize(("name", "shape", "top", "negative"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_read_samples(exr_dir, name, shape, top, negative):
    rgb = read_exr(exr_dir / name)
    assert rgb.shape == (*shape, 3) and rgb.dtype == np.float32 and rgb.flags.c_contiguous
    assert np.isfinite(rgb).all()
    assert top * 0.99 <= rgb.max() <= top * 1.01
    assert rgb.min() > -0.05  # scene-linear: small negatives are kept, never large ones
    assert (rgb.min() < 0) == negative
    assert 0 < float(np.median(rgb)) < top
    raw = raw_channels(exr_dir / name)
    for i, c in enumerate("RGB"):  # exact conversion of the stored halves, in R, G, B order
        np.testing.assert_array_equal(rgb[:, :, i], raw[c].astype(np.float32))


def test_carrots_keeps_negative_values(exr_dir):
    rgb = read_exr(exr_dir / "ScanLines/Carrots.exr")
    assert np.count_nonzero(rgb < 0) > 0
    assert rgb.min() == pytest.approx(-0.047027588)


# --- NaN / Inf policies ------------------------------------------------------------------

def test_nan_inf_error_policy(exr_dir):
    raw = np.stack([raw_channels(exr_dir / NAN_INF)[c].astype(np.float32) for c in "RGB"], axis=-1)
    n_nan, n_inf = int(np.isnan(raw).sum()), int(np.isinf(raw).sum())
    n_px = int((~np.isfinite(raw)).any(axis=-1).sum())
    assert n_nan > 0 and n_inf > 0
    err = assert_exr_error(exr_dir / NAN_INF, "NaN or Inf")
    assert f"{n_px} pixels" in str(err) and f"{n_nan} NaN and {n_inf} Inf values" in str(err)
    with pytest.raises(ExrError):  # "error" is the default
        read_exr(exr_dir / NAN_INF, nonfinite="error")


def test_nan_inf_zero_and_clip_policies(exr_dir):
    raw = np.stack([raw_channels(exr_dir / NAN_INF)[c].astype(np.float32) for c in "RGB"], axis=-1)
    finite = np.isfinite(raw)
    hi, lo = raw[finite].max(), raw[finite].min()

    zero = read_exr(exr_dir / NAN_INF, nonfinite="zero")
    assert np.isfinite(zero).all()
    np.testing.assert_array_equal(zero[finite], raw[finite])
    assert (zero[~finite] == 0).all()

    clip = read_exr(exr_dir / NAN_INF, nonfinite="clip")
    assert np.isfinite(clip).all()
    np.testing.assert_array_equal(clip[finite], raw[finite])
    assert (clip[np.isnan(raw)] == 0).all()
    assert (clip[raw == np.inf] == hi).all() and (clip[raw == -np.inf] == lo).all()
    assert clip.max() == max(hi, 0) and clip.min() == min(lo, 0)  # NaN became 0


def test_invalid_policy(exr_dir):
    with pytest.raises(ExrError, match="nonfinite must be one of"):
        read_exr(exr_dir / SAMPLES[0][0], nonfinite="ignore")


def test_wide_float_range_single_channel(exr_dir):
    rgb = read_exr(exr_dir / WIDE)
    assert rgb.shape == (500, 500, 3) and np.isfinite(rgb).all()
    assert (rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all()
    assert rgb.max() == pytest.approx(1.7014118e38) and rgb.min() == pytest.approx(-1.7014118e38)
    np.testing.assert_array_equal(rgb[:, :, 0], raw_channels(exr_dir / WIDE)["G"])
    for policy in ("zero", "clip"):  # nothing to repair: finite, however large
        np.testing.assert_array_equal(read_exr(exr_dir / WIDE, nonfinite=policy), rgb)


# --- write / read round trips ------------------------------------------------------------

def radiance(seed: int, shape=(37, 53)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = rng.lognormal(mean=-1.0, sigma=2.5, size=(*shape, 3)).astype(np.float32)
    rgb[0, 0] = [0.0, -0.0, -0.25]  # zero and scene-linear negatives survive
    return np.minimum(rgb, 6e4)


@pytest.mark.parametrize("compression", ["zip", "none", "piz", "rle", "zips", "zstd", "htj2k32"])
def test_round_trip_float_is_exact(tmp_path, compression):
    rgb = radiance(1)
    rgb[1, 1] = [1e30, -3e37, 1e-40]  # beyond half range, and a subnormal
    path = tmp_path / "float.exr"
    write_exr(path, rgb, compression=compression, pixel_type="float")
    back = read_exr(path)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back.view(np.uint32), rgb.view(np.uint32))
    assert [p for p in tmp_path.iterdir()] == [path]  # no temporary file left behind


@pytest.mark.parametrize("compression", ["zip", "none", "piz", "rle"])
def test_round_trip_half_within_half_precision(tmp_path, compression):
    rgb = radiance(2)
    path = tmp_path / "half.exr"
    write_exr(path, rgb, compression=compression)  # half is the default
    back = read_exr(path)
    np.testing.assert_array_equal(back, rgb.astype(np.float16).astype(np.float32))
    normal = np.abs(rgb) >= np.finfo(np.float16).tiny
    np.testing.assert_allclose(back[normal], rgb[normal], rtol=2.0**-11)
    with OpenEXR.File(str(path), separate_channels=True) as f:
        assert {c.type() for c in f.channels().values()} == {OpenEXR.HALF}


def test_round_trip_float64_input_and_pathlike_str(tmp_path):
    rgb = radiance(3).astype(np.float64)
    write_exr(str(tmp_path / "d.exr"), rgb, pixel_type="float")
    np.testing.assert_array_equal(read_exr(str(tmp_path / "d.exr")), rgb.astype(np.float32))


def test_round_trip_non_contiguous_input(tmp_path):
    rgb = radiance(9)[::-1, ::2]  # the bindings ignore strides; write_exr must not
    assert not rgb.flags.c_contiguous
    write_exr(tmp_path / "view.exr", rgb, pixel_type="float")
    np.testing.assert_array_equal(read_exr(tmp_path / "view.exr"), rgb)


def test_write_overwrites_existing_file(tmp_path):
    path = tmp_path / "x.exr"
    write_exr(path, np.zeros((2, 2, 3), np.float32))
    write_exr(path, np.ones((3, 4, 3), np.float32))
    np.testing.assert_array_equal(read_exr(path), np.ones((3, 4, 3), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_write_refuses_nonfinite_unless_allowed(tmp_path, bad):
    rgb = radiance(4)
    rgb[3, 4, 1] = bad
    path = tmp_path / "nf.exr"
    with pytest.raises(ExrError, match="refusing to write 1 NaN/Inf values"):
        write_exr(path, rgb)
    assert not path.exists()
    write_exr(path, rgb, allow_nonfinite=True, pixel_type="float")
    assert_exr_error(path, "1 pixels contain NaN or Inf")
    back = read_exr(path, nonfinite="zero")
    assert back[3, 4, 1] == 0
    np.testing.assert_array_equal(np.delete(back.reshape(-1), 3 * 53 * 3 + 4 * 3 + 1),
                                  np.delete(rgb.reshape(-1), 3 * 53 * 3 + 4 * 3 + 1))


def test_write_half_refuses_values_beyond_half_range(tmp_path):
    rgb = np.full((2, 2, 3), 7e4, np.float32)
    with pytest.raises(ExrError, match=r"12 values exceed the half range.*pixel_type='float'"):
        write_exr(tmp_path / "big.exr", rgb)
    write_exr(tmp_path / "big.exr", rgb, pixel_type="float")
    np.testing.assert_array_equal(read_exr(tmp_path / "big.exr"), rgb)


@pytest.mark.parametrize(("rgb", "kwargs", "match"), [
    (np.zeros((4, 4), np.float32), {}, r"non-empty \(H, W, 3\) array, got shape \(4, 4\)"),
    (np.zeros((4, 4, 4), np.float32), {}, r"got shape \(4, 4, 4\)"),
    (np.zeros((0, 4, 3), np.float32), {}, "non-empty"),
    (np.zeros((4, 4, 3), np.uint16), {}, "needs a float array, got dtype uint16"),
    (np.zeros((4, 4, 3), np.float32), {"pixel_type": "uint"}, "pixel_type must be 'half' or 'float'"),
    (np.zeros((4, 4, 3), np.float32), {"compression": "jpeg"}, "unknown EXR compression 'jpeg'"),
    (np.full((1, 1, 3), 1e300), {"pixel_type": "float"}, "3 values exceed the float range"),
])
def test_write_errors(tmp_path, rgb, kwargs, match):
    with pytest.raises(ExrError, match=match):
        write_exr(tmp_path / "bad.exr", rgb, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_write_to_missing_directory(tmp_path):
    with pytest.raises(ExrError, match="does not exist"):
        write_exr(tmp_path / "nope" / "x.exr", np.zeros((2, 2, 3), np.float32))


def test_compression_names_cover_the_lossless_ones():
    assert {"none", "rle", "zips", "zip", "piz"} <= set(COMPRESSIONS)


# --- other layouts written with the bindings ---------------------------------------------

def write_raw(path: Path, channels: dict, header: dict | None = None) -> Path:
    OpenEXR.File({"type": OpenEXR.scanlineimage, **(header or {})}, channels).write(str(path))
    return path


def test_single_y_channel_is_replicated(tmp_path):
    y = radiance(5)[:, :, 0].copy()  # the bindings ignore strides: give them contiguous data
    rgb = read_exr(write_raw(tmp_path / "y.exr", {"Y": y}))
    assert rgb.shape == (*y.shape, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], y)


def test_rgba_drops_alpha_and_ignores_extra_channels(tmp_path):
    rgb = radiance(6)
    chans = {c: rgb[:, :, i].copy() for i, c in enumerate("RGB")}
    chans["A"] = np.full(rgb.shape[:2], 0.5, np.float32)
    chans["Z"] = np.full(rgb.shape[:2], 9.0, np.float32)
    np.testing.assert_array_equal(read_exr(write_raw(tmp_path / "rgbaz.exr", chans)), rgb)


def test_data_window_offset(tmp_path):
    rgb = radiance(7, shape=(4, 5))
    header = {"dataWindow": (np.array([3, 2], np.int32), np.array([7, 5], np.int32)),
              "displayWindow": (np.array([0, 0], np.int32), np.array([9, 9], np.int32))}
    path = write_raw(tmp_path / "dw.exr", {c: rgb[:, :, i].copy() for i, c in enumerate("RGB")}, header)
    np.testing.assert_array_equal(read_exr(path), rgb)


def test_multipart_uses_part_zero(tmp_path):
    rgb = radiance(8, shape=(6, 7))
    z = np.ones((6, 7), np.float32)
    rgb_part = OpenEXR.Part({"type": OpenEXR.scanlineimage},
                            {c: rgb[:, :, i].copy() for i, c in enumerate("RGB")}, "rgb")
    z_part = OpenEXR.Part({"type": OpenEXR.scanlineimage}, {"Z": z}, "depth")
    OpenEXR.File([rgb_part, z_part]).write(str(tmp_path / "rgb_first.exr"))
    np.testing.assert_array_equal(read_exr(tmp_path / "rgb_first.exr"), rgb)
    OpenEXR.File([z_part, rgb_part]).write(str(tmp_path / "depth_first.exr"))
    assert_exr_error(tmp_path / "depth_first.exr", r"no RGB, RGBA or Y image in part 0 \(channels: 'Z'\)")


@pytest.mark.parametrize(("channels", "match"), [
    ({"diffuse.R": 1, "diffuse.G": 1, "diffuse.B": 1}, "no RGB, RGBA or Y image"),
    ({"Z": 1}, "no RGB, RGBA or Y image"),
    ({"R": 1, "G": 1}, "no RGB, RGBA or Y image"),
    ({"Y": 1, "RY": 1, "BY": 1}, "luminance/chroma"),
    ({"R": "uint", "G": 1, "B": 1}, "channel R holds UINT values"),
])
def test_unsupported_layouts(tmp_path, channels, match):
    plane = np.ones((3, 4), np.float32)
    chans = {k: (np.ones((3, 4), np.uint32) if v == "uint" else plane) for k, v in channels.items()}
    assert_exr_error(write_raw(tmp_path / "layout.exr", chans), match)


def test_max_pixels_limit(exr_dir):
    assert_exr_error(exr_dir / "ScanLines/Cannon.exr", "exceeds the 1000-pixel limit", max_pixels=1000)


# --- files that are not readable images --------------------------------------------------

def test_missing_file(tmp_path):
    assert_exr_error(tmp_path / "missing.exr", "no such file")


def test_directory(exr_dir):
    assert_exr_error(exr_dir / "ScanLines", "is a directory")


@pytest.mark.parametrize(("content", "match"), [
    (b"", "not an OpenEXR file \\(empty file\\)"),
    (b"P6\n2 2\n255\n" + bytes(12), "bad magic number"),
    (b"\x76\x2f\x31", "bad magic number"),
    (b"\x76\x2f\x31\x01" + bytes(100), "damaged or unreadable EXR header"),
])
def test_non_exr_bytes(tmp_path, content, match):
    path = tmp_path / "fake.exr"
    path.write_bytes(content)
    assert_exr_error(path, match)


def test_truncated_file(tmp_path, exr_dir):
    data = (exr_dir / "ScanLines/Cannon.exr").read_bytes()
    path = tmp_path / "truncated.exr"
    path.write_bytes(data[: len(data) // 2])
    assert_exr_error(path, "damaged")


def test_bad_path_type():
    with pytest.raises(ExrError, match="path-like"):
        read_exr(None)


def test_errors_are_input_errors():
    assert issubclass(ExrError, InputError)


def test_damaged_directory_is_complete(exr_dir):
    assert len(os.listdir(exr_dir / "Damaged")) == N_DAMAGED


@pytest.mark.parametrize("name", _damaged_names())
def test_damaged_file_is_refused(exr_dir, name):
    assert_exr_error(exr_dir / "Damaged" / name)
