"""``hdr-dcs reconstruct IN_BAG OUT_BAG --backend NAME``: HDR video for a recorded bag.

Writes OUT_BAG with every message of IN_BAG copied verbatim (same topics, types, CDR
bytes and log times) plus, for every reference frame, one /dcs/hdr/image (32FC3 RGB
radiance, SPEC.md units) and one /dcs/hdr/tonemapped (bgr8), both stamped with the
reference frame's stamp and frame_id.

Log time of the added messages: the log time of the reference image they were
reconstructed from, so each HDR frame sits on the bag's timeline next to its inputs
(equal to the stamp for bags whose log times are the stamps, as `hdr-dcs generate`
writes them). A live node would publish it later by the pipeline latency; that latency
is a property of the node, not of the recording. Every message is written in log-time
order (a few hundred ms of messages are held back while frames are in the pipeline).

Streams: memory stays at the pipeline's buffers, whatever the bag's length. The bag is
written into a hidden folder next to OUT_BAG and moved into place when complete, so an
interrupted or failed run leaves no partial bag and never destroys an existing one.
Refuses OUT_BAG == IN_BAG (or one inside the other) and an existing OUT_BAG without
--overwrite. Malformed messages in IN_BAG are counted and skipped (and still copied).
Prints a summary line (frames in/out, drops by reason, time per frame) on stderr and the
same as JSON on stdout.

Camera response: SPEC.md's gamma 2.2 unless ``--response FILE`` names a response file
(``hdr-dcs calibrate response``; hdr_dcs.io.response_yaml), which then serves every
backend (and the reference-only baseline) in its place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ..backends import BACKENDS
from ..core.errors import InputError
from ..core.grouper import GrouperConfig
from ..core.photometry import DEFAULT_RESPONSE
from ..eval.bagrun import REFERENCE_ONLY, BagFrame, BagRun, check_backend
from ..io.bag import BagWriter, RawBagMessage, Topics
from ..io.response_yaml import describe_response, load_response
from ..pipeline import PipelineConfig
from .progress import Progress

_TOPIC_KEYS = tuple(f.name for f in dataclasses.fields(Topics))


# --- options shared with `hdr-dcs evaluate` ---------------------------------------------------

def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Topic remapping, grouping and image-code options of the offline tools."""
    g = p.add_argument_group("pipeline")
    g.add_argument("--remap", action="append", default=[], metavar="KEY=TOPIC",
                   help=f"use another topic name; KEY is one of {', '.join(_TOPIC_KEYS)}")
    g.add_argument("--clock-offset", type=float, default=0.0, metavar="S",
                   help="anchor clock minus reference clock, s (default 0)")
    g.add_argument("--reorder-delay", type=float, default=GrouperConfig.reorder_delay_s, metavar="S",
                   help="how late a message may arrive, s (default %(default)s)")
    g.add_argument("--max-anchor-age", type=float, default=GrouperConfig.max_anchor_age_s, metavar="S",
                   help="largest reference-to-anchor-pair distance, s (default %(default)s)")
    g.add_argument("--causal", action="store_true", help="use only anchor pairs stamped before each frame")
    g.add_argument("--max-code", type=int, default=None,
                   help="largest image code when the cameras do not fill their dtype (e.g. 4095)")
    g.add_argument("--response", type=Path, default=None, metavar="FILE",
                   help="camera response file (hdr-dcs calibrate response) used by every backend; "
                        "default: SPEC.md's gamma 2.2")


def topics_from_args(args: argparse.Namespace) -> Topics:
    changes: dict[str, str] = {}
    for item in args.remap:
        key, sep, topic = item.partition("=")
        if not sep or key not in _TOPIC_KEYS or not topic.startswith("/"):
            raise InputError(f"--remap {item!r}: expected KEY=/topic with KEY one of "
                             f"{', '.join(_TOPIC_KEYS)}")
        changes[key] = topic
    return dataclasses.replace(Topics(), **changes)


def pipeline_config_from_args(args: argparse.Namespace, tonemapped: bool = True) -> PipelineConfig:
    """The pipeline settings of the options above; ``--response`` is loaded here (InputError
    naming the file when it cannot be) and given to the backend as ``response``."""
    grouper = GrouperConfig(reorder_delay_s=args.reorder_delay, max_anchor_age_s=args.max_anchor_age,
                            clock_offset_s=args.clock_offset, wait_for_future_anchor=not args.causal)
    if args.max_code is not None and args.max_code < 1:
        raise InputError(f"--max-code must be positive, got {args.max_code}")
    options = {} if args.response is None else {"response": load_response(args.response)}
    return PipelineConfig(grouper=grouper, tonemapped=tonemapped, backend_options=options)


def describe_response_option(args: argparse.Namespace, config: PipelineConfig) -> str:
    """The response ``config`` (from ``pipeline_config_from_args``) uses, for summaries and
    reports: "gamma 2.2" or "tabulated (256 samples) (FILE)"."""
    described = describe_response(config.backend_options.get("response", DEFAULT_RESPONSE))
    return described if args.response is None else f"{described} ({args.response})"


# --- the command --------------------------------------------------------------------------------

def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reconstruct", help="add /dcs/hdr/image and /dcs/hdr/tonemapped to a recorded bag",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("in_bag", type=Path, metavar="IN_BAG", help="the recorded bag (folder, .mcap or .db3)")
    p.add_argument("out_bag", type=Path, metavar="OUT_BAG", help="the bag folder to write")
    p.add_argument("--backend", default="classical", metavar="NAME",
                   help=f"one of {', '.join((*BACKENDS, REFERENCE_ONLY))} (default %(default)s)")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default=None,
                   help="storage of OUT_BAG (default: that of IN_BAG)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_BAG")
    p.add_argument("--no-tonemapped", action="store_true", help="do not write /dcs/hdr/tonemapped")
    add_pipeline_arguments(p)
    p.set_defaults(run=run)


def storage_of(path: Path) -> str:
    """"sqlite3" for a .db3 bag (or a folder holding one), else "mcap"."""
    if path.is_dir():
        return "sqlite3" if any(path.glob("*.db3")) else "mcap"
    return "sqlite3" if path.suffix == ".db3" else "mcap"


def _looks_like_bag_folder(path: Path) -> bool:
    entries = list(path.iterdir())
    if any(e.is_dir() and not e.is_symlink() for e in entries):
        return False
    return not entries or any(e.name == "metadata.yaml" or e.suffix in (".mcap", ".db3") for e in entries)


def check_paths(in_bag: Path, out_bag: Path, overwrite: bool) -> None:
    """Refuse OUT == IN, one inside the other, and an OUT that may not be replaced."""
    if not in_bag.exists():
        raise InputError(f"bag not found: {in_bag}")
    src, dst = in_bag.resolve(), out_bag.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise InputError(f"OUT_BAG {out_bag} must be another place than IN_BAG {in_bag} (not inside it, "
                         "nor containing it)")
    if out_bag.exists() or out_bag.is_symlink():
        if not overwrite:
            raise InputError(f"{out_bag} exists already; pass --overwrite to replace it")
        if not out_bag.is_dir() or out_bag.is_symlink() or not _looks_like_bag_folder(out_bag):
            raise InputError(f"{out_bag} exists and is not a bag folder; refusing to replace it")


def run(args: argparse.Namespace) -> int:
    in_bag: Path = args.in_bag
    out_bag: Path = args.out_bag
    check_backend(args.backend, recorded=False)
    topics = topics_from_args(args)
    config = pipeline_config_from_args(args, tonemapped=not args.no_tonemapped)
    check_paths(in_bag, out_bag, args.overwrite)
    storage = args.storage or storage_of(in_bag)

    progress: Progress | None = None
    bag_run = BagRun(in_bag, args.backend, topics, config=config, max_code=args.max_code,
                     progress=lambda n: progress.update(n) if progress is not None else None)
    with bag_run:
        outputs = {"hdr_image": topics.hdr_image}
        if not args.no_tonemapped:
            outputs["hdr_tonemapped"] = topics.hdr_tonemapped
        for key, topic in outputs.items():
            if topic in bag_run.bag_topics:
                raise InputError(f"{in_bag} already has {topic} (a reconstructed bag?); write elsewhere with "
                                 f"--remap {key}=/topic")
        out_bag.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_bag.name}.", suffix=".partial", dir=out_bag.parent))
        try:
            start = time.perf_counter()
            with BagWriter(staging / out_bag.name, storage=storage, topics=topics) as writer, \
                    Progress(bag_run.expected_frames, f"reconstruct {args.backend}") as progress:
                for item in bag_run.events():
                    if isinstance(item, RawBagMessage):
                        writer.copy_message(item)
                    else:
                        _write_frame(writer, topics, item)
            elapsed = time.perf_counter() - start
            if out_bag.exists():
                shutil.rmtree(out_bag)
            os.replace(staging / out_bag.name, out_bag)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    stats = bag_run.stats
    ms = stats.per_frame_ms
    print(f"reconstruct {args.backend}: {stats.frames_out} of {stats.reference_images} reference frames -> "
          f"{out_bag} ({storage}); {ms:.1f} ms/frame in the pipeline, {elapsed:.1f} s in all; "
          f"{stats.describe_losses()}", file=sys.stderr)
    summary = {"in_bag": str(in_bag), "out_bag": str(out_bag), "storage": storage,
               "tonemapped": not args.no_tonemapped, "response": describe_response_option(args, config),
               "elapsed_s": round(elapsed, 3), **stats.to_dict()}
    print(json.dumps(summary), file=sys.stdout)
    return 0


def _write_frame(writer: BagWriter, topics: Topics, frame: BagFrame) -> None:
    writer.write_hdr(topics.hdr_image, frame.hdr, frame.stamp_ns, frame.frame_id,
                     receive_time_ns=frame.log_time_ns)
    if frame.tonemapped is not None:
        writer.write_image(topics.hdr_tonemapped, frame.tonemapped, "bgr8", frame.stamp_ns, frame.frame_id,
                           receive_time_ns=frame.log_time_ns)
