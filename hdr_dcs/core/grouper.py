"""Streaming grouping: live camera messages in, one FrameGroup per reference frame out.

The live counterpart of :mod:`hdr_dcs.core.grouping`. On a clean, in-order stream it
gives exactly the assignments of ``group_offline(reference, pair_anchors(anchors))``;
unlike it, it works incrementally on messages in arrival order, tolerates reordering,
losses, duplicates and a dead anchor camera, and keeps bounded memory. Pure and
deterministic: no wall clock, no threads (callers serialise calls), no ROS. Time only
advances through the stamps fed in.

Why not message_filters
-----------------------
``ApproximateTimeSynchronizer`` emits tuples in which every message is used at most
once, so it cannot give one anchor pair to the ~5 reference frames around it, and it
cannot emit a reference frame with "no anchors" while the anchor camera is down. Its
``Cache`` lookups (element before / after a time) are the right shape, and that is what
this module does, but message_filters is not installable here anyway (not on PyPI; the
Debian package is the ROS 1 one, see notes/ros2-from-pip.md).

Pipeline
--------
1. *Matching.* ``add_image`` and ``add_exposure`` are paired by exact stamp per camera
   (either may come first) into a :class:`~hdr_dcs.core.types.Frame`. Anchor stamps are
   moved onto the reference clock first (``stamp - clock_offset_s``); every stamp inside
   the grouper and in its output is on the reference clock (``Drop`` records keep the
   stamp as received).
2. *Watermarks.* Per camera, the watermark is the newest stamp seen and the cutoff is
   ``watermark - reorder_delay_s``. The anchor cutoff also follows the reference stream:
   it is at least ``reference watermark - reorder_delay_s - max_anchor_lag_s``, so the
   last anchor frames before an anchor outage do not wait for anchor messages that never
   come. A buffered frame is final once its stamp is below its camera's cutoff: it is
   then passed on, or dropped as "missing exposure" / "missing image" / "wrong role" /
   "bad exposure". A message that would open a new frame below the cutoff is dropped as
   "late". Frames are finalised in stamp order, so reordering within the delay is
   invisible.
3. *Pairing.* Final anchor frames are paired greedily in stamp order exactly like
   ``pair_anchors`` (a frame pairs with the pending one when their roles differ and they
   are at most ``max_pair_gap_s`` apart). A frame that can no longer pair is dropped
   "unpaired anchor". Pairs live in a short history.
4. *Assignment and release.* Final reference frames wait in a ready queue and are
   released strictly in stamp order, each as one ``FrameGroup`` with the nearest pair by
   pair stamp within ``max_anchor_age_s`` (ties: the earlier pair, as ``group_offline``)
   or ``None``.

Finalisation policy (when is a reference frame at time t released?)
--------------------------------------------------------------------
Let ``floor`` be the earliest stamp a pair that does not exist yet could still have:
anchor frames still to come are at or after the anchor cutoff ``c``, and a pending
unpaired frame ``p`` can only pair with one of them, so ``floor = (p + c) // 2`` (or ``c``
without a pending frame). Pairs form in stamp order, so a future pair is also later than
every pair formed so far. The frame at t is released as soon as it is final on the
reference stream (reference watermark > t + reorder_delay_s) and no pair that may still
form can change its answer:

- nearest (``wait_for_future_anchor``, the default): a pair at or after t already
  exists, or ``floor - t`` is at least the age of the best known pair (more than
  ``max_anchor_age_s`` when there is none);
- causal (``wait_for_future_anchor=False``, only pairs stamped at or before t count): a
  pair after t exists, or ``floor > t``.

Both need the anchor cutoff past about ``t + H + max_pair_gap_s / 2`` in the worst case
(``H = max_anchor_age_s`` when nearest, 0 when causal: no pair in range, or a pending
frame whose partner is up to ``max_pair_gap_s`` away), usually far less. The anchor
cutoff gets there through the anchor stream, or, when the anchor camera is dead or
trails by more than ``max_anchor_lag_s``, through the reference stream; so the wait is
bounded in reference-stream time and a dead anchor camera never stalls the output (such
releases are counted in ``stats.anchor_stalled``; with the anchor camera silent, frames
get the pairs known, then None). A last-resort timeout at the same bound guards the
rounding edge cases (``stats.timeouts``, normally 0). A ready queue longer than
``max_pending`` releases its oldest frame early with the pairs known
(``stats.early_releases``) instead of losing it.

While both cameras are live and the anchor stream trails by at most ``max_anchor_lag_s``
(default ``reorder_delay_s``) the output equals ``group_offline``; anchor messages
trailing more than that are "late".

Latency: ``latency_bound_s = reorder_delay_s + max_anchor_lag_s + H + max_pair_gap_s /
2`` (defaults: 0.1 + 0.1 + 0.5 + 0.1 = 0.8 s, 24 frames at 30 Hz; causal: 0.3 s) is a hard
bound in reference-stream time: a reference frame stamped t is released no later than
the first reference message stamped more than ``t + latency_bound_s``. It is reached only
while the anchor camera is silent; with both cameras live the latency is about
``reorder_delay_s +`` the distance to the nearest pair (at most half the pair period, ~83
ms at 30 Hz with a pair per 5 frames), ~0.1-0.2 s by default. Lower it with a smaller
``reorder_delay_s`` (0 suits an in-order transport), a smaller ``max_anchor_age_s`` or the
causal mode. The grouper only releases on calls; at the end of a stream ``flush()``
decides everything with what is known.

Accounting
----------
Every message either opens a frame (a new camera+stamp; counted in ``frames_in``),
completes an open frame, completes a frame already decided (``absorbed``: e.g. an
ExposureInfo arriving after its image was dropped for lack of it), or is a repeat of a
message already seen or too late to open a frame (counted in ``frames_in`` and dropped as
"duplicate" / "late"). Every frame in ends in exactly one fate, so at any time::

    frames_in[reference] == groups_out           + dropped(reference) + pending[reference]
    frames_in[anchor]    == anchor_frames_paired + dropped(anchor)    + pending[anchor]

and ``pending`` is zero after ``flush()``. Sequence-id gaps (frames lost before they
reached us) are counted per camera in ``sequence_gaps`` over the ExposureInfos seen, in
stamp order; they are not drops (a frame whose ExposureInfo was lost is both a "missing
exposure" drop and a gap, since its id was never seen).

Memory: per camera at most ``max_pending`` open frames (the oldest is dropped "overflow"
beyond that), at most ``max_pending`` ready reference frames, ``anchor_history`` pairs
(a pair evicted before any reference frame used it drops its two frames as "overflow";
pairs that can no longer be nearest to any future reference frame are pruned silently),
one pending anchor frame, ``4 * max_pending`` remembered decided stamps per camera (for
telling duplicates from new frames) and ``drop_log_size`` drop records.

Limitation: a stamp far in the future (a clock glitch) moves a watermark and makes the
following messages "late"; a camera clock that jumps backwards needs ``reset()``.

Rolling-window models get :class:`WindowAssembler`: consecutive groups sharing one
anchor pair, at most T per window.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from .types import AnchorPair, Exposure, Frame, FrameGroup, Role

REFERENCE = "reference"
ANCHOR = "anchor"
CAMERAS = (REFERENCE, ANCHOR)

_IMAGE = "image"
_EXPOSURE = "exposure"
_SEQ_MOD = 2**32


class DropReason(enum.StrEnum):
    """Why a frame (or a repeated message) was dropped; the values are the report strings."""

    MISSING_EXPOSURE = "missing exposure"
    MISSING_IMAGE = "missing image"
    DUPLICATE = "duplicate"
    WRONG_ROLE = "wrong role"
    BAD_EXPOSURE = "bad exposure"
    UNPAIRED_ANCHOR = "unpaired anchor"
    LATE = "late"
    OVERFLOW = "overflow"


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


@dataclass(frozen=True)
class GrouperConfig:
    """Settings of :class:`FrameGrouper`; all times in seconds, on stream time.

    Attributes:
        reorder_delay_s: how far behind its camera's newest stamp a message may arrive
            and still be used; also how long an image waits for its ExposureInfo.
        max_anchor_age_s: largest |reference stamp - pair stamp| for a pair to be assigned.
        max_pair_gap_s: largest time between the low and the high frame of a pair.
        clock_offset_s: anchor clock minus reference clock; subtracted from anchor stamps.
        max_pending: bound on buffered frames per queue (open frames per camera, ready
            reference frames).
        anchor_history: how many anchor pairs to keep.
        wait_for_future_anchor: True: assign the nearest pair, waiting (bounded) for pairs
            that may still arrive after the reference frame; False: causal, only pairs
            stamped at or before the reference frame, lower latency.
        max_anchor_lag_s: how far the anchor stream may trail the reference stream beyond
            ``reorder_delay_s`` (reference-stream time); an anchor message older than the
            reference watermark minus both is late. Bounds the wait for a dead anchor
            camera. None: ``reorder_delay_s``.
        drop_log_size: how many recent :class:`Drop` records ``pop_drops`` can return.
    """

    reorder_delay_s: float = 0.1
    max_anchor_age_s: float = 0.5
    max_pair_gap_s: float = 0.2
    clock_offset_s: float = 0.0
    max_pending: int = 64
    anchor_history: int = 8
    wait_for_future_anchor: bool = True
    max_anchor_lag_s: float | None = None
    drop_log_size: int = 1024

    def __post_init__(self) -> None:
        for name in ("reorder_delay_s", "max_anchor_age_s", "max_pair_gap_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if not math.isfinite(self.clock_offset_s):
            raise ValueError(f"clock_offset_s must be finite, got {self.clock_offset_s}")
        lag = self.max_anchor_lag_s
        if lag is not None and not (math.isfinite(lag) and lag >= 0):
            raise ValueError(f"max_anchor_lag_s must be None or finite and >= 0, got {lag}")
        if self.max_pending < 1 or self.anchor_history < 1:
            raise ValueError("max_pending and anchor_history must be >= 1")
        if self.drop_log_size < 0:
            raise ValueError("drop_log_size must be >= 0")

    @property
    def effective_max_anchor_lag_s(self) -> float:
        """``max_anchor_lag_s``, or ``reorder_delay_s`` when None."""
        return self.reorder_delay_s if self.max_anchor_lag_s is None else self.max_anchor_lag_s

    @property
    def anchor_wait_s(self) -> float:
        """Longest wait for the anchor decision once a frame is final on its own stream."""
        horizon = self.max_anchor_age_s if self.wait_for_future_anchor else 0.0
        return self.effective_max_anchor_lag_s + horizon + self.max_pair_gap_s / 2

    @property
    def latency_bound_s(self) -> float:
        """A reference frame stamped t is out before the reference stream passes t + this."""
        return self.reorder_delay_s + self.anchor_wait_s


@dataclass(frozen=True)
class Drop:
    """One dropped frame or message.

    Attributes:
        camera: "reference" or "anchor".
        stamp_ns: its stamp as received (the anchor camera's own clock for anchors).
        reason: a :class:`DropReason` value.
    """

    camera: str
    stamp_ns: int
    reason: str


@dataclass(frozen=True)
class GrouperStats:
    """A snapshot of the grouper's counters (see "Accounting" in the module docstring).

    Attributes:
        frames_in: frames per camera (new camera+stamp, plus each duplicate or late message).
        drops: dropped frames per (camera, reason).
        groups_out: FrameGroups released (one per released reference frame).
        groups_without_anchors: of those, how many have ``anchors is None``.
        pairs_formed: anchor pairs formed.
        anchor_frames_paired: anchor frames in pairs (minus pairs evicted unused).
        pending: frames per camera buffered and not yet decided.
        sequence_gaps: per camera, sequence ids skipped between consecutive frames.
        sequence_resets: per camera, times the sequence id went backwards or repeated.
        absorbed: per camera, messages that completed a frame already decided.
        anchor_stalled: reference frames released while the anchor stream had not reached
            their stamp (decided by reference-stream time: anchor camera dead or lagging).
        timeouts: reference frames released by the last-resort timeout (normally 0).
        early_releases: reference frames released early because the ready queue was full.
        anchor_age_max_s, anchor_age_mean_s: over groups with anchors (0 without any).
    """

    frames_in: dict[str, int]
    drops: dict[tuple[str, str], int]
    groups_out: int
    groups_without_anchors: int
    pairs_formed: int
    anchor_frames_paired: int
    pending: dict[str, int]
    sequence_gaps: dict[str, int]
    sequence_resets: dict[str, int]
    absorbed: dict[str, int]
    anchor_stalled: int
    timeouts: int
    early_releases: int
    anchor_age_max_s: float
    anchor_age_mean_s: float

    def dropped(self, camera: str | None = None, reason: str | None = None) -> int:
        """Number of drops, optionally only of one camera and/or one reason."""
        return sum(n for (cam, why), n in self.drops.items()
                   if (camera is None or cam == camera) and (reason is None or why == reason))

    def drops_by_reason(self, camera: str) -> dict[str, int]:
        return {why: n for (cam, why), n in self.drops.items() if cam == camera}

    def unaccounted(self, camera: str) -> int:
        """frames_in - outputs - drops - pending for one camera; always 0."""
        out = self.groups_out if camera == REFERENCE else self.anchor_frames_paired
        return self.frames_in.get(camera, 0) - out - self.dropped(camera) - self.pending.get(camera, 0)


class _Open:
    """A frame being assembled from its image and ExposureInfo messages."""

    __slots__ = ("exposure_s", "exposure_frame_id", "gain_db", "has_exposure", "has_image",
                 "image_frame_id", "pixels", "reason", "role", "sequence_id", "stamp_ns")

    def __init__(self, stamp_ns: int) -> None:
        self.stamp_ns = stamp_ns
        self.has_image = False
        self.has_exposure = False
        self.pixels = None
        self.image_frame_id = ""
        self.exposure_frame_id = ""
        self.role: Role | None = None
        self.exposure_s = 0.0
        self.gain_db = 0.0
        self.sequence_id = 0
        self.reason: str | None = None

    def kinds(self) -> set[str]:
        return {k for k, has in ((_IMAGE, self.has_image), (_EXPOSURE, self.has_exposure)) if has}


class _Stream:
    """Per-camera matching state."""

    def __init__(self, name: str, record_size: int) -> None:
        self.name = name
        self.watermark: int | None = None
        self.cutoff: int | None = None           # open frames stamped below it are final
        self.open: dict[int, _Open] = {}
        self.heap: list[int] = []                # the stamps of ``open``
        self.decided: OrderedDict[int, set[str]] = OrderedDict()
        self.record_size = record_size
        self.last_seq: int | None = None

    def remember(self, stamp_ns: int, kinds: set[str]) -> None:
        self.decided[stamp_ns] = kinds
        self.decided.move_to_end(stamp_ns)
        while len(self.decided) > self.record_size:
            self.decided.popitem(last=False)

    def below_cutoff(self, stamp_ns: int) -> bool:
        return self.cutoff is not None and stamp_ns < self.cutoff


class _PairRecord:
    __slots__ = ("assigned", "pair")

    def __init__(self, pair: AnchorPair) -> None:
        self.pair = pair
        self.assigned = False


class FrameGrouper:
    """Incremental grouping of reference frames with anchor pairs (see the module docstring).

    Feed every message with ``add_image`` / ``add_exposure`` in arrival order; each call
    returns the FrameGroups it released (possibly none), in reference stamp order across
    calls. Call ``flush()`` at the end of the stream. Drops are counted in ``stats`` and
    listed by ``pop_drops()``.
    """

    def __init__(self, config: GrouperConfig | None = None) -> None:
        self.config = config if config is not None else GrouperConfig()
        c = self.config
        self._delay_ns = _ns(c.reorder_delay_s)
        self._wait_ns = _ns(c.anchor_wait_s)
        self._lag_ns = _ns(c.effective_max_anchor_lag_s)
        self._offset_ns = _ns(c.clock_offset_s)
        self.reset()

    # ------------------------------------------------------------------ public API

    def reset(self) -> None:
        """Forget everything, counters included (e.g. after a camera clock jumped back)."""
        c = self.config
        self._streams = {cam: _Stream(cam, 4 * c.max_pending) for cam in CAMERAS}
        self._ready: deque[Frame] = deque()
        self._pending_anchor: Frame | None = None
        self._pairs: deque[_PairRecord] = deque()
        self._newest_pair_ns: int | None = None
        self._last_assigned_pair_ns: int | None = None
        self._last_released_ns: int | None = None
        self._drop_log: deque[Drop] = deque(maxlen=c.drop_log_size)
        self._frames_in: Counter[str] = Counter()
        self._drops: Counter[tuple[str, str]] = Counter()
        self._seq_gaps: Counter[str] = Counter()
        self._seq_resets: Counter[str] = Counter()
        self._absorbed: Counter[str] = Counter()
        self._groups_out = 0
        self._groups_without = 0
        self._pairs_formed = 0
        self._anchor_paired = 0
        self._timeouts = 0
        self._stalled = 0
        self._early = 0
        self._age_sum = 0.0
        self._age_max = 0.0

    @property
    def latency_bound_s(self) -> float:
        """Hard release bound in reference-stream time (``GrouperConfig.latency_bound_s``)."""
        return self.config.latency_bound_s

    @property
    def anchor_pairs(self) -> tuple[AnchorPair, ...]:
        """The anchor pairs currently kept, oldest first."""
        return tuple(rec.pair for rec in self._pairs)

    def add_image(self, camera: str, stamp_ns: int, pixels: object, frame_id: str = "") -> list[FrameGroup]:
        """One image message. ``pixels`` is passed through to ``Frame.pixels`` unchanged."""
        entry = self._open_slot(self._stream(camera), stamp_ns, _IMAGE)
        if entry is not None:
            entry.has_image = True
            entry.pixels = pixels
            entry.image_frame_id = frame_id
        return self._advance()

    def add_exposure(self, camera: str, stamp_ns: int, role: Role | int, exposure_time_s: float,
                     gain_db: float, sequence_id: int, frame_id: str = "") -> list[FrameGroup]:
        """One ExposureInfo message (``exposure_time_s`` = exposure_time_us * 1e-6)."""
        stream = self._stream(camera)
        reason: str | None = None
        try:
            role = Role(int(role))
        except (TypeError, ValueError):
            reason = DropReason.WRONG_ROLE
        if reason is None and (role == Role.REFERENCE) != (camera == REFERENCE):
            reason = DropReason.WRONG_ROLE
        exposure_s, gain = float(exposure_time_s), float(gain_db)
        if reason is None and not (math.isfinite(exposure_s) and exposure_s > 0 and math.isfinite(gain)):
            reason = DropReason.BAD_EXPOSURE
        entry = self._open_slot(stream, stamp_ns, _EXPOSURE)
        if entry is not None:
            entry.has_exposure = True
            entry.role = role if reason is None else None
            entry.exposure_s = exposure_s
            entry.gain_db = gain
            entry.sequence_id = int(sequence_id)
            entry.exposure_frame_id = frame_id
            entry.reason = entry.reason or reason
        return self._advance()

    def flush(self) -> list[FrameGroup]:
        """End of stream: decide every buffered frame with what is known, release all.

        Afterwards nothing is pending; messages stamped at or before what was seen are
        "late", newer ones start over normally.
        """
        self._finalise_anchor(everything=True)
        self._finalise_reference(everything=True)
        out = self._release(anchors_complete=True)
        for stream in self._streams.values():
            if stream.watermark is not None:
                stream.cutoff = stream.watermark + 1
        return out

    def pop_drops(self) -> list[Drop]:
        """The drops recorded since the last call (at most ``drop_log_size``; counts are in stats)."""
        drops = list(self._drop_log)
        self._drop_log.clear()
        return drops

    @property
    def stats(self) -> GrouperStats:
        with_anchors = self._groups_out - self._groups_without
        ref, anc = self._streams[REFERENCE], self._streams[ANCHOR]
        return GrouperStats(
            frames_in={cam: self._frames_in[cam] for cam in CAMERAS},
            drops=dict(self._drops),
            groups_out=self._groups_out,
            groups_without_anchors=self._groups_without,
            pairs_formed=self._pairs_formed,
            anchor_frames_paired=self._anchor_paired,
            pending={REFERENCE: len(ref.open) + len(self._ready),
                     ANCHOR: len(anc.open) + (self._pending_anchor is not None)},
            sequence_gaps={cam: self._seq_gaps[cam] for cam in CAMERAS},
            sequence_resets={cam: self._seq_resets[cam] for cam in CAMERAS},
            absorbed={cam: self._absorbed[cam] for cam in CAMERAS},
            anchor_stalled=self._stalled,
            timeouts=self._timeouts,
            early_releases=self._early,
            anchor_age_max_s=self._age_max,
            anchor_age_mean_s=self._age_sum / with_anchors if with_anchors else 0.0,
        )

    # ------------------------------------------------------------------ matching

    def _stream(self, camera: str) -> _Stream:
        try:
            return self._streams[camera]
        except KeyError:
            raise ValueError(f"camera must be one of {CAMERAS}, got {camera!r}") from None

    def _drop(self, camera: str, stamp_ns: int, reason: str) -> None:
        self._drops[(camera, str(reason))] += 1
        raw = stamp_ns + self._offset_ns if camera == ANCHOR else stamp_ns
        self._drop_log.append(Drop(camera, raw, str(reason)))

    def _open_slot(self, stream: _Stream, stamp_ns: int, kind: str) -> _Open | None:
        """The open frame this message belongs to, or None when it was consumed otherwise."""
        stamp = int(stamp_ns) - (self._offset_ns if stream.name == ANCHOR else 0)
        entry = stream.open.get(stamp)
        if entry is not None:
            if kind in entry.kinds():
                self._frames_in[stream.name] += 1
                self._drop(stream.name, stamp, DropReason.DUPLICATE)
                return None
            return entry
        kinds = stream.decided.get(stamp)
        if kinds is not None:
            if kind in kinds:
                self._frames_in[stream.name] += 1
                self._drop(stream.name, stamp, DropReason.DUPLICATE)
            else:
                kinds.add(kind)
                self._absorbed[stream.name] += 1
            return None
        self._frames_in[stream.name] += 1
        if stream.below_cutoff(stamp):
            self._drop(stream.name, stamp, DropReason.LATE)
            stream.remember(stamp, {kind})
            return None
        entry = _Open(stamp)
        stream.open[stamp] = entry
        heapq.heappush(stream.heap, stamp)
        if stream.watermark is None or stamp > stream.watermark:
            stream.watermark = stamp
            self._raise_cutoff(stream, stamp - self._delay_ns)
            if stream.name == REFERENCE:    # the anchor stream may trail only so far
                self._raise_cutoff(self._streams[ANCHOR], stamp - self._delay_ns - self._lag_ns)
        return entry

    @staticmethod
    def _raise_cutoff(stream: _Stream, cutoff: int) -> None:
        stream.cutoff = cutoff if stream.cutoff is None else max(stream.cutoff, cutoff)

    def _close(self, stream: _Stream, stamp: int, forced_reason: str | None = None) -> Frame | None:
        """Decide the open frame at ``stamp`` (the oldest): a Frame, or None when dropped."""
        entry = stream.open.pop(stamp)
        stream.remember(stamp, entry.kinds())
        if entry.has_exposure:
            self._track_sequence(stream, entry.sequence_id)
        reason = forced_reason or entry.reason
        if reason is None and not entry.has_exposure:
            reason = DropReason.MISSING_EXPOSURE
        if reason is None and not entry.has_image:
            reason = DropReason.MISSING_IMAGE
        if reason is not None:
            self._drop(stream.name, stamp, reason)
            return None
        return Frame(entry.pixels, stamp, entry.role, Exposure(entry.exposure_s, entry.gain_db),
                     entry.sequence_id, entry.image_frame_id or entry.exposure_frame_id)

    def _track_sequence(self, stream: _Stream, seq: int) -> None:
        if stream.last_seq is not None:
            missing = (seq - stream.last_seq - 1) % _SEQ_MOD
            if missing < _SEQ_MOD // 2:
                self._seq_gaps[stream.name] += missing
            else:
                self._seq_resets[stream.name] += 1
        stream.last_seq = seq

    def _bound_open(self, stream: _Stream) -> None:
        """Drop the oldest open frames beyond ``max_pending``; the cutoff moves past them."""
        while len(stream.open) > self.config.max_pending:
            stamp = heapq.heappop(stream.heap)
            self._close(stream, stamp, DropReason.OVERFLOW)
            self._raise_cutoff(stream, stamp + 1)

    def _final_stamps(self, stream: _Stream, everything: bool) -> Iterable[int]:
        while stream.heap and (everything or stream.below_cutoff(stream.heap[0])):
            yield heapq.heappop(stream.heap)

    # ------------------------------------------------------------------ anchors

    def _finalise_anchor(self, everything: bool = False) -> None:
        stream = self._streams[ANCHOR]
        self._bound_open(stream)
        for stamp in self._final_stamps(stream, everything):
            frame = self._close(stream, stamp)
            if frame is not None:
                self._pair_step(frame)
        pending = self._pending_anchor
        if pending is not None and (everything or (
                stream.cutoff is not None
                and (stream.cutoff - pending.stamp_ns) * 1e-9 > self.config.max_pair_gap_s)):
            self._drop(ANCHOR, pending.stamp_ns, DropReason.UNPAIRED_ANCHOR)
            self._pending_anchor = None

    def _pair_step(self, frame: Frame) -> None:
        """``pair_anchors``' greedy rule, one frame at a time in stamp order."""
        pending = self._pending_anchor
        if pending is not None and frame.role != pending.role \
                and (frame.stamp_ns - pending.stamp_ns) * 1e-9 <= self.config.max_pair_gap_s:
            low, high = (pending, frame) if pending.role == Role.LOW else (frame, pending)
            self._pending_anchor = None
            self._add_pair(AnchorPair(low, high))
            return
        if pending is not None:
            self._drop(ANCHOR, pending.stamp_ns, DropReason.UNPAIRED_ANCHOR)
        self._pending_anchor = frame

    def _add_pair(self, pair: AnchorPair) -> None:
        self._pairs.append(_PairRecord(pair))
        self._newest_pair_ns = pair.stamp_ns
        self._pairs_formed += 1
        self._anchor_paired += 2
        self._prune_pairs()
        while len(self._pairs) > self.config.anchor_history:
            rec = self._pairs.popleft()
            if not rec.assigned:
                self._anchor_paired -= 2
                self._drop(ANCHOR, rec.pair.low.stamp_ns, DropReason.OVERFLOW)
                self._drop(ANCHOR, rec.pair.high.stamp_ns, DropReason.OVERFLOW)

    def _prune_pairs(self) -> None:
        """Forget pairs no future reference frame can be assigned.

        A pair older than the last one assigned is never nearer to a later reference frame
        than that one; a pair more than max_anchor_age_s before the next possible reference
        stamp is too old for all of them.
        """
        pairs = self._pairs
        if self._last_assigned_pair_ns is not None:
            while pairs and pairs[0].pair.stamp_ns < self._last_assigned_pair_ns:
                pairs.popleft()
        if self._last_released_ns is not None:
            next_ref = self._last_released_ns + 1
            while pairs and (next_ref - pairs[0].pair.stamp_ns) * 1e-9 > self.config.max_anchor_age_s:
                pairs.popleft()

    def _future_pair_floor(self) -> int | None:
        """Earliest stamp a pair not formed yet could have; None without anchor information."""
        cutoff = self._streams[ANCHOR].cutoff
        if cutoff is None:
            return None
        if self._pending_anchor is not None:
            return (self._pending_anchor.stamp_ns + cutoff) // 2
        return cutoff

    def _best_pair(self, t: int) -> tuple[_PairRecord | None, float]:
        """Nearest kept pair to t within max age (earliest on ties); causal: stamped <= t."""
        best, best_age = None, math.inf
        for rec in self._pairs:
            stamp = rec.pair.stamp_ns
            if not self.config.wait_for_future_anchor and stamp > t:
                break
            age = abs(t - stamp) * 1e-9
            if age < best_age:
                best, best_age = rec, age
        if best is None or best_age > self.config.max_anchor_age_s:
            return None, math.inf
        return best, best_age

    def _anchor_decided(self, t: int) -> bool:
        """True when no pair that may still form could change the assignment of t."""
        if self._newest_pair_ns is not None and self._newest_pair_ns >= t:
            return True         # every future pair is later still, hence farther
        floor = self._future_pair_floor()
        if floor is None or floor <= t:
            return False
        if not self.config.wait_for_future_anchor:
            return True
        best, best_age = self._best_pair(t)
        floor_age = (floor - t) * 1e-9
        return floor_age >= best_age if best is not None else floor_age > self.config.max_anchor_age_s

    # ------------------------------------------------------------------ reference

    def _finalise_reference(self, everything: bool = False) -> None:
        stream = self._streams[REFERENCE]
        self._bound_open(stream)
        for stamp in self._final_stamps(stream, everything):
            frame = self._close(stream, stamp)
            if frame is not None:
                self._ready.append(frame)

    def _release(self, anchors_complete: bool = False) -> list[FrameGroup]:
        out: list[FrameGroup] = []
        cutoff = self._streams[REFERENCE].cutoff
        anchor_watermark = self._streams[ANCHOR].watermark
        while self._ready:
            t = self._ready[0].stamp_ns
            if anchors_complete:
                pass
            elif self._anchor_decided(t):
                self._stalled += anchor_watermark is None or anchor_watermark < t
            elif cutoff is not None and t < cutoff - self._wait_ns:
                self._timeouts += 1
            elif len(self._ready) > self.config.max_pending:
                self._early += 1
            else:
                break
            out.append(self._emit(self._ready.popleft()))
        return out

    def _emit(self, frame: Frame) -> FrameGroup:
        best, age = self._best_pair(frame.stamp_ns)
        self._groups_out += 1
        self._last_released_ns = frame.stamp_ns
        if best is None:
            self._groups_without += 1
            group = FrameGroup(frame, None, 0.0)
        else:
            best.assigned = True
            self._last_assigned_pair_ns = best.pair.stamp_ns
            self._age_sum += age
            self._age_max = max(self._age_max, age)
            group = FrameGroup(frame, best.pair, age)
        self._prune_pairs()
        return group

    def _advance(self) -> list[FrameGroup]:
        self._finalise_anchor()
        self._finalise_reference()
        return self._release()


# ---------------------------------------------------------------------- windows

WINDOW_FULL = "full"
WINDOW_ANCHOR_CHANGE = "anchor change"
WINDOW_FLUSH = "flush"


def _pair_key(pair: AnchorPair | None) -> tuple[int, int] | None:
    return None if pair is None else (pair.low.stamp_ns, pair.high.stamp_ns)


@dataclass(frozen=True)
class GroupWindow:
    """Consecutive FrameGroups that share one anchor pair (or all have none).

    Attributes:
        groups: the groups, in reference stamp order; 1 to ``size`` of them.
        anchors: their common anchor pair, or None.
        size: the window length T it was assembled for.
        closed_by: "full", "anchor change" or "flush".
    """

    groups: tuple[FrameGroup, ...]
    anchors: AnchorPair | None
    size: int
    closed_by: str

    def __len__(self) -> int:
        return len(self.groups)

    @property
    def full(self) -> bool:
        return len(self.groups) == self.size

    @property
    def stamps_ns(self) -> tuple[int, ...]:
        return tuple(g.reference.stamp_ns for g in self.groups)


class WindowAssembler:
    """Turns the group stream into windows of up to T groups sharing one anchor pair.

    A window closes when it holds T groups, when the next group has another pair (pairs
    are compared by their frames' stamps; groups without anchors form their own windows),
    or at ``flush()``. Partial windows are emitted short (``full`` is False); no group is
    ever dropped or repeated, so a rolling-window model must accept 1..T frames.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"window size must be >= 1, got {size}")
        self.size = size
        self.reset()

    def reset(self) -> None:
        self._groups: list[FrameGroup] = []
        self._key: tuple[int, int] | None = None
        self.windows_out = 0
        self.short_windows = 0

    def push(self, group: FrameGroup) -> list[GroupWindow]:
        """Add the next group; returns the windows this closed (0, 1 or 2)."""
        out: list[GroupWindow] = []
        key = _pair_key(group.anchors)
        if self._groups and key != self._key:
            out.append(self._close(WINDOW_ANCHOR_CHANGE))
        self._groups.append(group)
        self._key = key
        if len(self._groups) >= self.size:
            out.append(self._close(WINDOW_FULL))
        return out

    def push_many(self, groups: Iterable[FrameGroup]) -> list[GroupWindow]:
        return [w for g in groups for w in self.push(g)]

    def flush(self) -> list[GroupWindow]:
        """Emit the partial window, if any."""
        return [self._close(WINDOW_FLUSH)] if self._groups else []

    def _close(self, why: str) -> GroupWindow:
        window = GroupWindow(tuple(self._groups), self._groups[0].anchors, self.size, why)
        self._groups = []
        self.windows_out += 1
        self.short_windows += not window.full
        return window
