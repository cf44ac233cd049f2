"""Checkpoints that carry their model config and a content hash; strict loading.

A checkpoint is a torch file holding ``model`` (the model's name), ``config`` (the
dataclass config as a dict), ``params`` (the state dict), and for resuming training
``optimizer``, ``scheduler``, ``step`` and ``extra``. ``sha256`` of the params is stored
and checked at load; released weights carry the first 8 hex digits in their file name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.errors import InputError


def params_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 over parameter names, shapes, dtypes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def save_checkpoint(path: Path, model_name: str, model: nn.Module, config: Any, **extra: Any) -> str:
    """Write atomically; returns the params hash."""
    params = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    digest = params_hash(params)
    blob = {"model": model_name, "config": dataclasses.asdict(config), "params": params, "sha256": digest, **extra}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    buf = io.BytesIO()
    torch.save(blob, buf)
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)
    return digest


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint file and verify its hash; InputError with one line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint {path} not found")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise InputError(f"checkpoint {path} cannot be read: {str(exc).splitlines()[0]}") from exc
    for key in ("model", "config", "params", "sha256"):
        if not isinstance(blob, dict) or key not in blob:
            raise InputError(f"checkpoint {path} lacks {key!r}")
    if params_hash(blob["params"]) != blob["sha256"]:
        raise InputError(f"checkpoint {path} is corrupt: parameters do not match their hash")
    return blob


def load_into(model: nn.Module, blob: dict[str, Any], path: Path | str = "<checkpoint>") -> None:
    """Strictly load ``blob['params']``; a mismatch names the missing, unexpected and
    mis-shaped keys in one line."""
    own = model.state_dict()
    params = blob["params"]
    missing = sorted(set(own) - set(params))
    unexpected = sorted(set(params) - set(own))
    shapes = sorted(k for k in set(own) & set(params) if own[k].shape != params[k].shape)
    if missing or unexpected or shapes:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:4]) + (f" (+{len(keys) - 4})" if len(keys) > 4 else "")
        raise InputError(f"checkpoint {path} does not fit the model: missing [{few(missing)}], "
                         f"unexpected [{few(unexpected)}], wrong shape [{few(shapes)}]")
    model.load_state_dict(params, strict=True)


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Rebuild a frozen dataclass config, refusing unknown fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise InputError(f"unknown {cls.__name__} fields: {', '.join(sorted(unknown))}")
    return cls(**values)
