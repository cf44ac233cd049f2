"""``hdr-dcs demo``: simulate the dual-camera rig, reconstruct, score and plot.

Simulates a recording of a scene (procedural by default, or one built from the OpenEXR
sample images) with ground truth, runs it through the reconstruction pipeline (grouping,
registration from the anchor camera's CameraInfo, a backend, tone mapping) exactly as the
node and the bag tools do, and writes a tone-mapped video, a picture strip, a per-frame
plot and a JSON report comparing the reconstruction with the reference-only estimate.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..core.grouping import group_offline, pair_anchors
from ..core.merge import reference_only
from ..core.metrics import psnr_mu_per_frame, sequence_report
from ..core.tonemap import normalise
from ..pipeline import PipelineConfig, ReconstructionPipeline, feed_frame
from ..sim.rig import simulate
from ..sim.scenes import make_scene
from . import media
from .generate import add_rig_arguments, rig_config
from .progress import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulate the rig, reconstruct, score and plot", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: %(default)s)")
    p.add_argument("--backend", default="classical")
    add_rig_arguments(p)
    p.set_defaults(run=run, seconds=2.0, size=(384, 288))


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cfg = rig_config(args)
    n_ref = max(2, int(round(args.seconds * args.rate)))
    scene = make_scene(args.scene, args.exr_dir, args.size, args.seconds)

    t0 = time.perf_counter()
    seq = simulate(scene.render_exposure, n_ref, cfg)
    t_sim = time.perf_counter() - t0
    print(f"simulated {len(seq.reference)} reference + {len(seq.anchors)} anchor frames of {args.scene!r} "
          f"in {t_sim:.1f} s", file=sys.stderr)

    pipeline = ReconstructionPipeline(PipelineConfig(backend=args.backend))
    pipeline.set_calibration("reference", seq.reference_calibration)
    pipeline.set_calibration("anchor", seq.anchor_calibration)
    events = sorted([("reference", f) for f in seq.reference] + [("anchor", f) for f in seq.anchors],
                    key=lambda e: e[1].stamp_ns)
    outputs = []
    t0 = time.perf_counter()
    with Progress(len(seq.reference), args.backend) as progress:
        for camera, frame in events:
            new = feed_frame(pipeline, camera, frame)
            outputs += new
            progress.update(len(new))
        outputs += pipeline.flush()
    t_run = (time.perf_counter() - t0) / max(len(outputs), 1)
    by_stamp = {o.stamp_ns: o for o in outputs}
    missing = [f.stamp_ns for f in seq.reference if f.stamp_ns not in by_stamp]
    if missing:
        raise RuntimeError(f"{len(missing)} reference frames produced no output")
    recon = np.stack([by_stamp[f.stamp_ns].hdr for f in seq.reference])
    ref_only = np.stack([reference_only(f) for f in seq.reference])

    peak = float(seq.ground_truth.max())
    gt_n = normalise(seq.ground_truth, peak)
    results = {name: normalise(hdr, peak) for name, hdr in ((args.backend, recon), ("reference_only", ref_only))}
    metrics = {name: sequence_report(pred, gt_n) for name, pred in results.items()}
    per_frame = {name: psnr_mu_per_frame(pred, gt_n).tolist() for name, pred in results.items()}
    infos = [by_stamp[f.stamp_ns].info for f in seq.reference]
    stats = pipeline.grouper_stats
    report = {
        "scene": args.scene,
        "frames": {"reference": len(seq.reference), "anchor": len(seq.anchors), "dropped": seq.dropped},
        "size_wh": list(args.size),
        "reference_exposure_s": seq.reference_exposure.exposure_time_s,
        "anchor_ev": list(args.ev),
        "anchor_period_frames": args.anchor_period,
        "normalisation_peak": peak,
        "timing_s": {"simulate": t_sim, f"{args.backend}_per_frame": t_run},
        "metrics": metrics,
        "psnr_mu_gain_db": metrics[args.backend]["psnr_mu"] - metrics["reference_only"]["psnr_mu"],
        "per_frame_psnr_mu": per_frame,
        "grouper": {"groups_out": stats.groups_out, "groups_without_anchors": stats.groups_without_anchors,
                    "drops": {f"{cam}: {why}": n for (cam, why), n in stats.drops.items()}},
        "backend_stats_mean": {k: float(np.mean([i[k] for i in infos if k in i])) for k in infos[0]
                               if isinstance(infos[0][k], (int, float, bool))},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))

    tonemapped = {args.backend: np.stack([by_stamp[f.stamp_ns].tonemapped for f in seq.reference]),
                  "reference only": _tonemap(ref_only, seq), "ground truth": _tonemap(seq.ground_truth, seq)}
    groups = _registered_groups(seq)
    media.write_strip(out / "strip.png", groups, tonemapped, rows=4)
    media.write_video(out / "video.mp4", tonemapped, fps=args.rate)
    media.plot_per_frame(out / "psnr_mu.png", per_frame, "PSNR-mu per frame (dB)")

    c, r = metrics[args.backend], metrics["reference_only"]
    print(f"PSNR-mu {args.backend} {c['psnr_mu']:.2f} dB vs reference-only {r['psnr_mu']:.2f} dB "
          f"({report['psnr_mu_gain_db']:+.2f} dB); t-PSNR {c['t_psnr']:.2f} vs {r['t_psnr']:.2f}; "
          f"{t_run * 1e3:.0f} ms/frame", file=sys.stderr)
    print(f"wrote {out / 'report.json'}, strip.png, video.mp4, psnr_mu.png", file=sys.stderr)
    return 0


def _tonemap(hdr: np.ndarray, seq: object) -> np.ndarray:
    from ..core.display_tonemap import DisplayToneMapper

    mapper = DisplayToneMapper()
    return np.stack([mapper(frame, f.stamp_s) for frame, f in zip(hdr, seq.reference, strict=True)])


def _registered_groups(seq: object) -> list:
    """Groups with anchors warped into the reference grid, for the picture strip."""
    from dataclasses import replace

    from ..core.registration import Registration

    ref = seq.reference_calibration
    reg = Registration(seq.anchor_calibration, (ref.width, ref.height))
    anchors = [replace(f, pixels=reg.apply(f.pixels)) for f in seq.anchors]
    return group_offline(seq.reference, pair_anchors(anchors))
