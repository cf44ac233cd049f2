"""Training windows: T consecutive reference frames that share one anchor pair.

The LoCAtion setting (paper sections III-A, III-D): a temporal segment of T backbone
(reference, medium-exposure) frames is fused with a single low + high anchor pair; its
anchor consistency loss needs a second, different pair for the same backbone, which here
is the neighbouring pair in time (``Window.alt_anchors``). The DCS/EAFNet setting is the
special case T = 1: every reference frame with the pair assigned to it
(``per_frame_windows``).

How a recording becomes windows:

1. ``pair_anchors`` forms low/high pairs from the raw anchor stream and ``group_offline``
   assigns every reference frame the nearest pair (both from ``hdr_dcs.core.grouping``:
   the same rules as the nodes use);
2. reference frames are walked in stamp order; a *run* is a maximal stretch of
   consecutive frames with the same pair, broken also where a reference frame was dropped
   (a stamp gap above 1.5 median frame periods);
3. each run of L >= T frames gives ``1 + (L - T) // stride`` windows (stride defaults to
   T: no overlap), placed in the run so that their middle is nearest the pair's stamp
   (a 7-frame run around a pair at frame 3 gives frames 1..5 for T = 5);
4. the anchors are registered into the reference grid with ``core.registration``
   (the anchor CameraInfo; identity when uncalibrated); a reference camera with
   distortion is undistorted with its own CameraInfo, otherwise left untouched.

``plan_windows`` does steps 1-3 on frame metadata only (indices, no pixels), so a dataset
can index many stored sequences without loading them; ``assemble_window`` loads and
registers the pixels of one plan from any ``FrameSource``.

Units (SPEC.md): pixels L in [0, 1]; ``*_scale`` = t * g = exposure_time_s *
10 ** (gain_db / 20), in seconds, so H = f^-1(L) / scale; ground truth is H.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..core.calibration import CameraCalibration
from ..core.errors import InputError
from ..core.grouping import group_offline, pair_anchors
from ..core.registration import Registration
from ..core.types import Frame

__all__ = ["DEFAULT_T", "Anchors", "FrameSource", "RecordingSource", "Window", "WindowPlan",
           "assemble_window", "make_windows", "per_frame_windows", "plan_windows",
           "reference_registration"]

#: LoCAtion's backbone frames per window (one anchor pair per 5 reference frames).
DEFAULT_T = 5


@dataclass(frozen=True, eq=False)
class Anchors:
    """A low + high anchor pair registered into the reference grid.

    Attributes:
        low, high: (H, W, 3) float32 RGB in [0, 1], reference grid.
        low_scale, high_scale: t * g of each frame, seconds.
        low_stamp_ns, high_stamp_ns: their mid-exposure stamps.
        valid: (H, W) bool: reference pixels the anchor camera sees (``Registration.valid_mask``);
            outside it the anchors read 0 and carry no information.
    """

    low: np.ndarray
    high: np.ndarray
    low_scale: float
    high_scale: float
    low_stamp_ns: int
    high_stamp_ns: int
    valid: np.ndarray

    @property
    def stamp_ns(self) -> int:
        """Mean stamp of the pair (as ``AnchorPair.stamp_ns``)."""
        return (self.low_stamp_ns + self.high_stamp_ns) // 2


@dataclass(frozen=True, eq=False)
class Window:
    """T consecutive reference frames, their anchor pair and ground truth.

    Attributes:
        reference: (T, H, W, 3) float32 RGB in [0, 1].
        ref_scale: (T,) float64 t * g of each reference frame, seconds.
        stamps_ns: (T,) int64 reference stamps.
        anchors: the pair shared by the T frames.
        gt: (T, H, W, 3) float32 radiance H (SPEC.md units) at each reference frame, or None.
            ``gt[i] * ref_scale[i]`` is the linear signal relative to reference exposure i
            (1 = where that reference frame saturates).
        alt_anchors: a different pair for the same backbone (the nearest other pair in
            time), for LoCAtion's anchor consistency loss; None when there is none.
        source: name of the recording.
        start: index of the window's first frame in the recording's reference frames.
    """

    reference: np.ndarray
    ref_scale: np.ndarray
    stamps_ns: np.ndarray
    anchors: Anchors
    gt: np.ndarray | None = None
    alt_anchors: Anchors | None = None
    source: str = ""
    start: int = 0

    @property
    def T(self) -> int:  # noqa: N802 - the papers' name
        return int(self.reference.shape[0])

    @property
    def size_hw(self) -> tuple[int, int]:
        return int(self.reference.shape[1]), int(self.reference.shape[2])

    @property
    def low(self) -> np.ndarray:
        return self.anchors.low

    @property
    def high(self) -> np.ndarray:
        return self.anchors.high

    @property
    def low_scale(self) -> float:
        return self.anchors.low_scale

    @property
    def high_scale(self) -> float:
        return self.anchors.high_scale


@dataclass(frozen=True)
class WindowPlan:
    """Which frames make a window: indices into a recording's ``reference`` / ``anchors``.

    Attributes:
        reference: T indices into the reference frames, in stamp order.
        low, high: the anchor pair's indices into the (raw) anchor frames.
        alt_low, alt_high: the alternative pair's indices, or None.
    """

    reference: tuple[int, ...]
    low: int
    high: int
    alt_low: int | None = None
    alt_high: int | None = None

    @property
    def has_alt(self) -> bool:
        return self.alt_low is not None and self.alt_high is not None


def _runs(order: list[int], reference: Sequence[Frame], owner: list[object | None],
          split_gaps: bool) -> list[list[int]]:
    """Maximal stretches (indices in stamp order) of consecutive frames with one pair."""
    stamps = np.array([reference[i].stamp_ns for i in order], dtype=np.int64)
    limit = None
    if split_gaps and len(stamps) > 2:
        period = float(np.median(np.diff(stamps)))
        limit = 1.5 * period if period > 0 else None
    runs: list[list[int]] = []
    current: list[int] = []
    for pos, i in enumerate(order):
        pair = owner[i]
        broken = (not current or pair is None or owner[current[-1]] is not pair
                  or (limit is not None and stamps[pos] - stamps[pos - 1] > limit))
        if broken and current:
            runs.append(current)
            current = []
        if pair is not None:
            current.append(i)
    if current:
        runs.append(current)
    return runs


def plan_windows(reference: Sequence[Frame], anchors: Sequence[Frame], T: int = DEFAULT_T,  # noqa: N803
                 stride: int | None = None, *, max_gap_s: float = 0.2, max_age_s: float = 0.5,
                 split_gaps: bool = True, alt: bool = True,
                 alt_max_age_s: float | None = None) -> list[WindowPlan]:
    """Windows of ``T`` consecutive reference frames sharing one anchor pair (metadata only).

    Args:
        reference, anchors: frames (only ``stamp_ns`` and ``role`` are read, pixels may be
            placeholders); ``anchors`` are the anchor camera's LOW / HIGH frames.
        T: frames per window (1 = per-frame model, as DCS/EAFNet).
        stride: step between window starts inside a run (default T: no overlap).
        max_gap_s: ``pair_anchors``' largest low-high gap.
        max_age_s: ``group_offline``'s largest reference-to-pair distance.
        split_gaps: break runs at dropped reference frames.
        alt: find the alternative pair (nearest other pair to the window's centre).
        alt_max_age_s: refuse alternative pairs farther than this from the window centre
            (default ``max_age_s``).
    Returns:
        Plans in stamp order of their first frame.
    """
    if T < 1:
        raise InputError(f"T must be >= 1, got {T}")
    stride = T if stride is None else stride
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    alt_max_age_s = max_age_s if alt_max_age_s is None else alt_max_age_s
    anchor_index = {id(f): k for k, f in enumerate(anchors)}
    pairs = pair_anchors(anchors, max_gap_s)
    groups = group_offline(reference, pairs, max_age_s)
    owner: list[object | None] = [g.anchors for g in groups]
    order = sorted(range(len(reference)), key=lambda i: reference[i].stamp_ns)
    pair_stamps = np.array([p.stamp_ns for p in pairs], dtype=np.int64)

    plans: list[WindowPlan] = []
    for run in _runs(order, reference, owner, split_gaps):
        if len(run) < T:
            continue
        n = 1 + (len(run) - T) // stride
        used = T + (n - 1) * stride
        pair = owner[run[0]]
        assert pair is not None
        # Place the block of windows so that its middle is nearest the pair's stamp.
        run_stamps = np.array([reference[i].stamp_ns for i in run], dtype=np.float64)
        middles = (run_stamps[: len(run) - used + 1] + run_stamps[used - 1:]) / 2
        offset = int(np.argmin(np.abs(middles - pair.stamp_ns)))  # type: ignore[attr-defined]
        for j in range(n):
            idx = tuple(run[offset + j * stride: offset + j * stride + T])
            alt_low = alt_high = None
            if alt and len(pairs) > 1:
                centre = (reference[idx[0]].stamp_ns + reference[idx[-1]].stamp_ns) // 2
                dist = np.abs(pair_stamps - centre).astype(np.float64)
                dist[[q is pair for q in pairs]] = np.inf
                best = int(np.argmin(dist))
                if dist[best] * 1e-9 <= alt_max_age_s:
                    alt_low = anchor_index[id(pairs[best].low)]
                    alt_high = anchor_index[id(pairs[best].high)]
            low, high = pair.low, pair.high  # type: ignore[attr-defined]
            plans.append(WindowPlan(idx, anchor_index[id(low)], anchor_index[id(high)], alt_low, alt_high))
    return plans


def reference_registration(calibration: CameraCalibration | None,
                           size_wh: tuple[int, int]) -> Registration | None:
    """The reference camera's own undistortion, or None when it would be the identity
    (uncalibrated, or no distortion with R = I and P[:, :3] = K)."""
    if calibration is None or not calibration.calibrated:
        return None
    if (not np.any(calibration.d != 0) and np.allclose(calibration.r, np.eye(3))
            and np.allclose(calibration.p[:, :3], calibration.k)
            and (calibration.width, calibration.height) == tuple(size_wh)):
        return None
    return Registration(calibration, size_wh)


class FrameSource(Protocol):
    """What ``assemble_window`` reads: frame metadata plus pixels on demand."""

    name: str
    reference: Sequence[Frame]
    anchors: Sequence[Frame]

    def reference_pixels(self, i: int) -> np.ndarray:
        """(H, W, 3) float32 pixels of reference frame i, in the reference grid."""
        ...

    def registered_anchor(self, k: int) -> np.ndarray:
        """(H, W, 3) float32 pixels of anchor frame k registered into the reference grid."""
        ...

    def anchor_valid(self) -> np.ndarray:
        """(H, W) bool valid mask of the registered anchors."""
        ...

    def ground_truth(self, i: int) -> np.ndarray | None:
        """(H, W, 3) float32 radiance of reference frame i, or None."""
        ...


class RecordingSource:
    """A ``FrameSource`` over an in-memory recording (``RigSequence``, ``Recording``,
    ``StoredSequence``: anything with ``reference``, ``anchors``, ``anchor_calibration``,
    ``ground_truth`` and optionally ``reference_calibration`` and ``name``).

    Registered anchors are cached (several windows share a pair).
    """

    def __init__(self, recording: object, name: str | None = None) -> None:
        self.recording = recording
        self.reference = tuple(recording.reference)  # type: ignore[attr-defined]
        self.anchors = tuple(recording.anchors)  # type: ignore[attr-defined]
        self.name = name if name is not None else str(getattr(recording, "name", "") or
                                                      getattr(recording, "scene_name", "") or "")
        if not self.reference:
            raise InputError("the recording has no reference frames")
        h, w = self.reference[0].pixels.shape[:2]
        self.size_wh = (int(w), int(h))
        self._gt = getattr(recording, "ground_truth", None)
        if self._gt is not None and len(self._gt) != len(self.reference):
            raise InputError(f"{len(self._gt)} ground-truth frames for "
                             f"{len(self.reference)} reference frames")
        ref_cal = getattr(recording, "reference_calibration", None)
        self._ref_reg = reference_registration(ref_cal, self.size_wh)
        self._anchor_reg = Registration(getattr(recording, "anchor_calibration", None), self.size_wh)
        self._cache: dict[int, np.ndarray] = {}

    def reference_pixels(self, i: int) -> np.ndarray:
        pixels = np.asarray(self.reference[i].pixels, dtype=np.float32)
        return pixels if self._ref_reg is None else self._ref_reg.apply(pixels)

    def registered_anchor(self, k: int) -> np.ndarray:
        if k not in self._cache:
            self._cache[k] = self._anchor_reg.apply(np.asarray(self.anchors[k].pixels, dtype=np.float32))
        return self._cache[k]

    def anchor_valid(self) -> np.ndarray:
        return self._anchor_reg.valid_mask

    def ground_truth(self, i: int) -> np.ndarray | None:
        return None if self._gt is None else np.asarray(self._gt[i], dtype=np.float32)


def _anchors(source: FrameSource, low: int, high: int) -> Anchors:
    lo, hi = source.anchors[low], source.anchors[high]
    return Anchors(source.registered_anchor(low), source.registered_anchor(high),
                   float(lo.exposure.scale), float(hi.exposure.scale), int(lo.stamp_ns), int(hi.stamp_ns),
                   source.anchor_valid())


def assemble_window(source: FrameSource, plan: WindowPlan, start: int | None = None) -> Window:
    """Load and register the pixels of one planned window.

    Args:
        start: the window's position to record (default: its first reference index).
    """
    frames = [source.reference[i] for i in plan.reference]
    reference = np.stack([source.reference_pixels(i) for i in plan.reference]).astype(np.float32, copy=False)
    gts = [source.ground_truth(i) for i in plan.reference]
    gt = None
    if all(g is not None for g in gts):
        gt = np.stack(gts).astype(np.float32, copy=False)  # type: ignore[arg-type]
    alt = _anchors(source, plan.alt_low, plan.alt_high) if plan.has_alt else None  # type: ignore[arg-type]
    return Window(
        reference=reference,
        ref_scale=np.array([f.exposure.scale for f in frames], dtype=np.float64),
        stamps_ns=np.array([f.stamp_ns for f in frames], dtype=np.int64),
        anchors=_anchors(source, plan.low, plan.high),
        gt=gt,
        alt_anchors=alt,
        source=source.name,
        start=plan.reference[0] if start is None else start,
    )


def make_windows(recording: object, T: int = DEFAULT_T, stride: int | None = None, *,  # noqa: N803
                 alt: bool = True, require_alt: bool = False, max_gap_s: float = 0.2,
                 max_age_s: float = 0.5, split_gaps: bool = True, name: str | None = None) -> list[Window]:
    """All windows of an in-memory recording (see the module docstring).

    Args:
        recording: a ``RigSequence``, ``Recording``, ``StoredSequence`` or alike.
        T, stride, max_gap_s, max_age_s, split_gaps: as ``plan_windows``.
        alt: fill ``alt_anchors``; require_alt: drop windows without an alternative pair.
        name: ``Window.source`` (default: the recording's name / scene name).
    """
    source = recording if isinstance(recording, RecordingSource) else RecordingSource(recording, name)
    plans = plan_windows(source.reference, source.anchors, T, stride, max_gap_s=max_gap_s,
                         max_age_s=max_age_s, split_gaps=split_gaps, alt=alt)
    if require_alt:
        plans = [p for p in plans if p.has_alt]
    return [assemble_window(source, p) for p in plans]


def per_frame_windows(recording: object, **kwargs: object) -> list[Window]:
    """Windows for a per-frame model (DCS/EAFNet): T = 1, every reference frame that has a
    pair, with it (``reference`` is (1, H, W, 3))."""
    return make_windows(recording, 1, **kwargs)  # type: ignore[arg-type]
