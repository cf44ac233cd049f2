"""hdr_dcs.eval.bagrun: the reconstruction pipeline over real (small, simulated) bags."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hdr_dcs.backends import make_backend
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.merge import reference_only
from hdr_dcs.core.types import Exposure, Frame, Role
from hdr_dcs.eval.bagrun import (
    RECORDED,
    REFERENCE_ONLY,
    BagFrame,
    BagRun,
    ReferenceOnlyBackend,
    check_backend,
    run_bag,
)
from hdr_dcs.io.bag import (
    EXPOSURE_INFO,
    IMAGE,
    BagError,
    BagReader,
    BagWriter,
    RawBagMessage,
    Topics,
    calibration_from_msg,
    stamp_ns_of,
)
from hdr_dcs.io.image_msg import to_rgb_unit
from hdr_dcs.pipeline import ReconstructionPipeline
from hdr_dcs.sim.rig import RigConfig, RigEvent, calibrations, simulate_stream
from hdr_dcs.sim.scenes import make_scene

SIZE = (96, 72)
RATE = 30.0
T = Topics()

Mutator = Callable[[BagWriter, RigEvent, dict], bool]


def _header(ts, stamp_ns: int, frame_id: str):
    return ts.types["std_msgs/msg/Header"](
        stamp=ts.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
        frame_id=frame_id)


def write_exposure(bag: BagWriter, camera: str, frame: Frame, exposure_time_us: float) -> None:
    ts = bag.typestore
    msg = ts.types[EXPOSURE_INFO](header=_header(ts, frame.stamp_ns, frame.frame_id), role=int(frame.role),
                                  exposure_time_us=exposure_time_us, gain_db=0.0,
                                  sequence_id=frame.sequence_id)
    bag.write_message(T.exposure(camera), EXPOSURE_INFO, msg, frame.stamp_ns)


def write_raw_image(bag: BagWriter, camera: str, frame: Frame, encoding: str, step: int, data: np.ndarray,
                    size_wh: tuple[int, int] = SIZE) -> None:
    ts = bag.typestore
    msg = ts.types[IMAGE](header=_header(ts, frame.stamp_ns, frame.frame_id), height=size_wh[1],
                          width=size_wh[0], encoding=encoding, is_bigendian=0, step=step, data=data)
    bag.write_message(T.image(camera), IMAGE, msg, frame.stamp_ns)


def write_sim_bag(path: Path, storage: str = "mcap", seconds: float = 1.0, ground_truth: bool = True,
                  mutate: Mutator | None = None, gt_delay_ns: int = 0, seed: int = 0) -> dict:
    """A simulated rig recording at 96x72 (procedural scene, anchor 1.5 px to the side):
    CameraInfos first, then every frame as image + ExposureInfo (rgb8), ground truth per
    reference frame. ``mutate(bag, event, counts)`` may write the event itself (True)."""
    cfg = RigConfig(reference_rate_hz=RATE, baseline_px=(1.5, 0.0), seed=seed)
    scene = make_scene(f"procedural_{seed + 1}", None, SIZE, seconds)
    ref_cal, anchor_cal = calibrations(SIZE, cfg)
    counts = {"reference": 0, "anchor": 0}
    written = {"reference": [], "ground_truth": {}}
    with BagWriter(path, storage=storage) as bag:
        bag.write_camera_info("reference", ref_cal, 1, "reference_optical_frame")
        bag.write_camera_info("anchor", anchor_cal, 1, "anchor_optical_frame")
        for event in simulate_stream(scene.render_exposure, round(seconds * RATE), cfg):
            frame = event.frame
            if not (mutate is not None and mutate(bag, event, counts)):
                bag.write_frame(frame, event.camera, "rgb8")
            if event.camera == "reference":
                written["reference"].append(frame.stamp_ns)
                if ground_truth:
                    bag.write_hdr("ground_truth", event.ground_truth, frame.stamp_ns, frame.frame_id,
                                  receive_time_ns=frame.stamp_ns + gt_delay_ns)
                    written["ground_truth"][frame.stamp_ns] = event.ground_truth
            counts[event.camera] += 1
    return written


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("bags") / "sim"
    return path, write_sim_bag(path)


def direct_pipeline(path: Path, backend: str = "classical") -> list:
    """The pipeline fed by hand from BagReader.messages (the reference for determinism)."""
    pipeline = ReconstructionPipeline(backend=ReferenceOnlyBackend() if backend == REFERENCE_ONLY else None)
    outputs = []
    with BagReader(path) as reader:
        for m in reader.messages():
            cam = "reference" if m.topic.startswith("/dcs/reference/") else "anchor"
            if m.topic in (T.reference_image, T.anchor_image):
                outputs += pipeline.add_image(cam, stamp_ns_of(m.msg), to_rgb_unit(m.msg),
                                              m.msg.header.frame_id)
            elif m.topic in (T.reference_exposure, T.anchor_exposure):
                e = m.msg
                outputs += pipeline.add_exposure(cam, stamp_ns_of(e), e.role, e.exposure_time_us * 1e-6,
                                                 e.gain_db, e.sequence_id, e.header.frame_id)
            elif m.topic in (T.reference_info, T.anchor_info):
                pipeline.set_calibration(cam, calibration_from_msg(m.msg, cam))
    return outputs + pipeline.flush()


# --- normal runs ----------------------------------------------------------------------------

def test_one_frame_per_reference_frame_with_its_ground_truth(sim_bag) -> None:
    path, written = sim_bag
    run = run_bag(path, "classical", ground_truth=True)
    seen = []
    run.progress = seen.append
    frames = list(run)
    assert [f.stamp_ns for f in frames] == written["reference"]
    assert [f.index for f in frames] == list(range(len(frames)))
    for f in frames:
        assert f.hdr.dtype == np.float32 and f.hdr.shape == (SIZE[1], SIZE[0], 3) and np.isfinite(f.hdr).all()
        assert f.tonemapped.dtype == np.uint8 and f.tonemapped.shape == (SIZE[1], SIZE[0], 3)
        assert f.frame_id == "reference_optical_frame"
        assert np.array_equal(f.ground_truth, written["ground_truth"][f.stamp_ns])
        assert f.log_time_ns == f.stamp_ns          # this bag logs at the stamps
    s = run.stats
    assert sum(seen) == s.reference_images == len(written["reference"]) == s.frames_out
    assert s.ground_truth_frames == s.ground_truth_matched == len(frames)
    assert s.rejected_total == 0 and s.grouper.groups_out == len(frames)
    assert s.grouper.groups_without_anchors == 0 and s.per_frame_ms > 0
    assert s.min_exposure_scale > 0
    assert sum(f.info["anchors_used"] for f in frames) == len(frames)
    d = s.to_dict()
    assert d["grouper"]["drops"]["reference"] == {} and d["frames_out"] == len(frames)


def test_offline_output_equals_the_pipeline_fed_directly(sim_bag) -> None:
    path, _ = sim_bag
    expected = direct_pipeline(path)
    frames = list(run_bag(path, "classical"))
    assert len(frames) == len(expected)
    for f, e in zip(frames, expected, strict=True):
        assert f.stamp_ns == e.stamp_ns
        assert np.array_equal(f.hdr, e.hdr) and np.array_equal(f.tonemapped, e.tonemapped)


def test_events_are_every_message_plus_frames_in_log_time_order(sim_bag) -> None:
    path, written = sim_bag
    with BagReader(path) as reader:
        raw = list(reader.raw_messages())
    run = run_bag(path, "classical")
    events = list(run.events())
    copied = [e for e in events if isinstance(e, RawBagMessage)]
    frames = [e for e in events if isinstance(e, BagFrame)]
    assert sorted(copied, key=lambda m: (m.log_time_ns, m.topic, m.data)) == \
        sorted(raw, key=lambda m: (m.log_time_ns, m.topic, m.data))
    assert [f.stamp_ns for f in frames] == written["reference"]
    times = [e.log_time_ns for e in events]
    assert times == sorted(times) and run.stats.out_of_order == 0
    # a frame goes out right after the messages of its time: the hold-back is short
    positions = {id(e): i for i, e in enumerate(events)}
    for f in frames:
        later = [e for e in events[positions[id(f)]:] if isinstance(e, RawBagMessage)]
        assert all(m.log_time_ns >= f.log_time_ns for m in later)


def test_a_tiny_buffer_lets_messages_out_early_and_counts_it(sim_bag) -> None:
    path, _ = sim_bag
    run = run_bag(path, "classical", max_buffer_bytes=0)
    events = list(run.events())
    with BagReader(path) as reader:
        assert sum(isinstance(e, RawBagMessage) for e in events) == reader.message_count
    assert run.stats.out_of_order > 0


def test_ground_truth_logged_after_its_frame_is_still_attached(tmp_path: Path) -> None:
    path = tmp_path / "late_gt"
    written = write_sim_bag(path, seconds=0.5, gt_delay_ns=400_000_000)
    frames = list(run_bag(path, REFERENCE_ONLY, ground_truth=True))
    assert len(frames) == len(written["reference"])
    assert all(np.array_equal(f.ground_truth, written["ground_truth"][f.stamp_ns]) for f in frames)


def test_without_ground_truth_frames_have_none(tmp_path: Path) -> None:
    path = tmp_path / "no_gt"
    written = write_sim_bag(path, seconds=0.5, ground_truth=False)
    run = run_bag(path, "classical", ground_truth=True)
    frames = list(run)
    assert not run.has_ground_truth and len(frames) == len(written["reference"])
    assert all(f.ground_truth is None for f in frames)


def test_reference_only_backend_is_the_reference_frame_alone(sim_bag) -> None:
    path, _ = sim_bag
    frames = list(run_bag(path, REFERENCE_ONLY))
    with BagReader(path) as reader:
        images = {stamp_ns_of(m.msg): to_rgb_unit(m.msg) for m in reader.messages([T.reference_image])}
        exposures = {stamp_ns_of(m.msg): m.msg.exposure_time_us * 1e-6
                     for m in reader.messages([T.reference_exposure])}
    for f in frames[::7]:
        ref = Frame(images[f.stamp_ns], f.stamp_ns, Role.REFERENCE, Exposure(exposures[f.stamp_ns]))
        np.testing.assert_array_equal(f.hdr, reference_only(ref))
    assert [f.stamp_ns for f in frames] == [o.stamp_ns for o in direct_pipeline(path, REFERENCE_ONLY)]


def test_recorded_backend_reads_the_bags_hdr_frames(tmp_path: Path, sim_bag) -> None:
    src, written = sim_bag
    out = tmp_path / "recorded"
    expected = list(run_bag(src, "classical"))
    with BagReader(src) as reader, BagWriter(out) as writer:
        for m in reader.raw_messages():
            writer.copy_message(m)
        for f in expected:
            writer.write_hdr("hdr_image", f.hdr, f.stamp_ns, f.frame_id)
    run = run_bag(out, RECORDED, ground_truth=True)
    frames = list(run)
    assert [f.stamp_ns for f in frames] == written["reference"]
    for a, b in zip(frames, expected, strict=True):
        assert np.array_equal(a.hdr, b.hdr) and a.tonemapped is None
    assert all(f.ground_truth is not None for f in frames)
    assert run.stats.grouper is None and run.stats.per_frame_ms is None
    with pytest.raises(InputError, match="no /dcs/hdr/image"):
        run_bag(src, RECORDED)


def test_a_run_can_be_iterated_once(sim_bag) -> None:
    run = run_bag(sim_bag[0], REFERENCE_ONLY)
    list(run)
    with pytest.raises(RuntimeError, match="once"):
        list(run)


# --- malformed input --------------------------------------------------------------------------

def _malformed(bag: BagWriter, event: RigEvent, counts: dict) -> bool:
    """Reference #5: wrong size; #9: NaN exposure; #12: truncated data; anchor #2: yuv422;
    plus one undecodable ExposureInfo after reference #3."""
    frame, i = event.frame, counts[event.camera]
    w, h = SIZE
    if event.camera == "reference" and i == 5:
        small = Frame(frame.pixels[: h // 2, : w // 2], frame.stamp_ns, frame.role, frame.exposure,
                      frame.sequence_id, frame.frame_id)
        bag.write_frame(small, "reference", "rgb8")
        return True
    if event.camera == "reference" and i == 9:
        bag.write_image(T.reference_image, (frame.pixels * 255).astype(np.uint8), "rgb8", frame.stamp_ns,
                        frame.frame_id)
        write_exposure(bag, "reference", frame, math.nan)
        return True
    if event.camera == "reference" and i == 12:
        write_raw_image(bag, "reference", frame, "rgb8", w * 3, np.zeros(10, np.uint8))
        write_exposure(bag, "reference", frame, frame.exposure.exposure_time_s * 1e6)
        return True
    if event.camera == "reference" and i == 3:
        bag.write_frame(frame, "reference", "rgb8")
        bag.write_message(T.reference_exposure, EXPOSURE_INFO, b"\x00\x01\x00", frame.stamp_ns + 1)
        return True
    if event.camera == "anchor" and i == 2:
        write_raw_image(bag, "anchor", frame, "yuv422", w * 2, np.zeros(w * h * 2, np.uint8))
        write_exposure(bag, "anchor", frame, frame.exposure.exposure_time_s * 1e6)
        return True
    return False


def test_malformed_inputs_are_counted_and_do_not_stop_the_run(tmp_path: Path) -> None:
    path = tmp_path / "malformed"
    written = write_sim_bag(path, mutate=_malformed)
    run = run_bag(path, "classical", ground_truth=True)
    frames = list(run)
    s = run.stats
    lost = {written["reference"][i] for i in (5, 9, 12)}
    assert [f.stamp_ns for f in frames] == [t for t in written["reference"] if t not in lost]
    assert all(np.isfinite(f.hdr).all() for f in frames)
    assert s.rejected[T.reference_image] == {"size 48x36, expected 96x72": 1, "malformed image": 1}
    assert s.rejected[T.anchor_image] == {"unsupported encoding 'yuv422'": 1}
    assert s.rejected[T.reference_exposure] == {"undecodable message": 1}
    assert s.rejected_total == 4 and len(s.rejected_examples) == 4
    drops = s.drops()
    assert drops["reference"] == {"bad exposure": 1, "missing image": 2}
    assert drops["anchor"].get("missing image") == 1
    assert s.grouper.unaccounted("reference") == 0
    assert "rejected /dcs/anchor/image_raw (unsupported encoding 'yuv422') 1" in s.describe_losses()


def test_a_bag_with_nothing_usable_raises_naming_why(tmp_path: Path) -> None:
    def all_yuv(bag: BagWriter, event: RigEvent, counts: dict) -> bool:
        if event.camera != "reference":
            return False
        w, h = SIZE
        write_raw_image(bag, "reference", event.frame, "yuv422", w * 2, np.zeros(w * h * 2, np.uint8))
        write_exposure(bag, "reference", event.frame, event.frame.exposure.exposure_time_s * 1e6)
        return True

    path = tmp_path / "unusable"
    write_sim_bag(path, seconds=0.3, mutate=all_yuv)
    with pytest.raises(InputError, match=r"no frame could be reconstructed.*yuv422"):
        list(run_bag(path, "classical"))


# --- refusals -------------------------------------------------------------------------------

def unavailable_backend() -> tuple[str, str]:
    """A learned backend that cannot run (no weights where it looks), and why."""
    try:
        make_backend("location")
    except InputError as exc:
        return "location", str(exc)
    raise AssertionError("location loaded without weights")


def test_bad_backends_and_bags_are_refused_up_front(tmp_path: Path, sim_bag, monkeypatch) -> None:
    monkeypatch.setenv("HDR_DCS_WEIGHTS_DIR", str(tmp_path / "no_weights"))
    with pytest.raises(InputError, match="unknown backend 'nope'"):
        run_bag(sim_bag[0], "nope")
    name, why = unavailable_backend()
    with pytest.raises(InputError) as info:
        run_bag(sim_bag[0], name)
    assert str(info.value) == why
    with pytest.raises(InputError, match="only scores recorded"):
        check_backend(RECORDED, recorded=False)
    check_backend(RECORDED)
    with pytest.raises(BagError, match="not found"):
        run_bag(tmp_path / "missing", "classical")
    empty = tmp_path / "diag_only"
    with BagWriter(empty) as bag:
        ts = bag.typestore
        bag.write_message("/other", "std_msgs/msg/String", ts.types["std_msgs/msg/String"](data="x"), 5)
    with pytest.raises(InputError, match="has no /dcs/reference/image_raw"):
        run_bag(empty, "classical")
    wrong = tmp_path / "wrong_type"
    with BagWriter(wrong) as bag:
        ts = bag.typestore
        text = ts.types["std_msgs/msg/String"](data="x")
        bag.write_message(T.reference_image, "std_msgs/msg/String", text, 5)
    with pytest.raises(InputError, match="carries std_msgs/msg/String, expected sensor_msgs/msg/Image"):
        BagRun(wrong, "classical")


def test_recorded_hdr_frames_must_be_32fc3(tmp_path: Path) -> None:
    path = tmp_path / "bad_hdr"
    with BagWriter(path) as bag:
        bag.write_image("hdr_image", np.zeros((SIZE[1], SIZE[0], 3), np.uint8), "rgb8", 10, "f")
        bag.write_hdr("hdr_image", np.ones((SIZE[1], SIZE[0], 3), np.float32), 20, "f")
    run = run_bag(path, RECORDED)
    frames = list(run)
    assert [f.stamp_ns for f in frames] == [20]
    assert run.stats.rejected == {T.hdr_image: {"encoding 'rgb8', expected '32FC3'": 1}}
