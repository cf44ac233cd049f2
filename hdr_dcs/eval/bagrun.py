"""Running the reconstruction pipeline over a rosbag2 bag, offline and without rclpy.

``run_bag(path, backend)`` returns a :class:`BagRun`: iterate it for one :class:`BagFrame`
per reconstructed reference frame, in stamp order, or iterate ``BagRun.events()`` for
every message of the bag (raw CDR bytes, for verbatim copying) interleaved with the
frames, all in log-time order (what ``hdr-dcs reconstruct`` writes).

What the pipeline is fed, in the bag's log-time order, exactly as the live node would
receive it:

- images of both cameras, converted with ``io.image_msg.to_rgb_unit`` (codes divided by
  their maximum, or ``max_code``) -> ``add_image``;
- ExposureInfos -> ``add_exposure`` (exposure_time_us * 1e-6, as they are: a NaN or a
  non-positive exposure is the grouper's "bad exposure" drop);
- CameraInfos -> ``set_calibration`` (an all-zero K means uncalibrated, SPEC.md; an
  unchanged CameraInfo is not set again);
- then ``flush()`` at the end of the bag.

Malformed inputs are counted per topic and reason in ``RunStats.rejected`` and skipped,
never fatal: a message that does not deserialise, an image with an unsupported encoding,
a wrong data length or NaN pixels, an image whose size differs from the first accepted
image of its camera ("size WxH, expected ..."), an invalid CameraInfo. The frame such an
image belonged to then ends as the grouper's "missing image" drop, so both counts tell
the story. Only a bag from which no frame at all can be reconstructed raises
``InputError`` (at the end, naming what was rejected and dropped).

Ground truth: with ``ground_truth=True``, /dcs/ground_truth/hdr messages (32FC3) are
attached to the frame of the same stamp (``BagFrame.ground_truth``; None when the bag has
none for it). A frame whose ground truth has not been read yet waits for it as long as
the ground-truth stream has not passed its stamp (at most 256 frames).

The "recorded" pseudo-backend scores what a bag already holds: it reads /dcs/hdr/image
instead of running a pipeline. The "reference_only" backend is the baseline
f^-1(L_ref) / (t g) of the reference frame alone (``ReferenceOnlyBackend``), grouped
exactly like the others.

Log times (``BagFrame.log_time_ns``): the log time of the reference image the frame was
reconstructed from, i.e. where the frame sits on the input bag's timeline; for bags whose
log times are the stamps (``hdr-dcs generate``, ``io.bag.BagWriter``) that is the stamp.
``events()`` delivers everything in non-decreasing log-time order with bounded memory: a
message is held back only while a reference frame logged at or before it is still inside
the pipeline (the grouper's latency, ~0.1-0.2 s of messages), and at most
``max_buffer_bytes``; past that cap, messages are let out early and a later frame may go
out of order (``RunStats.out_of_order``; rosbag2 storages accept that, readers sort).

Memory: bounded by the pipeline's own buffers plus the hold-back above; nothing keeps the
whole bag.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import BACKENDS, Backend, HdrOutput, make_backend
from ..core.calibration import CameraCalibration
from ..core.errors import ImageEncodingError, InputError
from ..core.grouper import DropReason, GrouperStats
from ..core.merge import reference_only
from ..core.photometry import DEFAULT_RESPONSE, CameraResponse
from ..core.types import FrameGroup
from ..io.bag import (
    CAMERA_INFO,
    EXPOSURE_INFO,
    IMAGE,
    BagReader,
    RawBagMessage,
    Topics,
    calibration_from_msg,
    hdr_from_msg,
    stamp_ns_of,
)
from ..io.image_msg import reject_reason, to_rgb_unit
from ..pipeline import CAMERAS, PipelineConfig, PipelineOutput, ReconstructionPipeline

__all__ = [
    "EVAL_BACKENDS",
    "RECORDED",
    "REFERENCE_ONLY",
    "BagFrame",
    "BagRun",
    "ReferenceOnlyBackend",
    "RunStats",
    "check_backend",
    "make_eval_backend",
    "run_bag",
]

#: Pseudo-backend: the HDR frames recorded in the bag (/dcs/hdr/image), no pipeline.
RECORDED = "recorded"
#: Baseline backend: the reference frame alone, f^-1(L_ref) / (t g).
REFERENCE_ONLY = "reference_only"
#: Every name ``BagRun`` accepts.
EVAL_BACKENDS = (*BACKENDS, REFERENCE_ONLY, RECORDED)

_GT_HOLD_MAX = 256          # frames waiting for their ground truth
_GT_KEEP_MAX = 256          # ground-truth frames waiting for their output
_DECIDED_KEEP = 4096        # reference stamps remembered as decided
_STALE_NS = 10_000_000_000  # an in-flight reference frame older than this (log time) is forgotten


# --- backends -------------------------------------------------------------------------------

class ReferenceOnlyBackend:
    """The reference-only baseline as a Backend: f^-1(L_ref) / (t g), anchors ignored."""

    name = REFERENCE_ONLY
    latency_frames = 0

    def __init__(self, response: CameraResponse = DEFAULT_RESPONSE) -> None:
        self.response = response

    def reset(self) -> None:
        pass

    def push(self, group: FrameGroup) -> list[HdrOutput]:
        ref = group.reference
        return [HdrOutput(reference_only(ref, self.response), ref.stamp_ns, ref.sequence_id,
                          {"anchors_used": False})]

    def flush(self) -> list[HdrOutput]:
        return []


def make_eval_backend(name: str, **options: Any) -> Backend:
    """``backends.make_backend`` plus "reference_only". Raises InputError (one line) for an
    unknown or unavailable backend; "recorded" is not a backend (``BagRun`` handles it)."""
    if name == REFERENCE_ONLY:
        return ReferenceOnlyBackend(**options)
    if name == RECORDED:
        raise InputError(f"{RECORDED!r} scores the HDR frames recorded in a bag; it is not a backend")
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; choose one of {', '.join(EVAL_BACKENDS)}")
    return make_backend(name, **options)


def check_backend(name: str, *, recorded: bool = True, **options: Any) -> None:
    """Raise InputError now if ``name`` cannot be run (unknown, or not available here);
    ``recorded``: whether the "recorded" pseudo-backend is acceptable."""
    if name == RECORDED and not recorded:
        names = ", ".join(n for n in EVAL_BACKENDS if n != RECORDED)
        raise InputError(f"{RECORDED!r} only scores recorded frames (hdr-dcs evaluate); "
                         f"choose one of {names}")
    if name != RECORDED:
        make_eval_backend(name, **options)


class _ObservedBackend:
    """A backend wrapper that shows every FrameGroup (registered anchors) to a callback."""

    def __init__(self, backend: Backend, on_group: Callable[[FrameGroup], None]) -> None:
        self._backend = backend
        self._on_group = on_group
        self.name = getattr(backend, "name", type(backend).__name__)

    @property
    def latency_frames(self) -> int:
        return self._backend.latency_frames

    def reset(self) -> None:
        self._backend.reset()

    def push(self, group: FrameGroup) -> list[HdrOutput]:
        self._on_group(group)
        return self._backend.push(group)

    def flush(self) -> list[HdrOutput]:
        return self._backend.flush()


# --- results --------------------------------------------------------------------------------

@dataclass(frozen=True)
class BagFrame:
    """One reconstructed (or recorded) reference frame.

    Attributes:
        index: 0-based position in the output sequence.
        output: the pipeline's output (``tonemapped`` is None for "recorded" frames and
            when tone mapping is disabled).
        log_time_ns: log time to write it with: the log time of its reference image.
        ground_truth: (H, W, 3) float32 radiance of the same stamp, when collected and present.
    """

    index: int
    output: PipelineOutput
    log_time_ns: int
    ground_truth: np.ndarray | None = None

    @property
    def stamp_ns(self) -> int:
        return self.output.stamp_ns

    @property
    def hdr(self) -> np.ndarray:
        return self.output.hdr

    @property
    def tonemapped(self) -> np.ndarray | None:
        return self.output.tonemapped

    @property
    def frame_id(self) -> str:
        return self.output.frame_id

    @property
    def info(self) -> dict:
        return self.output.info


@dataclass
class RunStats:
    """What happened during a run (complete once the iteration has ended).

    Attributes:
        backend: the backend's name.
        messages: messages read from the bag.
        reference_images: reference image messages read (the progress unit).
        frames_out: frames delivered.
        ground_truth_frames: ground-truth messages read (when collected).
        ground_truth_matched: delivered frames with a ground truth attached.
        rejected: {topic: {reason: count}} of inputs that were not fed to the pipeline.
        rejected_examples: {"topic: reason": the first error message}.
        grouper: the grouper's counters at the end (None for "recorded").
        registration_failures: groups whose anchors could not be registered.
        min_exposure_scale: smallest finite positive t * g of any ExposureInfo read.
        decode_s: time spent deserialising and converting messages.
        pipeline_s: time spent inside the pipeline (grouping, registration, backend,
            tone mapping).
        wall_s: total time of the run, bag reading included.
        out_of_order: frames or messages ``events()`` let out before an earlier one.
    """

    backend: str
    messages: int = 0
    reference_images: int = 0
    frames_out: int = 0
    ground_truth_frames: int = 0
    ground_truth_matched: int = 0
    rejected: dict[str, Counter] = field(default_factory=dict)
    rejected_examples: dict[str, str] = field(default_factory=dict)
    grouper: GrouperStats | None = None
    registration_failures: int = 0
    min_exposure_scale: float | None = None
    decode_s: float = 0.0
    pipeline_s: float = 0.0
    wall_s: float = 0.0
    out_of_order: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(sum(c.values()) for c in self.rejected.values())

    @property
    def per_frame_ms(self) -> float | None:
        """Pipeline time per delivered frame, ms (None without frames or pipeline)."""
        if not self.frames_out or self.grouper is None:
            return None
        return 1e3 * self.pipeline_s / self.frames_out

    def drops(self) -> dict[str, dict[str, int]]:
        """The grouper's drops: {camera: {reason: count}}."""
        if self.grouper is None:
            return {}
        return {cam: dict(sorted(self.grouper.drops_by_reason(cam).items())) for cam in CAMERAS}

    def reject(self, topic: str, reason: str, exc: BaseException | None = None) -> None:
        self.rejected.setdefault(topic, Counter())[reason] += 1
        key = f"{topic}: {reason}"
        if exc is not None and key not in self.rejected_examples:
            self.rejected_examples[key] = _one_line(exc)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able counters and timings."""
        out: dict[str, Any] = {
            "backend": self.backend,
            "messages": self.messages,
            "reference_images": self.reference_images,
            "frames_out": self.frames_out,
            "rejected_inputs": {t: dict(sorted(c.items())) for t, c in sorted(self.rejected.items())},
            "rejected_examples": dict(sorted(self.rejected_examples.items())),
            "timing": {"wall_s": self.wall_s, "decode_s": self.decode_s, "pipeline_s": self.pipeline_s,
                       "per_frame_ms": self.per_frame_ms},
        }
        if self.ground_truth_frames:
            out["ground_truth_frames"] = self.ground_truth_frames
            out["ground_truth_matched"] = self.ground_truth_matched
        g = self.grouper
        if g is not None:
            out["grouper"] = {
                "frames_in": dict(g.frames_in),
                "groups_out": g.groups_out,
                "groups_without_anchors": g.groups_without_anchors,
                "pairs_formed": g.pairs_formed,
                "drops": self.drops(),
                "sequence_gaps": dict(g.sequence_gaps),
                "anchor_stalled": g.anchor_stalled,
                "early_releases": g.early_releases,
                "timeouts": g.timeouts,
                "anchor_age_mean_s": g.anchor_age_mean_s,
                "anchor_age_max_s": g.anchor_age_max_s,
            }
            out["registration_failures"] = self.registration_failures
        if self.out_of_order:
            out["out_of_order"] = self.out_of_order
        return out

    def describe_losses(self) -> str:
        """One line: drops by reason and rejected inputs, or "no drops"."""
        parts = [f"{cam} {why} {n}" for cam, reasons in self.drops().items() for why, n in reasons.items()]
        if self.grouper is not None and self.grouper.groups_without_anchors:
            parts.append(f"groups without anchors {self.grouper.groups_without_anchors}")
        parts += [f"rejected {topic} ({why}) {n}" for topic, c in sorted(self.rejected.items())
                  for why, n in sorted(c.items())]
        return ", ".join(parts) if parts else "no drops"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _frame_bytes(output: PipelineOutput) -> int:
    return output.hdr.nbytes + (output.tonemapped.nbytes if output.tonemapped is not None else 0)


def _zero_k(msg: Any) -> bool:
    try:
        return not np.any(np.asarray(msg.k, dtype=np.float64))
    except (AttributeError, TypeError, ValueError):
        return False


# --- the run --------------------------------------------------------------------------------

def run_bag(path: str | Path, backend: str | Backend = "classical", topics: Topics | None = None,
            **options: Any) -> BagRun:
    """A :class:`BagRun` of ``backend`` over the bag at ``path`` (opened now: a missing or
    unreadable bag raises ``BagError`` here). Keyword options as ``BagRun``."""
    return BagRun(path, backend, topics, **options)


class BagRun:
    """The pipeline over one bag; iterate once (``iter`` or ``events()``).

    Args:
        path: the bag (folder, or a bare .mcap / .db3).
        backend: a name of ``EVAL_BACKENDS`` or a Backend instance.
        topics: topic names (SPEC.md defaults).
        config: pipeline settings (grouper, tone mapping, backend options).
        max_code: largest image code when the cameras do not fill their dtype (12-bit in
            mono16: 4095); None: the dtype's maximum.
        ground_truth: attach /dcs/ground_truth/hdr frames by stamp.
        progress: called with 1 per reference image read.
        on_group: called with every FrameGroup given to the backend (anchors registered).
        max_buffer_bytes: hold-back cap of ``events()``.
    Raises:
        BagError: missing or unreadable bag.
        InputError: an unknown or unavailable backend; a pipeline topic with the wrong
            message type; no reference images (or, for "recorded", no /dcs/hdr/image).
    """

    def __init__(self, path: str | Path, backend: str | Backend = "classical", topics: Topics | None = None,
                 *, config: PipelineConfig | None = None, max_code: int | None = None,
                 ground_truth: bool = False, progress: Callable[[int], None] | None = None,
                 on_group: Callable[[FrameGroup], None] | None = None,
                 max_buffer_bytes: int = 256 << 20) -> None:
        self.path = Path(path)
        self.topics = topics if topics is not None else Topics()
        self.config = config if config is not None else PipelineConfig()
        self.max_code = max_code
        self.progress = progress
        self.max_buffer_bytes = int(max_buffer_bytes)
        if isinstance(backend, str):
            self.backend_name = backend
            self._backend: Backend | None = (None if backend == RECORDED
                                             else make_eval_backend(backend, **self.config.backend_options))
        else:
            self._backend = backend
            self.backend_name = str(getattr(backend, "name", type(backend).__name__))
        if self._backend is not None and on_group is not None:
            self._backend = _ObservedBackend(self._backend, on_group)
        self.reader = BagReader(self.path)
        try:
            self.bag_topics = self.reader.topics()
            self._check_topics()
        except BaseException:
            self.reader.close()
            raise
        self.has_ground_truth = self._count(self.topics.ground_truth) > 0
        self.ground_truth = bool(ground_truth) and self.has_ground_truth
        self.stats = RunStats(self.backend_name)
        self._started = False

    # ------------------------------------------------------------------ metadata

    @property
    def recorded(self) -> bool:
        return self._backend is None

    def _count(self, topic: str) -> int:
        return self.bag_topics.get(topic, ("", 0))[1]

    @property
    def expected_frames(self) -> int:
        """Reference images in the bag ("recorded": HDR frames): the most frames a run yields."""
        return self._count(self.topics.hdr_image if self.recorded else self.topics.reference_image)

    def _check_topics(self) -> None:
        t = self.topics
        expected = {t.reference_image: IMAGE, t.anchor_image: IMAGE, t.reference_exposure: EXPOSURE_INFO,
                    t.anchor_exposure: EXPOSURE_INFO, t.reference_info: CAMERA_INFO,
                    t.anchor_info: CAMERA_INFO, t.ground_truth: IMAGE, t.hdr_image: IMAGE}
        for topic, msgtype in expected.items():
            if topic in self.bag_topics and self.bag_topics[topic][0] != msgtype:
                raise InputError(f"{self.path}: topic {topic} carries {self.bag_topics[topic][0]}, "
                                 f"expected {msgtype}")
        needed = [t.hdr_image] if self.recorded else [t.reference_image, t.reference_exposure]
        for topic in needed:
            if self._count(topic) == 0:
                what = "recorded HDR frames" if self.recorded else "nothing to reconstruct"
                raise InputError(f"{self.path} has no {topic} messages ({what}; remap topics?)")

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[BagFrame]:
        for item in self._run(copy_all=False):
            assert isinstance(item, BagFrame)
            yield item

    def events(self) -> Iterator[RawBagMessage | BagFrame]:
        """Every message of the bag (raw, for ``BagWriter.copy_message``) and every frame,
        in non-decreasing log-time order (see the module docstring)."""
        return self._run(copy_all=True)

    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> BagRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_topics(self) -> list[str]:
        t = self.topics
        if self.recorded:
            wanted = [t.hdr_image, t.reference_exposure, t.anchor_exposure]
        else:
            wanted = [t.reference_image, t.anchor_image, t.reference_exposure, t.anchor_exposure,
                      t.reference_info, t.anchor_info]
        if self.ground_truth:
            wanted.append(t.ground_truth)
        return wanted

    def _run(self, copy_all: bool) -> Iterator[RawBagMessage | BagFrame]:
        if self._started:
            raise RuntimeError("a BagRun can be iterated only once")
        self._started = True
        wall0 = time.perf_counter()
        self._init_state(copy_all)
        t = self.topics
        handlers: dict[str, Callable[[RawBagMessage], None]] = {}
        if self.recorded:
            handlers[t.hdr_image] = self._on_recorded
            for cam in CAMERAS:
                handlers[t.exposure(cam)] = self._exposure_handler(cam)
        else:
            self._pipeline = ReconstructionPipeline(self.config, backend=self._backend)
            for cam in CAMERAS:
                handlers[t.image(cam)] = self._image_handler(cam)
                handlers[t.exposure(cam)] = self._exposure_handler(cam)
                handlers[t.info(cam)] = self._info_handler(cam)
        if self.ground_truth:
            handlers[t.ground_truth] = self._on_ground_truth
        stats = self.stats
        try:
            for raw in self.reader.raw_messages(None if copy_all else self._read_topics()):
                stats.messages += 1
                self._position = raw.log_time_ns
                if copy_all:
                    self._hold(raw.log_time_ns, raw, len(raw.data))
                handler = handlers.get(raw.topic)
                if handler is not None:
                    handler(raw)
                yield from self._release(final=False)
            if self._pipeline is not None:
                self._feed(self._pipeline.flush)
            self._resolve_held(final=True)
            yield from self._release(final=True)
            if self._pipeline is not None:
                stats.grouper = self._pipeline.grouper_stats
                stats.registration_failures = self._pipeline.registration_failures
            stats.wall_s = time.perf_counter() - wall0
            if stats.frames_out == 0:
                raise InputError(self._nothing_usable())
        finally:
            stats.wall_s = time.perf_counter() - wall0
            self.reader.close()

    def _nothing_usable(self) -> str:
        s = self.stats
        if self.recorded:
            return f"{self.path}: no usable {self.topics.hdr_image} frame ({s.describe_losses()})"
        if self._pipeline is not None:
            s.grouper = self._pipeline.grouper_stats
        return (f"{self.path}: no frame could be reconstructed from {s.reference_images} reference images "
                f"({s.describe_losses()})")

    # ------------------------------------------------------------------ state

    def _init_state(self, copy_all: bool) -> None:
        self._copy_all = copy_all
        self._pipeline: ReconstructionPipeline | None = None
        self._position = 0
        self._sizes: dict[str, tuple[int, ...]] = {}
        self._calibration: dict[str, CameraCalibration | None] = {}
        # reference stamps inside the pipeline -> the log time their output will get
        self._inflight: dict[int, int] = {}
        self._decided: OrderedDict[int, None] = OrderedDict()
        # outputs waiting for their ground truth, and ground truth waiting for its output
        self._held: deque[tuple[PipelineOutput, int]] = deque()
        self._gt: OrderedDict[int, np.ndarray] = OrderedDict()
        self._gt_latest: int | None = None
        # frames (and, with copy_all, messages) ready to go out
        self._heap: list[tuple[int, int, Any]] = []
        self._fifo: deque[BagFrame] = deque()
        self._heap_bytes = 0
        self._seq = 0
        self._last_out: int | None = None
        self._index = 0

    def _deserialize(self, raw: RawBagMessage) -> Any | None:
        try:
            return self.reader.typestore.deserialize_cdr(raw.data, raw.msgtype)
        except Exception as exc:
            self.stats.reject(raw.topic, "undecodable message", exc)
            return None

    def _stamp(self, raw: RawBagMessage, msg: Any) -> int | None:
        try:
            return stamp_ns_of(msg)
        except InputError as exc:
            self.stats.reject(raw.topic, "no header stamp", exc)
            return None

    # ------------------------------------------------------------------ handlers

    def _image_handler(self, camera: str) -> Callable[[RawBagMessage], None]:
        def handle(raw: RawBagMessage) -> None:
            t0 = time.perf_counter()
            msg = self._deserialize(raw)
            stamp = self._stamp(raw, msg) if msg is not None else None
            if camera == "reference":
                self.stats.reference_images += 1
                if self.progress is not None:
                    self.progress(1)
            if stamp is None:
                return
            try:
                pixels = to_rgb_unit(msg, max_code=self.max_code)
            except InputError as exc:
                self.stats.reject(raw.topic, reject_reason(msg, exc), exc)
                return
            finally:
                self.stats.decode_s += time.perf_counter() - t0
            size = self._sizes.setdefault(camera, pixels.shape)
            if pixels.shape != size:
                reason = f"size {pixels.shape[1]}x{pixels.shape[0]}, expected {size[1]}x{size[0]}"
                self.stats.reject(raw.topic, reason, InputError(f"image at {stamp} ns: {reason}"))
                return
            if camera == "reference":
                self._track(stamp, raw.log_time_ns, image=True)
            frame_id = str(getattr(msg.header, "frame_id", ""))
            pipeline = self._pipeline
            assert pipeline is not None
            self._feed(lambda: pipeline.add_image(camera, stamp, pixels, frame_id))
        return handle

    def _exposure_handler(self, camera: str) -> Callable[[RawBagMessage], None]:
        def handle(raw: RawBagMessage) -> None:
            t0 = time.perf_counter()
            msg = self._deserialize(raw)
            stamp = self._stamp(raw, msg) if msg is not None else None
            if stamp is None:
                return
            try:
                role = int(msg.role)
                exposure_s = float(msg.exposure_time_us) * 1e-6
                gain_db = float(msg.gain_db)
                sequence_id = int(msg.sequence_id)
                frame_id = str(msg.header.frame_id)
            except (AttributeError, TypeError, ValueError, OverflowError) as exc:
                self.stats.reject(raw.topic, "malformed ExposureInfo", exc)
                return
            finally:
                self.stats.decode_s += time.perf_counter() - t0
            if math.isfinite(exposure_s) and exposure_s > 0 and math.isfinite(gain_db):
                scale = exposure_s * 10.0 ** (gain_db / 20.0)
                if scale > 0 and math.isfinite(scale):
                    current = self.stats.min_exposure_scale
                    self.stats.min_exposure_scale = scale if current is None else min(current, scale)
            pipeline = self._pipeline
            if pipeline is None:
                return
            if camera == "reference":
                self._track(stamp, raw.log_time_ns, image=False)
            self._feed(lambda: pipeline.add_exposure(camera, stamp, role, exposure_s, gain_db,
                                                     sequence_id, frame_id))
        return handle

    def _info_handler(self, camera: str) -> Callable[[RawBagMessage], None]:
        def handle(raw: RawBagMessage) -> None:
            msg = self._deserialize(raw)
            if msg is None:
                return
            calibration: CameraCalibration | None
            if _zero_k(msg):
                calibration = None      # SPEC.md: all-zero K = uncalibrated (identity)
            else:
                try:
                    calibration = calibration_from_msg(msg, camera)
                except InputError as exc:
                    self.stats.reject(raw.topic, "invalid CameraInfo", exc)
                    return
            if camera in self._calibration and self._calibration[camera] == calibration:
                return
            self._calibration[camera] = calibration
            assert self._pipeline is not None
            self._pipeline.set_calibration(camera, calibration)
        return handle

    def _on_ground_truth(self, raw: RawBagMessage) -> None:
        t0 = time.perf_counter()
        msg = self._deserialize(raw)
        stamp = self._stamp(raw, msg) if msg is not None else None
        if stamp is None:
            return
        try:
            hdr = hdr_from_msg(msg)
        except InputError as exc:
            self.stats.reject(raw.topic, "bad ground truth", exc)
            return
        finally:
            self.stats.decode_s += time.perf_counter() - t0
        size = self._sizes.setdefault("ground_truth", hdr.shape)
        if hdr.shape != size:
            reason = f"size {hdr.shape[1]}x{hdr.shape[0]}, expected {size[1]}x{size[0]}"
            self.stats.reject(raw.topic, reason, InputError(f"ground truth at {stamp} ns: {reason}"))
            return
        self.stats.ground_truth_frames += 1
        self._gt[stamp] = hdr
        while len(self._gt) > _GT_KEEP_MAX:
            self._gt.popitem(last=False)
        self._gt_latest = stamp if self._gt_latest is None else max(self._gt_latest, stamp)
        self._resolve_held(final=False)

    def _on_recorded(self, raw: RawBagMessage) -> None:
        t0 = time.perf_counter()
        msg = self._deserialize(raw)
        stamp = self._stamp(raw, msg) if msg is not None else None
        if stamp is None:
            return
        self.stats.reference_images += 1
        if self.progress is not None:
            self.progress(1)
        try:
            hdr = hdr_from_msg(msg)
        except InputError as exc:
            encoding = getattr(msg, "encoding", None)
            reason = (f"encoding {encoding!r}, expected '32FC3'" if encoding != "32FC3"
                      else "malformed image" if isinstance(exc, ImageEncodingError) else "non-finite pixels")
            self.stats.reject(raw.topic, reason, exc)
            return
        finally:
            self.stats.decode_s += time.perf_counter() - t0
        size = self._sizes.setdefault("recorded", hdr.shape)
        if hdr.shape != size:
            reason = f"size {hdr.shape[1]}x{hdr.shape[0]}, expected {size[1]}x{size[0]}"
            self.stats.reject(raw.topic, reason, InputError(reason))
            return
        output = PipelineOutput(hdr, None, stamp, str(msg.header.frame_id), {})
        self._held.append((output, raw.log_time_ns))
        self._resolve_held(final=False)

    # ------------------------------------------------------------------ pipeline

    def _feed(self, call: Callable[[], list[PipelineOutput]]) -> None:
        pipeline = self._pipeline
        assert pipeline is not None
        t0 = time.perf_counter()
        outputs = call()
        self.stats.pipeline_s += time.perf_counter() - t0
        for drop in pipeline.pop_drops():
            # a duplicate leaves its frame in flight; every other reference drop decides it
            if drop.camera == "reference" and drop.reason != DropReason.DUPLICATE:
                self._decide(drop.stamp_ns)
        for output in outputs:
            log_time = self._inflight.get(output.stamp_ns, self._position)
            self._held.append((output, log_time))
        self._resolve_held(final=False)

    def _track(self, stamp: int, log_time: int, image: bool) -> None:
        """A reference message entered the pipeline: its frame is in flight."""
        if stamp in self._decided:
            return
        if image or stamp not in self._inflight:
            self._inflight[stamp] = log_time
        if len(self._inflight) > 256:     # frames the pipeline never decided (should not happen)
            horizon = self._position - _STALE_NS
            for s in [s for s, lt in self._inflight.items() if lt < horizon]:
                del self._inflight[s]

    def _decide(self, stamp: int) -> None:
        self._inflight.pop(stamp, None)
        self._decided[stamp] = None
        while len(self._decided) > _DECIDED_KEEP:
            self._decided.popitem(last=False)

    def _resolve_held(self, final: bool) -> None:
        """Deliver held outputs, in order, once their ground truth is known (or cannot come)."""
        while self._held:
            output, log_time = self._held[0]
            stamp = output.stamp_ns
            gt = None
            if self.ground_truth:
                gt = self._gt.get(stamp)
                waiting = gt is None and (self._gt_latest is None or self._gt_latest < stamp)
                if waiting and not final and len(self._held) <= _GT_HOLD_MAX:
                    return
                if gt is not None:
                    self.stats.ground_truth_matched += 1
                while self._gt and next(iter(self._gt)) <= stamp:   # used, or of dropped frames
                    self._gt.popitem(last=False)
            self._held.popleft()
            self._decide(stamp)
            frame = BagFrame(self._index, output, log_time, gt)
            self._index += 1
            self.stats.frames_out += 1
            self._hold(log_time, frame, _frame_bytes(output))

    # ------------------------------------------------------------------ ordering

    def _hold(self, log_time: int, item: Any, size: int) -> None:
        if not self._copy_all:          # frames only: delivered in output order, at once
            self._fifo.append(item)
            return
        heapq.heappush(self._heap, (log_time, self._seq, item))
        self._seq += 1
        self._heap_bytes += size

    def _watermark(self) -> int:
        """Nothing still to come can be logged before this."""
        mark = self._position
        if self._inflight:
            mark = min(mark, min(self._inflight.values()))
        if self._held:
            mark = min(mark, min(lt for _, lt in self._held))
        return mark

    def _release(self, final: bool) -> Iterator[RawBagMessage | BagFrame]:
        while self._fifo:
            yield self._fifo.popleft()
        heap = self._heap
        if not heap:
            return
        mark = None if final else self._watermark()
        while heap and (mark is None or heap[0][0] <= mark or self._heap_bytes > self.max_buffer_bytes):
            log_time, _, item = heapq.heappop(heap)
            self._heap_bytes -= (len(item.data) if isinstance(item, RawBagMessage)
                                 else _frame_bytes(item.output))
            if self._last_out is not None and log_time < self._last_out:
                self.stats.out_of_order += 1
            else:
                self._last_out = log_time
            yield item
