"""``hdr-dcs generate``: simulate the dual-camera rig filming a scene into a rosbag2 bag
or a sequence folder.

A bag carries SPEC.md's topics: both cameras' image_raw, exposure and camera_info
(CameraInfo at the start and once per second), and /dcs/ground_truth/hdr per reference
frame, so every downstream tool reads it exactly like a recording from a real rig.
A sequence folder (``--format folder``, see hdr_dcs.data.folder) holds the same frames as
PNG files, the ground truth as EXR and the metadata as JSON, for training.
An interrupted run leaves nothing behind (partial bags and folders are removed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..core.photometry import luminance
from ..io.bag import BagWriter
from ..sim.rig import RigConfig, calibrations, simulate_stream
from ..sim.scenes import SCENES, make_scene
from .progress import Progress


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480, got {text!r}") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size must be even and at least 16x16, got {text!r}")
    return w, h


def add_rig_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that simulates the rig."""
    g = p.add_argument_group("rig")
    g.add_argument("--scene", default="street", help=f"one of {', '.join(SCENES)} or procedural_<seed>")
    g.add_argument("--seconds", type=float, default=10.0)
    g.add_argument("--size", type=parse_size, default=(640, 480), help="WIDTHxHEIGHT (default 640x480)")
    g.add_argument("--rate", type=float, default=30.0, help="reference frame rate, Hz")
    g.add_argument("--anchor-period", type=int, default=5, help="reference frames per anchor pair")
    g.add_argument("--ev", type=float, nargs=2, default=(-2.0, 2.0), metavar=("LOW", "HIGH"))
    g.add_argument("--bits", type=int, choices=(8, 12, 16), default=8)
    g.add_argument("--baseline", type=float, nargs=2, default=(1.5, 0.0), metavar=("X", "Y"),
                   help="anchor disparity at the working distance, px")
    g.add_argument("--clock-offset", type=float, default=0.0, help="anchor minus reference clock, s")
    g.add_argument("--jitter", type=float, default=0.0, help="stamp jitter (std), s")
    g.add_argument("--drop", type=float, nargs=2, default=(0.0, 0.0), metavar=("REF", "ANCHOR"),
                   help="probability that a frame is lost")
    g.add_argument("--auto-exposure", type=float, default=0.0, help="slow auto exposure rate, EV/s")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--exr-dir", type=Path, default=None, help="OpenEXR sample images for EXR scenes")


def rig_config(args: argparse.Namespace) -> RigConfig:
    from ..sim.camera import CameraModel

    cam = CameraModel(bit_depth=args.bits)
    return RigConfig(reference_rate_hz=args.rate, anchor_period_frames=args.anchor_period,
                     ev_low=args.ev[0], ev_high=args.ev[1], baseline_px=tuple(args.baseline),
                     clock_offset_s=args.clock_offset, jitter_s=args.jitter, drop_reference=args.drop[0],
                     drop_anchor=args.drop[1], auto_exposure_ev_s=args.auto_exposure, seed=args.seed,
                     reference_camera=cam, anchor_camera=cam)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="simulate the rig into a rosbag2 bag with ground truth",
                       description=__doc__)
    p.add_argument("out", type=Path, help="bag (or sequence folder) to create")
    p.add_argument("--format", choices=("bag", "folder"), default="bag")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="bag storage")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bag")
    add_rig_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    cfg = rig_config(args)
    n_ref = max(1, int(round(args.seconds * args.rate)))
    scene = make_scene(args.scene, args.exr_dir, args.size, args.seconds)
    if args.format == "folder":
        return _run_folder(args, cfg, scene, n_ref)
    encoding = "rgb8" if args.bits == 8 else "rgb16"
    ref_cal, anchor_cal = calibrations(args.size, cfg)
    dropped: dict[str, int] = {}
    counts = {"reference": 0, "anchor": 0}
    lum_lo, lum_hi = np.inf, 0.0
    start = time.perf_counter()
    last_info_s = -np.inf
    with BagWriter(args.out, storage=args.storage, overwrite=args.overwrite) as bag, \
            Progress(n_ref, f"generate {args.scene}") as progress:
        for event in simulate_stream(scene.render_exposure, n_ref, cfg, dropped):
            stamp = event.frame.stamp_ns
            if stamp * 1e-9 - last_info_s >= 1.0:
                bag.write_camera_info("reference", ref_cal, stamp, "reference_optical_frame")
                bag.write_camera_info("anchor", anchor_cal, stamp, "anchor_optical_frame")
                last_info_s = stamp * 1e-9
            bag.write_frame(event.frame, event.camera, encoding)
            counts[event.camera] += 1
            if event.ground_truth is not None:
                bag.write_hdr("ground_truth", event.ground_truth, stamp, event.frame.frame_id)
                lum = luminance(event.ground_truth[::4, ::4])
                lum_lo = min(lum_lo, float(np.percentile(lum, 0.1)))
                lum_hi = max(lum_hi, float(np.percentile(lum, 99.9)))
            if event.camera == "reference":
                progress.update(1)
    elapsed = time.perf_counter() - start
    summary = {"bag": str(args.out), "scene": args.scene, "seconds": args.seconds, "size_wh": list(args.size),
               "frames": counts, "dropped": dropped, "generation_s": round(elapsed, 2),
               "dynamic_range_stops": round(float(np.log2(lum_hi / max(lum_lo, 1e-12))), 2)}
    print(json.dumps(summary), file=sys.stdout)
    return 0


def _run_folder(args: argparse.Namespace, cfg: RigConfig, scene: object, n_ref: int) -> int:
    from ..data.folder import write_sequence
    from ..sim.rig import simulate

    start = time.perf_counter()
    print(f"simulating {n_ref} reference frames of {args.scene!r} ...", file=sys.stderr)
    seq = simulate(scene.render_exposure, n_ref, cfg)
    with Progress(1, f"write {args.out}", unit="files") as progress:
        def report(done: int, total: int) -> None:
            progress.total = max(total, 1)
            progress.update(done - progress.done)

        write_sequence(args.out, seq, args.scene, args.seed, cfg, overwrite=args.overwrite, progress=report)
    lum = luminance(seq.ground_truth[:, ::4, ::4])
    positive = lum[lum > 0]
    summary = {"folder": str(args.out), "scene": args.scene, "seconds": args.seconds, "size_wh": list(args.size),
               "frames": {"reference": len(seq.reference), "anchor": len(seq.anchors)}, "dropped": seq.dropped,
               "generation_s": round(time.perf_counter() - start, 2),
               "dynamic_range_stops": round(float(np.log2(np.percentile(positive, 99.9)
                                                          / np.percentile(positive, 0.1))), 2)}
    print(json.dumps(summary), file=sys.stdout)
    return 0
