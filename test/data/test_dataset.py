"""PyTorch datasets of windows (hdr_dcs.data.dataset)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from hdr_dcs.core.errors import InputError
from hdr_dcs.data.dataset import FolderWindows, SimulatedWindows, window_to_sample
from hdr_dcs.data.folder import write_sequence
from hdr_dcs.data.windows import make_windows

CROP = 32


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def stream() -> list[dict]:
    return list(SimulatedWindows(seed=5, length=4, crop=CROP, margin=8))


def test_simulated_windows_are_deterministic(stream) -> None:
    again = list(SimulatedWindows(seed=5, length=4, crop=CROP, margin=8))
    assert len(stream) == len(again) == 4
    assert all(_same(a, b) for a, b in zip(stream, again, strict=True))
    other = list(SimulatedWindows(seed=6, length=2, crop=CROP, margin=8))
    assert not torch.equal(other[0]["reference"], stream[0]["reference"])
    # samples of one stream differ from each other
    assert not torch.equal(stream[0]["reference"], stream[1]["reference"])
    # random access gives the same sample
    assert _same(SimulatedWindows(seed=5, length=4, crop=CROP, margin=8).sample(2), stream[2])
    ds = SimulatedWindows(seed=5, length=4, crop=CROP, margin=8)
    ds.set_epoch(1)
    assert not torch.equal(ds.sample(0)["reference"], stream[0]["reference"])


def test_sample_shapes_dtypes_and_ranges(stream) -> None:
    for s in stream:
        assert s["reference"].shape == (5, 3, CROP, CROP) and s["reference"].dtype == torch.float32
        assert s["gt"].shape == (5, 3, CROP, CROP) and s["gt"].dtype == torch.float32
        for key in ("low", "high", "alt_low", "alt_high"):
            assert s[key].shape == (3, CROP, CROP) and s[key].dtype == torch.float32
            assert s[key].min() >= 0.0 and s[key].max() <= 1.0
        for key in ("anchor_valid", "alt_anchor_valid"):
            assert s[key].shape == (1, CROP, CROP)
        assert s["ref_scale"].shape == (5,) and s["stamps_ns"].dtype == torch.int64
        for key in ("low_scale", "high_scale", "alt_low_scale", "alt_high_scale"):
            assert s[key].shape == () and s[key] > 0
        assert s["reference"].min() >= 0.0 and s["reference"].max() <= 1.0
        assert s["gt"].min() >= 0 and torch.all(s["ref_scale"] > 0)
        assert bool(s["has_alt"]) and s["alt_low_stamp_ns"] != s["low_stamp_ns"]
        ratio = float(s["high_scale"] / s["ref_scale"][0])
        assert 2**1.5 - 1e-3 <= ratio <= 2**3 + 1e-3
        symmetric = float(s["low_scale"] * s["high_scale"] / s["ref_scale"][0] ** 2)
        assert symmetric == pytest.approx(1.0, rel=1e-5)
        assert torch.all(torch.diff(s["stamps_ns"]) > 0)


def test_per_frame_and_batched() -> None:
    ds = SimulatedWindows(seed=1, length=4, T=1, crop=24, margin=8, alt=False)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["reference"].shape == (4, 1, 3, 24, 24) and batch["low"].shape == (4, 3, 24, 24)
    assert "alt_low" not in batch


def test_dataloader_workers_split_the_stream(stream) -> None:
    ds = SimulatedWindows(seed=5, length=4, crop=CROP, margin=8)
    loader = DataLoader(ds, batch_size=None, num_workers=2, timeout=120)  # a hang fails, not blocks
    got = list(loader)
    assert len(got) == 4
    # worker 0 makes episodes 0, 2; worker 1 episodes 1, 3; the loader interleaves them
    assert all(_same(a, b) for a, b in zip(got, stream, strict=True))
    refs = [g["reference"] for g in got]
    assert all(not torch.equal(refs[i], refs[j]) for i in range(4) for j in range(i + 1, 4))


def test_training_scenes_exclude_evaluation() -> None:
    with pytest.raises(InputError, match="evaluation"):
        SimulatedWindows(scenes=["desk_pan"])
    with pytest.raises(InputError, match=r"reserved|evaluation"):
        SimulatedWindows(scene_seeds=(0, 100))


def test_folder_windows_match_in_memory_windows(rig_seq, rig_cfg, tmp_path) -> None:
    write_sequence(tmp_path / "root" / "seq_a", rig_seq, "toy", 3, rig_cfg)
    ds = FolderWindows(tmp_path / "root", flips=False, rotations=False, alt=True)
    expected = make_windows(rig_seq)
    assert len(ds) == len(expected) == 2
    for i, w in enumerate(expected):
        got, want = ds[i], window_to_sample(w, include_alt=True)
        assert got.keys() == want.keys()
        for key in want:
            if key == "gt":
                assert torch.allclose(got[key], want[key], rtol=2**-11, atol=1e-6)
            else:
                assert torch.equal(got[key], want[key]), key


def test_folder_windows_augmentation(rig_seq, tmp_path) -> None:
    write_sequence(tmp_path / "a", rig_seq)
    write_sequence(tmp_path / "b", rig_seq)
    ds = FolderWindows(tmp_path, crop=24, seed=3, T=1)
    assert len(ds) == 24 and len(ds.folders) == 2
    s = ds[5]
    assert s["reference"].shape == (1, 3, 24, 24) and s["gt"].shape == (1, 3, 24, 24)
    assert _same(ds[5], s)  # deterministic per index
    ds.set_epoch(1)
    assert not _same(ds[5], s)
    batch = next(iter(DataLoader(ds, batch_size=8, shuffle=True, num_workers=0)))
    assert batch["reference"].shape == (8, 1, 3, 24, 24)
    with pytest.raises(InputError, match="no sequence"):
        FolderWindows(tmp_path / "a" / "reference")
