"""``hdr-dcs calibrate response``: recover the camera response from a static bracketed stack.

Usage::

    hdr-dcs calibrate response --images DIR [--exposures FILE] --out FILE.yaml
    hdr-dcs calibrate response --bag BAG [--camera reference|anchor] --out FILE.yaml

Options: ``--method debevec|robertson`` (default debevec), ``--camera-name NAME`` (stored
in the file), ``--max-code N`` (12-bit codes in 16-bit images: 4095), ``--overwrite``,
``--no-plot``.

The stack: N >= 3 images of a static scene (tripod, nothing moving) at distinct
exposures, e.g. 5-7 exposures 1-2 EV apart, from dark enough that the brightest parts
are not clipped to bright enough that the darkest are well exposed. Irregular steps help
``robertson`` (see hdr_dcs.calib.response).

``--images DIR``: 8-bit or 16-bit image files (PNG, TIFF, ...; channel order does not
matter) and a sidecar ``DIR/exposures.yaml`` (or ``--exposures FILE``) mapping each
file name, relative to DIR, to its exposure time in microseconds, or to a mapping with
``exposure_time_us`` and optionally ``gain_db``; only the listed files are used::

    # exposures.yaml
    IMG_0001.png: 1000
    IMG_0002.png: 4000
    IMG_0003.png: {exposure_time_us: 16000, gain_db: 0.0}

``--bag BAG --camera reference|anchor``: the camera's ``/dcs/<camera>/image_raw`` images
(integer encodings) paired by stamp with its ``/dcs/<camera>/exposure`` ExposureInfos
(``--remap`` renames topics as for ``hdr-dcs reconstruct``). Frames of one exposure
(t * g equal within 1 %) are averaged, which lowers the noise; unpaired messages are
skipped and counted.

Writes FILE.yaml (hdr_dcs.io.response_yaml: the 256 samples of f^-1, the method, the
exposures, the camera name) and, unless ``--no-plot``, FILE.png next to it: the curve,
each channel's, gamma 2.2 and where the curve is extrapolated. Prints a summary
(trusted range, difference from gamma 2.2, exposure consistency with both curves) on
stderr and the same as JSON on stdout; warnings as ``hdr-dcs: warning: ...`` lines.
Use the file with ``hdr-dcs reconstruct/evaluate --response FILE``, or the nodes'
``response_file`` parameter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from .. import __version__
from ..calib.response import (
    METHODS,
    ResponseCalibration,
    ResponseCalibrationConfig,
    compare_responses,
    recover_response,
)
from ..core.errors import InputError
from ..core.photometry import GammaResponse
from ..io.bag import BagReader, Topics, stamp_ns_of
from ..io.image_msg import image_to_numpy, lookup_encoding
from ..io.response_yaml import save_response

__all__ = ["Stack", "add_parser", "plot_response", "read_bag_stack", "read_image_stack", "run"]

_SAME_EXPOSURE = 0.01          # relative: frames of a bag closer than this are one exposure
_MAX_EXPOSURES = 64
_MAX_PENDING = 64              # unpaired messages waiting for their partner, per topic


@dataclass
class Stack:
    """A bracketed stack as read from disk.

    Attributes:
        images: N arrays (H, W) or (H, W, 3) of uint8 or uint16 codes.
        exposure_times_s: N effective exposures t * g, seconds.
        names: N labels (file names, or "<t> us x <frames>" for bags).
        skipped: what was read but not used, one line each.
    """

    images: list[np.ndarray]
    exposure_times_s: list[float]
    names: list[str]
    skipped: list[str] = field(default_factory=list)


# -- reading stacks ------------------------------------------------------------------------------
def _exposure_entry(value: Any, where: str) -> float:
    """An exposures.yaml value -> t * g in seconds."""
    gain_db = 0.0
    if isinstance(value, dict):
        unknown = set(value) - {"exposure_time_us", "gain_db"}
        if unknown or "exposure_time_us" not in value:
            raise InputError(f"{where}: expected exposure_time_us (and optionally gain_db), got "
                             f"{', '.join(map(str, value))}")
        gain_db = value.get("gain_db", 0.0)
        value = value["exposure_time_us"]
    for what, v in (("exposure time", value), ("gain_db", gain_db)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{where}: {what} must be a number, got {v!r}")
    if value <= 0:
        raise InputError(f"{where}: exposure time must be > 0 us, got {value}")
    return float(value) * 1e-6 * 10.0 ** (float(gain_db) / 20.0)


def read_image_stack(folder: Path, exposures: Path | None = None) -> Stack:
    """The images listed in ``exposures`` (default ``folder/exposures.yaml``; module docstring).

    Raises:
        InputError: one line: a missing folder or sidecar, a malformed entry, an image that
            cannot be read or is neither 8 nor 16 bit.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    sidecar = exposures or folder / "exposures.yaml"
    try:
        doc = yaml.safe_load(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{sidecar}: exposure file not found (file name -> exposure_time_us)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{sidecar}: cannot read the exposure file: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, dict) or not doc:
        raise InputError(f"{sidecar}: expected a mapping of image file name -> exposure_time_us")
    images, times, names = [], [], []
    for name, value in doc.items():
        times.append(_exposure_entry(value, f"{sidecar}: {name}"))
        path = folder / str(name)
        if not path.is_file():
            raise InputError(f"{path}: image listed in {sidecar.name} not found")
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputError(f"{path}: cannot read the image")
        if image.dtype not in (np.uint8, np.uint16):
            raise InputError(f"{path}: {image.dtype} pixels; calibration needs 8-bit or 16-bit codes")
        if image.ndim == 3 and image.shape[2] == 4:
            image = image[:, :, :3]          # alpha
        images.append(image)
        names.append(str(name))
    return Stack(images, times, names)


def _codes(msg: Any) -> np.ndarray:
    """An Image message -> (H, W) or (H, W, 3) integer codes (alpha dropped)."""
    enc = lookup_encoding(msg.encoding)
    if enc.dtype.kind == "f":
        raise InputError(f"{enc.name} images carry no codes: calibration needs an integer encoding")
    if enc.channels == 2:
        raise InputError(f"{enc.name} has 2 channels: no image to calibrate")
    pixels = image_to_numpy(msg)
    return pixels[:, :, :3] if pixels.ndim == 3 and pixels.shape[2] == 4 else pixels


@dataclass
class _Exposure:
    scale: float
    total: np.ndarray
    frames: int
    dtype: np.dtype


def read_bag_stack(path: Path, camera: str, topics: Topics | None = None) -> Stack:
    """A static stack recorded in a bag (module docstring): per distinct exposure t * g, the
    average of its frames.

    Raises:
        InputError (BagError): an unreadable bag, missing topics, no pair, frames of another
            size or dtype, more than 64 distinct exposures.
    """
    t = topics or Topics()
    image_topic, exposure_topic = t.image(camera), t.exposure(camera)  # type: ignore[arg-type]
    groups: list[_Exposure] = []
    images: OrderedDict[int, Any] = OrderedDict()
    infos: OrderedDict[int, Any] = OrderedDict()
    unpaired = 0
    first: tuple[tuple[int, ...], np.dtype] | None = None
    with BagReader(path) as reader:
        available = reader.topics()
        for topic in (image_topic, exposure_topic):
            if available.get(topic, ("", 0))[1] == 0:
                raise InputError(f"{path} has no {topic} messages (a {camera} stack; remap topics?)")
        for item in reader.messages([image_topic, exposure_topic]):
            stamp = stamp_ns_of(item.msg)
            mine, other = (images, infos) if item.topic == image_topic else (infos, images)
            if stamp not in other:
                mine[stamp] = item.msg
                if len(mine) > _MAX_PENDING:
                    mine.popitem(last=False)
                    unpaired += 1
                continue
            partner = other.pop(stamp)
            image_msg, info = (item.msg, partner) if mine is images else (partner, item.msg)
            exposure_s = float(info.exposure_time_us) * 1e-6
            scale = exposure_s * 10.0 ** (float(info.gain_db) / 20.0)
            if not (math.isfinite(scale) and scale > 0):
                unpaired += 1
                continue
            codes = _codes(image_msg)
            if first is None:
                first = (codes.shape, codes.dtype)
            elif (codes.shape, codes.dtype) != first:
                raise InputError(f"{path}: a {codes.dtype} image of shape {codes.shape} at {stamp} ns; "
                                 f"the first was {first[1]} {first[0]}: a stack needs one size and depth")
            group = next((g for g in groups if abs(scale / g.scale - 1) < _SAME_EXPOSURE), None)
            if group is None:
                if len(groups) == _MAX_EXPOSURES:
                    raise InputError(f"{path}: more than {_MAX_EXPOSURES} distinct exposures on "
                                     f"{exposure_topic}: record a bracket of a few fixed exposures "
                                     "(auto exposure off)")
                group = _Exposure(scale, np.zeros(codes.shape, dtype=np.float64), 0, codes.dtype)
                groups.append(group)
            group.total += codes
            group.frames += 1
    unpaired += len(images) + len(infos)
    if not groups:
        raise InputError(f"{path}: no {image_topic} image has an ExposureInfo of the same stamp")
    groups.sort(key=lambda g: g.scale)
    stack = Stack(
        images=[np.rint(g.total / g.frames).astype(g.dtype) for g in groups],
        exposure_times_s=[g.scale for g in groups],
        names=[f"{g.scale * 1e6:g} us x {g.frames}" for g in groups])
    if unpaired:
        stack.skipped.append(f"{unpaired} {camera} messages without a partner of the same stamp (or with a "
                             "bad exposure) skipped")
    return stack


# -- output -------------------------------------------------------------------------------------
def plot_response(path: Path, result: ResponseCalibration, title: str = "") -> None:
    """PNG of the recovered f^-1 (linear and log axes): combined, per channel, gamma 2.2,
    and the extrapolated ends shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = np.linspace(0.0, 1.0, result.inverse_samples.size)
    gamma = levels ** 2.2
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for ax, log in zip(axes, (False, True), strict=True):
        lo, hi = result.trusted_range
        ax.axvspan(0.0, lo, color="0.9", lw=0)
        ax.axvspan(hi, 1.0, color="0.9", lw=0, label="extrapolated")
        for c, colour in zip(range(result.channel_curves.shape[0]), ("tab:red", "tab:green", "tab:blue"),
                             strict=False):
            ax.plot(levels, result.channel_curves[c], ":", color=colour, lw=1, label=f"channel {c}")
        ax.plot(levels, gamma, "--", color="0.5", lw=1, label="gamma 2.2")
        ax.plot(levels, result.inverse_samples, "k-", lw=1.5, label=f"recovered ({result.method})")
        ax.set_xlabel("pixel value L")
        ax.set_xlim(0, 1)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(1e-4, 1.2)
            ax.set_ylabel("f^-1(L) (log)")
        else:
            ax.set_ylim(0, 1)
            ax.set_ylabel("f^-1(L): sensor exposure")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def summary(result: ResponseCalibration, stack: Stack, out: Path, plot: Path | None) -> dict[str, Any]:
    """The JSON summary of a calibration."""
    gamma_max, gamma_rms = compare_responses(result.response, GammaResponse(2.2))
    shape = stack.images[0].shape
    return {
        "out": str(out), "plot": None if plot is None else str(plot), "method": result.method,
        "exposures_us": [round(t * 1e6, 6) for t in stack.exposure_times_s], "images": stack.names,
        "size_wh": [int(shape[1]), int(shape[0])],
        "trusted_range": [round(v, 4) for v in result.trusted_range],
        "vs_gamma_2_2": {"max": round(gamma_max, 4), "rms": round(gamma_rms, 4), "range": [0.05, 0.95]},
        "consistency_rms_log": {"recovered": round(result.consistency, 4),
                                "gamma_2_2": round(result.gamma_consistency, 4)},
        "moving_fraction": round(result.moving_fraction, 4),
        "channel_spread": round(result.channel_spread, 4),
        "warnings": list(stack.skipped) + list(result.warnings),
    }


# -- the command --------------------------------------------------------------------------------
def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("response", help="camera response curve from a static bracketed stack",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, metavar="DIR", help="folder of images plus exposures.yaml")
    source.add_argument("--bag", type=Path, metavar="BAG", help="bag with a static stack of one camera")
    p.add_argument("--exposures", type=Path, default=None, metavar="FILE",
                   help="exposure file of --images (default DIR/exposures.yaml)")
    p.add_argument("--camera", choices=("reference", "anchor"), default="reference",
                   help="camera of --bag (default %(default)s)")
    p.add_argument("--remap", action="append", default=[], metavar="KEY=TOPIC",
                   help="another topic name for --bag, e.g. reference_image=/cam/image")
    p.add_argument("--method", choices=METHODS, default="debevec", help="default %(default)s")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.yaml", help="the response file to write")
    p.add_argument("--camera-name", default=None, help="stored in the file (default: --camera or DIR's name)")
    p.add_argument("--max-code", type=int, default=None, help="largest code of 16-bit images (4095: 12-bit)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE.yaml")
    p.add_argument("--no-plot", action="store_true", help="write no PNG plot")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    plot = None if args.no_plot else out.with_suffix(".png")
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"--out {out}: the response file must end in .yaml")
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} exists already; pass --overwrite to replace it")
    if args.max_code is not None and not 1 <= args.max_code <= 65535:
        raise InputError(f"--max-code must be in [1, 65535], got {args.max_code}")
    if args.bag is not None:
        from .reconstruct import topics_from_args

        stack = read_bag_stack(args.bag, args.camera, topics_from_args(args))
        camera_name = args.camera_name if args.camera_name is not None else args.camera
    else:
        if args.remap:
            raise InputError("--remap applies to --bag only")
        stack = read_image_stack(args.images, args.exposures)
        camera_name = args.camera_name if args.camera_name is not None else args.images.resolve().name
    config = ResponseCalibrationConfig(method=args.method, max_code=args.max_code)
    result = recover_response(stack.images, stack.exposure_times_s, config=config)

    out.parent.mkdir(parents=True, exist_ok=True)
    save_response(out, result.response, method=result.method, camera_name=camera_name,
                  exposures_us=[t * 1e6 for t in result.exposure_times_s],
                  trusted_range=list(result.trusted_range),
                  created_utc=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                  hdr_dcs_version=__version__)
    if plot is not None:
        plot_response(plot, result, f"{camera_name}: {result.method}, {len(stack.images)} exposures")

    info = summary(result, stack, out, plot)
    g = info["vs_gamma_2_2"]
    c = info["consistency_rms_log"]
    lo, hi = result.trusted_range
    times = stack.exposure_times_s
    span = f"{min(times) * 1e6:g}-{max(times) * 1e6:g} us"
    print(f"calibrate response ({result.method}): {len(times)} exposures {span} "
          f"-> {out}{'' if plot is None else f' and {plot}'}\n"
          f"  fitted to data for L in [{lo:.3f}, {hi:.3f}], extrapolated outside; channels within "
          f"{result.channel_spread:.3f}\n"
          f"  differs from gamma 2.2 by up to {g['max']:.3f} (RMS {g['rms']:.3f}) for L in [0.05, 0.95]\n"
          f"  exposure consistency (RMS log radiance error): {c['recovered']:.3f} with this curve, "
          f"{c['gamma_2_2']:.3f} with gamma 2.2", file=sys.stderr)
    for warning in info["warnings"]:
        print(f"hdr-dcs: warning: {warning}", file=sys.stderr)
    print(json.dumps(info), file=sys.stdout)
    return 0
