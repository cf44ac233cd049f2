"""``hdr-dcs export CHECKPOINT --name NAME``: turn a training checkpoint into shipped weights.

Writes ``hdr_dcs/weights/<NAME>-<hash8>.pt`` (or ``--to DIR``) holding only what inference
needs: the model name, its config, the parameters, their SHA-256 (whose first 8 hex
digits are in the file name), and provenance (training step and config). Backends load
it strictly (``hdr_dcs.train.checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..core.errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="training checkpoint -> shipped weights", description=__doc__)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--name", required=True, help="e.g. location_lite")
    p.add_argument("--to", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..train.checkpoint import read_checkpoint

    blob = read_checkpoint(args.checkpoint)
    if not args.name.startswith(blob["model"]):
        raise InputError(f"{args.checkpoint} holds a {blob['model']!r} model; name it {blob['model']}_<variant>")
    shipped = {"model": blob["model"], "config": blob["config"], "params": blob["params"], "sha256": blob["sha256"],
               "provenance": {"step": blob.get("step"), "train_config": blob.get("train_config")}}
    args.to.mkdir(parents=True, exist_ok=True)
    for old in args.to.glob(f"{args.name}-*.pt"):
        old.unlink()
    path = args.to / f"{args.name}-{blob['sha256'][:8]}.pt"
    torch.save(shipped, path)
    print(json.dumps({"weights": str(path), "sha256": blob["sha256"], "step": blob.get("step"),
                      "bytes": path.stat().st_size}), file=sys.stdout)
    return 0
