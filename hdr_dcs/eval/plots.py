"""Evaluation plots (matplotlib, Agg backend): one picture per bag and kind, every backend
in it, on the bag's time axis (seconds from its first frame), so that backends that drop
different frames still line up.

The example-frame strip is drawn by ``cli.media.write_strip`` (``hdr-dcs evaluate``);
``strip_stacks`` prepares its tone-mapped columns. This module does not import ``cli``
(the package's layering: eval never imports the command line).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

__all__ = ["plot_luminance", "plot_psnr_mu", "strip_stacks"]

_GT = "ground truth"


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _line_plot(path: Path, series: Mapping[str, tuple[Sequence[int], Sequence[float | None]]],
               ylabel: str, title: str) -> Path:
    """Lines of (stamps ns, values); None values are gaps."""
    plt = _pyplot()
    starts = [min(stamps) for stamps, _ in series.values() if len(stamps)]
    t0 = min(starts) if starts else 0
    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=110)
    for name, (stamps, values) in series.items():
        t = (np.asarray(stamps, dtype=np.float64) - t0) * 1e-9
        v = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
        style = {"color": "black", "linestyle": "--", "linewidth": 1.2} if name == _GT else {"linewidth": 1.4}
        ax.plot(t, v, label=name, **style)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_luminance(path: Path, brightness: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                   ground_truth: tuple[Sequence[int], Sequence[float]] | None = None,
                   title: str = "") -> Path:
    """Frame brightness B_t (mean mu-law luminance on 0-255, ``metrics.frame_brightness``)
    over time, one line per backend ({name: (stamps_ns, values)}), the ground truth dashed."""
    series = dict(brightness)
    if ground_truth is not None:
        series[_GT] = ground_truth
    return _line_plot(path, series, "brightness B_t (mu-law, 0-255)", title or "luminance over time")


def plot_psnr_mu(path: Path, psnr_mu: Mapping[str, tuple[Sequence[int], Sequence[float | None]]],
                 title: str = "") -> Path:
    """Per-frame PSNR-mu (dB) against the ground truth over time, one line per backend
    (gaps where a frame has no ground truth)."""
    return _line_plot(path, psnr_mu, "PSNR-mu (dB)", title or "PSNR-mu per frame")


def strip_stacks(shape: tuple[int, int], columns: Mapping[str, Sequence[np.ndarray | None]]
                 ) -> dict[str, np.ndarray]:
    """Tone-mapped columns for ``cli.media.write_strip``: {name: (N, H, W, 3) uint8}, each
    frame resized to ``shape`` (H, W) if needed, black where a backend has no frame."""
    h, w = shape
    out = {}
    for name, frames in columns.items():
        cells = []
        for f in frames:
            if f is None:
                cells.append(np.zeros((h, w, 3), np.uint8))
            elif f.shape[:2] != (h, w):
                cells.append(cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA))
            else:
                cells.append(f)
        out[name] = np.stack(cells)
    return out
