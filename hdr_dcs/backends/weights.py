"""Shipped weights of the learned backends, loaded strictly from checkpoints.

The shipped weights live in ``hdr_dcs/weights``; ``$HDR_DCS_WEIGHTS_DIR`` points the
lookup elsewhere (weights deployed outside the package).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..core.errors import InputError
from ..train.checkpoint import config_from_dict, load_into, read_checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


def weights_dir() -> Path:
    """Where shipped weights are looked up: ``$HDR_DCS_WEIGHTS_DIR``, else the package's."""
    env = os.environ.get("HDR_DCS_WEIGHTS_DIR")
    return Path(env) if env else WEIGHTS_DIR


def shipped_weights(name: str) -> Path:
    """The shipped weights file ``<weights dir>/<name>-<hash8>.pt`` (one per name)."""
    folder = weights_dir()
    found = sorted(folder.glob(f"{name}-*.pt"))
    if not found:
        raise InputError(f"no shipped weights named {name}-*.pt in {folder}; train them with "
                         f"`hdr-dcs train` or pass weights=")
    return found[-1]


def load_model(model: str, model_cls: type[nn.Module], config_cls: type, weights: Path | str | None,
               variant: str) -> nn.Module:
    """A ``model_cls`` built from the checkpoint's own config, its parameters loaded strictly.

    ``weights`` None: the shipped ``<model>_<variant>`` weights.
    """
    path = Path(weights) if weights else shipped_weights(f"{model}_{variant}")
    blob = read_checkpoint(path)
    if blob["model"] != model:
        raise InputError(f"{path} holds a {blob['model']!r} model, not {model}")
    net = model_cls(config_from_dict(config_cls, blob["config"]))
    load_into(net, blob, path)
    return net.eval()
