"""EAFNet's training task: every frame of a window is a sample of its own.

A batch of B windows of T reference frames sharing one anchor pair becomes B * T frames,
each with the window's anchors (so one simulated window gives T samples, at anchor ages
from 0 to T - 1 frames). The loss is eq. (15) of the DCS paper: L1 on the mu-law output
plus 0.25 x the dilated advanced Sobel loss (dilations 1, 2, 3). With ``temporal`` > 0
the frame-to-frame difference loss of LoCAtion is added over the T outputs of a window
(not in the paper; off by default).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from ..models.eafnet import CONFIGS as EAFNET_CONFIGS
from ..models.eafnet import EAFNet, EAFNetConfig
from ..models.eafnet_io import EAFNetInputs, encode_frame, target
from . import losses
from .tasks import LossWeights, batch_prior

#: Eq. (15): L1 + 0.25 D-ASL.
EAFNET_LOSS = LossWeights(l1=1.0, temporal=0.0, anchor_consistency=0.0, sobel=0.25)


def _repeat(x: Tensor, t: int) -> Tensor:
    """A per-window tensor (B, ...) -> (B*T, ...), each window's entry repeated T times."""
    return x.unsqueeze(1).expand(x.shape[0], t, *x.shape[1:]).flatten(0, 1)


@dataclass
class EAFNetTask:
    """EAFNet on the frames of training windows (``data.dataset`` batches)."""

    config: EAFNetConfig
    weights: LossWeights = field(default_factory=lambda: EAFNET_LOSS)
    name: str = "eafnet"

    def __post_init__(self) -> None:
        if self.weights.anchor_consistency > 0:
            raise ValueError("EAFNet has no anchor consistency loss (a LoCAtion Stage-1 term); set it to 0")
        self.model = EAFNet(self.config)

    @classmethod
    def from_variant(cls, variant: str, overrides: dict | None = None,
                     weights: LossWeights | None = None) -> EAFNetTask:
        base = EAFNET_CONFIGS[variant]
        cfg = EAFNetConfig(**{**base.__dict__, **(overrides or {})})
        return cls(cfg, weights or EAFNET_LOSS)

    def _inputs(self, batch: dict[str, Tensor]) -> EAFNetInputs:
        """Windows -> frames: (B, T, 3, h, w) references and (B, 3, h, w) anchors -> B*T."""
        t = batch["reference"].shape[1]
        prior = batch_prior(batch).flatten(0, 1) if self.config.prior == "classical" else None
        return encode_frame(batch["reference"].flatten(0, 1), batch["ref_scale"].flatten(0, 1),
                            _repeat(batch["low"], t), _repeat(batch["low_scale"], t),
                            _repeat(batch["high"], t), _repeat(batch["high_scale"], t),
                            self.config.max_radiance, prior=prior)

    def predict(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The output and the target, both (B, T, 3, h, w) in the mu-law domain."""
        b, t = batch["reference"].shape[:2]
        inp = self._inputs(batch)
        y = self.model(inp.ref, inp.base, inp.low, inp.high, inp.exposure)
        gt = target(batch["gt"].flatten(0, 1), inp.norm, self.config.max_radiance)
        return y.view(b, t, *y.shape[1:]), gt.view(b, t, *gt.shape[1:])

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        w = self.weights
        y, gt = self.predict(batch)
        terms = {"l1": losses.l1(y, gt), "sobel": losses.dilated_sobel(y, gt)}
        total = w.l1 * terms["l1"] + w.sobel * terms["sobel"]
        if w.temporal > 0:
            terms["temporal"] = losses.temporal_gradient(y, gt)
            total = total + w.temporal * terms["temporal"]
        terms["total"] = total
        return terms
