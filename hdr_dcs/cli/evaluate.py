"""``hdr-dcs evaluate BAG [BAG ...] --backend NAME [--backend NAME ...] --report FILE``.

For every bag and backend: run the pipeline over the bag (or, with ``--backend
recorded``, take the /dcs/hdr/image frames the bag already holds) and score the result:
full-reference metrics against /dcs/ground_truth/hdr when the bag has it, no-reference
temporal and brightness metrics otherwise (``core.metrics.sequence_report``). The
baseline "reference_only" (f^-1(L_ref) / (t g) of the reference frame alone) is always
scored too, for comparison. Also per backend: pipeline time per frame, the grouper's
drops by reason, groups without anchors, rejected input messages, per-frame series.

Normalisation: one peak per bag (the ground truth's maximum over the sequence; without
ground truth 1 / min(t g) of the bag's exposures) shared by all backends. Memory: a bag's
ground truth and one prediction are held for the temporal metrics, box-downsampled when
they would exceed --metrics-memory (reported as metrics_scale). See hdr_dcs.eval.report.

Writes FILE (JSON, atomically, after every bag x backend; marked "complete": false until
the end, so an interrupted or failed run leaves a readable partial report), the summary
table as Markdown next to it (FILE with suffix .md; also printed), and plots into
--plots DIR (default: FILE's stem + "_plots" next to it): luminance over time, per-frame
PSNR-mu (bags with ground truth) and a strip of example frames per bag.

``--response FILE``: a camera response file (``hdr-dcs calibrate response``) used by every
backend and the baseline in place of gamma 2.2; the report's options name it.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..core.display_tonemap import DisplayToneMapper
from ..core.errors import InputError
from ..core.metrics import frame_brightness
from ..core.types import FrameGroup
from ..eval import plots
from ..eval.bagrun import EVAL_BACKENDS, RECORDED, REFERENCE_ONLY, BagRun, check_backend
from ..eval.report import (
    DEFAULT_MEMORY_BYTES,
    GroundTruthStore,
    SequenceStore,
    backend_entry,
    choose_scale,
    markdown_table,
    score,
    summary_rows,
    write_json_atomic,
    write_text_atomic,
)
from ..io.bag import BagReader, Topics
from ..pipeline import PipelineConfig
from . import media
from .progress import Progress
from .reconstruct import (
    add_pipeline_arguments,
    describe_response_option,
    pipeline_config_from_args,
    topics_from_args,
)

STRIP_ROWS = 4


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score backends on bags (with or without ground truth) into a report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bags", type=Path, nargs="+", metavar="BAG", help="bags to score")
    p.add_argument("--backend", action="append", default=None, metavar="NAME",
                   help=f"one of {', '.join(EVAL_BACKENDS)}; repeat for several (default classical)")
    p.add_argument("--report", type=Path, required=True, metavar="FILE", help="the JSON report to write")
    p.add_argument("--plots", type=Path, default=None, metavar="DIR",
                   help="folder for the plots (default: next to the report)")
    p.add_argument("--no-plots", action="store_true", help="write no plots")
    p.add_argument("--metrics-memory", type=float, default=DEFAULT_MEMORY_BYTES / 2**20, metavar="MB",
                   help="memory for the frames the metrics need, per bag (default %(default).0f MB)")
    add_pipeline_arguments(p)
    p.set_defaults(run=run)


def markdown_path(report: Path) -> Path:
    """The Markdown table's file: the report's name with suffix .md."""
    if report.suffix.lower() == ".md":
        return report.with_name(report.name + ".table.md")
    return report.with_suffix(".md")


def _unique(items: Sequence[Any], key: Any = lambda x: x) -> list[Any]:
    seen, out = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


class Report:
    """The report being built; written atomically after every entry."""

    def __init__(self, path: Path, command: str, backends: list[str], options: dict[str, Any]) -> None:
        self.path = path
        self.doc: dict[str, Any] = {
            "format": "hdr_dcs evaluation report v1",
            "complete": False,
            "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "hdr_dcs_version": __version__,
            "command": command,
            "backends": backends,
            "options": options,
            "bags": {},
            "bag_info": {},
        }

    def set_entry(self, bag: str, backend: str, entry: dict[str, Any]) -> None:
        self.doc["bags"].setdefault(bag, {})[backend] = entry
        self.write()

    def set_bag_info(self, bag: str, info: dict[str, Any]) -> None:
        self.doc["bag_info"][bag] = info

    def _summarise(self) -> str:
        rows = summary_rows(self.doc["bags"])
        table = markdown_table(rows)
        self.doc["summary"] = rows
        self.doc["summary_markdown"] = table
        return table

    def write(self) -> None:
        self._summarise()
        write_json_atomic(self.path, self.doc)

    def finish(self) -> str:
        self.doc["complete"] = True
        table = self._summarise()
        write_json_atomic(self.path, self.doc)
        write_text_atomic(markdown_path(self.path), table)
        return table

    def abort(self, why: str) -> None:
        self.doc["complete"] = False
        self.doc["error"] = why
        self.write()


def run(args: argparse.Namespace) -> int:
    names = _unique(args.backend or ["classical"])
    for name in names:
        check_backend(name)
    order = [*names, REFERENCE_ONLY] if REFERENCE_ONLY not in names else names
    topics = topics_from_args(args)
    config = pipeline_config_from_args(args)
    if not args.metrics_memory > 0:
        raise InputError(f"--metrics-memory must be positive, got {args.metrics_memory}")
    memory = int(args.metrics_memory * 2**20)
    bags: list[Path] = _unique(list(args.bags), key=lambda p: p.resolve())
    for bag in bags:                # fail before any long run: missing, corrupt, no recorded HDR
        with BagReader(bag) as reader:
            if RECORDED in names and topics.hdr_image not in reader.topics():
                raise InputError(f"{bag} has no {topics.hdr_image}: nothing recorded to score "
                                 f"(--backend {RECORDED})")
    report_path: Path = args.report
    report_path.parent.mkdir(parents=True, exist_ok=True)
    plots_dir = None if args.no_plots else (args.plots or report_path.with_name(report_path.stem + "_plots"))
    if plots_dir is not None:
        plots_dir.mkdir(parents=True, exist_ok=True)
    options = {"grouper": vars(config.grouper), "max_code": args.max_code, "topics": vars(topics),
               "response": describe_response_option(args, config),
               "metrics_memory_mb": args.metrics_memory,
               "plots": None if plots_dir is None else str(plots_dir)}
    command = " ".join(["hdr-dcs evaluate", *map(str, bags), *(f"--backend {n}" for n in names),
                        f"--report {report_path}"])
    report = Report(report_path, command, order, options)
    slugs = _slugs(bags)
    try:
        for bag in bags:
            _evaluate_bag(bag, order, topics, config, args.max_code, memory, report, plots_dir, slugs[bag])
        table = report.finish()
    except KeyboardInterrupt:
        report.abort("interrupted")
        raise
    except Exception as exc:
        report.abort(" ".join(str(exc).split()) or type(exc).__name__)
        raise
    sys.stdout.write(table)
    where = f", {markdown_path(report_path)}" + (f", plots in {plots_dir}" if plots_dir else "")
    print(f"wrote {report_path}{where}", file=sys.stderr)
    return 0


def _slugs(bags: list[Path]) -> dict[Path, str]:
    out: dict[Path, str] = {}
    used: set[str] = set()
    for bag in bags:
        base = bag.resolve().name.replace(".", "_") or "bag"
        slug, i = base, 2
        while slug in used:
            slug, i = f"{base}_{i}", i + 1
        used.add(slug)
        out[bag] = slug
    return out


class _BagState:
    """What the runs over one bag share: metrics scale, ground truth, peak, examples."""

    def __init__(self, memory: int) -> None:
        self.memory = memory
        self.scale: int | None = None
        self.size_wh: tuple[int, int] | None = None
        self.gt: GroundTruthStore | None = None
        self.peak: float | None = None
        self.peak_source = ""
        self.pick_indices: set[int] = set()
        self.groups: dict[int, FrameGroup] = {}           # stamp -> group, example frames
        self.examples: dict[str, dict[int, np.ndarray]] = {}
        self.gt_mapper = DisplayToneMapper()
        self.gt_examples: dict[int, np.ndarray] = {}
        self.brightness: dict[str, tuple[list[int], list[float]]] = {}
        self.psnr: dict[str, tuple[list[int], list[float | None]]] = {}
        self.brightness_gt: tuple[list[int], list[float]] | None = None

    def set_scale(self, hdr: np.ndarray, expected: int) -> int:
        if self.scale is None:
            h, w = hdr.shape[:2]
            self.scale = choose_scale(h, w, expected, self.memory)
            self.size_wh = (w // self.scale, h // self.scale)
        return self.scale


class _GroupPicker:
    """on_group callback of the first run: keeps the FrameGroups of the example frames."""

    def __init__(self, state: _BagState) -> None:
        self.state = state
        self.count = 0

    def __call__(self, group: FrameGroup) -> None:
        if self.count in self.state.pick_indices:
            self.state.groups[group.reference.stamp_ns] = group
        self.count += 1


def _evaluate_bag(bag: Path, order: list[str], topics: Topics, config: PipelineConfig, max_code: int | None,
                  memory: int, report: Report, plots_dir: Path | None, slug: str) -> None:
    key = str(bag)
    state = _BagState(memory)
    runs = [REFERENCE_ONLY] + [n for n in order if n != REFERENCE_ONLY]   # the baseline first: it
    bag_info: dict[str, Any] = {"path": str(bag)}                        # also collects ground truth
    for i, name in enumerate(runs):
        first = i == 0
        capture = first and plots_dir is not None
        bag_run = BagRun(bag, name, topics, config=config, max_code=max_code, ground_truth=first,
                         on_group=_GroupPicker(state) if capture else None)
        with bag_run:
            expected = bag_run.expected_frames
            if first:
                state.pick_indices = {round(x) for x in np.linspace(0, max(expected - 1, 0), STRIP_ROWS)}
                bag_info.update(ground_truth=bag_run.has_ground_truth, expected_frames=expected,
                                topics={t: list(v) for t, v in sorted(bag_run.bag_topics.items())})
            infos, pred = _collect(bag_run, name, state, first, plots_dir is not None,
                                   Progress(expected, f"{bag.name} {name}"))
        if first:
            _finish_ground_truth(state, bag_run, bag_info)
        pred.normalise(state.peak)  # type: ignore[arg-type]
        scored = score(pred, state.gt)
        full = backend_entry(bag_run.stats, scored, pred.stamps, infos)
        state.brightness[name] = (pred.stamps, scored["per_frame"].get("brightness", []))
        if "psnr_mu" in scored["per_frame"]:
            state.psnr[name] = (pred.stamps, scored["per_frame"]["psnr_mu"])
        report.set_entry(key, name, full)
        del pred
    # report order: as asked, the baseline last
    report.doc["bags"][key] = {n: report.doc["bags"][key][n] for n in order}
    if plots_dir is not None:
        bag_info["plots"] = _plots(bag, order, state, plots_dir, slug)
    report.set_bag_info(key, bag_info)
    report.write()


def _collect(bag_run: BagRun, name: str, state: _BagState, first: bool, examples: bool,
             progress: Progress) -> tuple[list[dict[str, Any]], SequenceStore]:
    """Iterate one run: store frames for the metrics, keep diagnostics and example frames."""
    infos: list[dict[str, Any]] = []
    pred: SequenceStore | None = None
    own_mapper = DisplayToneMapper()
    picked: dict[int, np.ndarray] = {}
    bag_run.progress = progress.update
    with progress:
        for frame in bag_run:
            scale = state.set_scale(frame.hdr, bag_run.expected_frames)
            if pred is None:
                pred = SequenceStore(bag_run.expected_frames, scale)
                if first and bag_run.ground_truth:
                    state.gt = GroundTruthStore(bag_run.expected_frames, scale)
            pred.add(frame.stamp_ns, frame.hdr)
            infos.append(frame.info)
            if first and frame.ground_truth is not None and state.gt is not None:
                state.gt.add(frame.stamp_ns, frame.ground_truth)
                if examples:
                    tm = state.gt_mapper(frame.ground_truth, frame.stamp_ns * 1e-9)
                    if frame.stamp_ns in state.groups:
                        state.gt_examples[frame.stamp_ns] = tm
            if examples:
                tm = frame.tonemapped
                if tm is None:      # recorded HDR: tone map it like the pipeline would
                    tm = own_mapper(frame.hdr, frame.stamp_ns * 1e-9)
                if frame.stamp_ns in state.groups:
                    picked[frame.stamp_ns] = tm
    state.examples[name] = picked
    assert pred is not None      # BagRun raises when nothing came out
    return infos, pred


def _finish_ground_truth(state: _BagState, bag_run: BagRun, bag_info: dict[str, Any]) -> None:
    if state.gt is not None and len(state.gt) and state.gt.peak > 0:
        state.peak = state.gt.peak
        state.peak_source = "ground truth maximum"
        state.gt.normalise(state.peak)
        gt_b = frame_brightness(state.gt.frames).tolist()
        bag_info["ground_truth_per_frame"] = {"stamp_ns": list(state.gt.stamps), "brightness": gt_b}
        state.brightness_gt = (list(state.gt.stamps), gt_b)
        bag_info["ground_truth_frames_scored"] = len(state.gt)
    else:
        state.gt = None
        scale = bag_run.stats.min_exposure_scale
        state.peak = 1.0 / scale if scale else 1.0
        state.peak_source = "1 / min exposure (t g)" if scale else "1 (no valid exposure)"
    bag_info.update(normalisation={"peak": state.peak, "source": state.peak_source},
                    metrics_scale=state.scale, metrics_size_wh=list(state.size_wh or ()))


def _plots(bag: Path, order: list[str], state: _BagState, plots_dir: Path, slug: str) -> dict[str, str]:
    out: dict[str, str] = {}
    gt_series = state.brightness_gt
    path = plots.plot_luminance(plots_dir / f"{slug}_luminance.png",
                                {n: state.brightness[n] for n in order if n in state.brightness},
                                gt_series, title=f"{bag.name}: luminance over time")
    out["luminance"] = str(path)
    if state.psnr:
        path = plots.plot_psnr_mu(plots_dir / f"{slug}_psnr_mu.png",
                                  {n: state.psnr[n] for n in order if n in state.psnr},
                                  title=f"{bag.name}: PSNR-mu per frame")
        out["psnr_mu"] = str(path)
    stamps = sorted(state.groups)
    if stamps:
        groups = [state.groups[s] for s in stamps]
        columns: dict[str, list[np.ndarray | None]] = {n: [state.examples.get(n, {}).get(s) for s in stamps]
                                                       for n in order}
        if state.gt_examples:
            columns["ground truth"] = [state.gt_examples.get(s) for s in stamps]
        shape = groups[0].reference.pixels.shape[:2]
        path = plots_dir / f"{slug}_strip.png"
        media.write_strip(path, groups, plots.strip_stacks(shape, columns), rows=len(groups))
        out["strip"] = str(path)
    return out

