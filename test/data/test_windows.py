"""Training windows: T reference frames sharing one registered anchor pair (hdr_dcs.data.windows)."""

from __future__ import annotations

import numpy as np
import pytest

from hdr_dcs.core.errors import InputError
from hdr_dcs.core.grouping import group_offline, pair_anchors
from hdr_dcs.core.types import Role
from hdr_dcs.data.recording import Recording, recording_from_bag
from hdr_dcs.data.windows import make_windows, per_frame_windows, plan_windows
from hdr_dcs.sim.rig import RigConfig, simulate


def test_windows_have_t_frames_sharing_one_pair(rig_seq) -> None:
    windows = make_windows(rig_seq, T=5)
    assert len(windows) == 2  # 12 frames: runs 0-4 and 5-9 are full, 10-11 too short
    grouped = group_offline(rig_seq.reference, pair_anchors(rig_seq.anchors))
    groups = {g.reference.stamp_ns: g for g in grouped}
    for w in windows:
        assert w.T == 5 and w.reference.shape == (5, 48, 64, 3) and w.reference.dtype == np.float32
        assert w.ref_scale.shape == (5,) and np.all(w.ref_scale > 0)
        assert w.low.shape == w.high.shape == (48, 64, 3)
        pairs = {(groups[int(s)].anchors.low.stamp_ns, groups[int(s)].anchors.high.stamp_ns)
                 for s in w.stamps_ns}
        assert pairs == {(w.anchors.low_stamp_ns, w.anchors.high_stamp_ns)}
        assert np.all(np.diff(w.stamps_ns) > 0)
        assert w.high_scale / w.low_scale == pytest.approx(16.0)  # -2 / +2 EV
        assert w.anchors.valid.shape == (48, 64) and w.anchors.valid.dtype == bool
    assert windows[0].start == 0 and windows[1].start == 5


def test_ground_truth_and_pixels_aligned_with_reference(rig_seq) -> None:
    by_stamp = {f.stamp_ns: i for i, f in enumerate(rig_seq.reference)}
    for w in make_windows(rig_seq):
        assert w.gt is not None and w.gt.shape == w.reference.shape
        for t, stamp in enumerate(w.stamps_ns):
            i = by_stamp[int(stamp)]
            assert np.array_equal(w.gt[t], rig_seq.ground_truth[i])
            assert np.array_equal(w.reference[t], rig_seq.reference[i].pixels)
            assert w.ref_scale[t] == rig_seq.reference[i].exposure.scale


def test_alt_anchors_are_a_different_neighbouring_pair(rig_seq) -> None:
    windows = make_windows(rig_seq)
    for w in windows:
        alt = w.alt_anchors
        assert alt is not None
        assert (alt.low_stamp_ns, alt.high_stamp_ns) != (w.anchors.low_stamp_ns, w.anchors.high_stamp_ns)
        assert not np.array_equal(alt.low, w.low) and not np.array_equal(alt.high, w.high)
        # the neighbouring pair: one anchor period (1/6 s) away
        assert abs(alt.stamp_ns - w.anchors.stamp_ns) == pytest.approx(1e9 / 6, abs=1e6)
    assert all(w.alt_anchors is None for w in make_windows(rig_seq, alt=False))


def test_per_frame_windows(rig_seq) -> None:
    windows = per_frame_windows(rig_seq)
    groups = group_offline(rig_seq.reference, pair_anchors(rig_seq.anchors))
    assert len(windows) == sum(g.anchors is not None for g in groups) == 12
    for w, g in zip(windows, groups, strict=True):
        assert w.reference.shape == (1, 48, 64, 3)
        assert w.stamps_ns[0] == g.reference.stamp_ns
        assert w.anchors.low_stamp_ns == g.anchors.low.stamp_ns
        assert w.alt_anchors is not None and w.alt_anchors.stamp_ns != w.anchors.stamp_ns


def test_windows_never_span_dropped_frames(make_toy_scene) -> None:
    seq = simulate(make_toy_scene(moving=False).render_exposure, 30, RigConfig(seed=11, drop_reference=0.15))
    assert seq.dropped["reference"] > 0
    windows = make_windows(seq, T=3)
    assert windows
    for w in windows:
        assert np.allclose(np.diff(w.stamps_ns), 1e9 / 30, atol=1e3)


def test_registered_anchors_line_up_with_reference(make_toy_scene) -> None:
    """A non-zero baseline: raw anchors are shifted, registered ones match the reference."""
    cfg = RigConfig(seed=4, baseline_px=(5.0, 2.0), ev_low=-1.0, ev_high=1.0)
    seq = simulate(make_toy_scene(pan=(0.0, 0.0), moving=False).render_exposure, 6, cfg)
    w = make_windows(seq, T=5)[0]
    ref = w.reference[2]

    def corr(a: np.ndarray, mask: np.ndarray) -> float:
        m = mask[..., None] & (a > 0.03) & (a < 0.97) & (ref > 0.03) & (ref < 0.97)
        return float(np.corrcoef(a[m], ref[m])[0, 1])

    raw_low = next(f for f in seq.anchors if f.stamp_ns == w.anchors.low_stamp_ns).pixels
    valid = w.anchors.valid
    assert 0.8 < valid.mean() < 1.0  # the shifted border is marked invalid
    assert np.all(w.low[~valid] == 0) or valid.all()
    c_raw, c_reg = corr(raw_low, valid), corr(w.low, valid)
    assert c_reg > 0.99 and c_reg > c_raw + 0.02


def test_plan_windows_validates_arguments(rig_seq) -> None:
    with pytest.raises(InputError):
        plan_windows(rig_seq.reference, rig_seq.anchors, T=0)
    with pytest.raises(InputError):
        plan_windows(rig_seq.reference, rig_seq.anchors, T=5, stride=0)
    assert plan_windows(rig_seq.reference, [], T=5) == []
    # overlapping windows with a stride inside longer runs
    plans = plan_windows(rig_seq.reference, rig_seq.anchors, T=3, stride=1)
    assert len(plans) == 3 + 3 + 0  # two 5-frame runs -> 3 windows each; the 2-frame run none
    assert all(rig_seq.anchors[p.low].role == Role.LOW and rig_seq.anchors[p.high].role == Role.HIGH
               for p in plans)


def test_recording_from_bag_gives_the_same_windows(rig_seq, tmp_path) -> None:
    from hdr_dcs.io.bag import BagWriter

    with BagWriter(tmp_path / "bag") as bag:
        bag.write_camera_info("reference", rig_seq.reference_calibration, 0, "reference_optical_frame")
        bag.write_camera_info("anchor", rig_seq.anchor_calibration, 0, "anchor_optical_frame")
        for f, gt in zip(rig_seq.reference, rig_seq.ground_truth, strict=True):
            bag.write_frame(f, "reference")
            bag.write_hdr("ground_truth", gt, f.stamp_ns, f.frame_id)
        for f in rig_seq.anchors:
            bag.write_frame(f, "anchor")
    rec = recording_from_bag(tmp_path / "bag")
    assert isinstance(rec, Recording) and rec.name == "bag"
    a, b = make_windows(rig_seq), make_windows(rec)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.reference, y.reference) and np.array_equal(x.gt, y.gt)
        assert np.array_equal(x.low, y.low) and np.array_equal(x.alt_anchors.high, y.alt_anchors.high)
