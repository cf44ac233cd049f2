"""Reconstruction backends behind one protocol, so nodes and tools never know which runs.

A backend is fed FrameGroups in reference order and returns HdrOutputs as they become
available: a per-frame backend returns one output per push, a rolling-window backend
returns nothing until its window closes and then all of it. ``flush`` returns what is
still held at the end of a stream; ``reset`` forgets all state (a cut, a bag loop).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..core.types import FrameGroup


@dataclass(frozen=True)
class HdrOutput:
    """One reconstructed frame.

    Attributes:
        hdr: (H, W, 3) float32 RGB radiance in SPEC.md units.
        stamp_ns: the reference frame's stamp.
        sequence_id: the reference frame's sequence id.
        info: per-frame diagnostics (anchors used, fallback reason, rejection fractions).
    """

    hdr: np.ndarray
    stamp_ns: int
    sequence_id: int
    info: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str
    latency_frames: int

    def reset(self) -> None: ...

    def push(self, group: FrameGroup) -> list[HdrOutput]: ...

    def flush(self) -> list[HdrOutput]: ...


#: Backend names accepted by ``make_backend`` (and the --backend options of the tools).
BACKENDS = ("classical", "location", "eafnet")


def make_backend(name: str, **options: object) -> Backend:
    """Build a backend by name. Learned backends load their shipped weights by default."""
    from ..core.errors import InputError

    if name == "classical":
        from .classical import ClassicalBackend

        return ClassicalBackend(**options)  # type: ignore[arg-type]
    if name == "location":
        from .location import LocationBackend

        return LocationBackend(**options)  # type: ignore[arg-type]
    if name == "eafnet":
        from .eafnet import EAFNetBackend

        return EAFNetBackend(**options)  # type: ignore[arg-type]
    raise InputError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
