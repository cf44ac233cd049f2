"""Sequence folders (hdr_dcs.data.folder): exact round trips, atomic writes, clear errors."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hdr_dcs.core.errors import InputError
from hdr_dcs.data import folder as folder_mod
from hdr_dcs.data.folder import (
    SequenceFolder,
    find_sequences,
    is_sequence_folder,
    read_sequence,
    write_sequence,
)
from hdr_dcs.sim.camera import CameraModel
from hdr_dcs.sim.rig import RigConfig, simulate

REPO = Path(__file__).resolve().parents[2]


def _assert_same_frames(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert y.pixels.dtype == np.float32 and np.array_equal(x.pixels, y.pixels)
        assert (x.stamp_ns, x.role, x.exposure, x.sequence_id, x.frame_id) == \
            (y.stamp_ns, y.role, y.exposure, y.sequence_id, y.frame_id)


def test_round_trip_8_bit(rig_seq, rig_cfg, tmp_path) -> None:
    out = write_sequence(tmp_path / "seq", rig_seq, "toy", 3, rig_cfg)
    assert out == tmp_path / "seq" and is_sequence_folder(out)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["scene"] == "toy" and meta["seed"] == 3 and meta["rig"]["ev_low"] == -2.0
    assert meta["reference"]["png_dtype"] == "uint8" and meta["reference"]["exact"]
    assert meta["calibration"]["anchor"]["projection_matrix"]["rows"] == 3
    back = read_sequence(out)
    _assert_same_frames(rig_seq.reference, back.reference)
    _assert_same_frames(rig_seq.anchors, back.anchors)
    assert back.reference_calibration == rig_seq.reference_calibration
    assert back.anchor_calibration == rig_seq.anchor_calibration
    assert back.dropped == rig_seq.dropped and back.scene_name == "toy" and back.seed == 3
    # EXR half: relative error <= 2**-11
    assert back.ground_truth.shape == rig_seq.ground_truth.shape
    assert np.allclose(back.ground_truth, rig_seq.ground_truth, rtol=2**-11, atol=1e-6)
    assert sorted(p.name for p in (out / "ground_truth").iterdir())[0] == "000000.exr"


def test_round_trip_12_bit_with_baseline_and_npy_ground_truth(make_toy_scene, tmp_path) -> None:
    cam = CameraModel(bit_depth=12, full_well_e=5000.0)
    cfg = RigConfig(seed=8, baseline_px=(3.0, -1.5), reference_camera=cam, anchor_camera=cam)
    seq = simulate(make_toy_scene().render_exposure, 7, cfg)
    out = write_sequence(tmp_path / "seq12", seq, "toy12", 8, cfg, gt_format="npy")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["anchor"]["png_dtype"] == "uint16" and meta["anchor"]["max_code"] == 65535
    back = read_sequence(out)
    _assert_same_frames(seq.reference, back.reference)
    _assert_same_frames(seq.anchors, back.anchors)
    assert back.anchor_calibration == seq.anchor_calibration
    assert np.allclose(back.ground_truth, seq.ground_truth, rtol=2**-11, atol=1e-6)
    assert (out / "ground_truth" / "000000.npy").is_file()


def test_frames_of_another_code_depth_round_trip(rig_seq, tmp_path) -> None:
    """Codes / 4095 (a bag with 12-bit codes not left-aligned) are kept exactly too."""
    rng = np.random.default_rng(0)
    ref = tuple(dataclasses.replace(f, pixels=(rng.integers(0, 4096, f.pixels.shape).astype(np.uint16)
                                               .astype(np.float32) / np.float32(4095)))
                for f in rig_seq.reference)
    seq = dataclasses.replace(rig_seq, reference=ref)
    out = write_sequence(tmp_path / "s", seq)
    assert json.loads((out / "meta.json").read_text())["reference"]["max_code"] == 4095
    _assert_same_frames(seq.reference, read_sequence(out).reference)


def test_existing_folder_needs_overwrite(rig_seq, tmp_path) -> None:
    write_sequence(tmp_path / "s", rig_seq, "a")
    with pytest.raises(InputError, match="exists"):
        write_sequence(tmp_path / "s", rig_seq, "b")
    write_sequence(tmp_path / "s", rig_seq, "b", overwrite=True)
    assert read_sequence(tmp_path / "s").scene_name == "b"
    assert [p.name for p in tmp_path.iterdir()] == ["s"]


def test_interrupted_write_leaves_no_complete_looking_folder(rig_seq, tmp_path, monkeypatch) -> None:
    calls = []
    real = folder_mod._write_gt

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # e.g. Ctrl-C during generation
        return real(*args, **kwargs)

    monkeypatch.setattr(folder_mod, "_write_gt", failing)
    with pytest.raises(KeyboardInterrupt):
        write_sequence(tmp_path / "s", rig_seq, "toy")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="not found"):
        read_sequence(tmp_path / "s")


def test_killed_write_leaves_only_an_ignored_tmp_folder(rig_seq, tmp_path) -> None:
    """A process killed mid-write (no cleanup possible) leaves ``<folder>.tmp`` without meta.json."""
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from hdr_dcs.data import folder
        from hdr_dcs.sim.rig import RigConfig, simulate
        from hdr_dcs.sim.scene import CameraPath, Layer, LayeredScene
        import numpy as np
        scene = LayeredScene((32, 24), (Layer(np.full((40, 50, 3), 5.0, np.float32)),), (), CameraPath())
        seq = simulate(scene.render_exposure, 6, RigConfig())
        n = []
        def die(*a, **k):
            n.append(1)
            if len(n) == 2:
                os._exit(3)
        folder.write_sequence({str(tmp_path / 'killed')!r}, seq, progress=lambda done, total: die())
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert not (tmp_path / "killed").exists()
    tmp = tmp_path / "killed.tmp"
    assert tmp.is_dir() and not (tmp / "meta.json").exists()
    assert find_sequences(tmp_path) == [] and not is_sequence_folder(tmp)
    with pytest.raises(InputError):
        read_sequence(tmp)
    # generating again replaces the leftover
    write_sequence(tmp_path / "killed", rig_seq)
    assert find_sequences(tmp_path) == [tmp_path / "killed"] and not tmp.exists()


def test_corrupt_or_missing_files_raise_input_error_naming_them(rig_seq, tmp_path) -> None:
    out = write_sequence(tmp_path / "s", rig_seq)
    png = out / "anchor" / "000001.png"
    png.write_bytes(png.read_bytes()[:60])
    sf = SequenceFolder(out)  # metadata only: fine
    with pytest.raises(InputError, match=r"anchor/000001\.png"):
        sf.raw_anchor(1)
    with pytest.raises(InputError, match=r"000001\.png"):
        read_sequence(out)
    (out / "reference" / "000002.png").unlink()
    with pytest.raises(InputError, match=r"reference/000002\.png"):
        sf.reference_pixels(2)
    exr = out / "ground_truth" / "000003.exr"
    exr.write_bytes(b"not an exr")
    with pytest.raises(InputError, match=r"000003\.exr"):
        sf.ground_truth(3)
    meta = out / "meta.json"
    meta.write_text("{ truncated")
    with pytest.raises(InputError, match=r"meta\.json"):
        read_sequence(out)
    meta.unlink()
    with pytest.raises(InputError, match=r"meta\.json"):
        read_sequence(out)
    with pytest.raises(InputError, match="not found"):
        read_sequence(tmp_path / "nothing")


def test_malformed_meta_is_an_input_error(rig_seq, tmp_path) -> None:
    out = write_sequence(tmp_path / "s", rig_seq)
    meta = json.loads((out / "meta.json").read_text())
    del meta["reference"]["frames"][0]["stamp_ns"]
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="frame record 0"):
        SequenceFolder(out)
    (out / "meta.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(InputError, match=r"meta\.json"):
        SequenceFolder(out)


def test_find_sequences(rig_seq, tmp_path) -> None:
    write_sequence(tmp_path / "a" / "s2", rig_seq)
    write_sequence(tmp_path / "s1", rig_seq)
    (tmp_path / "junk.tmp").mkdir()
    (tmp_path / "junk.tmp" / "meta.json").write_text("{}")
    assert find_sequences(tmp_path) == [tmp_path / "a" / "s2", tmp_path / "s1"]
    assert find_sequences(tmp_path / "s1") == [tmp_path / "s1"]
