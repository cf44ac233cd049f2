"""Streaming grouper: equivalence with group_offline, each fault on its own, bounds, windows."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pytest

from hdr_dcs.core.grouper import (
    ANCHOR,
    REFERENCE,
    FrameGrouper,
    GrouperConfig,
    GroupWindow,
    WindowAssembler,
)
from hdr_dcs.core.grouping import group_offline, pair_anchors
from hdr_dcs.core.types import AnchorPair, Exposure, Frame, FrameGroup, Role

PX = np.zeros((2, 2, 3), np.float32)
RATE_HZ = 30.0
PERIOD_S = 1.0 / RATE_HZ


@dataclass(frozen=True)
class Msg:
    """One message as a camera driver would deliver it; ``arrival`` orders delivery."""

    kind: str                # "image" | "exposure"
    camera: str
    stamp_ns: int            # as sent: the anchor camera's own clock for anchors
    role: int
    seq: int
    arrival: float
    exposure_s: float = 0.01
    gain_db: float = 0.0


def rig(n_ref: int = 90, period_frames: int = 5, phase_s: float = 0.02, anchor_clock_s: float = 0.0,
        exposure_first: bool = False, anchor_until_s: float | None = None,
        anchor_gap: tuple[float, float] | None = None) -> list[Msg]:
    """Reference at 30 Hz; anchor LOW/HIGH alternating, one pair per ``period_frames``.

    Anchor frame k is at ``phase_s + k * period_frames / 60`` s (reference time) and stamped
    on a clock ``anchor_clock_s`` ahead. Messages arrive 5 ms (reference) / 8 ms (anchor)
    after their frame, image then exposure (or the reverse). Anchors stop at
    ``anchor_until_s`` and are absent during ``anchor_gap``.
    """
    msgs = []
    first, second = (1e-4, 0.0) if exposure_first else (0.0, 1e-4)
    for i in range(n_ref):
        t = i * PERIOD_S
        stamp = round(t * 1e9)
        msgs += [Msg("image", REFERENCE, stamp, Role.REFERENCE, i, t + 0.005 + first),
                 Msg("exposure", REFERENCE, stamp, Role.REFERENCE, i, t + 0.005 + second)]
    dt = period_frames * PERIOD_S / 2
    end = n_ref * PERIOD_S if anchor_until_s is None else anchor_until_s
    k = 0
    while (t := phase_s + k * dt) < end:
        if anchor_gap is None or not anchor_gap[0] <= t < anchor_gap[1]:
            stamp = round((t + anchor_clock_s) * 1e9)
            role = Role.LOW if k % 2 == 0 else Role.HIGH
            exposure = 0.0025 if role == Role.LOW else 0.04
            msgs += [Msg("image", ANCHOR, stamp, role, k, t + 0.008 + first, exposure),
                     Msg("exposure", ANCHOR, stamp, role, k, t + 0.008 + second, exposure)]
        k += 1
    return sorted(msgs, key=lambda m: m.arrival)


def ref_stamp(i: int) -> int:
    return round(i * PERIOD_S * 1e9)


def anchor_stamp(k: int, period_frames: int = 5, phase_s: float = 0.02) -> int:
    return round((phase_s + k * period_frames * PERIOD_S / 2) * 1e9)


def without(msgs: list[Msg], camera: str, stamps: set[int], kinds=("image", "exposure")) -> list[Msg]:
    return [m for m in msgs if not (m.camera == camera and m.stamp_ns in stamps and m.kind in kinds)]


def delayed(msgs: list[Msg], camera: str, stamp: int, by_s: float) -> list[Msg]:
    moved = [dataclasses.replace(m, arrival=m.arrival + by_s) if m.camera == camera and m.stamp_ns == stamp
             else m for m in msgs]
    return sorted(moved, key=lambda m: m.arrival)


@dataclass
class Run:
    groups: list[FrameGroup]
    latencies_s: list[float | None]     # reference watermark - stamp at release; None: by flush
    drops: list
    grouper: FrameGrouper

    @property
    def stats(self):
        return self.grouper.stats

    def drop_set(self, camera: str | None = None) -> set[tuple[str, int, str]]:
        return {(d.camera, d.stamp_ns, d.reason) for d in self.drops if camera in (None, d.camera)}


def feed(msgs: list[Msg], config: GrouperConfig | None = None, flush: bool = True,
         check_every_step: bool = False) -> Run:
    g = FrameGrouper(config)
    groups, lat, drops = [], [], []
    ref_wm = None
    for m in msgs:
        if m.camera == REFERENCE:
            ref_wm = m.stamp_ns if ref_wm is None else max(ref_wm, m.stamp_ns)
        if m.kind == "image":
            out = g.add_image(m.camera, m.stamp_ns, PX, f"{m.camera}_optical")
        else:
            out = g.add_exposure(m.camera, m.stamp_ns, m.role, m.exposure_s, m.gain_db, m.seq)
        groups += out
        lat += [(ref_wm - grp.reference.stamp_ns) * 1e-9 for grp in out]
        drops += g.pop_drops()
        if check_every_step:
            s = g.stats
            assert s.unaccounted(REFERENCE) == 0 and s.unaccounted(ANCHOR) == 0
    if flush:
        tail = g.flush()
        groups += tail
        lat += [None] * len(tail)
        drops += g.pop_drops()
    return Run(groups, lat, drops, g)


def offline(msgs: list[Msg], config: GrouperConfig | None = None) -> list[FrameGroup]:
    """group_offline on the frames whose image and (valid) exposure both exist."""
    cfg = config or GrouperConfig()
    offset_ns = round(cfg.clock_offset_s * 1e9)
    have: dict[tuple[str, int], set[str]] = {}
    info: dict[tuple[str, int], Msg] = {}
    for m in msgs:
        have.setdefault((m.camera, m.stamp_ns), set()).add(m.kind)
        if m.kind == "exposure":
            info[(m.camera, m.stamp_ns)] = m
    refs, anchors = [], []
    for (camera, stamp), kinds in sorted(have.items(), key=lambda kv: kv[0][1]):
        if kinds != {"image", "exposure"}:
            continue
        m = info[(camera, stamp)]
        if camera == REFERENCE:
            refs.append(Frame(PX, stamp, Role(m.role), Exposure(m.exposure_s, m.gain_db), m.seq))
        else:
            exposure = Exposure(m.exposure_s, m.gain_db)
            anchors.append(Frame(PX, stamp - offset_ns, Role(m.role), exposure, m.seq))
    return group_offline(refs, pair_anchors(anchors, cfg.max_pair_gap_s), cfg.max_anchor_age_s)


def key(g: FrameGroup) -> tuple:
    """What a group is: its reference frame, its pair (by stamps and sequence ids), its age."""
    a = g.anchors
    pair = None if a is None else (a.low.stamp_ns, a.high.stamp_ns, a.low.sequence_id, a.high.sequence_id)
    return (g.reference.stamp_ns, g.reference.sequence_id, pair, round(g.anchor_age_s, 9))


def keys(groups) -> list[tuple]:
    return [key(g) for g in groups]


def assignment(groups) -> list[tuple]:
    """Reference sequence id -> anchor sequence ids (clock independent)."""
    return [(g.reference.sequence_id, None if g.anchors is None
             else (g.anchors.low.sequence_id, g.anchors.high.sequence_id)) for g in groups]


def assert_in_order_once(groups) -> None:
    stamps = [g.reference.stamp_ns for g in groups]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


# ---------------------------------------------------------------------- clean stream


@pytest.mark.parametrize("period_frames,phase_s,max_age_s", [
    (5, 0.02, 0.5), (5, 0.05, 0.5), (4, 0.011, 0.5), (5, 0.02, 0.06), (4, 0.03, 0.04)])
def test_clean_stream_equals_group_offline(period_frames: int, phase_s: float, max_age_s: float) -> None:
    cfg = GrouperConfig(max_anchor_age_s=max_age_s)
    msgs = rig(120, period_frames, phase_s)
    run = feed(msgs, cfg)
    expected = offline(msgs, cfg)
    assert keys(run.groups) == keys(expected)
    assert run.stats.dropped(REFERENCE) == 0
    assert run.stats.timeouts == 0 and run.stats.early_releases == 0
    with_anchors = sum(g.anchors is not None for g in expected)
    if max_age_s >= 0.5:
        assert with_anchors == len(expected)
    else:   # a small max age leaves frames far from every pair without anchors
        assert 0 < with_anchors < len(expected)
        assert run.stats.groups_without_anchors == len(expected) - with_anchors


def test_every_reference_frame_out_once_in_order_with_its_stamp_and_bounded_latency() -> None:
    msgs = rig(150)
    run = feed(msgs)
    assert [g.reference.stamp_ns for g in run.groups] == [ref_stamp(i) for i in range(150)]
    assert [g.reference.sequence_id for g in run.groups] == list(range(150))
    assert all(g.reference.role == Role.REFERENCE and g.reference.frame_id == "reference_optical"
               for g in run.groups)
    live = [x for x in run.latencies_s if x is not None]
    # released while streaming, only the tail by flush
    assert len(live) >= 150 - math.ceil(run.grouper.latency_bound_s * RATE_HZ) - 1
    assert max(live) <= run.grouper.latency_bound_s + PERIOD_S
    # with both cameras live: reorder delay + distance to the pair, far below the bound
    assert np.median(live) < 0.25
    # the pair is one pair per 5 frames, each used by 5 consecutive frames
    pair_ids = [g.anchors.low.sequence_id for g in run.groups]
    assert max(pair_ids.count(p) for p in set(pair_ids)) <= 6


def test_equidistant_pairs_go_to_the_earlier_one_as_offline() -> None:
    g = FrameGrouper(GrouperConfig(reorder_delay_s=0.0))
    ms = 1_000_000
    for stamp, role in [(0, Role.LOW), (40 * ms, Role.HIGH), (200 * ms, Role.LOW), (240 * ms, Role.HIGH),
                        (900 * ms, Role.LOW)]:     # both pairs are known before the reference frames come
        g.add_image(ANCHOR, stamp, PX)
        g.add_exposure(ANCHOR, stamp, role, 0.01, 0.0, stamp // ms)
    assert [p.stamp_ns // ms for p in g.anchor_pairs] == [20, 220]
    groups = []
    for i, stamp in enumerate([120 * ms, 121 * ms, 400 * ms]):   # 120 ms: 100 ms from both pairs (20, 220)
        groups += g.add_image(REFERENCE, stamp, PX)
        groups += g.add_exposure(REFERENCE, stamp, Role.REFERENCE, 0.01, 0.0, i)
    assert len(groups) == 2
    groups += g.flush()
    assert [grp.anchors.stamp_ns // ms for grp in groups] == [20, 220, 220]
    refs = [grp.reference for grp in groups]
    assert keys(groups) == keys(group_offline(refs, [grp.anchors for grp in groups[::2]], 0.5))


def test_only_pairs_that_can_still_be_nearest_are_kept() -> None:
    g = FrameGrouper()
    most = 0
    for m in rig(150):
        if m.kind == "image":
            g.add_image(m.camera, m.stamp_ns, PX)
        else:
            g.add_exposure(m.camera, m.stamp_ns, m.role, m.exposure_s, m.gain_db, m.seq)
        most = max(most, len(g.anchor_pairs))
    assert 1 <= most <= 2 < g.config.anchor_history
    assert g.stats.dropped(ANCHOR, "overflow") == 0


def test_output_anchor_frames_are_complete_frames() -> None:
    run = feed(rig(30))
    pair = run.groups[10].anchors
    assert isinstance(pair, AnchorPair)
    assert pair.low.role == Role.LOW and pair.high.role == Role.HIGH
    assert pair.low.exposure.exposure_time_s == 0.0025 and pair.high.exposure.exposure_time_s == 0.04
    assert pair.low.frame_id == "anchor_optical"
    assert run.groups[10].anchor_age_s == pytest.approx(abs(ref_stamp(10) - pair.stamp_ns) * 1e-9)


# ---------------------------------------------------------------------- reordering / late


def jittered(msgs: list[Msg], max_s: float, seed: int) -> list[Msg]:
    """Each message delayed by up to ``max_s`` (seeded): reordering within that time."""
    rng = np.random.default_rng(seed)
    return sorted((dataclasses.replace(m, arrival=m.arrival + rng.uniform(0, max_s)) for m in msgs),
                  key=lambda m: m.arrival)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reordering_within_the_delay_gives_the_same_output(seed: int) -> None:
    clean = rig(120)
    msgs = jittered(clean, 0.07, seed)
    for k in range(0, 48, 3):     # and every third anchor frame after the next one (83 ms later)
        msgs = delayed(msgs, ANCHOR, anchor_stamp(k), 0.09)
    ref_order = [m.stamp_ns for m in msgs if m.camera == REFERENCE]
    anchor_order = [m.stamp_ns for m in msgs if m.camera == ANCHOR]
    assert ref_order != sorted(ref_order) and anchor_order != sorted(anchor_order)  # really reordered
    run, base = feed(msgs), feed(clean)
    assert keys(run.groups) == keys(base.groups)
    assert run.drop_set() == base.drop_set()
    assert run.stats.dropped(REFERENCE) == 0


@pytest.mark.parametrize("by_s,late", [(0.05, False), (0.3, True)])
def test_reference_frame_beyond_the_delay_is_dropped_late(by_s: float, late: bool) -> None:
    clean = rig(90)
    victim = ref_stamp(40)
    run = feed(delayed(clean, REFERENCE, victim, by_s))
    base = feed(clean)
    assert_in_order_once(run.groups)
    if not late:
        assert keys(run.groups) == keys(base.groups)
        assert run.stats.dropped(REFERENCE) == 0
        return
    assert run.drop_set(REFERENCE) == {(REFERENCE, victim, "late")}
    assert keys(run.groups) == [k for k in keys(base.groups) if k[0] != victim]
    s = run.stats
    assert s.frames_in[REFERENCE] == 90 and s.groups_out == 89
    assert s.absorbed[REFERENCE] == 1            # its exposure completed an already dropped frame


def test_anchor_frame_beyond_the_delay_is_dropped_late_and_its_partner_unpaired() -> None:
    clean = rig(90)
    victim, partner = anchor_stamp(9), anchor_stamp(8)     # a HIGH; its LOW is left alone
    run = feed(delayed(clean, ANCHOR, victim, 0.4))
    assert {(ANCHOR, victim, "late"), (ANCHOR, partner, "unpaired anchor")} <= run.drop_set(ANCHOR)
    assert keys(run.groups) == keys(offline(without(clean, ANCHOR, {victim})))
    assert all(g.anchors is None or victim not in (g.anchors.low.stamp_ns, g.anchors.high.stamp_ns)
               for g in run.groups)


# ---------------------------------------------------------------------- message faults


def test_duplicates_are_dropped_and_change_nothing() -> None:
    clean = rig(90)
    dups = [m for m in clean if (m.camera, m.stamp_ns) in {
        (REFERENCE, ref_stamp(10)), (ANCHOR, anchor_stamp(5))}]                    # both messages
    dups += [m for m in clean if m.camera == REFERENCE and m.stamp_ns == ref_stamp(20) and m.kind == "image"]
    shifts = [1e-5, 1e-5, 1e-5, 1e-5, 1.0]                                         # the last one 1 s later
    repeats = [dataclasses.replace(m, arrival=m.arrival + s) for m, s in zip(dups, shifts, strict=True)]
    msgs = sorted(clean + repeats, key=lambda m: m.arrival)
    run, base = feed(msgs), feed(clean)
    assert keys(run.groups) == keys(base.groups)
    s = run.stats
    assert s.drops_by_reason(REFERENCE) == {"duplicate": 3}
    assert s.drops_by_reason(ANCHOR).get("duplicate") == 2
    assert s.frames_in[REFERENCE] == 93 and s.groups_out == 90 and s.unaccounted(REFERENCE) == 0


def test_reference_sequence_gaps_are_counted_not_dropped() -> None:
    lost = {ref_stamp(30), ref_stamp(31), ref_stamp(55)}
    msgs = without(rig(90), REFERENCE, lost)
    run = feed(msgs)
    assert run.stats.sequence_gaps == {REFERENCE: 3, ANCHOR: 0}
    assert run.stats.dropped(REFERENCE) == 0
    assert keys(run.groups) == keys(offline(msgs))
    kept = [ref_stamp(i) for i in range(90) if ref_stamp(i) not in lost]
    assert [g.reference.stamp_ns for g in run.groups] == kept


def test_anchor_sequence_gap_leaves_the_partner_unpaired() -> None:
    msgs = without(rig(90), ANCHOR, {anchor_stamp(7)})
    run = feed(msgs)
    assert run.stats.sequence_gaps == {REFERENCE: 0, ANCHOR: 1}
    assert (ANCHOR, anchor_stamp(6), "unpaired anchor") in run.drop_set(ANCHOR)
    expected = offline(msgs)
    assert keys(run.groups) == keys(expected)
    assert run.stats.dropped(REFERENCE) == 0


@pytest.mark.parametrize("camera,stamp", [(REFERENCE, ref_stamp(33)), (ANCHOR, anchor_stamp(6))])
@pytest.mark.parametrize("kind,reason", [("exposure", "missing exposure"), ("image", "missing image")])
def test_missing_half_of_a_frame_is_dropped(camera: str, stamp: int, kind: str, reason: str) -> None:
    clean = rig(90)
    msgs = without(clean, camera, {stamp}, kinds=(kind,))
    run = feed(msgs)
    assert (camera, stamp, reason) in run.drop_set(camera)
    assert run.stats.dropped(camera, reason) == 1
    assert keys(run.groups) == keys(offline(without(clean, camera, {stamp})))
    if camera == REFERENCE:
        assert run.stats.groups_out == 89 and run.stats.dropped(REFERENCE) == 1


def test_exposure_arriving_after_the_delay_does_not_resurrect_the_frame() -> None:
    clean = rig(90)
    stamp = ref_stamp(33)
    run = feed(sorted((dataclasses.replace(m, arrival=m.arrival + 0.5)
                       if (m.camera, m.stamp_ns, m.kind) == (REFERENCE, stamp, "exposure") else m
                       for m in clean), key=lambda m: m.arrival))
    assert run.drop_set(REFERENCE) == {(REFERENCE, stamp, "missing exposure")}
    assert run.stats.absorbed[REFERENCE] == 1 and run.stats.groups_out == 89


def test_exposure_before_or_after_its_image_does_not_matter() -> None:
    after, before = rig(90, exposure_first=False), rig(90, exposure_first=True)
    assert after[0].kind == "image" and before[0].kind == "exposure"
    rng = np.random.default_rng(5)   # per frame, randomly one or the other
    shift = [rng.uniform(0, 2e-4) if m.kind == "exposure" else 1e-4 for m in after]
    mixed = sorted((dataclasses.replace(m, arrival=m.arrival + d) for m, d in zip(after, shift, strict=True)),
                   key=lambda m: m.arrival)
    base = keys(feed(after).groups)
    assert keys(feed(before).groups) == base
    assert keys(feed(mixed).groups) == base
    assert feed(mixed).stats.dropped() == feed(after).stats.dropped()


@pytest.mark.parametrize("camera,role", [(REFERENCE, Role.LOW), (REFERENCE, Role.HIGH),
                                         (ANCHOR, Role.REFERENCE), (ANCHOR, 7), (REFERENCE, 7)])
def test_wrong_roles_are_dropped(camera: str, role: int) -> None:
    clean = rig(90)
    stamp = ref_stamp(21) if camera == REFERENCE else anchor_stamp(4)
    msgs = [dataclasses.replace(m, role=role) if (m.camera, m.stamp_ns, m.kind) == (camera, stamp, "exposure")
            else m for m in clean]
    run = feed(msgs)
    assert run.drop_set(camera) >= {(camera, stamp, "wrong role")}
    assert run.stats.dropped(camera, "wrong role") == 1
    assert keys(run.groups) == keys(offline(without(clean, camera, {stamp})))


@pytest.mark.parametrize("exposure_s,gain_db", [(math.nan, 0.0), (0.0, 0.0), (-1e-3, 0.0), (math.inf, 0.0),
                                                (0.01, math.nan)])
def test_bad_exposures_are_dropped(exposure_s: float, gain_db: float) -> None:
    clean = rig(60)
    stamp = ref_stamp(12)
    msgs = [dataclasses.replace(m, exposure_s=exposure_s, gain_db=gain_db)
            if (m.camera, m.stamp_ns, m.kind) == (REFERENCE, stamp, "exposure") else m for m in clean]
    run = feed(msgs)
    assert run.drop_set(REFERENCE) == {(REFERENCE, stamp, "bad exposure")}
    assert stamp not in {g.reference.stamp_ns for g in run.groups} and len(run.groups) == 59


def test_unknown_camera_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="camera"):
        FrameGrouper().add_image("left", 0, PX)


# ---------------------------------------------------------------------- clocks and outages


def test_clock_offset_is_compensated() -> None:
    clean = rig(120)
    shifted = rig(120, anchor_clock_s=0.040)
    assert {m.stamp_ns for m in shifted if m.camera == ANCHOR}.isdisjoint(
        {m.stamp_ns for m in clean if m.camera == ANCHOR})
    base = feed(clean)
    run = feed(shifted, GrouperConfig(clock_offset_s=0.040))
    # identical groups, anchor stamps included: output is on the reference clock
    assert keys(run.groups) == keys(base.groups)
    naive = feed(shifted)   # without the correction the assignment differs
    assert assignment(naive.groups) != assignment(base.groups)
    # drop records keep the anchor's own clock
    tail = run.drop_set(ANCHOR)
    assert tail == {(c, s + 40_000_000, r) for c, s, r in base.drop_set(ANCHOR)}


def test_long_anchor_outage_gives_groups_without_anchors_and_no_stall() -> None:
    msgs = rig(150, anchor_gap=(1.0, 3.5))
    run = feed(msgs)
    assert keys(run.groups) == keys(offline(msgs))
    none_stamps = [g.reference.stamp_ns * 1e-9 for g in run.groups if g.anchors is None]
    assert none_stamps and min(none_stamps) > 1.0 and max(none_stamps) < 3.5
    assert run.stats.groups_without_anchors == len(none_stamps)
    live = [x for x in run.latencies_s if x is not None]
    assert len(live) >= 150 - math.ceil(run.grouper.latency_bound_s * RATE_HZ) - 1
    assert max(live) <= run.grouper.latency_bound_s + PERIOD_S
    assert max(live) > 0.5 and run.stats.anchor_stalled > 0     # waited, but only up to the bound
    assert run.stats.anchor_stalled < len(run.groups) // 2


@pytest.mark.parametrize("until_s", [0.0, 0.9, 1.0])   # at 0.9 s the last anchor frame is an unpaired LOW
def test_dead_anchor_camera_does_not_stall_the_reference(until_s: float) -> None:
    msgs = rig(150, anchor_until_s=until_s)
    run = feed(msgs, flush=False)
    assert run.stats.timeouts == 0      # decided through reference-stream time, not the last resort
    if until_s == 0.9:                  # the orphan is known as soon as no partner can come
        assert (ANCHOR, anchor_stamp(10), "unpaired anchor") in run.drop_set(ANCHOR)
    bound = run.grouper.latency_bound_s
    # in order, and every frame older than the bound is out before the end of the stream
    out = [g.reference.stamp_ns for g in run.groups]
    assert out == [ref_stamp(i) for i in range(len(out))]
    assert len(out) >= sum(ref_stamp(149) - ref_stamp(i) > round(bound * 1e9) for i in range(150))
    assert max(run.latencies_s) <= bound + PERIOD_S
    tail = run.grouper.flush()
    assert keys(run.groups + tail) == keys(offline(msgs))
    assert run.stats.anchor_stalled >= len(run.groups) - 30 * until_s
    if until_s == 0.0:
        assert all(g.anchors is None for g in run.groups + tail)
    else:
        assert run.groups[int(30 * until_s) - 1].anchors is not None and run.groups[-1].anchors is None
        assert run.grouper.anchor_pairs == ()      # nothing left that any future frame could use


@pytest.mark.parametrize("lag_s,max_lag_s,equal",
                         [(0.08, None, True), (0.25, None, False), (0.25, 0.3, True)])
def test_anchor_stream_trailing_the_reference(lag_s: float, max_lag_s: float | None, equal: bool) -> None:
    clean = rig(120)
    msgs = sorted((dataclasses.replace(m, arrival=m.arrival + lag_s) if m.camera == ANCHOR else m
                   for m in clean), key=lambda m: m.arrival)
    cfg = GrouperConfig(max_anchor_lag_s=max_lag_s)
    run = feed(msgs, cfg)
    assert [g.reference.sequence_id for g in run.groups] == list(range(120))
    if equal:   # within the allowed lag: as offline
        assert keys(run.groups) == keys(offline(clean))
        assert run.stats.dropped(ANCHOR, "late") == 0
    else:       # beyond it, the anchor messages are late: no stall, no anchors
        assert run.stats.dropped(ANCHOR, "late") > 0
        assert run.stats.groups_without_anchors >= 90
    live = [x for x in run.latencies_s if x is not None]
    assert max(live) <= cfg.latency_bound_s + PERIOD_S


def test_causal_mode_uses_only_past_pairs_with_lower_latency() -> None:
    msgs = rig(150)
    cfg = GrouperConfig(wait_for_future_anchor=False)
    assert cfg.latency_bound_s == pytest.approx(0.3)
    run, nearest = feed(msgs, cfg), feed(msgs)
    pairs = pair_anchors([Frame(PX, m.stamp_ns, Role(m.role), Exposure(m.exposure_s), m.seq)
                          for m in msgs if m.camera == ANCHOR and m.kind == "exposure"])
    for g in run.groups:
        t = g.reference.stamp_ns
        past = [p for p in pairs if p.stamp_ns <= t and (t - p.stamp_ns) * 1e-9 <= cfg.max_anchor_age_s]
        expect = past[-1].low.sequence_id if past else None
        assert (g.anchors.low.sequence_id if g.anchors else None) == expect
    assert assignment(run.groups) != assignment(nearest.groups)
    live = [x for x in run.latencies_s if x is not None]
    assert max(live) <= cfg.latency_bound_s + PERIOD_S
    assert np.mean(live) < np.mean([x for x in nearest.latencies_s if x is not None])


# ---------------------------------------------------------------------- memory bounds


def test_anchor_flood_without_reference_keeps_memory_bounded() -> None:
    cfg = GrouperConfig()
    g = FrameGrouper(cfg)
    n = 4000
    for k in range(n):
        stamp = anchor_stamp(k)
        g.add_image(ANCHOR, stamp, PX)
        g.add_exposure(ANCHOR, stamp, Role.LOW if k % 2 == 0 else Role.HIGH, 0.01, 0.0, k)
        if k % 97 == 0:
            assert g.stats.pending[ANCHOR] <= cfg.max_pending + 1
            assert len(g.anchor_pairs) <= cfg.anchor_history
    assert g.flush() == []
    s = g.stats
    assert len(g.anchor_pairs) == cfg.anchor_history
    assert s.pairs_formed == n // 2
    assert s.dropped(ANCHOR, "overflow") == 2 * (n // 2 - cfg.anchor_history)
    assert s.anchor_frames_paired == 2 * cfg.anchor_history
    assert s.unaccounted(ANCHOR) == 0 and s.pending[ANCHOR] == 0


def test_burst_of_unmatched_images_overflows_the_open_queue() -> None:
    cfg = GrouperConfig(max_pending=16)
    g = FrameGrouper(cfg)
    for k in range(100):            # all within the reorder delay: none is final yet
        g.add_image(ANCHOR, 1_000_000 + k * 1000, PX)
        assert g.stats.pending[ANCHOR] <= cfg.max_pending
    assert g.stats.dropped(ANCHOR, "overflow") == 100 - 16
    g.flush()
    assert g.stats.dropped(ANCHOR, "missing exposure") == 16
    # the oldest went first: a late exposure for one of them opens nothing
    g.add_exposure(ANCHOR, 1_000_000, Role.LOW, 0.01, 0.0, 0)
    assert g.stats.pending[ANCHOR] == 0 and g.stats.unaccounted(ANCHOR) == 0


def test_full_ready_queue_releases_early_instead_of_dropping() -> None:
    cfg = GrouperConfig(max_pending=8)    # fewer than the ~20 frames the anchor wait would hold
    run = feed(rig(90, anchor_until_s=0.0), cfg, check_every_step=True)
    assert [g.reference.sequence_id for g in run.groups] == list(range(90))
    assert run.stats.early_releases > 0 and run.stats.dropped(REFERENCE) == 0
    assert max(x for x in run.latencies_s if x is not None) <= 0.1 + 10 * PERIOD_S
    assert all(g.anchors is None for g in run.groups)


# ---------------------------------------------------------------------- flush and stats


def test_flush_releases_everything_deterministically() -> None:
    msgs = rig(61)   # 61 reference frames: the last anchor frame (a LOW) has no partner
    streamed = feed(msgs, flush=False)
    g = streamed.grouper
    assert g.stats.pending[REFERENCE] > 0 and len(streamed.groups) < 61
    tail = g.flush()
    assert tail and g.flush() == []
    groups = streamed.groups + tail
    assert_in_order_once(groups)
    assert keys(groups) == keys(offline(msgs))
    s = g.stats
    assert s.pending == {REFERENCE: 0, ANCHOR: 0}
    assert s.groups_out == 61 and s.unaccounted(REFERENCE) == 0 and s.unaccounted(ANCHOR) == 0
    last_anchor = max(m.stamp_ns for m in msgs if m.camera == ANCHOR)
    assert s.dropped(ANCHOR, "unpaired anchor") == 1
    drops = {(d.camera, d.stamp_ns, d.reason) for d in g.pop_drops()}
    assert (ANCHOR, last_anchor, "unpaired anchor") in drops
    # after the flush, anything at or before what was seen is late; newer frames flow again
    assert g.add_image(REFERENCE, ref_stamp(30), PX) == []             # seen: a duplicate
    assert g.add_image(REFERENCE, ref_stamp(30) + 1, PX) == []         # not seen: late
    assert g.stats.dropped(REFERENCE, "late") == 1 and g.stats.dropped(REFERENCE, "duplicate") == 1
    g.add_image(REFERENCE, ref_stamp(70), PX)
    g.add_exposure(REFERENCE, ref_stamp(70), Role.REFERENCE, 0.01, 0.0, 70)
    assert [grp.reference.stamp_ns for grp in g.flush()] == [ref_stamp(70)]
    assert keys(feed(msgs).groups) == keys(feed(msgs).groups)   # same input, same output


def messy(seed: int) -> list[Msg]:
    """Lost messages, duplicates and reordering within the delay, all at once."""
    rng = np.random.default_rng(seed)
    msgs = [m for m in rig(180) if rng.random() > 0.06]
    dups = [dataclasses.replace(m, arrival=m.arrival + rng.uniform(0, 0.05))
            for m in msgs if rng.random() < 0.05]
    msgs = sorted(msgs + dups, key=lambda m: m.arrival)
    return jittered(msgs, 0.05, seed)


@pytest.mark.parametrize("seed", [3, 4])
def test_stats_add_up_and_every_reference_frame_has_one_fate(seed: int) -> None:
    msgs = messy(seed)
    run = feed(msgs, check_every_step=True)
    s = run.stats
    assert s.pending == {REFERENCE: 0, ANCHOR: 0}
    assert s.frames_in[REFERENCE] == s.groups_out + s.dropped(REFERENCE)
    assert s.frames_in[ANCHOR] == s.anchor_frames_paired + s.dropped(ANCHOR)
    assert s.dropped(REFERENCE, "missing exposure") + s.dropped(REFERENCE, "missing image") > 0
    assert s.dropped(REFERENCE, "duplicate") > 0 and s.dropped(ANCHOR, "unpaired anchor") > 0
    # one fate per reference stamp: a group, or a drop other than a duplicate
    fates = [g.reference.stamp_ns for g in run.groups]
    fates += [d.stamp_ns for d in run.drops if d.camera == REFERENCE and d.reason != "duplicate"]
    assert sorted(fates) == sorted({m.stamp_ns for m in msgs if m.camera == REFERENCE})
    # the surviving frames are grouped exactly as offline would
    assert keys(run.groups) == keys(offline(msgs))
    ages = [g.anchor_age_s for g in run.groups if g.anchors is not None]
    assert s.groups_without_anchors == len(run.groups) - len(ages)
    assert s.anchor_age_max_s == pytest.approx(max(ages))
    assert s.anchor_age_mean_s == pytest.approx(np.mean(ages))
    assert s.sequence_gaps[REFERENCE] > 0 and s.sequence_gaps[ANCHOR] > 0
    again = feed(msgs)
    assert keys(again.groups) == keys(run.groups) and again.stats == s     # deterministic


def test_config_validation_and_latency_bound() -> None:
    assert GrouperConfig().latency_bound_s == pytest.approx(0.1 + 0.5 + 0.1 + 0.1)
    assert GrouperConfig(max_anchor_lag_s=0.3, reorder_delay_s=0.05).latency_bound_s == pytest.approx(0.95)
    assert FrameGrouper(GrouperConfig(reorder_delay_s=0.0)).latency_bound_s == pytest.approx(0.6)
    for bad in ({"reorder_delay_s": -0.1}, {"max_anchor_age_s": math.nan}, {"max_pending": 0},
                {"anchor_history": 0}, {"clock_offset_s": math.inf}, {"max_anchor_lag_s": -1.0}):
        with pytest.raises(ValueError):
            GrouperConfig(**bad)


def test_zero_reorder_delay_works_on_an_in_order_stream() -> None:
    msgs = rig(90)
    cfg = GrouperConfig(reorder_delay_s=0.0)
    run = feed(msgs, cfg)
    assert keys(run.groups) == keys(offline(msgs, cfg))
    assert run.stats.dropped(REFERENCE) == 0


# ---------------------------------------------------------------------- windows


def pair(k: int) -> AnchorPair:
    return AnchorPair(Frame(PX, k * 100, Role.LOW, Exposure(0.001), 2 * k),
                      Frame(PX, k * 100 + 50, Role.HIGH, Exposure(0.01), 2 * k + 1))


def group(i: int, anchors: AnchorPair | None) -> FrameGroup:
    return FrameGroup(Frame(PX, i * 33, Role.REFERENCE, Exposure(0.004), i), anchors, 0.0)


def test_window_assembler_closes_on_size_pair_change_and_flush() -> None:
    a, b, c = pair(1), pair(2), pair(3)
    plan = [a] * 7 + [b] * 3 + [None] * 2 + [c] * 5 + [AnchorPair(a.low, a.high)] * 1 + [a] * 2
    groups = [group(i, p) for i, p in enumerate(plan)]
    wa = WindowAssembler(5)
    windows = wa.push_many(groups) + wa.flush()
    assert [(len(w), w.closed_by) for w in windows] == [
        (5, "full"), (2, "anchor change"), (3, "anchor change"), (2, "anchor change"), (5, "full"),
        (3, "flush")]   # an equal pair (same frames) is the same pair
    assert [g for w in windows for g in w.groups] == groups          # nothing dropped or repeated
    assert all(all(g.anchors is w.anchors or g.anchors == w.anchors for g in w.groups) for w in windows)
    assert windows[3].anchors is None
    assert [w.full for w in windows] == [True, False, False, False, True, False]
    assert wa.windows_out == 6 and wa.short_windows == 4 and wa.flush() == []


def test_window_assembler_on_grouper_output() -> None:
    run = feed(rig(150))
    for size in (5, 3):
        windows = WindowAssembler(size).push_many(run.groups)
        assert all(isinstance(w, GroupWindow) and 1 <= len(w) <= size for w in windows)
        assert all(len({key(g)[2] for g in w.groups}) == 1 and key(w.groups[0])[2] is not None
                   for w in windows)
        flat = [g for w in windows for g in w.groups]
        assert len(flat) <= len(run.groups) and flat == run.groups[:len(flat)]
        assert all(w.full or w.closed_by == "anchor change" for w in windows)
        if size == 5:   # one pair per 5 reference frames: each pair's run fills one window
            assert sum(w.full for w in windows) >= len(windows) - 2
        else:
            assert any(not w.full for w in windows)
    with pytest.raises(ValueError):
        WindowAssembler(0)
