"""``hdr-dcs rig``: run the simulated rig's ROS 2 node graph live, in one process, and score it.

Starts the graph of ``launch/sim_rig.launch.py`` — two simulated cameras
(``reference_camera``, ``anchor_camera``), the ``calibration`` node and the
``reconstruction`` node — from the same parameter files (config/sim_cameras.yaml,
config/calibration.yaml, config/reconstruction.yaml), on one MultiThreadedExecutor,
with real DDS topics between the nodes (``hdr_dcs.nodes.runner``). It watches the outputs
for ``--duration`` seconds of streaming, stops the cameras, lets the reconstruction node
finish every frame it received, and writes into ``--out``:

- report.json: frames in/out per camera, output rate, latency percentiles, drops by
  reason (from the nodes' diagnostics), the exactly-once check of the output stamps, and
  the quality of the live output vs the simulator's ground truth next to the
  reference-only estimate (core.metrics, over the most recent frames: at most 150, and
  ~256 MB of them);
- strip.png: four frames: reference, low, high, live output, reference-only, ground truth;
- video.mp4: the live tone-mapped output next to reference-only and ground truth.

The defaults (320x240 at 15 Hz, classical backend, 8 s) fit a 2-core CPU; 640x480 at
30 Hz needs several cores (the cameras render in the same process). ``--set
NODE.PARAM=VALUE`` overrides any node parameter, as ``-p`` would on the ROS command line
(``--set reconstruction.queue_size=48``). A node whose status is not OK at the end (e.g. a
backend that failed to load, replaced by its fallback) is named in the summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from .generate import parse_size

_NS = 10**9


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rig", help="run the simulated rig's node graph live and score its output",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=8.0, metavar="S",
                   help="seconds of streaming (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("runs/rig"), help="output folder (default %(default)s)")
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="reconstruction backend (default: config/reconstruction.yaml's, classical)")
    p.add_argument("--size", type=parse_size, default=(320, 240), metavar="WxH",
                   help="camera image size (default 320x240)")
    p.add_argument("--rate", type=float, default=15.0, metavar="HZ", help="reference frame rate (default 15)")
    p.add_argument("--scene", default=None,
                   help="simulated scene (default: config/sim_cameras.yaml's, street)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="NODE.PARAM=VALUE",
                   help="override a node parameter (repeatable)")
    p.add_argument("--config-dir", type=Path, default=None,
                   help="folder of the parameter files (default: the package's config folder)")
    p.add_argument("--no-ground-truth", action="store_true",
                   help="do not publish /dcs/ground_truth/hdr (no quality metrics)")
    p.add_argument("--no-media", action="store_true", help="do not write strip.png and video.mp4")
    p.add_argument("--domain-id", type=int, default=None,
                   help="ROS_DOMAIN_ID of the graph (default: the environment's)")
    p.set_defaults(run=run)


def _overrides(args: argparse.Namespace) -> dict[str, list[str]]:
    from ..nodes.runner import parse_set

    if not (math.isfinite(args.duration) and args.duration > 0):
        raise InputError(f"--duration must be > 0, got {args.duration}")
    if not (math.isfinite(args.rate) and 0 < args.rate <= 240):
        raise InputError(f"--rate must be in (0, 240] Hz, got {args.rate}")
    w, h = args.size
    out: dict[str, list[str]] = {}
    for camera in ("reference_camera", "anchor_camera"):
        items = [f"sim.size:=[{w}, {h}]", f"sim.rate_hz:={float(args.rate)!r}"]
        if args.scene:
            items.append(f"sim.scene:={args.scene}")
        out[camera] = items
    if not args.no_ground_truth:
        out["reference_camera"].append("sim.publish_ground_truth:=true")
    if args.backend:
        out["reconstruction"] = [f"backend:={args.backend}"]
    for node, items in parse_set(args.sets).items():
        out.setdefault(node, []).extend(items)
    return out


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    overrides = _overrides(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    from ..nodes.runner import RigGraph

    keep = not (args.no_ground_truth and args.no_media)
    # the monitor keeps the most recent frames for scoring and pictures, within ~256 MB
    per_frame = args.size[0] * args.size[1] * 33      # HDR + truth (float32 RGB) + codes of the rest
    max_frames = int(np.clip(256e6 / per_frame, 16, 150))
    t_start = time.perf_counter()
    _say(f"rig: starting reference_camera, anchor_camera, calibration, reconstruction "
         f"({args.size[0]}x{args.size[1]} at {args.rate:g} Hz) in one process")
    graph = RigGraph(args.config_dir, overrides, workdir=out, domain_id=args.domain_id,
                     monitor_options={"max_frames": max_frames, "keep_pixels": keep})
    interrupted = False
    try:
        for note in graph.notes:
            _say(f"rig: {note}")
        graph.start()
        interrupted, streamed_s = _stream(graph, args.duration)
        _say("rig: stopping the cameras, finishing the frames in flight")
        graph.stop_cameras()
        complete = graph.drain(timeout_s=15.0)
        recon = graph.reconstruction
        mon = graph.monitor
        assert mon is not None
        deadline = time.monotonic() + 5.0
        while mon.count("hdr") < recon.frames_out and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        report = _report(graph, args, streamed_s, complete)
    finally:
        graph.close()
    report["interrupted"] = interrupted
    if not args.no_ground_truth:
        _say("rig: scoring the live output against the ground truth")
        report["quality"] = _quality(graph, report)
    if not args.no_media:
        report["media"] = _media(graph, out, args.rate)
    report["wall_s"] = round(time.perf_counter() - t_start, 2)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_json_default))
    _summary(report, out)
    return 130 if interrupted else 0


def _stream(graph: Any, duration_s: float) -> tuple[bool, float]:
    """Wait for the first reference frame, then ``duration_s`` seconds, printing progress."""
    mon, recon = graph.monitor, graph.reconstruction
    try:
        deadline = time.monotonic() + 60.0
        while mon.count("reference") == 0:
            if time.monotonic() > deadline:
                raise InputError("the reference camera published nothing within 60 s")
            time.sleep(0.05)
        t0 = time.monotonic()
        next_print = t0 + 1.0
        while (now := time.monotonic()) < t0 + duration_s:
            if now >= next_print:
                next_print += 1.0
                lat = recon.diag.latency("receive to publish").summary()
                latency = f", latency p50 {lat['p50'] * 1e3:.0f} ms" if lat else ""
                dropped = sum(recon.diag.counts("dropped").values())
                _say(f"rig: {now - t0:4.1f}/{duration_s:g} s  reference {mon.count('reference')}  "
                     f"anchor {mon.count('anchor')}  hdr out {mon.count('hdr')} "
                     f"({recon.diag.rate('output').rate_hz():.1f} Hz){latency}, dropped {dropped}")
            time.sleep(min(0.05, max(t0 + duration_s - now, 0.0)))
        return False, time.monotonic() - t0
    except KeyboardInterrupt:
        _say("rig: interrupted: finishing and writing what there is")
        return True, time.monotonic() - t0 if "t0" in locals() else 0.0


def _latency_ms(recorder: Any) -> dict[str, float] | None:
    summary = recorder.summary()
    return None if summary is None else {k: round(v * 1e3, 2) for k, v in summary.items()}


def _report(graph: Any, args: argparse.Namespace, streamed_s: float, complete: bool) -> dict[str, Any]:
    mon, recon = graph.monitor, graph.reconstruction
    ref_stamps, hdr_stamps = mon.stamps("reference"), mon.stamps("hdr")
    ref_set, hdr_set = set(ref_stamps), set(hdr_stamps)
    arrivals = sorted(mon.arrivals("hdr"))
    rate = (len(arrivals) - 1) / ((arrivals[-1] - arrivals[0]) / _NS) if len(arrivals) > 2 else 0.0
    reports = graph.reports()
    cameras = {}
    for camera, node in graph.cameras.items():
        cameras[camera] = {"published": graph.published(camera), "received_by_reconstruction":
                           recon.images_received(camera), "camera_drops": node.diag.counts("dropped"),
                           "capture_ms": _latency_ms(node.diag.latency("capture"))}
    return {
        "graph": list(graph.nodes),
        "config_dir": str(graph.config_dir),
        "overrides": graph.overrides,
        "notes": graph.notes,
        "size_wh": list(args.size),
        "rate_hz": args.rate,
        "backend": recon.diag.report().value("backend"),
        "streamed_s": round(streamed_s, 3),
        "cameras": cameras,
        "frames": {
            "reference_seen": len(ref_stamps),
            "anchor_seen": mon.count("anchor"),
            "hdr_out": len(hdr_stamps),
            "tonemapped_out": mon.count("tonemapped"),
            "hdr_unique_stamps": len(hdr_set),
            "hdr_stamps_unique": len(hdr_set) == len(hdr_stamps),
            "reference_without_output": len(ref_set - hdr_set),
            "outputs_not_a_reference_frame": len(hdr_set - ref_set),
            "drained": complete,
        },
        "output_rate_hz": round(rate, 3),
        "latency_ms": {
            "receive_to_publish": _latency_ms(recon.diag.latency("receive to publish")),
            "stamp_to_publish": _latency_ms(recon.diag.latency("stamp to publish")),
            "processing": _latency_ms(recon.diag.latency("processing")),
            "queue_wait": _latency_ms(recon.diag.latency("queue wait")),
        },
        "drops": recon.diag.counts("dropped"),
        "diagnostics": {name: {"level": r.level.name, "message": r.message, "values": dict(r.values)}
                        for name, r in reports.items()},
    }


def _reference_frame(graph: Any, stamp: int) -> Any:
    """The reference frame the monitor kept at ``stamp`` as a core Frame (or None)."""
    from ..core.types import Exposure, Frame, Role
    from ..io.image_msg import to_rgb_unit

    mon = graph.monitor
    stored = mon.frames("reference").get(stamp)
    info = mon.exposure("reference", stamp)
    if stored is None or info is None:
        return None
    pixels = to_rgb_unit(stored.pixels, stored.encoding)
    return Frame(pixels, stamp, Role.REFERENCE, Exposure(info.exposure_time_us * 1e-6, info.gain_db),
                 int(info.sequence_id), "reference_optical_frame")


def _scored_stamps(graph: Any) -> list[int]:
    mon = graph.monitor
    hdr, gt, ref = mon.frames("hdr"), mon.frames("ground_truth"), mon.frames("reference")
    return sorted(s for s in hdr if s in gt and s in ref and mon.exposure("reference", s) is not None)


def _quality(graph: Any, report: dict[str, Any]) -> dict[str, Any]:
    from ..core.merge import reference_only
    from ..core.metrics import sequence_report
    from ..core.tonemap import normalise

    stamps = _scored_stamps(graph)
    if len(stamps) < 2:
        return {"frames": len(stamps), "note": "fewer than 2 frames with ground truth: not scored"}
    mon = graph.monitor
    hdr, gt = mon.frames("hdr"), mon.frames("ground_truth")
    truth = np.stack([gt[s].pixels for s in stamps])
    peak = float(truth.max())
    gt_n = normalise(truth, peak)
    live = normalise(np.stack([hdr[s].pixels for s in stamps]), peak)
    ref_only = normalise(np.stack([reference_only(_reference_frame(graph, s)) for s in stamps]), peak)
    backend = report.get("backend") or "live"
    live_m, ref_m = sequence_report(live, gt_n), sequence_report(ref_only, gt_n)
    return {"frames": len(stamps), "normalisation_peak": peak, "live": live_m, "reference_only": ref_m,
            "backend": backend, "psnr_mu_gain_db": live_m["psnr_mu"] - ref_m["psnr_mu"]}


def _media(graph: Any, out: Path, fps: float) -> dict[str, str]:
    from ..core.display_tonemap import DisplayToneMapper
    from ..core.grouping import group_offline, pair_anchors
    from ..core.merge import reference_only
    from ..core.types import Exposure, Frame, Role
    from ..io.image_msg import to_rgb_unit
    from . import media

    mon = graph.monitor
    tonemapped = mon.frames("tonemapped")
    gt = mon.frames("ground_truth")
    stamps = [s for s in sorted(tonemapped) if _reference_frame_available(graph, s)]
    if len(stamps) < 2:
        return {"note": "fewer than 2 output frames: no pictures"}
    refs = {s: _reference_frame(graph, s) for s in stamps}
    ref_mapper, gt_mapper = DisplayToneMapper(), DisplayToneMapper()
    sequences = {"live": np.stack([tonemapped[s].pixels for s in stamps]),
                 "reference only": np.stack([ref_mapper(reference_only(refs[s]), s * 1e-9) for s in stamps])}
    if all(s in gt for s in stamps):
        sequences["ground truth"] = np.stack([gt_mapper(gt[s].pixels, s * 1e-9) for s in stamps])
    written = {}
    try:
        media.write_video(out / "video.mp4", sequences, fps=fps)
        written["video"] = str(out / "video.mp4")
    except OSError as exc:
        written["video_error"] = str(exc)
    anchors = []
    for stamp, stored in mon.frames("anchor").items():
        info = mon.exposure("anchor", stamp)
        if info is not None and info.role in (Role.LOW, Role.HIGH):
            anchors.append(Frame(to_rgb_unit(stored.pixels, stored.encoding), stamp, Role(info.role),
                                 Exposure(info.exposure_time_us * 1e-6, info.gain_db), int(info.sequence_id)))
    picks = sorted({int(i) for i in np.linspace(0, len(stamps) - 1, min(4, len(stamps))).round()})
    groups = group_offline([refs[stamps[i]] for i in picks], pair_anchors(anchors))
    media.write_strip(out / "strip.png", groups, {name: seq[picks] for name, seq in sequences.items()},
                      rows=len(picks))
    written["strip"] = str(out / "strip.png")
    return written


def _reference_frame_available(graph: Any, stamp: int) -> bool:
    mon = graph.monitor
    return stamp in mon.frames("reference") and mon.exposure("reference", stamp) is not None


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, os.PathLike):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _summary(report: dict[str, Any], out: Path) -> None:
    f, lat = report["frames"], report["latency_ms"]["receive_to_publish"] or {}
    drops = ", ".join(f"{k} {v}" for k, v in sorted(report["drops"].items())) or "none"
    _say(f"rig: {f['reference_seen']} reference frames -> {f['hdr_out']} HDR frames "
         f"({f['hdr_unique_stamps']} unique stamps, {f['reference_without_output']} without output) at "
         f"{report['output_rate_hz']:.1f} Hz; latency p50 {lat.get('p50', float('nan')):.0f} ms, "
         f"p99 {lat.get('p99', float('nan')):.0f} ms; drops: {drops}")
    for name, diag in report["diagnostics"].items():
        if diag["level"] != "OK":
            _say(f"rig: {name}: {diag['level']}: {diag['message']}")
    q = report.get("quality") or {}
    if "live" in q:
        _say(f"rig: PSNR-mu live {q['live']['psnr_mu']:.2f} dB vs reference-only "
             f"{q['reference_only']['psnr_mu']:.2f} dB ({q['psnr_mu_gain_db']:+.2f} dB) "
             f"over {q['frames']} frames")
    media = ", strip.png, video.mp4" if "strip" in report.get("media", {}) else ""
    _say(f"rig: wrote {out / 'report.json'}{media}")
