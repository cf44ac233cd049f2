"""``hdr-dcs train CONFIG --out DIR [--resume]``: train a model from a YAML config.

Progress on stderr; ``DIR`` receives ``last.pt`` (resumable checkpoint), ``log.jsonl``,
``validation.jsonl`` and ``curves.png``. Ctrl-C stops after the current step and saves.
``hdr-dcs export DIR/last.pt --name <model>_<variant>`` turns it into shipped weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (resumable)", description=__doc__)
    p.add_argument("config", type=Path, help="training config (YAML), e.g. config/train/location_lite.yaml")
    p.add_argument("--out", type=Path, required=True, help="run folder (checkpoints, logs, plots)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--steps", type=int, default=None, help="override the config's number of steps")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..train.trainer import Trainer, TrainConfig

    config = TrainConfig.from_yaml(args.config)
    if args.steps is not None:
        config = replace(config, steps=args.steps)
    trainer = Trainer(config, args.out)
    result = trainer.run(resume=args.resume)
    print(json.dumps(result), file=sys.stdout)
    return 0 if result["finished"] else 130
