"""`hdr-dcs generate`: bags whose stamps, roles and drops follow the configured rig."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rclpy.serialization import deserialize_message

from hdr_dcs.core.types import Role
from hdr_dcs.io.bag import BagReader, hdr_from_msg, read_frames, stamp_ns_of


def generate(out: Path, *args: str) -> dict:
    exe = shutil.which("hdr-dcs", path=str(Path(sys.executable).parent))
    run = subprocess.run([exe, "generate", str(out), "--size", "96x72", *args],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_stamps_and_roles_follow_rates_and_offsets(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / "rig"
    summary = generate(bag, "--storage", storage, "--seconds", "1", "--rate", "20", "--anchor-period", "4",
                       "--clock-offset", "0.013", "--scene", "street")
    with BagReader(bag) as reader:
        topics = reader.topics()
        ref = list(read_frames(reader, "reference"))
        anchors = list(read_frames(reader, "anchor"))
        truth = [stamp_ns_of(m.msg) for m in reader.messages(["/dcs/ground_truth/hdr"])]
        gt0 = hdr_from_msg(next(reader.messages(["/dcs/ground_truth/hdr"])).msg)
    assert summary["frames"] == {"reference": 20, "anchor": len(anchors)}
    assert topics["/dcs/reference/image_raw"][1] == 20 and topics["/dcs/ground_truth/hdr"][1] == 20
    stamps = np.array([f.stamp_ns for f in ref])
    assert np.allclose(np.diff(stamps), 1e9 / 20, atol=1)
    assert truth == list(stamps) and gt0.shape == (72, 96, 3)
    assert all(f.role == Role.REFERENCE for f in ref)
    # Anchor camera at 2 * 20 / 4 = 10 Hz, LOW/HIGH alternating, on a clock 13 ms ahead.
    a_stamps = np.array([f.stamp_ns for f in anchors])
    assert np.allclose(np.diff(a_stamps), 1e8, atol=1)
    assert [f.role for f in anchors[:4]] == [Role.LOW, Role.HIGH, Role.LOW, Role.HIGH]
    assert (a_stamps[0] - 0.013e9 - 0.02e9) == pytest.approx(0, abs=1)
    ratio = anchors[1].exposure.exposure_time_s / anchors[0].exposure.exposure_time_s
    assert ratio == pytest.approx(16.0, rel=1e-6)
    assert [f.sequence_id for f in ref] == list(range(20))


def test_drops_leave_sequence_gaps(tmp_path: Path) -> None:
    bag = tmp_path / "lossy"
    summary = generate(bag, "--seconds", "2", "--drop", "0.2", "0.3", "--seed", "3")
    with BagReader(bag) as reader:
        ref = list(read_frames(reader, "reference"))
        anchors = list(read_frames(reader, "anchor"))
    assert summary["dropped"]["reference"] > 0 and summary["dropped"]["anchor"] > 0
    assert len(ref) == 60 - summary["dropped"]["reference"]
    ids = [f.sequence_id for f in ref]
    assert ids == sorted(ids) and max(ids) - min(ids) + 1 > len(ids)  # gaps where frames were lost
    anchor_ids = [f.sequence_id for f in anchors]
    # Every captured anchor frame used an id: delivered + lost covers all ids up to the last.
    assert anchor_ids == sorted(set(anchor_ids))
    assert len(anchor_ids) + summary["dropped"]["anchor"] >= max(anchor_ids) + 1


def test_bag_deserialises_with_rclpy(tmp_path: Path) -> None:
    from hdr_dcs_msgs.msg import ExposureInfo
    from sensor_msgs.msg import CameraInfo, Image

    bag = tmp_path / "rclpy"
    generate(bag, "--seconds", "0.3", "--bits", "12")
    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "hdr_dcs_msgs/msg/ExposureInfo": ExposureInfo}
    seen = set()
    with BagReader(bag) as reader:
        for raw in reader.raw_messages():
            msg = deserialize_message(raw.data, types[raw.msgtype])
            seen.add(raw.topic)
            if raw.topic == "/dcs/reference/image_raw":
                assert msg.encoding == "rgb16" and (msg.width, msg.height) == (96, 72)
            if raw.topic == "/dcs/anchor/exposure":
                assert msg.role in (ExposureInfo.ROLE_LOW, ExposureInfo.ROLE_HIGH)
            if raw.topic == "/dcs/anchor/camera_info":
                assert msg.p[2] == pytest.approx(msg.k[2] + 1.5)  # the default baseline
    assert {"/dcs/reference/image_raw", "/dcs/anchor/image_raw", "/dcs/reference/exposure", "/dcs/anchor/exposure",
            "/dcs/reference/camera_info", "/dcs/anchor/camera_info", "/dcs/ground_truth/hdr"} == seen


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    exe = shutil.which("hdr-dcs", path=str(Path(sys.executable).parent))
    run = subprocess.run([exe, "generate", str(tmp_path / "x"), "--scene", "nope"], capture_output=True, text=True)
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "unknown scene" in run.stderr
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "keep.txt").write_text("mine")
    run = subprocess.run([exe, "generate", str(tmp_path / "exists"), "--seconds", "0.1", "--size", "32x32"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and (tmp_path / "exists" / "keep.txt").exists()


def test_folder_format_reads_back_as_training_windows(tmp_path: Path) -> None:
    from hdr_dcs.data.dataset import FolderWindows
    from hdr_dcs.data.folder import read_sequence

    out = tmp_path / "seq"
    summary = generate(out, "--format", "folder", "--seconds", "1", "--scene", "night")
    seq = read_sequence(out)
    assert summary["frames"] == {"reference": len(seq.reference), "anchor": len(seq.anchors)} and len(seq.reference) == 30
    assert seq.ground_truth.shape == (30, 72, 96, 3)
    windows = FolderWindows(tmp_path, T=5, crop=32)
    assert len(windows) >= 4
    sample = windows[0]
    assert sample["reference"].shape == (5, 3, 32, 32) and sample["gt"].shape == (5, 3, 32, 32)
