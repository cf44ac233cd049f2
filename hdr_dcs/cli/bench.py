"""``hdr-dcs bench``: speed of every backend on this machine, with a report.

Measures, in one run: the machine's matmul peak (numpy/OpenBLAS and torch, fp32), the
classical merge per 640x480 frame, each learned model's latency per frame at 640x480 and
per 128x128 patch, its FLOPs per frame (torch's FlopCounterMode: 2 per multiply-add) and
the FLOP/s it achieves against the measured peak, and the cost of the bidirectional WKV
against sequence length (it must grow linearly). Writes a JSON report, a Markdown table
and a plot of the WKV scaling.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .generate import parse_size


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark the backends and models on this machine", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("runs/bench"), help="output folder (default: %(default)s)")
    p.add_argument("--size", type=parse_size, default=(640, 480))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", nargs="*", default=["location:lite", "location:paper", "eafnet:lite", "eafnet:paper"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.set_defaults(run=run)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Smallest wall time of ``repeats`` calls after one warm-up call, seconds."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_peak(n: int = 2048, repeats: int = 3) -> dict[str, float]:
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    numpy_s = best_time(lambda: a @ a, repeats)
    ta = torch.from_numpy(a)
    torch_s = best_time(lambda: ta @ ta, repeats)
    flops = 2.0 * n ** 3
    return {"numpy_gflops": flops / numpy_s / 1e9, "torch_gflops": flops / torch_s / 1e9}


def count_flops(fn: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def bench_classical(size: tuple[int, int], repeats: int) -> dict[str, float]:
    from ..core.merge import merge
    from ..core.types import AnchorPair, FrameGroup, Role
    from ..sim.rig import RigConfig, simulate
    from ..sim.scenes import make_scene

    seq = simulate(make_scene("street", size_wh=size, duration_s=1.0).render_exposure, 3, RigConfig())
    low = next(f for f in seq.anchors if f.role == Role.LOW)
    high = next(f for f in seq.anchors if f.role == Role.HIGH)
    group = FrameGroup(seq.reference[1], AnchorPair(low, high), 0.05)
    return {"ms_per_frame": 1e3 * best_time(lambda: merge(group), repeats)}


def _location_call(variant: str, size: tuple[int, int], frames: int = 5) -> tuple[Callable[[], object], int]:
    from ..models.location import CONFIGS, LoCAtion

    model = LoCAtion(CONFIGS[variant]).eval()
    w, h = size
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(1, frames, 9, h, w, generator=g), torch.rand(1, frames, 3, h, w, generator=g),
         torch.rand(1, 10, h, w, generator=g), torch.rand(1, 10, h, w, generator=g))

    def call() -> object:
        with torch.inference_mode():
            return model(*x)

    return call, frames


def _eafnet_call(variant: str, size: tuple[int, int]) -> tuple[Callable[[], object], int]:
    from ..models import eafnet

    model = eafnet.EAFNet(eafnet.CONFIGS[variant]).eval()
    w, h = size
    inputs = eafnet.example_inputs(model.config, h, w) if hasattr(eafnet, "example_inputs") else None
    if inputs is None:
        raise RuntimeError("eafnet.example_inputs is missing")

    def call() -> object:
        with torch.inference_mode():
            return model(*inputs)

    return call, 1


def bench_model(spec: str, size: tuple[int, int], repeats: int, peak_gflops: float) -> dict[str, float]:
    name, variant = spec.split(":")
    make = {"location": _location_call, "eafnet": _eafnet_call}[name]
    out: dict[str, float] = {}
    for label, shape, reps in (("frame", size, max(1, repeats - 1)), ("patch128", (128, 128), repeats)):
        call, frames = make(variant, shape)
        seconds = best_time(call, reps) / frames
        flops = count_flops(call) / frames
        out[f"ms_per_{label}"] = seconds * 1e3
        out[f"gflop_per_{label}"] = flops / 1e9
        out[f"achieved_gflops_{label}"] = flops / seconds / 1e9
        out[f"fraction_of_peak_{label}"] = flops / seconds / 1e9 / peak_gflops
    return out


def bench_wkv(lengths: tuple[int, ...] = (8, 16, 32, 64, 128, 256), repeats: int = 3) -> dict[str, object]:
    from ..models.rwkv import bi_wkv

    c, n = 32, 1024
    w, u = torch.rand(c), torch.randn(c)
    times = []
    for t in lengths:
        k, v = torch.randn(1, t, c, n), torch.randn(1, t, c, n)
        with torch.inference_mode():
            times.append(best_time(lambda k=k, v=v: bi_wkv(w, u, k, v), repeats))
    slope, intercept = np.polyfit(lengths, times, 1)
    pred = np.polyval([slope, intercept], lengths)
    r2 = 1 - np.sum((np.array(times) - pred) ** 2) / np.sum((np.array(times) - np.mean(times)) ** 2)
    # Quadratic growth would make the last ratio ~ (256/128)^2 = 4; linear ~ 2.
    return {"lengths": list(lengths), "seconds": times, "linear_fit_r2": float(r2),
            "ratio_last_two": times[-1] / times[-2], "channels": c, "sequences": n}


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"threads": torch.get_num_threads(), "size_wh": list(args.size)}
    print("matmul peak ...", file=sys.stderr)
    peak = matmul_peak()
    report["matmul_peak"] = peak
    peak_gflops = max(peak.values())
    print("classical merge ...", file=sys.stderr)
    report["classical"] = bench_classical(args.size, args.repeats)
    models: dict[str, object] = {}
    for spec in args.models:
        print(f"{spec} ...", file=sys.stderr)
        try:
            models[spec] = bench_model(spec, args.size, args.repeats, peak_gflops)
        except (ImportError, AttributeError, KeyError, RuntimeError) as exc:
            models[spec] = {"error": str(exc).splitlines()[0]}
    report["models"] = models
    print("bidirectional WKV scaling ...", file=sys.stderr)
    report["wkv"] = bench_wkv()
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    lines = [f"matmul peak: numpy {peak['numpy_gflops']:.0f} GFLOP/s, torch {peak['torch_gflops']:.0f} GFLOP/s "
             f"({report['threads']} threads)",
             f"classical merge: {report['classical']['ms_per_frame']:.1f} ms per {args.size[0]}x{args.size[1]} frame",
             "", "| model | ms/frame | GFLOP/frame | GFLOP/s | of peak | ms/128x128 patch |", "|---|---|---|---|---|---|"]
    for spec, m in models.items():
        if "error" in m:
            lines.append(f"| {spec} | {m['error']} | | | | |")
        else:
            lines.append(f"| {spec} | {m['ms_per_frame']:.0f} | {m['gflop_per_frame']:.1f} | "
                         f"{m['achieved_gflops_frame']:.1f} | {100 * m['fraction_of_peak_frame']:.0f} % | "
                         f"{m['ms_per_patch128']:.1f} |")
    wkv = report["wkv"]
    lines += ["", "WKV seconds by length: " + ", ".join(f"{t}: {s * 1e3:.1f} ms" for t, s in
                                                       zip(wkv["lengths"], wkv["seconds"], strict=True)),
              f"linear fit R^2 {wkv['linear_fit_r2']:.3f}; time(256)/time(128) = {wkv['ratio_last_two']:.2f} "
              "(2 = linear, 4 = quadratic)"]
    (args.out / "bench.md").write_text("\n".join(lines) + "\n")
    _plot_wkv(args.out / "wkv_scaling.png", wkv)
    print("\n".join(lines))
    return 0


def _plot_wkv(path: Path, wkv: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.plot(wkv["lengths"], np.array(wkv["seconds"]) * 1e3, "o-")
    ax.set_xlabel("sequence length (frames)")
    ax.set_ylabel("bi-WKV time (ms)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
