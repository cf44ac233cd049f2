"""A recording as the training pipeline consumes it: reference frames, raw anchor frames,
the calibrations and (for simulated or converted data) the ground-truth radiance.

``hdr_dcs.sim.rig.RigSequence`` and ``hdr_dcs.data.folder.StoredSequence`` already have
these attributes; ``Recording`` is the same shape for anything else (a bag, frames built
by hand), and ``recording_from_bag`` reads one from a rosbag2 bag with SPEC.md topics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.calibration import CameraCalibration
from ..core.errors import InputError
from ..core.types import Frame

__all__ = ["Recording", "recording_from_bag"]


@dataclass(frozen=True, eq=False)
class Recording:
    """Frames of the two cameras in capture order.

    Attributes:
        reference: reference frames (medium exposure), capture order.
        anchors: raw anchor frames (LOW / HIGH, the anchor camera's own grid), capture order.
        anchor_calibration: the anchor camera's CameraInfo (None = uncalibrated: identity).
        ground_truth: (N, H, W, 3) float32 radiance (SPEC.md units), row i belonging to
            ``reference[i]``; None when unknown.
        reference_calibration: the reference camera's CameraInfo (None = uncalibrated).
        name: for reports and window provenance.
    """

    reference: tuple[Frame, ...]
    anchors: tuple[Frame, ...]
    anchor_calibration: CameraCalibration | None = None
    ground_truth: np.ndarray | None = None
    reference_calibration: CameraCalibration | None = None
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "reference", tuple(self.reference))
        object.__setattr__(self, "anchors", tuple(self.anchors))
        gt = self.ground_truth
        if gt is not None:
            gt = np.asarray(gt, dtype=np.float32)
            if gt.ndim != 4 or gt.shape[-1] != 3 or gt.shape[0] != len(self.reference):
                raise InputError(f"ground truth must be (N={len(self.reference)}, H, W, 3), got {gt.shape}")
            object.__setattr__(self, "ground_truth", gt)


def recording_from_bag(path: str | Path, topics: object | None = None) -> Recording:
    """Read the reference and anchor frames, the last CameraInfo of each camera and (when
    present for every reference frame, matched by stamp) /dcs/ground_truth/hdr.

    Raises:
        InputError: unreadable bag (BagError), frames without ExposureInfo, no reference frames.
    """
    from ..io.bag import BagReader, Topics, calibration_from_msg, hdr_from_msg, read_frames, stamp_ns_of

    t = topics if topics is not None else Topics()
    with BagReader(path) as reader:
        reference = tuple(read_frames(reader, "reference", t))  # type: ignore[arg-type]
        anchors = tuple(read_frames(reader, "anchor", t))  # type: ignore[arg-type]
        available = reader.topics()
        cals: dict[str, CameraCalibration | None] = {"reference": None, "anchor": None}
        for camera in cals:
            topic = t.info(camera)  # type: ignore[attr-defined]
            if topic in available:
                for item in reader.messages([topic]):
                    cals[camera] = calibration_from_msg(item.msg, camera)
        by_stamp: dict[int, object] = {}
        if t.ground_truth in available:  # type: ignore[attr-defined]
            for item in reader.messages([t.ground_truth]):  # type: ignore[attr-defined]
                by_stamp[stamp_ns_of(item.msg)] = item.msg
    if not reference:
        raise InputError(f"{path}: the bag has no reference frames")
    reference = tuple(sorted(reference, key=lambda f: f.stamp_ns))
    gt = None
    if by_stamp and all(f.stamp_ns in by_stamp for f in reference):
        gt = np.stack([hdr_from_msg(by_stamp[f.stamp_ns]) for f in reference])
    return Recording(reference, tuple(sorted(anchors, key=lambda f: f.stamp_ns)), cals["anchor"], gt,
                     cals["reference"], Path(path).name)
