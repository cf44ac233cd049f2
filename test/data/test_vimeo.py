"""LDR video -> dual-stream sequence folders (hdr_dcs.data.vimeo)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from hdr_dcs.core.errors import InputError
from hdr_dcs.core.photometry import channel_max
from hdr_dcs.core.types import Role
from hdr_dcs.data.dataset import FolderWindows
from hdr_dcs.data.folder import read_sequence
from hdr_dcs.data.vimeo import (
    ConversionConfig,
    convert_video_folders,
    expand_highlights,
    find_video_folders,
    main,
    window_layout,
)
from hdr_dcs.data.windows import make_windows

W, H = 48, 32


def _frame(i: int) -> np.ndarray:
    """8-bit RGB: a horizontal gradient moving right by 2 px per frame, with a clipped sun."""
    x = (np.arange(W)[None, :] + 2 * i) % W
    y = np.arange(H)[:, None]
    base = (40 + 200 * x / W + 0 * y).astype(np.float32)
    img = np.stack([base, base * 0.9, base * 0.7 + 10 * (y / H)], axis=-1)
    yy, xx = np.mgrid[0:H, 0:W]
    img[(xx - 10 - i) ** 2 + (yy - 8) ** 2 < 25] = 255.0
    return np.clip(img, 0, 255).astype(np.uint8)


def _write_clip(folder: Path, n: int, pattern: str = "im{}.png") -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        assert cv2.imwrite(str(folder / pattern.format(i + 1)), _frame(i)[:, :, ::-1])


@pytest.fixture()
def septuplets(tmp_path: Path) -> Path:
    root = tmp_path / "vimeo"
    _write_clip(root / "sequences" / "00001" / "0001", 7)
    _write_clip(root / "sequences" / "00001" / "0002", 7)
    return root


def test_window_layout() -> None:
    assert window_layout(7, 5) == [(1, 2, 4)]
    assert window_layout(12, 5) == [(1, 2, 4), (6, 7, 9)]
    assert window_layout(8, 4) == [(0, 1, 2), (4, 5, 6)]
    with pytest.raises(InputError):
        window_layout(7, 1)


def test_highlight_expansion_is_monotonic_and_boosts_clipped_pixels() -> None:
    display = np.linspace(0, 1, 101, dtype=np.float32)[:, None, None].repeat(3, axis=2)
    linear = display ** 2.2
    out = expand_highlights(display, linear, 0.9, 8.0)
    assert np.all(np.diff(out[:, 0, 0]) > 0)
    assert np.array_equal(out[:90], linear[:90]) and out[-1, 0, 0] == pytest.approx(8.0)


def test_convert_septuplets(septuplets: Path, tmp_path: Path) -> None:
    calls = []
    out = tmp_path / "out"
    report = convert_video_folders(septuplets, out, seed=1, progress=lambda *a: calls.append(a))
    assert report.converted == ["00001_0001", "00001_0002"] and not report.skipped
    assert calls == [(1, 2, "00001_0001", "converted"), (2, 2, "00001_0002", "converted")]
    seq_dir = out / "00001_0001"
    assert sorted(p.name for p in seq_dir.iterdir()) == ["anchor", "ground_truth", "meta.json", "reference"]
    assert len(list((seq_dir / "reference").glob("*.png"))) == 7
    assert len(list((seq_dir / "ground_truth").glob("*.exr"))) == 7
    meta = json.loads((seq_dir / "meta.json").read_text())
    assert meta["scene"] == "00001_0001" and meta["rig"]["converter"] == "hdr_dcs.data.vimeo"

    seq = read_sequence(seq_dir)
    assert len(seq.reference) == 7 and seq.ground_truth.shape == (7, H, W, 3)
    assert [f.role for f in seq.anchors] == [Role.LOW, Role.HIGH]
    period = 1e9 / 30
    assert [f.stamp_ns for f in seq.anchors] == [round(2 * period), round(4 * period)]
    ref = seq.reference[0].exposure.scale
    ev_low = np.log2(seq.anchors[0].exposure.scale / ref)
    ev_high = np.log2(seq.anchors[1].exposure.scale / ref)
    assert ev_low == pytest.approx(-ev_high) and 1.5 <= ev_high <= 3.0
    assert ev_high == pytest.approx(meta["rig"]["ev_high"])
    assert np.all(seq.ground_truth >= 0)
    # highlights: the sun saturates in the high anchor and much less in the low one
    sat_low = (channel_max(seq.anchors[0].pixels) >= 0.99).mean()
    sat_high = (channel_max(seq.anchors[1].pixels) >= 0.99).mean()
    assert sat_high > sat_low
    # the ground truth is HDR: the sun is brighter than the source's white after expansion
    sun = seq.ground_truth[2][8, 10 + 2]
    grey = np.median(seq.ground_truth[2])
    assert sun.min() > 5 * grey

    windows = make_windows(seq)
    assert len(windows) == 1 and windows[0].start == 1  # frames 1..5 around the pair at frame 3
    assert windows[0].alt_anchors is None  # a septuplet holds one pair only
    assert len(FolderWindows(out, flips=False, rotations=False)) == 2


def test_conversion_is_resumable_and_deterministic(septuplets: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    convert_video_folders(septuplets, out, seed=2)
    first = (out / "00001_0002" / "anchor" / "000001.png").read_bytes()
    again = convert_video_folders(septuplets, out, seed=2)
    assert again.converted == [] and again.skipped == ["00001_0001", "00001_0002"]
    shutil.rmtree(out / "00001_0002")
    (out / "00001_0002.tmp").mkdir()  # an interrupted earlier run
    third = convert_video_folders(septuplets, out, seed=2)
    assert third.converted == ["00001_0002"] and third.skipped == ["00001_0001"]
    assert (out / "00001_0002" / "anchor" / "000001.png").read_bytes() == first
    assert not (out / "00001_0002.tmp").exists()


def test_any_frame_folder_and_cli(tmp_path: Path, capsys) -> None:
    _write_clip(tmp_path / "videos" / "walk", 12, "frame_{}.jpg")  # frame_10 sorts after frame_9
    _write_clip(tmp_path / "videos" / "short", 3, "f{}.png")  # fewer than T frames: not a clip
    assert find_video_folders(tmp_path / "videos", min_frames=5) == [tmp_path / "videos" / "walk"]
    assert main([str(tmp_path / "videos"), str(tmp_path / "out"), "--seed", "4", "--no-noise"]) == 0
    assert "converted 1" in capsys.readouterr().out
    seq = read_sequence(tmp_path / "out" / "walk")
    assert len(seq.reference) == 12 and len(seq.anchors) == 4
    windows = make_windows(seq)
    assert [w.start for w in windows] == [1, 6]
    assert all(w.alt_anchors is not None for w in windows)
    assert main([str(tmp_path / "missing"), str(tmp_path / "out2")]) == 1


def test_broken_frames(tmp_path: Path) -> None:
    _write_clip(tmp_path / "v" / "a", 6)
    (tmp_path / "v" / "a" / "im3.png").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"im3\.png"):
        convert_video_folders(tmp_path / "v", tmp_path / "o")
    report = convert_video_folders(tmp_path / "v", tmp_path / "o", on_error="skip",
                                   config=ConversionConfig(T=5))
    assert report.failed and report.failed[0][0] == "a" and not (tmp_path / "o" / "a").exists()
