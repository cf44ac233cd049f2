"""Scoring reconstructed sequences and writing the evaluation report (JSON + Markdown).

Normalisation (``core.metrics`` needs values in [0, 1] with one common peak): one peak
per bag, shared by every backend of that bag and by the ground truth, so that frames and
backends stay comparable:

- with ground truth: the maximum of the ground truth over the bag's scored frames (all
  channels, full resolution); prediction and ground truth are divided by it and clipped
  to [0, 1] (``core.tonemap.normalise``);
- without: 1 / min(t g) over every ExposureInfo of the bag, the largest radiance any of
  its frames can measure unsaturated (f^-1(1) = 1): no backend can know more than that.

Metrics: ``core.metrics.sequence_report(pred, gt)`` (full reference) when the bag has
/dcs/ground_truth/hdr, else ``sequence_report(pred)`` (no-reference temporal and
brightness metrics only). Frames without a ground truth of their stamp are left out of
the full-reference metrics (counted in ``frames.without_ground_truth``). Per frame: the
PSNR-mu (capped at ``PSNR_CAP_DB``, as in the pooled metrics) and the brightness B_t.

Memory: the metrics need whole sequences (temporal metrics), so a bag's ground truth and
one prediction are kept in memory, nothing more (each backend is scored right after its
run and released). Frames are kept at full resolution while both sequences fit
``memory_bytes`` (default 1 GiB: ~330 frames of 640x480); beyond that they are
box-downsampled by the smallest integer factor that fits (never below 16 px a side, as
SSIM needs 11), the same factor for every backend of the bag and for the ground truth,
reported as ``metrics_scale``. Everything else (timing, drops, per-frame diagnostics)
streams.

The JSON is written atomically (temporary file + rename): a crash or Ctrl-C leaves the
previous complete file or none, never a torn one.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.metrics import PSNR_CAP_DB, frame_brightness, psnr_mu_per_frame, sequence_report
from .bagrun import RunStats

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "GroundTruthStore",
    "SequenceStore",
    "backend_entry",
    "box_downsample",
    "choose_scale",
    "markdown_table",
    "plain",
    "score",
    "summary_rows",
    "write_json_atomic",
    "write_text_atomic",
]

DEFAULT_MEMORY_BYTES = 1 << 30
_MIN_SIDE = 16


# --- frame storage --------------------------------------------------------------------------

def choose_scale(height: int, width: int, n_frames: int, memory_bytes: int, sequences: int = 2) -> int:
    """The smallest integer box-downsampling factor k with which ``sequences`` float32 RGB
    sequences of ``n_frames`` frames fit ``memory_bytes`` (k stops where a side would fall
    below 16 px)."""
    k = 1
    while True:
        need = sequences * max(n_frames, 1) * (height // k) * (width // k) * 3 * 4
        if need <= memory_bytes or min(height // (k + 1), width // (k + 1)) < _MIN_SIDE:
            return k
        k += 1


def box_downsample(image: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks (the bottom/right remainder is dropped); k = 1: as is."""
    if k == 1:
        return image
    h, w = image.shape[0] // k, image.shape[1] // k
    blocks = image[:h * k, :w * k].reshape(h, k, w, k, -1)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


class SequenceStore:
    """The frames of one sequence for the metrics: downsampled by ``scale``, in a
    preallocated float32 array (grown if more frames come than expected)."""

    def __init__(self, capacity: int, scale: int = 1) -> None:
        self.capacity = max(int(capacity), 1)
        self.scale = scale
        self.stamps: list[int] = []
        self._data: np.ndarray | None = None
        self.peak = 0.0

    def __len__(self) -> int:
        return len(self.stamps)

    def add(self, stamp_ns: int, hdr: np.ndarray) -> int:
        small = box_downsample(np.asarray(hdr, dtype=np.float32), self.scale)
        if self._data is None:
            self._data = np.empty((self.capacity, *small.shape), np.float32)
        elif small.shape != self._data.shape[1:]:
            raise InputError(f"frame at {stamp_ns} ns is {hdr.shape[1]}x{hdr.shape[0]}, unlike the "
                             "frames before it")
        n = len(self.stamps)
        if n == self._data.shape[0]:
            grown = np.empty((2 * n, *self._data.shape[1:]), np.float32)
            grown[:n] = self._data
            self._data = grown
        self._data[n] = small
        self.stamps.append(int(stamp_ns))
        self.peak = max(self.peak, float(np.max(hdr)))
        return n

    @property
    def frames(self) -> np.ndarray:
        """(N, h, w, 3) view of the stored frames."""
        if self._data is None:
            return np.zeros((0, 1, 1, 3), np.float32)
        return self._data[:len(self.stamps)]

    def normalise(self, peak: float) -> None:
        """Divide by ``peak`` and clip to [0, 1], in place (``tonemap.normalise``)."""
        if not (math.isfinite(peak) and peak > 0):
            raise InputError(f"normalisation peak must be finite and > 0, got {peak}")
        frames = self.frames
        frames /= np.float32(peak)
        np.clip(frames, 0.0, 1.0, out=frames)


class GroundTruthStore(SequenceStore):
    """Ground-truth frames by stamp; ``peak`` is the full-resolution maximum."""

    def __init__(self, capacity: int, scale: int = 1) -> None:
        super().__init__(capacity, scale)
        self.rows: dict[int, int] = {}

    def add(self, stamp_ns: int, hdr: np.ndarray) -> int:
        if stamp_ns in self.rows:
            return self.rows[stamp_ns]
        row = super().add(stamp_ns, hdr)
        self.rows[int(stamp_ns)] = row
        return row


# --- scoring --------------------------------------------------------------------------------

def _capped(values: Iterable[float]) -> list[float]:
    return [min(float(v), PSNR_CAP_DB) for v in values]


def score(pred: SequenceStore, gt: GroundTruthStore | None) -> dict[str, Any]:
    """Metrics of a normalised prediction, against ``gt`` (normalised, same scale) if given.

    Returns {"metric_kind", "metrics", "frames_scored", "frames_without_ground_truth",
    "per_frame": {"brightness", "psnr_mu"?}} plus "metrics_error" when the sequence
    cannot be scored (fewer than 2 frames, frames under 11 px, sizes differ).
    """
    frames = pred.frames
    out: dict[str, Any] = {"metric_kind": "full_reference" if gt is not None else "no_reference",
                           "metrics": {}}
    per_frame: dict[str, Any] = {}
    out["per_frame"] = per_frame
    if len(pred) == 0:
        out.update(frames_scored=0, metrics_error="no frames")
        return out
    per_frame["brightness"] = frame_brightness(frames).tolist()
    try:
        if gt is None:
            out["frames_scored"] = len(pred)
            out["metrics"] = sequence_report(frames)
            return out
        keep = [i for i, s in enumerate(pred.stamps) if s in gt.rows]
        out["frames_scored"] = len(keep)
        out["frames_without_ground_truth"] = len(pred) - len(keep)
        if not keep:
            out["metrics_error"] = "no frame has a ground truth of its stamp"
            return out
        rows = [gt.rows[pred.stamps[i]] for i in keep]
        g = gt.frames
        if g.shape[1:] != frames.shape[1:]:
            raise InputError(f"ground truth frames are {g.shape[2]}x{g.shape[1]}, predictions "
                             f"{frames.shape[2]}x{frames.shape[1]} (at metrics scale)")
        p = frames if len(keep) == len(pred) else frames[keep]
        g = g if rows == list(range(len(g))) else g[rows]
        psnr = _capped(psnr_mu_per_frame(p, g))
        column: list[float | None] = [None] * len(pred)
        for i, v in zip(keep, psnr, strict=True):
            column[i] = v
        per_frame["psnr_mu"] = column
        out["metrics"] = sequence_report(p, g)
    except InputError as exc:
        out["metrics_error"] = str(exc)
    return out


def _info_columns(infos: Sequence[Mapping[str, Any]]) -> tuple[dict[str, list], dict[str, float]]:
    """Per-frame backend diagnostics as columns (scalars only) and the means of numeric ones."""
    keys: list[str] = []
    for info in infos:
        keys += [k for k, v in info.items()
                 if k not in keys and isinstance(v, (bool, int, float, str, np.bool_, np.number))]
    columns = {k: [plain(info.get(k)) for info in infos] for k in keys}
    means = {}
    for k, values in columns.items():
        nums = [float(v) for v in values if isinstance(v, (bool, int, float)) and v is not None
                and math.isfinite(float(v))]
        if nums and not any(isinstance(v, str) for v in values):
            means[k] = float(np.mean(nums))
    return columns, means


def backend_entry(stats: RunStats, scored: Mapping[str, Any], stamps: Sequence[int],
                  infos: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report entry of one bag x backend: metrics, per-frame series, timing, drops."""
    d = stats.to_dict()
    columns, means = _info_columns(infos)
    entry: dict[str, Any] = {
        "status": "ok",
        "metric_kind": scored["metric_kind"],
        "metrics": dict(scored["metrics"]),
    }
    if "metrics_error" in scored:
        entry["metrics_error"] = scored["metrics_error"]
    entry["frames"] = {
        "reference_images": stats.reference_images,
        "out": stats.frames_out,
        "scored": scored.get("frames_scored", 0),
    }
    if "frames_without_ground_truth" in scored:
        entry["frames"]["without_ground_truth"] = scored["frames_without_ground_truth"]
    entry["timing"] = d["timing"]
    if "grouper" in d:
        entry["drops"] = d["grouper"]["drops"]
        entry["groups_without_anchors"] = d["grouper"]["groups_without_anchors"]
        entry["grouper"] = d["grouper"]
        entry["registration_failures"] = d["registration_failures"]
    entry["rejected_inputs"] = d["rejected_inputs"]
    if d["rejected_examples"]:
        entry["rejected_examples"] = d["rejected_examples"]
    entry["info_mean"] = means
    entry["per_frame"] = {"stamp_ns": [int(s) for s in stamps], **scored.get("per_frame", {}),
                          "info": columns}
    return entry


# --- summary ----------------------------------------------------------------------------------

_COLUMNS = (  # key in the row, Markdown header, format
    ("frames", "frames", "{:d}"),
    ("psnr_mu", "PSNR-mu", "{:.2f}"),
    ("ssim_mu", "SSIM-mu", "{:.4f}"),
    ("psnr_l", "PSNR-L", "{:.2f}"),
    ("t_psnr", "t-PSNR", "{:.2f}"),
    ("t_ssim", "t-SSIM", "{:.4f}"),
    ("t_psnr_nr", "t-PSNR NR", "{:.2f}"),
    ("t_ssim_nr", "t-SSIM NR", "{:.4f}"),
    ("lsd", "LSD", "{:.3f}"),
    ("madb", "MADB", "{:.3f}"),
    ("ms_per_frame", "ms/frame", "{:.1f}"),
    ("no_anchors", "no anchors", "{:d}"),
    ("dropped", "dropped", "{:d}"),
    ("rejected", "rejected", "{:d}"),
)


def summary_rows(bags: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """One row per bag x backend with the headline numbers (None where not applicable)."""
    rows = []
    for bag, backends in bags.items():
        for name, entry in backends.items():
            m = entry.get("metrics", {})
            drops = entry.get("drops", {})
            row: dict[str, Any] = {"bag": bag, "backend": name, "frames": entry.get("frames", {}).get("out")}
            for key, _, _ in _COLUMNS[1:10]:
                row[key] = m.get(key)
            row["ms_per_frame"] = entry.get("timing", {}).get("per_frame_ms")
            row["no_anchors"] = entry.get("groups_without_anchors")
            row["dropped"] = sum(drops.get("reference", {}).values()) if drops else None
            row["rejected"] = sum(sum(c.values()) for c in entry.get("rejected_inputs", {}).values())
            rows.append(row)
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary rows as a Markdown table ("-" where not applicable); columns that are
    empty in every row are left out."""
    columns = [c for c in _COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    head = ["bag", "backend", *(c[1] for c in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * len(columns)) + "|"]
    for r in rows:
        cells = [Path(str(r["bag"])).name or str(r["bag"]), str(r["backend"])]
        for key, _, fmt in columns:
            v = r.get(key)
            cells.append("-" if v is None else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- files ------------------------------------------------------------------------------------

def plain(value: Any) -> Any:
    """``value`` as plain JSON: numpy scalars and arrays to Python, non-finite floats to
    None, tuples to lists, paths to strings."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` and rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` (made ``plain``) as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(plain(obj), indent=2, allow_nan=False) + "\n")
