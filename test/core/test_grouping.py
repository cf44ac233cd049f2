"""Offline pairing of anchors and assignment to reference frames."""

from __future__ import annotations

import numpy as np
import pytest

from hdr_dcs.core.grouping import group_offline, pair_anchors
from hdr_dcs.core.types import Exposure, Frame, Role

PX = np.zeros((2, 2, 3), np.float32)


def frame(role: Role, t_ms: float, seq: int = 0) -> Frame:
    return Frame(PX, int(t_ms * 1e6), role, Exposure(0.001), seq)


def test_pairs_low_with_next_high_and_skips_orphans() -> None:
    anchors = [frame(Role.LOW, 10), frame(Role.HIGH, 60), frame(Role.HIGH, 200),  # orphan high
               frame(Role.LOW, 450), frame(Role.LOW, 700), frame(Role.HIGH, 750)]  # orphan low at 450
    pairs = pair_anchors(reversed(anchors))  # order of arrival does not matter
    assert [(p.low.stamp_ns // 10**6, p.high.stamp_ns // 10**6) for p in pairs] == [(10, 60), (700, 750)]


def test_high_then_low_also_pairs_but_not_across_large_gaps() -> None:
    pairs = pair_anchors([frame(Role.HIGH, 0), frame(Role.LOW, 30), frame(Role.LOW, 100),
                          frame(Role.HIGH, 500)])
    assert len(pairs) == 1 and pairs[0].high.stamp_ns == 0


def test_each_reference_gets_nearest_pair_within_max_age() -> None:
    pairs = pair_anchors([frame(Role.LOW, 0), frame(Role.HIGH, 20), frame(Role.LOW, 300), frame(Role.HIGH, 320)])
    refs = [frame(Role.REFERENCE, t) for t in (0, 100, 200, 310, 1000)]
    groups = group_offline(refs, pairs, max_age_s=0.3)
    assert [g.anchors.low.stamp_ns // 10**6 if g.anchors else None for g in groups] == [0, 0, 300, 300, None]
    assert groups[1].anchor_age_s == pytest.approx(0.09)
    assert groups[-1].anchor_age_s == 0.0
