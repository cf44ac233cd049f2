"""The classical backend: per-frame noise-optimal merge with motion rejection."""

from __future__ import annotations

from ..core.merge import MergeConfig, merge
from ..core.photometry import DEFAULT_RESPONSE, CameraResponse
from ..core.types import FrameGroup
from . import HdrOutput


class ClassicalBackend:
    """Backend protocol over ``core.merge.merge``; stateless, zero frames of latency."""

    name = "classical"
    latency_frames = 0

    def __init__(self, response: CameraResponse = DEFAULT_RESPONSE, config: MergeConfig | None = None) -> None:
        self.response = response
        self.config = config or MergeConfig()

    def reset(self) -> None:
        pass

    def push(self, group: FrameGroup) -> list[HdrOutput]:
        result = merge(group, self.response, self.config)
        info = {"anchors_used": result.anchors_used, "reason": result.reason, **result.stats}
        ref = group.reference
        return [HdrOutput(result.hdr, ref.stamp_ns, ref.sequence_id, info)]

    def flush(self) -> list[HdrOutput]:
        return []
