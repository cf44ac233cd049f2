"""``hdr-dcs``: one console script, one subcommand per job.

Every subcommand exits 0 on success and otherwise non-zero with one readable line on
stderr (``hdr-dcs: error: ...``); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..core.errors import HdrDcsError
from . import bench, calibrate, demo, evaluate, export, generate, reconstruct, rig, scenes, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hdr-dcs", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    generate.add_parser(sub)
    scenes.add_parser(sub)
    reconstruct.add_parser(sub)
    evaluate.add_parser(sub)
    train.add_parser(sub)
    rig.add_parser(sub)
    bench.add_parser(sub)
    export.add_parser(sub)
    calibrate.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("hdr-dcs: interrupted", file=sys.stderr)
        return 130
    except (HdrDcsError, OSError, ValueError) as exc:
        if args.debug:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"hdr-dcs: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
