"""``hdr-dcs calibrate stereo``: checkerboard views of both cameras -> the pair's calibration files.

Inputs (one of):

- ``--images DIR``: DIR/reference/ and DIR/anchor/ hold each camera's images (png, jpg,
  jpeg, bmp, tif, tiff, pgm, ppm; 8 or 16 bit, grey or colour). A pair is the two files of
  the same name stem (reference/0007.png + anchor/0007.png). When the two folders share
  no stem at all but hold equally many images, the i-th images in sorted file name order
  form a pair (cameras that name files by their own counters or clocks). Files without a
  partner are reported as rejected.
- ``--bag BAG``: a rosbag2 with /dcs/reference/image_raw and /dcs/anchor/image_raw. Each
  reference frame is paired with the anchor frame of nearest header stamp when they are at
  most ``--max-dt`` apart (each anchor frame serves one pair). Hold the board still, or
  keep ``--max-dt`` well below the time it takes to move by a pixel.

Outputs in ``--out``: reference.yaml and anchor.yaml (camera_calibration_parsers layout,
SPEC.md "Calibration": the reference undistorts, the anchor registers into the reference
grid, exactly at ``--working-distance``) and stereo_report.json (intrinsics, baseline,
rotation, RMS reprojection errors per camera, stereo and per view, used and rejected views
with reasons). A short summary goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..calib.stereo import Board, CameraFit, StereoCalibrationResult, StereoCalibrator, StereoOptions
from ..core.errors import InputError
from ..io.bag import BagReader, Topics, stamp_ns_of
from ..io.calibration_yaml import save_calibration
from ..io.image_msg import image_to_numpy
from .progress import Progress

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm")
REPORT_NAME = "stereo_report.json"


def parse_board(text: str) -> tuple[int, int]:
    """``"9x6"`` -> (9, 6): inner corners along a row and a column."""
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"board must look like 9x6 (inner corners), got {text!r}") from None
    if cols < 3 or rows < 3:
        raise argparse.ArgumentTypeError(f"board needs at least 3x3 inner corners, got {text!r}")
    return cols, rows


def _positive_or_inf(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected metres (a number or inf), got {text!r}") from None
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive (or inf), got {text!r}")
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stereo", help="checkerboard views of both cameras -> reference.yaml, anchor.yaml",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", type=Path, metavar="DIR",
                     help="folder with reference/ and anchor/ subfolders")
    src.add_argument("--bag", type=Path, metavar="BAG", help="rosbag2 with both cameras' image topics")
    p.add_argument("--board", type=parse_board, required=True, metavar="COLSxROWS",
                   help="inner corners of the board, e.g. 9x6 (a board of 10x7 squares)")
    p.add_argument("--square", type=float, required=True, metavar="M", help="square side, metres")
    p.add_argument("--charuco-marker", type=float, default=None, metavar="M",
                   help="a ChArUco board (of COLS+1 x ROWS+1 squares) with markers of this side, metres")
    p.add_argument("--aruco-dictionary", default="DICT_5X5_100", metavar="NAME",
                   help="ChArUco marker dictionary (default: %(default)s)")
    p.add_argument("--working-distance", type=_positive_or_inf, default=math.inf, metavar="M",
                   help="distance at which the anchor registers exactly onto the reference, metres "
                        "(default: inf, distant scenes)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--min-views", type=int, default=8,
                   help="fewest usable pairs accepted (default: %(default)s)")
    p.add_argument("--max-views", type=int, default=60,
                   help="use at most this many usable pairs, spread evenly (default: %(default)s)")
    p.add_argument("--k-coefficients", type=int, choices=(2, 3, 6), default=2,
                   help="radial distortion terms: 2 (k3 fixed at 0), 3, or 6 (rational model) "
                        "(default: %(default)s)")
    p.add_argument("--refine-intrinsics", action="store_true",
                   help="after the stereo calibration with fixed intrinsics, refine both cameras' intrinsics "
                        "and the pair together")
    g = p.add_argument_group("bag input")
    g.add_argument("--max-dt", type=float, default=0.01, metavar="S",
                   help="largest stamp difference of a pair, seconds (default: %(default)s)")
    g.add_argument("--stride", type=int, default=1, metavar="N", help="use every N-th pair (default: 1)")
    g.add_argument("--reference-topic", default=Topics().reference_image)
    g.add_argument("--anchor-topic", default=Topics().anchor_image)
    p.set_defaults(run=run)


# --- image folders ------------------------------------------------------------------------

def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder.parent}: no {folder.name}/ subfolder (--images needs DIR/reference/ and "
                         "DIR/anchor/ holding each camera's images)")
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
    return files


def pair_image_files(root: Path) -> tuple[list[tuple[str, Path | None, Path | None]], str]:
    """The (name, reference file, anchor file) pairs of an ``--images`` folder (module
    docstring), a file without a partner paired with None; and how they were paired."""
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    refs, anchors = _images(root / "reference"), _images(root / "anchor")
    by_stem_ref, by_stem_anc = {f.stem: f for f in refs}, {f.stem: f for f in anchors}
    if len(by_stem_ref) != len(refs) or len(by_stem_anc) != len(anchors):
        raise InputError(f"{root}: two images of one camera share a name stem (e.g. 0001.png and 0001.jpg)")
    if not set(by_stem_ref) & set(by_stem_anc) and len(refs) == len(anchors):
        return [(f"{r.name}+{a.name}", r, a) for r, a in zip(refs, anchors, strict=True)], "sorted order"
    stems = sorted(set(by_stem_ref) | set(by_stem_anc))
    return [(s, by_stem_ref.get(s), by_stem_anc.get(s)) for s in stems], "name"


def read_image(path: Path) -> np.ndarray | None:
    """An image file as cv2 loads it (8/16 bit, grey or BGR(A)), or None when unreadable."""
    try:
        data = np.fromfile(path, dtype=np.uint8)  # cv2.imread cannot open some non-ASCII paths
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None


def _feed_images(root: Path, calibrator: StereoCalibrator) -> dict:
    pairs, how = pair_image_files(root)
    with Progress(len(pairs), "detect", unit="pairs") as progress:
        for name, ref_path, anc_path in pairs:
            if ref_path is None or anc_path is None:
                missing = "reference" if ref_path is None else "anchor"
                calibrator.reject(name, f"no {missing} image of this name")
            elif (ref := read_image(ref_path)) is None or (anc := read_image(anc_path)) is None:
                bad = ref_path if ref is None else anc_path
                calibrator.reject(name, f"cannot read {bad.parent.name}/{bad.name}")
            else:
                calibrator.add_pair(name, ref, anc)
            progress.update(1)
    return {"images": str(root), "paired_by": how}


# --- bags ---------------------------------------------------------------------------------

def pair_stamps(reference_ns: list[int], anchor_ns: list[int], max_dt_ns: int
                ) -> list[tuple[int, int | None]]:
    """Nearest-stamp pairs (reference index, anchor index or None), in reference order.

    Every reference frame gets the anchor frame of nearest stamp within ``max_dt_ns``; when
    two reference frames want the same anchor frame the closer one wins and the other
    takes its next best (greedy on |dt|). Each anchor frame serves at most one pair.
    """
    order = sorted(range(len(anchor_ns)), key=anchor_ns.__getitem__)
    sorted_ns = [anchor_ns[i] for i in order]
    candidates = []
    for i, t in enumerate(reference_ns):
        lo = bisect.bisect_left(sorted_ns, t - max_dt_ns)
        hi = bisect.bisect_right(sorted_ns, t + max_dt_ns)
        candidates += [(abs(sorted_ns[j] - t), i, order[j]) for j in range(lo, hi)]
    partner: dict[int, int] = {}
    taken: set[int] = set()
    for _, i, j in sorted(candidates):
        if i not in partner and j not in taken:
            partner[i] = j
            taken.add(j)
    return [(i, partner.get(i)) for i in range(len(reference_ns))]


def _bag_images(reader: BagReader, topics: tuple[str, str]) -> Iterator[tuple[str, int, object]]:
    """(topic, index on that topic, message) in log-time order."""
    counters = dict.fromkeys(topics, 0)
    for item in reader.messages(list(topics)):
        index = counters[item.topic]
        counters[item.topic] += 1
        yield item.topic, index, item.msg


def _feed_bag(bag: Path, args: argparse.Namespace, calibrator: StereoCalibrator) -> dict:
    if args.max_dt < 0 or not math.isfinite(args.max_dt):
        raise InputError(f"--max-dt must be a non-negative number of seconds, got {args.max_dt}")
    if args.stride < 1:
        raise InputError(f"--stride must be at least 1, got {args.stride}")
    ref_topic, anc_topic = args.reference_topic, args.anchor_topic
    with BagReader(bag) as reader:
        available = reader.topics()
        for topic in (ref_topic, anc_topic):
            if topic not in available:
                raise InputError(f"{bag} has no {topic} (topics: {', '.join(sorted(available)) or 'none'})")
            if available[topic][0] != "sensor_msgs/msg/Image":
                raise InputError(f"{bag}: {topic} carries {available[topic][0]}, not sensor_msgs/msg/Image")
        # Pass 1: stamps only; pass 2 decodes and searches just the frames that form pairs.
        stamps: dict[str, list[int]] = {ref_topic: [], anc_topic: []}
        for topic, _, msg in _bag_images(reader, (ref_topic, anc_topic)):
            stamps[topic].append(stamp_ns_of(msg))
        pairs = pair_stamps(stamps[ref_topic], stamps[anc_topic], round(args.max_dt * 1e9))
        paired = [(i, j) for i, j in pairs if j is not None][::args.stride]
        for i, j in pairs:
            if j is None:
                calibrator.reject(f"{stamps[ref_topic][i] / 1e9:.6f}",
                                  f"no anchor frame within {args.max_dt * 1e3:g} ms")
        want_ref = {i: n for n, (i, _) in enumerate(paired)}
        want_anc = {j: n for n, (_, j) in enumerate(paired)}
        pending: dict[int, tuple[str, np.ndarray]] = {}
        with Progress(len(paired), "detect", unit="pairs") as progress:
            for topic, index, msg in _bag_images(reader, (ref_topic, anc_topic)):
                n = (want_ref if topic == ref_topic else want_anc).get(index)
                if n is None:
                    continue
                image = image_to_numpy(msg)
                if n not in pending:
                    pending[n] = (topic, image)
                    continue
                other_topic, other = pending.pop(n)
                ref, anc = (image, other) if topic == ref_topic else (other, image)
                calibrator.add_pair(f"{stamps[ref_topic][paired[n][0]] / 1e9:.6f}", ref, anc)
                progress.update(1)
    return {"bag": str(bag), "reference_frames": len(stamps[ref_topic]),
            "anchor_frames": len(stamps[anc_topic]), "pairs": len(paired), "max_dt_s": args.max_dt,
            "stride": args.stride}


# --- summary ------------------------------------------------------------------------------

def _camera_line(label: str, fit: CameraFit) -> str:
    k = fit.k
    refined = ", refined in stereo" if fit.refined_in_stereo else ""
    return (f"{label:<10} fx {k[0, 0]:.2f}  fy {k[1, 1]:.2f}  cx {k[0, 2]:.2f}  cy {k[1, 2]:.2f} px, "
            f"RMS {fit.rms_px:.3f} px over {fit.views} views{refined}")


def summary(result: StereoCalibrationResult) -> list[str]:
    """The few lines printed after a calibration."""
    rejected = ", ".join(f"{n} {why}" for why, n in sorted(result.rejected.items(), key=lambda x: -x[1]))
    c = result.anchor_centre_m * 1e3
    shift = result.anchor.p[:2, 2] - result.reference.k[:2, 2]
    if math.isinf(result.working_distance_m):
        distance = "inf (distant scenes: no principal point shift)"
    else:
        distance = (f"{result.working_distance_m:g} m: principal point shift "
                    f"({shift[0]:+.2f}, {shift[1]:+.2f}) px")
    lines = [f"stereo calibration: {result.views_used} of {len(result.views)} pairs used"
             + (f" (rejected: {rejected})" if rejected else ""),
             _camera_line("reference", result.reference_fit), _camera_line("anchor", result.anchor_fit),
             f"{'stereo':<10} RMS {result.stereo_rms_px:.3f} px, baseline {result.baseline_m * 1e3:.2f} mm, "
             f"rotation {result.rotation_deg:.3f} deg, anchor centre ({c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}) mm",
             f"working distance {distance}"]
    if result.stereo_rms_px > 1.0:
        worst = sorted((v for v in result.views if v.stereo_rms_px is not None),
                       key=lambda v: -(v.stereo_rms_px or 0.0))[:3]
        lines.append(f"warning: stereo RMS above 1 px: check --board and --square, and the worst views "
                     f"{', '.join(f'{v.name} ({v.stereo_rms_px:.2f} px)' for v in worst)}")
    return lines


def run(args: argparse.Namespace) -> int:
    board = Board(args.board[0], args.board[1], args.square, args.charuco_marker, args.aruco_dictionary)
    options = StereoOptions(min_views=args.min_views, max_views=args.max_views,
                            k_coefficients=args.k_coefficients, working_distance_m=args.working_distance,
                            refine_intrinsics=args.refine_intrinsics)
    calibrator = StereoCalibrator(board, options)
    source = _feed_images(args.images, calibrator) if args.images is not None else \
        _feed_bag(args.bag, args, calibrator)
    result = calibrator.calibrate()

    args.out.mkdir(parents=True, exist_ok=True)
    save_calibration(args.out / "reference.yaml", result.reference)
    save_calibration(args.out / "anchor.yaml", result.anchor)
    report = {"source": source, **result.report()}
    (args.out / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for line in summary(result):
        print(line)
    print(f"wrote {args.out / 'reference.yaml'}, {args.out / 'anchor.yaml'}, {args.out / REPORT_NAME}")
    sys.stdout.flush()
    return 0


__all__ = ["add_parser", "pair_image_files", "pair_stamps", "parse_board", "read_image", "run", "summary"]
