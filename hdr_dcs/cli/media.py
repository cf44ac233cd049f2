"""Pictures, videos and plots written by the command-line jobs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..core.photometry import from_unit
from ..core.types import FrameGroup


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _ldr_bgr(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(from_unit(pixels)[..., ::-1])


def write_strip(path: Path, groups: Sequence[FrameGroup], tonemapped: Mapping[str, np.ndarray],
                rows: int = 4) -> None:
    """A grid: one row per chosen reference frame; columns reference, low, high, then each
    tone-mapped sequence of ``tonemapped`` ((N, H, W, 3) uint8 BGR)."""
    n = len(groups)
    picks = np.unique(np.linspace(0, n - 1, min(rows, n)).round().astype(int))
    lines = []
    for i in picks:
        g = groups[int(i)]
        blank = np.zeros_like(_ldr_bgr(g.reference.pixels))
        cells = [_label(_ldr_bgr(g.reference.pixels), f"reference #{i}")]
        for role in ("low", "high"):
            frame = getattr(g.anchors, role) if g.anchors is not None else None
            cells.append(_label(_ldr_bgr(frame.pixels), role) if frame is not None else _label(blank, f"no {role}"))
        cells += [_label(seq[int(i)], name) for name, seq in tonemapped.items()]
        lines.append(np.concatenate(cells, axis=1))
    if not cv2.imwrite(str(path), np.concatenate(lines, axis=0)):
        raise OSError(f"could not write {path}")


def write_video(path: Path, tonemapped: Mapping[str, np.ndarray], fps: float) -> None:
    """Side-by-side MP4 of the tone-mapped sequences ((N, H, W, 3) uint8 BGR each)."""
    seqs = list(tonemapped.items())
    n, h, w = seqs[0][1].shape[:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w * len(seqs), h))
    if not writer.isOpened():
        raise OSError(f"could not open a video writer for {path}")
    try:
        for i in range(n):
            writer.write(np.concatenate([_label(s[i], name) for name, s in seqs], axis=1))
    finally:
        writer.release()


def plot_per_frame(path: Path, series: Mapping[str, Sequence[float]], ylabel: str) -> None:
    """A line plot of per-frame values, one line per entry of ``series``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=110)
    for name, values in series.items():
        ax.plot(np.arange(len(values)), values, label=name, linewidth=1.4)
    ax.set_xlabel("reference frame")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
