"""What the training loop needs of each model: build it, run a batch, compute its loss,
and reconstruct a validation sequence.

A task turns a batch of ``data.dataset`` samples into the model's inputs (through the
model's own io module: normalisation stays outside the network), runs it, and returns
the weighted loss terms; ``predict_sequence`` runs a whole recording the way the backend
does, for validation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ..models.location import CONFIGS as LOCATION_CONFIGS
from ..models.location import LoCAtion, LoCAtionConfig
from ..models.location_io import classical_prior, encode_window, target
from . import losses


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (LoCAtion eq. 8; EAFNet eq. 15 uses l1 + 0.25 sobel)."""

    l1: float = 1.0
    temporal: float = 0.5
    anchor_consistency: float = 0.1
    sobel: float = 0.0


class Task(Protocol):
    name: str
    model: nn.Module
    config: Any

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]: ...


@dataclass
class LocationTask:
    """LoCAtion on windows of T frames with a second anchor pair for eq. 7."""

    config: LoCAtionConfig
    weights: LossWeights = field(default_factory=LossWeights)
    name: str = "location"

    def __post_init__(self) -> None:
        self.model = LoCAtion(self.config)

    @classmethod
    def from_variant(cls, variant: str, overrides: dict | None = None,
                     weights: LossWeights | None = None) -> LocationTask:
        base = LOCATION_CONFIGS[variant]
        cfg = LoCAtionConfig(**{**base.__dict__, **(overrides or {})})
        return cls(cfg, weights or LossWeights())

    def _inputs(self, batch: dict[str, Tensor], prefix: str = "") -> Any:
        m = self.config.max_radiance
        prior = batch_prior(batch, prefix) if self.config.prior == "classical" else None
        return encode_window(batch["reference"], batch["ref_scale"], batch[f"{prefix}low"], batch[f"{prefix}low_scale"],
                             batch[f"{prefix}high"], batch[f"{prefix}high_scale"], m, prior=prior)

    def predict(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Output and target, both (B, T, 3, h, w) in the output domain (for validation)."""
        inp = self._inputs(batch)
        y, _ = self.model(inp.ref, inp.base, inp.low, inp.high)
        return y, target(batch["gt"], inp.norm, self.config.max_radiance)

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        w = self.weights
        inp = self._inputs(batch)
        y, _, y1 = self.model(inp.ref, inp.base, inp.low, inp.high, None, return_stage1=True)
        gt = target(batch["gt"], inp.norm, self.config.max_radiance)
        terms = {"l1": losses.l1(y, gt), "temporal": losses.temporal_gradient(y, gt),
                 # Stage 1 is supervised too, so that it stays an HDR estimate of its own.
                 "stage1_l1": losses.l1(y1, gt)}
        if w.anchor_consistency > 0 and "alt_low" in batch and bool(batch["has_alt"].any()):
            alt = self._inputs(batch, "alt_")
            y1_alt, _ = self.model.stage1(alt.ref, alt.base, alt.low, alt.high)
            keep = batch["has_alt"].view(-1, 1, 1, 1, 1).to(y1.dtype)
            terms["anchor_consistency"] = losses.anchor_consistency(y1 * keep, y1_alt * keep)
        if w.sobel > 0:
            terms["sobel"] = losses.dilated_sobel(y, gt)
        total = (w.l1 * terms["l1"] + 0.5 * w.l1 * terms["stage1_l1"] + w.temporal * terms["temporal"]
                 + w.anchor_consistency * terms.get("anchor_consistency", y.new_zeros(()))
                 + w.sobel * terms.get("sobel", y.new_zeros(())))
        terms["total"] = total
        return terms


def batch_prior(batch: dict[str, Tensor], prefix: str = "") -> Tensor:
    """The classical prior (B, T, 3, H, W) of a batch of windows (see location_io)."""
    out = []
    for i in range(batch["reference"].shape[0]):
        pair_ns = (batch[f"{prefix}low_stamp_ns"][i] + batch[f"{prefix}high_stamp_ns"][i]).double() / 2
        ages = ((batch["stamps_ns"][i].double() - pair_ns).abs() * 1e-9).numpy()
        prior = classical_prior(batch["reference"][i].permute(0, 2, 3, 1).numpy(), batch["ref_scale"][i].numpy(),
                                batch[f"{prefix}low"][i].permute(1, 2, 0).numpy(), float(batch[f"{prefix}low_scale"][i]),
                                batch[f"{prefix}high"][i].permute(1, 2, 0).numpy(),
                                float(batch[f"{prefix}high_scale"][i]), ages)
        out.append(torch.from_numpy(prior).permute(0, 3, 1, 2))
    return torch.stack(out)


def make_task(model: str, variant: str, overrides: dict | None = None, weights: LossWeights | None = None) -> Any:
    """The task of a model by name."""
    if model == "location":
        return LocationTask.from_variant(variant, overrides, weights)
    if model == "eafnet":
        from .eafnet_task import EAFNetTask  # imports LossWeights from here

        return EAFNetTask.from_variant(variant, overrides, weights)
    raise ValueError(f"unknown model {model!r}")


def sample_to_device(batch: dict[str, Tensor], device: torch.device) -> dict[str, Tensor]:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}
