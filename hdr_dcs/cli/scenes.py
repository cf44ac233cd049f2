"""``hdr-dcs scenes``: describe the built-in scene set and draw a picture strip.

For every scene: dynamic range of the ground truth (stops between the 0.1 and 99.9
percentiles of luminance, and min/max), motion (largest image displacement rate), and
the fraction of saturated pixels at each exposure of the default rig. Writes a Markdown
table, the same as JSON, and a strip (reference, low, high, ground truth) of one scene.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..core.display_tonemap import DisplayToneMapper
from ..core.grouping import group_offline, pair_anchors
from ..core.photometry import channel_max, luminance
from ..core.registration import Registration
from ..core.types import Role
from ..sim.rig import RigConfig, simulate
from ..sim.scenes import SCENES, make_scene
from . import media
from .generate import parse_size


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenes", help="table of the built-in scenes and a picture strip", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("docs"), help="output folder (default: %(default)s)")
    p.add_argument("--size", type=parse_size, default=(320, 240))
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--strip-scene", default="street")
    p.add_argument("--exr-dir", type=Path, default=None)
    p.set_defaults(run=run)


def describe(name: str, size_wh: tuple[int, int], seconds: float, exr_dir: Path | None,
             rig: RigConfig) -> tuple[dict, object]:
    scene = make_scene(name, exr_dir, size_wh, seconds)
    n = max(2, int(seconds * rig.reference_rate_hz))
    start = time.perf_counter()
    seq = simulate(scene.render_exposure, n, rig)
    elapsed = time.perf_counter() - start
    lum = luminance(seq.ground_truth[:, ::2, ::2])
    positive = lum[lum > 0]
    lo, hi = np.percentile(positive, [0.1, 99.9])
    sat = {}
    for role, frames in (("reference", seq.reference), ("low", [f for f in seq.anchors if f.role == Role.LOW]),
                         ("high", [f for f in seq.anchors if f.role == Role.HIGH])):
        sat[role] = float(np.mean([(channel_max(f.pixels) >= 0.97).mean() for f in frames]))
    motion = max(scene.displacement_px(t, 1.0 / rig.reference_rate_hz) * rig.reference_rate_hz
                 for t in np.linspace(0.0, seconds, 5))
    row = {"scene": name, "range_stops_p0.1_p99.9": round(float(np.log2(hi / lo)), 1),
           "min": float(positive.min()), "max": float(lum.max()), "motion_px_s": round(float(motion), 1),
           "saturated_reference": round(sat["reference"], 4), "saturated_low": round(sat["low"], 4),
           "saturated_high": round(sat["high"], 4), "reference_exposure_ms":
           round(seq.reference_exposure.exposure_time_s * 1e3, 3), "simulate_s": round(elapsed, 2)}
    return row, seq


def run(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    rig = RigConfig(baseline_px=(1.5, 0.0))
    rows = []
    for name in SCENES:
        row, seq = describe(name, args.size, args.seconds, args.exr_dir, rig)
        rows.append(row)
        print(f"{name}: {row['range_stops_p0.1_p99.9']} stops, {row['motion_px_s']} px/s", file=sys.stderr)
        if name == args.strip_scene:
            write_sequence_strip(args.out / f"strip_{name}.jpg", seq)
    keys = list(rows[0])
    table = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    table += ["| " + " | ".join(f"{r[k]:.3g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |"
              for r in rows]
    (args.out / "scenes.md").write_text("\n".join(table) + "\n")
    (args.out / "scenes.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(table))
    return 0


def write_sequence_strip(path: Path, seq: object) -> None:
    """Reference, registered low and high, and tone-mapped ground truth for 4 frames."""
    reg = Registration(seq.anchor_calibration, (seq.reference_calibration.width, seq.reference_calibration.height))
    anchors = [type(f)(reg.apply(f.pixels), f.stamp_ns, f.role, f.exposure, f.sequence_id, f.frame_id)
               for f in seq.anchors]
    groups = group_offline(seq.reference, pair_anchors(anchors))
    mapper = DisplayToneMapper()
    truth = np.stack([mapper(gt, f.stamp_s) for gt, f in zip(seq.ground_truth, seq.reference, strict=True)])
    media.write_strip(path, groups,
                      {"ground truth": truth}, rows=4)
