"""PyTorch datasets of training windows.

Every sample is a dict of tensors, channels first (``window_to_sample``); with T frames per
window and an h x w crop:

=================  ==============  =========  ==================================================
key                shape           dtype      meaning / units
=================  ==============  =========  ==================================================
reference          (T, 3, h, w)    float32    reference frames, pixel values L in [0, 1], RGB
ref_scale          (T,)            float32    t * g of each reference frame, seconds
stamps_ns          (T,)            int64      reference stamps (mid-exposure), ns
low, high          (3, h, w)       float32    anchors registered into the reference grid, [0, 1]
low_scale,         ()              float32    t * g of the low / high anchor, seconds
high_scale
low_stamp_ns,      ()              int64      anchor stamps, ns
high_stamp_ns
anchor_valid       (1, h, w)       float32    1 where the anchors carry data (registration mask)
gt                 (T, 3, h, w)    float32    radiance H >= 0 (SPEC.md: per second of exposure
                                              at unity gain); only when ground truth exists
alt_low, alt_high  (3, h, w)       float32    a second, different pair for the same backbone
alt_*_scale,       ()                         (``include_alt``; LoCAtion's anchor consistency
alt_*_stamp_ns,    (1, h, w)                  loss), same units as low / high
alt_anchor_valid
has_alt            ()              bool       False when the window had no other pair (the alt_*
                                              entries then repeat low / high)
=================  ==============  =========  ==================================================

The photometric model ties them together: H ~= f^-1(L) / scale with f(x) = x ** (1/2.2)
for simulated data, so ``gt * ref_scale[:, None, None, None]`` is the linear signal
relative to each reference exposure (1 = where the reference saturates) and
``low_scale / ref_scale`` the exposure ratio.

``SimulatedWindows`` streams freshly simulated windows; ``FolderWindows`` indexes the
windows of sequence folders written by ``data.folder`` (or converted by ``data.vimeo``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..core.errors import InputError
from ..sim.procedural import ProceduralConfig, procedural_scene
from ..sim.rig import simulate
from ..sim.scenes import EVALUATION_SCENES, SCENES, make_scene
from .augment import ExposedRenderer, RigRandomization, augment_window, draw_rig
from .folder import SequenceFolder, find_sequences
from .windows import DEFAULT_T, Anchors, RecordingSource, Window, WindowPlan, assemble_window, plan_windows

__all__ = ["RESERVED_SEEDS", "TRAIN_SEED_RANGE", "FolderWindows", "SimulatedWindows", "window_to_sample"]

#: Procedural scene seeds SimulatedWindows draws from by default ([lo, hi)).
TRAIN_SEED_RANGE = (1_000_000, 2**31 - 1)
#: Seeds below this are reserved for evaluation and the named scenes (``procedural_<seed>``
#: with a small seed, SCENES' street/night/fast/tunnel = 1..4); training never uses them.
RESERVED_SEEDS = 1_000_000


def _chw(a: np.ndarray) -> torch.Tensor:
    """(..., H, W, C) numpy -> (..., C, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(a, dtype=np.float32), -1, -3)))


def _anchor_entries(a: Anchors, prefix: str) -> dict[str, torch.Tensor]:
    return {
        f"{prefix}low": _chw(a.low),
        f"{prefix}high": _chw(a.high),
        f"{prefix}low_scale": torch.tensor(a.low_scale, dtype=torch.float32),
        f"{prefix}high_scale": torch.tensor(a.high_scale, dtype=torch.float32),
        f"{prefix}low_stamp_ns": torch.tensor(a.low_stamp_ns, dtype=torch.int64),
        f"{prefix}high_stamp_ns": torch.tensor(a.high_stamp_ns, dtype=torch.int64),
        f"{prefix}anchor_valid": torch.from_numpy(np.ascontiguousarray(a.valid, dtype=np.float32))[None],
    }


def window_to_sample(window: Window, include_alt: bool = False) -> dict[str, torch.Tensor]:
    """A Window -> the dict of tensors described in the module docstring."""
    sample = {
        "reference": _chw(window.reference),
        "ref_scale": torch.from_numpy(np.asarray(window.ref_scale, dtype=np.float32).copy()),
        "stamps_ns": torch.from_numpy(np.asarray(window.stamps_ns, dtype=np.int64).copy()),
    }
    sample.update(_anchor_entries(window.anchors, ""))
    if window.gt is not None:
        sample["gt"] = _chw(window.gt)
    if include_alt:
        alt = window.alt_anchors
        sample.update(_anchor_entries(alt if alt is not None else window.anchors, "alt_"))
        sample["has_alt"] = torch.tensor(alt is not None)
    return sample


class SimulatedWindows(IterableDataset):
    """Windows simulated on the fly from procedural scenes, forever or ``length`` samples.

    Per *episode* (one simulated clip giving ``windows_per_sequence`` samples): draw a
    procedural scene seed from ``scene_seeds`` (disjoint from the evaluation seeds, see
    ``RESERVED_SEEDS``), draw the rig (``augment.draw_rig``: EV spacing, sensor noise, bit
    depth, gain, exposure level, phase, baseline, jitter, start time), render the scene
    directly at (crop + margin) squared pixels, simulate just enough reference frames for
    the windows plus a neighbouring pair (``ceil(9P/4) + 1 + (m-1)P`` frames for an anchor
    period of P frames and m windows), plan windows (``windows.plan_windows``), draw m of
    them and augment each (crop, flips, quarter turns).

    Determinism: episode e is generated from ``SeedSequence([seed, epoch, e])`` alone; sample
    k is window ``k % m`` of episode ``k // m``. DataLoader workers take episodes
    round-robin (worker w of W: e = w, w + W, ...), so the *set* of samples does not depend on
    the number of workers, and with ``batch_size=None`` even their order is that of
    ``num_workers=0``. ``set_epoch`` changes the stream.

    Workers: the dataset is picklable, so ``multiprocessing_context="forkserver"`` or
    "spawn" work too and give the same samples. With the default fork, leave cv2's thread
    settings alone inside workers: ``cv2.setNumThreads`` in a forked child deadlocked here
    (~1 run in 6) on the parent's thread pool.

    Args:
        seed: stream seed.
        length: samples per pass (None = endless).
        T: reference frames per window (1 = per-frame model).
        crop: output size (square side); margin: extra pixels rendered around it for the
            crop position.
        alt: include the alt_* entries (anchor consistency loss); windows are then drawn
            among those with an alternative pair.
        windows_per_sequence: samples per simulated clip (2 roughly doubles throughput, at
            the price of correlated samples).
        randomization: rig ranges; procedural: scene generator ranges.
        scene_seeds: [lo, hi) of procedural seeds; must lie at or above ``RESERVED_SEEDS``.
        scenes: optional named scenes (``sim.scenes.SCENES``) to draw from instead of
            procedural seeds; EVALUATION_SCENES are refused.
        flips, rotations: geometric augmentation.
    """

    def __init__(self, seed: int = 0, length: int | None = None, T: int = DEFAULT_T,  # noqa: N803
                 crop: int = 128, margin: int = 16, alt: bool = True, windows_per_sequence: int = 1,
                 randomization: RigRandomization | None = None, procedural: ProceduralConfig | None = None,
                 scene_seeds: tuple[int, int] = TRAIN_SEED_RANGE, scenes: Sequence[str] = (),
                 flips: bool = True, rotations: bool = True) -> None:
        super().__init__()
        if T < 1 or crop < 2 or margin < 0 or windows_per_sequence < 1:
            raise InputError("need T >= 1, crop >= 2, margin >= 0, windows_per_sequence >= 1")
        if length is not None and length < 0:
            raise InputError(f"length must be >= 0, got {length}")
        lo, hi = int(scene_seeds[0]), int(scene_seeds[1])
        if not RESERVED_SEEDS <= lo < hi:
            raise InputError(f"scene_seeds {scene_seeds} must be a non-empty range at or above "
                             f"{RESERVED_SEEDS} "
                             "(lower seeds are reserved for evaluation)")
        for name in scenes:
            if name in EVALUATION_SCENES:
                raise InputError(f"scene {name!r} is an evaluation scene; it may not be used for training")
            if name not in SCENES:
                raise InputError(f"unknown scene {name!r}; choose from {', '.join(SCENES)}")
        self.seed = int(seed)
        self.length = length
        self.T = int(T)
        self.crop = int(crop)
        self.margin = int(margin)
        self.alt = alt
        self.windows_per_sequence = int(windows_per_sequence)
        self.randomization = randomization or RigRandomization()
        self.procedural = procedural
        self.scene_seeds = (lo, hi)
        self.scenes = tuple(scenes)
        self.flips = flips
        self.rotations = rotations
        self.epoch = 0
        self._cache: tuple[tuple[int, int], list[dict[str, torch.Tensor]]] | None = None

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an endless SimulatedWindows has no length")
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Use a different (still deterministic) stream for each epoch."""
        self.epoch = int(epoch)

    # --- generation -----------------------------------------------------------------------
    def _scene(self, rng: np.random.Generator, size: int, duration_s: float) -> Any:
        if self.scenes:
            name = self.scenes[int(rng.integers(0, len(self.scenes)))]
            return make_scene(name, size_wh=(size, size), duration_s=duration_s)
        scene_seed = int(rng.integers(self.scene_seeds[0], self.scene_seeds[1]))
        return procedural_scene(scene_seed, (size, size), duration_s, self.procedural)

    def episode(self, e: int) -> list[dict[str, torch.Tensor]]:
        """The ``windows_per_sequence`` samples of episode ``e``."""
        key = (self.epoch, e)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, e]))
        m = self.windows_per_sequence
        draw = draw_rig(rng, self.randomization, min_period_frames=self.T)
        cfg = draw.config
        period = cfg.anchor_period_frames
        size = self.crop + self.margin
        n_ref = math.ceil(9 * period / 4) + 1 + (m - 1) * period
        # the scene's layers are sized for its duration: cover the clip (plus retries) only
        duration = draw.time_offset_s + (n_ref + 2 * period) / cfg.reference_rate_hz + 0.1
        scene = self._scene(rng, size, duration)
        render = ExposedRenderer.for_target(scene.render_exposure, draw)
        plans: list[WindowPlan] = []
        for _attempt in range(3):
            seq = simulate(render, n_ref, cfg)
            plans = plan_windows(seq.reference, seq.anchors, self.T, alt=self.alt)
            if self.alt:
                plans = [p for p in plans if p.has_alt]
            if len(plans) >= m:
                break
            n_ref += period
        if not plans:  # pragma: no cover - only with extreme jitter / drop settings
            raise RuntimeError(f"episode {e}: no window of T={self.T} in {n_ref} simulated frames")
        chosen = rng.choice(len(plans), size=m, replace=len(plans) < m)
        source = RecordingSource(seq, name=scene.name)
        samples = []
        for c in chosen:
            window = assemble_window(source, plans[int(c)])
            window = augment_window(window, rng, self.crop, self.flips, self.rotations)
            sample = window_to_sample(window, self.alt)
            samples.append(sample)
        self._cache = (key, samples)
        return samples

    def sample(self, k: int) -> dict[str, torch.Tensor]:
        """Sample ``k`` of the stream (what the k-th item of a single-process pass is)."""
        m = self.windows_per_sequence
        return self.episode(k // m)[k % m]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        m = self.windows_per_sequence
        e = worker
        while True:
            for j in range(m):
                k = e * m + j
                if self.length is not None and k >= self.length:
                    return
                yield self.episode(e)[j]
            e += workers


class FolderWindows(Dataset):
    """All windows of all sequence folders under ``root`` (map-style).

    The index (``plan_windows`` on each folder's meta.json) is built once at construction;
    frames are read from disk per item. Augmentation of item i is drawn from
    ``SeedSequence([seed, epoch, i])``.

    Args:
        root: a sequence folder or a directory holding them (searched recursively).
        T, stride: window length and step (see ``windows.plan_windows``).
        crop: square side or (h, w) crop, None = whole frames.
        flips, rotations: geometric augmentation (rotations by quarter turns for square
            outputs, half turns otherwise).
        alt: include alt_* entries (``has_alt`` False where a window has no other pair);
            require_alt: index only windows that have one.
        seed: augmentation seed.
        max_gap_s, max_age_s: pairing and grouping limits.
    Raises:
        InputError: no sequence folder under root, or a malformed meta.json.
    """

    def __init__(self, root: str | Path, T: int = DEFAULT_T, stride: int | None = None,  # noqa: N803
                 crop: int | tuple[int, int] | None = None, flips: bool = True, rotations: bool = True,
                 alt: bool = False, require_alt: bool = False, seed: int = 0,
                 max_gap_s: float = 0.2, max_age_s: float = 0.5) -> None:
        self.root = Path(root)
        self.folders = [SequenceFolder(p) for p in find_sequences(self.root)]
        if not self.folders:
            raise InputError(f"{self.root}: no sequence folders (with meta.json) found")
        self.T = int(T)
        self.crop = crop
        self.flips = flips
        self.rotations = rotations
        self.alt = alt or require_alt
        self.seed = int(seed)
        self.epoch = 0
        self.index: list[tuple[int, WindowPlan]] = []
        for f_idx, folder in enumerate(self.folders):
            for plan in plan_windows(folder.reference, folder.anchors, self.T, stride,
                                     max_gap_s=max_gap_s, max_age_s=max_age_s, alt=self.alt):
                if require_alt and not plan.has_alt:
                    continue
                self.index.append((f_idx, plan))

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def window(self, i: int) -> Window:
        """Window i, unaugmented."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} out of range ({len(self)} windows)")
        f_idx, plan = self.index[i]
        return assemble_window(self.folders[f_idx], plan)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        window = self.window(i)
        if self.crop is not None or self.flips or self.rotations:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, i % len(self)]))
            window = augment_window(window, rng, self.crop, self.flips, self.rotations)
        return window_to_sample(window, self.alt)
