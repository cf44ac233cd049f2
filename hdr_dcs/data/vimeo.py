"""Convert LDR videos (Vimeo-90K septuplets, any folder of ordered frames) into dual-stream
training sequences, following the synthesis of the papers (LoCAtion IV-A: "we convert the
original frames into LDR sequences with alternating exposures and a dual-stream paradigm").

Per source clip of N frames (8-bit PNG / JPG, display-referred):

1. **Linearise**: L_src -> x = f_src^-1(L_src) with the source response (gamma 2.2 unless
   a ``CameraResponse`` is given): relative scene radiance.
2. **Highlight expansion** (the frames are clipped where the scene was brighter than the
   source camera could record, so their radiance there is only a lower bound). Heuristic:
   with m = max over channels of L_src, w = smoothstep((m - tau) / (1 - tau)) for the
   threshold tau (default 0.9), the radiance is multiplied by ``1 + (k - 1) * w``, where
   k is drawn once per clip log-uniformly in ``highlight_boost`` (default 2..16; 1 turns
   it off). The gain is the same for the three channels (hue kept), continuous and
   increasing in m, so the mapping stays monotonic; clipped pixels become k times brighter
   than the source's white, i.e. genuinely HDR content the low anchor can recover.
3. **Radiance level**: H = x * level / median(luminance(x of the first frame)), with the
   median radiance ``level`` drawn log-uniformly in ``radiance_level``: SPEC.md units.
4. **Re-exposure** through ``sim.camera.CameraModel`` (response, shot + read noise, gain,
   bit depth, clipping), drawn with ``augment.draw_rig`` from a ``RigRandomization``
   (EV spacing, sensor, gain, median target). The reference exposure puts the first
   frame's median at the drawn target; anchors are +-EV around it (exact ratios: no frame
   interval caps, these are not real cameras).
   - reference stream: every frame at the medium exposure, stamped i / fps;
   - anchor stream: one LOW + HIGH pair per window of T frames, windows laid end to end
     and centred in the clip (a septuplet with T = 5: frames 1..5). The LOW anchor is the
     frame just before the window's centre and the HIGH anchor the frame just after it
     (T = 5: centre c, LOW = frame c-1, HIGH = frame c+1), each stamped with its own
     frame's instant: the anchor camera sees the scene at other instants than the
     reference frame it is fused with, as in the rig. Noise is drawn per frame and stream.
   - ground truth: H of every reference frame.
5. Written as a sequence folder (``data.folder``) with identity (uncalibrated)
   CameraInfos: the streams come from one view.

``windows.plan_windows`` recovers exactly these windows from the folder (the pair's mean
stamp is the window centre). A clip holds N // T windows; alt_anchors (the neighbouring
pair) exist only for clips with at least two windows, so septuplets have none: train the
anchor consistency loss on longer clips or on ``SimulatedWindows``.

``convert_video_folders`` converts a whole tree, resumably: a finished sequence folder
(written atomically) is skipped. Per clip the random draw is seeded from (seed, clip
name), so results do not depend on order or on resuming. Command line:
``python -m hdr_dcs.data.vimeo SRC DST [--seed N] [--T 5] [--list sep_trainlist.txt]``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..core.calibration import CameraCalibration
from ..core.errors import InputError
from ..core.photometry import CameraResponse, GammaResponse, channel_max, luminance, to_unit
from ..core.types import Exposure, Frame, Role
from .augment import RigRandomization, draw_rig
from .folder import is_sequence_folder, write_sequence
from .recording import Recording

__all__ = ["IMAGE_EXTENSIONS", "ConversionConfig", "ConversionReport", "convert_video_folder",
           "convert_video_folders", "expand_highlights", "find_video_folders", "main",
           "read_video_frames", "synthesize_dual_stream", "window_layout"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ConversionConfig:
    """Settings of the synthesis (see the module docstring).

    Attributes:
        T: reference frames per window (>= 2; per-frame models use T = 1 windows planned
            from the same folders, ``windows.per_frame_windows``).
        fps: frame rate the stamps assume.
        source_response: response of the source video, inverted to linearise it.
        highlight_threshold: display value tau where highlight expansion starts.
        highlight_boost: (lo, hi) of the boost k at clipped pixels (log-uniform; (1, 1) = off).
        radiance_level: (lo, hi) median radiance of a clip, SPEC.md units (log-uniform).
        randomization: EV spacing, sensor, gain, median target of the re-exposure (its
            timing / geometry fields are not used).
        noise: add shot and read noise (False: quantisation and clipping only).
        gt_format: "exr" or "npy" (``data.folder``).
    """

    T: int = 5
    fps: float = 30.0
    source_response: CameraResponse = field(default_factory=GammaResponse)
    highlight_threshold: float = 0.9
    highlight_boost: tuple[float, float] = (2.0, 16.0)
    radiance_level: tuple[float, float] = (0.5, 50.0)
    randomization: RigRandomization = field(default_factory=RigRandomization)
    noise: bool = True
    gt_format: str = "exr"


@dataclass
class ConversionReport:
    """What ``convert_video_folders`` did: output folder names per outcome."""

    converted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _frame_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=_natural_key)


def read_video_frames(folder: str | Path) -> list[np.ndarray]:
    """The frames of a folder in natural name order (im2 before im10), as (H, W, 3) float32
    RGB in [0, 1] (8- or 16-bit codes divided by their maximum).

    Raises:
        InputError: no frames, an unreadable image (named), or frames of different sizes.
    """
    files = _frame_files(Path(folder))
    if not files:
        raise InputError(f"{folder}: no {'/'.join(IMAGE_EXTENSIONS)} frames")
    frames = []
    for path in files:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        if img is None:
            raise InputError(f"{path}: corrupt or unreadable image")
        if img.dtype not in (np.uint8, np.uint16):
            raise InputError(f"{path}: unsupported image depth {img.dtype}")
        if frames and img.shape[:2] != frames[0].shape[:2]:
            raise InputError(f"{path}: frame is {img.shape[1]}x{img.shape[0]}, the first frame is "
                             f"{frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(to_unit(np.ascontiguousarray(img[:, :, ::-1])))
    return frames


def expand_highlights(display: np.ndarray, linear: np.ndarray, threshold: float, boost: float) -> np.ndarray:
    """Multiply ``linear`` by 1 + (boost - 1) * smoothstep((max_c display - threshold) / (1 - threshold))."""
    if boost <= 1.0 or threshold >= 1.0:
        return linear
    w = np.clip((channel_max(display) - np.float32(threshold)) / np.float32(1.0 - threshold), 0.0, 1.0)
    w = w * w * (3.0 - 2.0 * w)
    return (linear * (1.0 + np.float32(boost - 1.0) * w)[..., None]).astype(np.float32)


def window_layout(n_frames: int, T: int) -> list[tuple[int, int, int]]:  # noqa: N803
    """(first frame, LOW anchor frame, HIGH anchor frame) of each window of a clip."""
    if T < 2:
        raise InputError(f"the converter needs T >= 2 (got {T}); plan T = 1 windows from its output instead")
    n_windows = n_frames // T
    offset = (n_frames - n_windows * T) // 2
    return [(offset + j * T, offset + j * T + T // 2 - 1, offset + j * T + (T - 1) // 2 + 1)
            for j in range(n_windows)]


def _log_uniform(rng: np.random.Generator, r: tuple[float, float]) -> float:
    lo, hi = r
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if hi > lo else float(lo)


def synthesize_dual_stream(frames: Sequence[np.ndarray], rng: np.random.Generator,
                           config: ConversionConfig | None = None,
                           name: str = "") -> tuple[Recording, dict]:
    """Dual-stream recording from display-referred frames (steps 1-4 of the module docstring).

    Args:
        frames: (H, W, 3) float RGB in [0, 1], in time order, at least T of them.
    Returns:
        (recording, summary): the recording (raw anchors = registered, identity CameraInfos)
        and a JSON-able summary of the draw for meta.json.
    """
    cfg = config or ConversionConfig()
    layout = window_layout(len(frames), cfg.T)
    if not layout:
        raise InputError(f"{name or 'clip'}: {len(frames)} frames, fewer than T = {cfg.T}")
    h, w = frames[0].shape[:2]
    draw = draw_rig(rng, cfg.randomization)
    rig = draw.config
    boost = _log_uniform(rng, cfg.highlight_boost)
    level = _log_uniform(rng, cfg.radiance_level)

    def radiance(display: np.ndarray) -> np.ndarray:
        d = np.clip(np.asarray(display, dtype=np.float32), 0.0, 1.0)
        return expand_highlights(d, cfg.source_response.inverse(d), cfg.highlight_threshold, boost)

    first = radiance(frames[0])
    norm = np.float32(level / max(float(np.median(luminance(first))), 1e-4))
    gain = 10 ** (rig.gain_db / 20)
    signal = float(rig.reference_camera.response.inverse(np.array([draw.exposure_target], np.float32))[0])
    t_ref = signal / (level * gain)
    ref_exp = Exposure(t_ref, rig.gain_db)
    low_exp = Exposure(t_ref * 2.0 ** rig.ev_low, rig.gain_db)
    high_exp = Exposure(t_ref * 2.0 ** rig.ev_high, rig.gain_db)
    period_ns = 1e9 / cfg.fps
    noise_rng = rng if cfg.noise else None

    hdr = [first * norm] + [radiance(f) * norm for f in frames[1:]]
    reference = []
    for i, radiance_i in enumerate(hdr):
        codes = rig.reference_camera.capture(radiance_i, ref_exp, noise_rng)
        reference.append(Frame(to_unit(codes), round(i * period_ns), Role.REFERENCE, ref_exp, i,
                               "reference_optical_frame"))
    anchors = []
    for _start, lo, hi in layout:
        for idx, role, exp in ((lo, Role.LOW, low_exp), (hi, Role.HIGH, high_exp)):
            codes = rig.anchor_camera.capture(hdr[idx], exp, noise_rng)
            anchors.append(Frame(to_unit(codes), round(idx * period_ns), role, exp, len(anchors),
                                 "anchor_optical_frame"))
    recording = Recording(tuple(reference), tuple(anchors),
                          CameraCalibration.uncalibrated(w, h, "anchor"), np.stack(hdr),
                          CameraCalibration.uncalibrated(w, h, "reference"), name)
    summary = {
        "converter": "hdr_dcs.data.vimeo", "T": cfg.T, "fps": cfg.fps,
        "source_response": cfg.source_response, "highlight_threshold": cfg.highlight_threshold,
        "highlight_boost": boost, "median_radiance": level, "exposure_target": draw.exposure_target,
        "reference_exposure_s": t_ref, "ev_low": rig.ev_low, "ev_high": rig.ev_high, "gain_db": rig.gain_db,
        "reference_camera": rig.reference_camera, "anchor_camera": rig.anchor_camera, "noise": cfg.noise,
        "windows": [list(x) for x in layout],
    }
    return recording, summary


def _clip_seed(seed: int, name: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])


def convert_video_folder(src: str | Path, dst: str | Path, seed: int = 0,
                         config: ConversionConfig | None = None,
                         name: str | None = None, overwrite: bool = False) -> Path:
    """Convert one folder of frames into the sequence folder ``dst`` (atomic)."""
    src, dst = Path(src), Path(dst)
    name = name or dst.name
    cfg = config or ConversionConfig()
    rng = np.random.default_rng(_clip_seed(seed, name))
    recording, summary = synthesize_dual_stream(read_video_frames(src), rng, cfg, name)
    summary["source"] = str(src)
    return write_sequence(dst, recording, scene_name=name, seed=seed, rig=summary, overwrite=overwrite,
                          gt_format=cfg.gt_format)


def find_video_folders(src: str | Path, list_file: str | Path | None = None,
                       min_frames: int = 1) -> list[Path]:
    """Clip folders under ``src``, sorted.

    - ``list_file`` (e.g. Vimeo's sep_trainlist.txt: lines like ``00001/0001``): those
      folders, relative to ``src/sequences`` when it exists, else to ``src``;
    - else the Vimeo layout ``src/sequences/<group>/<clip>`` when ``src/sequences`` exists;
    - else every folder at or under ``src`` holding at least ``min_frames`` frames.
    """
    root = Path(src)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory")
    base = root / "sequences" if (root / "sequences").is_dir() else root
    if list_file is not None:
        try:
            lines = Path(list_file).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputError(f"{list_file}: cannot read: {exc.strerror or exc}") from None
        return [base / line.strip() for line in lines if line.strip()]
    if base is not root:
        return sorted((c for g in base.iterdir() if g.is_dir() for c in g.iterdir() if c.is_dir()),
                      key=lambda p: (_natural_key(p.parent), _natural_key(p)))
    found = [d for d in [root, *root.rglob("*")] if d.is_dir() and len(_frame_files(d)) >= max(min_frames, 1)]
    return sorted(found)


def _output_name(clip: Path, src: Path) -> str:
    base = src / "sequences" if (src / "sequences").is_dir() else src
    try:
        rel = clip.relative_to(base)
    except ValueError:
        rel = Path(clip.name)
    parts = [p for p in rel.parts if p not in ("", ".")]
    return "_".join(parts) if parts else clip.name


def convert_video_folders(src: str | Path, dst: str | Path, seed: int = 0,
                          config: ConversionConfig | None = None,
                          progress: Callable[[int, int, str, str], None] | None = None,
                          list_file: str | Path | None = None, limit: int | None = None,
                          on_error: str = "raise") -> ConversionReport:
    """Convert every clip under ``src`` into sequence folders under ``dst`` (resumable).

    Output names join the clip's path below ``src`` (or ``src/sequences``) with "_"
    (``sequences/00001/0001`` -> ``00001_0001``). A clip whose sequence folder exists is
    skipped (folders are written atomically, so an existing one is complete).

    Args:
        progress: ``progress(done, total, name, status)`` after each clip, status one of
            "converted", "skipped", "failed".
        list_file: restrict to the clips listed (see ``find_video_folders``).
        limit: convert at most this many clips (after the listing).
        on_error: "raise" (default) or "skip" (record in ``report.failed`` and go on).
    """
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    cfg = config or ConversionConfig()
    src, dst = Path(src), Path(dst)
    clips = find_video_folders(src, list_file, min_frames=cfg.T)
    if limit is not None:
        clips = clips[:limit]
    dst.mkdir(parents=True, exist_ok=True)
    report = ConversionReport()
    for n, clip in enumerate(clips, 1):
        name = _output_name(clip, src)
        out = dst / name
        if is_sequence_folder(out):
            report.skipped.append(name)
            status = "skipped"
        else:
            try:
                convert_video_folder(clip, out, seed, cfg, name)
                report.converted.append(name)
                status = "converted"
            except InputError as exc:
                if on_error == "raise":
                    raise
                report.failed.append((name, str(exc)))
                status = "failed"
        if progress is not None:
            progress(n, len(clips), name, status)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hdr_dcs.data.vimeo SRC DST ...``: convert, print progress, exit 0 / 1."""
    p = argparse.ArgumentParser(prog="python -m hdr_dcs.data.vimeo",
                                description="Convert Vimeo-90K septuplets / frame folders into dual-stream "
                                            "training sequence folders.")
    p.add_argument("src", help="Vimeo-90K root (with sequences/) or a tree of frame folders")
    p.add_argument("dst", help="output root for the sequence folders")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--T", type=int, default=5, help="reference frames per anchor pair (default 5)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--list", dest="list_file", help="clip list, e.g. sep_trainlist.txt")
    p.add_argument("--limit", type=int)
    p.add_argument("--gt-format", choices=("exr", "npy"), default="exr")
    p.add_argument("--no-noise", action="store_true")
    p.add_argument("--skip-errors", action="store_true", help="record broken clips and go on")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    cfg = ConversionConfig(T=args.T, fps=args.fps, noise=not args.no_noise, gt_format=args.gt_format)

    def show(done: int, total: int, name: str, status: str) -> None:
        if not args.quiet:
            print(f"[{done}/{total}] {status} {name}", flush=True)

    try:
        report = convert_video_folders(args.src, args.dst, args.seed, cfg, show, args.list_file, args.limit,
                                       "skip" if args.skip_errors else "raise")
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"converted {len(report.converted)}, skipped {len(report.skipped)}, failed {len(report.failed)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
