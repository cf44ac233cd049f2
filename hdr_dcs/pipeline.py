"""The reconstruction pipeline shared by the live node and the offline bag tools.

Messages in (already converted to numpy: images as RGB in [0, 1]), reconstructed frames
out: the grouper pairs images with their ExposureInfo and assigns anchor pairs, anchors
are registered into the reference grid from the anchor camera's CameraInfo (maps cached
per pair of frames and per calibration), the backend reconstructs, the display tone
mapper renders. The node runs it behind a queue, the bag tools run it on a bag's
messages in log-time order: same inputs, same outputs.

Never imports rclpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .backends import Backend, HdrOutput, make_backend
from .core.calibration import CameraCalibration
from .core.display_tonemap import DisplayToneMapper, DisplayToneMapperConfig
from .core.errors import InputError
from .core.grouper import Drop, FrameGrouper, GrouperConfig, GrouperStats
from .core.registration import RegistrationCache
from .core.types import AnchorPair, Frame, FrameGroup, Role

CAMERAS = ("reference", "anchor")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything the pipeline needs besides its inputs.

    Attributes:
        backend: "classical", "location" or "eafnet".
        backend_options: keyword arguments for the backend (device, weights, ...).
        grouper: frame grouping settings.
        tonemap: display tone mapper settings.
        tonemapped: whether to render /dcs/hdr/tonemapped at all.
    """

    backend: str = "classical"
    backend_options: dict = field(default_factory=dict)
    grouper: GrouperConfig = field(default_factory=GrouperConfig)
    tonemap: DisplayToneMapperConfig = field(default_factory=DisplayToneMapperConfig)
    tonemapped: bool = True


@dataclass(frozen=True)
class PipelineOutput:
    """One reconstructed reference frame.

    Attributes:
        hdr: (H, W, 3) float32 RGB radiance, SPEC.md units.
        tonemapped: (H, W, 3) uint8 BGR, or None when disabled.
        stamp_ns: the reference frame's stamp.
        frame_id: the reference frame's frame_id.
        info: per-frame diagnostics from the backend and the grouper (anchor age, ...).
    """

    hdr: np.ndarray
    tonemapped: np.ndarray | None
    stamp_ns: int
    frame_id: str
    info: dict


class ReconstructionPipeline:
    """Grouping, registration, reconstruction and tone mapping of a live or recorded rig."""

    def __init__(self, config: PipelineConfig | None = None, backend: Backend | None = None) -> None:
        self.config = config or PipelineConfig()
        self.backend = backend or make_backend(self.config.backend, **self.config.backend_options)
        self.grouper = FrameGrouper(self.config.grouper)
        self.registration = RegistrationCache()
        self.tonemapper = DisplayToneMapper(self.config.tonemap)
        self._calibration: dict[str, CameraCalibration | None] = {c: None for c in CAMERAS}
        self._frame_ids: dict[int, str] = {}
        self._registered: tuple[tuple, AnchorPair] | None = None
        self.outputs = 0
        self.registration_failures = 0

    # ------------------------------------------------------------------ inputs

    def set_calibration(self, camera: str, calibration: CameraCalibration | None) -> None:
        """The CameraInfo of ``camera``; None or an all-zero K = uncalibrated (identity)."""
        if camera not in CAMERAS:
            raise InputError(f"unknown camera {camera!r}")
        self._calibration[camera] = calibration

    def add_image(self, camera: str, stamp_ns: int, pixels: np.ndarray, frame_id: str = "") -> list[PipelineOutput]:
        """An image as (H, W, 3) float32 RGB in [0, 1] (see io.image_msg.to_rgb_unit)."""
        return self._run(self.grouper.add_image(camera, stamp_ns, pixels, frame_id))

    def add_exposure(self, camera: str, stamp_ns: int, role: Role | int, exposure_time_s: float, gain_db: float,
                     sequence_id: int, frame_id: str = "") -> list[PipelineOutput]:
        """An ExposureInfo (exposure_time_s = exposure_time_us * 1e-6)."""
        return self._run(self.grouper.add_exposure(camera, stamp_ns, role, exposure_time_s, gain_db,
                                                   sequence_id, frame_id))

    def flush(self) -> list[PipelineOutput]:
        """End of stream: release every buffered frame and whatever the backend holds."""
        outputs = self._run(self.grouper.flush())
        return outputs + self._finish(self.backend.flush())

    def reset(self) -> None:
        """Forget all state (a cut, a bag loop, time jumping backwards)."""
        self.grouper.reset()
        self.backend.reset()
        self.tonemapper.reset()
        self._frame_ids.clear()
        self._registered = None

    # ------------------------------------------------------------------ state

    @property
    def grouper_stats(self) -> GrouperStats:
        return self.grouper.stats

    def pop_drops(self) -> list[Drop]:
        return self.grouper.pop_drops()

    @property
    def latency_frames(self) -> int:
        return self.backend.latency_frames

    # ------------------------------------------------------------------ internals

    def _register(self, pair: AnchorPair, shape: tuple[int, ...]) -> AnchorPair:
        """The pair warped into the reference grid; cached, as ~5 groups share one pair."""
        calib = self._calibration["anchor"]
        key = (pair.low.stamp_ns, pair.high.stamp_ns, id(calib))
        if self._registered is not None and self._registered[0] == key:
            return self._registered[1]
        reg = self.registration.get(calib, (shape[1], shape[0]))
        registered = AnchorPair(replace(pair.low, pixels=reg.apply(pair.low.pixels)),
                                replace(pair.high, pixels=reg.apply(pair.high.pixels)))
        self._registered = (key, registered)
        return registered

    def _run(self, groups: list[FrameGroup]) -> list[PipelineOutput]:
        results: list[HdrOutput] = []
        for group in groups:
            self._frame_ids[group.reference.stamp_ns] = group.reference.frame_id
            if group.anchors is not None:
                try:
                    group = replace(group, anchors=self._register(group.anchors, group.reference.pixels.shape))
                except InputError as exc:
                    self.registration_failures += 1
                    group = FrameGroup(group.reference, None, 0.0, {"registration_error": str(exc)})
            results.extend(self.backend.push(group))
        return self._finish(results)

    def _finish(self, results: list[HdrOutput]) -> list[PipelineOutput]:
        outputs = []
        for r in results:
            tonemapped = self.tonemapper(r.hdr, r.stamp_ns * 1e-9) if self.config.tonemapped else None
            frame_id = self._frame_ids.pop(r.stamp_ns, "")
            outputs.append(PipelineOutput(r.hdr, tonemapped, r.stamp_ns, frame_id, r.info))
        self.outputs += len(outputs)
        return outputs


def feed_frame(pipeline: ReconstructionPipeline, camera: str, frame: Frame) -> list[PipelineOutput]:
    """Feed a whole Frame (image then ExposureInfo), as a camera would send it."""
    out = pipeline.add_image(camera, frame.stamp_ns, frame.pixels, frame.frame_id)
    out += pipeline.add_exposure(camera, frame.stamp_ns, frame.role, frame.exposure.exposure_time_s,
                                 frame.exposure.gain_db, frame.sequence_id, frame.frame_id)
    return out
