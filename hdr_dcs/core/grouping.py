"""Grouping of reference frames with the anchor pair that belongs to them.

``pair_anchors`` forms low/high pairs from an anchor stream; ``group_offline`` assigns
every reference frame the nearest pair in time (bounded by a maximum age). Both are pure
functions over whole recordings; live streams use the incremental grouper.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .types import AnchorPair, Frame, FrameGroup, Role


def pair_anchors(anchors: Iterable[Frame], max_gap_s: float = 0.2) -> list[AnchorPair]:
    """Pair each LOW frame with the next HIGH frame (or each HIGH with the next LOW).

    Frames are sorted by stamp first; two frames form a pair when their roles differ and
    they are at most ``max_gap_s`` apart. An unpaired frame is skipped.
    """
    ordered = sorted((f for f in anchors if f.role in (Role.LOW, Role.HIGH)), key=lambda f: f.stamp_ns)
    pairs: list[AnchorPair] = []
    pending: Frame | None = None
    for frame in ordered:
        if pending is not None and frame.role != pending.role \
                and (frame.stamp_ns - pending.stamp_ns) * 1e-9 <= max_gap_s:
            low, high = (pending, frame) if pending.role == Role.LOW else (frame, pending)
            pairs.append(AnchorPair(low, high))
            pending = None
        else:
            pending = frame
    return pairs


def group_offline(reference: Sequence[Frame], pairs: Sequence[AnchorPair],
                  max_age_s: float = 0.5) -> list[FrameGroup]:
    """One FrameGroup per reference frame with the nearest pair no older than ``max_age_s``."""
    groups = []
    for ref in reference:
        best: AnchorPair | None = None
        best_age = float("inf")
        for pair in pairs:
            age = abs(ref.stamp_ns - pair.stamp_ns) * 1e-9
            if age < best_age:
                best, best_age = pair, age
        if best is None or best_age > max_age_s:
            groups.append(FrameGroup(ref, None, 0.0))
        else:
            groups.append(FrameGroup(ref, best, best_age))
    return groups
