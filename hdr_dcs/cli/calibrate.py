"""``hdr-dcs calibrate``: calibrate the rig, geometrically and photometrically.

- ``hdr-dcs calibrate stereo``: checkerboard views of both cameras -> the two
  camera_calibration_parsers YAML files the calibration node serves (SPEC.md semantics:
  the anchor camera registered into the reference grid).
- ``hdr-dcs calibrate response``: a static bracketed stack -> the camera response curve
  every backend uses in place of the gamma default.
"""

from __future__ import annotations

import argparse

from . import calibrate_response, calibrate_stereo


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="calibrate the rig (stereo geometry, camera response)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    calibrate_stereo.add_parser(kinds)
    calibrate_response.add_parser(kinds)
