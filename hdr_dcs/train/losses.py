"""Losses of the papers, in the mu-law domain (inputs are already tau-mapped).

- ``l1``: L1 on mu-law tone-mapped output (LoCAtion eq. 5; DCS/EAFNet eq. 15's first term).
- ``temporal_gradient``: L1 between the frame-to-frame differences of output and ground
  truth (LoCAtion eq. 6): penalises flicker, allows real motion.
- ``anchor_consistency``: L1 between the spatial gradients of two Stage-1 sequences made
  from the same backbone with different anchor pairs (LoCAtion eq. 7: "structural
  alignment"; we compare Sobel gradients, the structure, rather than values, which may
  legitimately differ where only one pair sees the highlights).
- ``dilated_sobel``: the dilated advanced Sobel loss (DCS/EAFNet eqs. 13-14, after [56]):
  L1 between Sobel responses (horizontal, vertical and both diagonals) at dilations
  1, 2, 3, summed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_SOBEL = torch.tensor([
    [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],      # horizontal gradient
    [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],      # vertical gradient
    [[-2, -1, 0], [-1, 0, 1], [0, 1, 2]],      # diagonal
    [[0, -1, -2], [1, 0, -1], [2, 1, 0]],      # anti-diagonal ("advanced" Sobel)
], dtype=torch.float32).unsqueeze(1) / 8.0


def _flat(x: Tensor) -> Tensor:
    """(..., C, H, W) -> (N*C, 1, H, W)."""
    return x.reshape(-1, 1, *x.shape[-2:])


def sobel(x: Tensor, dilation: int = 1) -> Tensor:
    """(..., C, H, W) -> (N*C, 4, H, W) Sobel responses in four directions."""
    k = _SOBEL.to(dtype=x.dtype, device=x.device)
    return F.conv2d(F.pad(_flat(x), (dilation,) * 4, mode="replicate"), k, dilation=dilation)


def l1(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).abs().mean()


def temporal_gradient(pred: Tensor, target: Tensor) -> Tensor:
    """pred, target: (B, T, C, H, W), T >= 2."""
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    return ((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])).abs().mean()


def anchor_consistency(stage1_a: Tensor, stage1_b: Tensor) -> Tensor:
    """Two Stage-1 outputs (B, T, C, H, W) of the same backbone with different anchors."""
    return (sobel(stage1_a) - sobel(stage1_b)).abs().mean()


def dilated_sobel(pred: Tensor, target: Tensor, dilations: tuple[int, ...] = (1, 2, 3)) -> Tensor:
    """Sum over dilations of the mean absolute difference of Sobel responses."""
    return sum((sobel(pred, d) - sobel(target, d)).abs().mean() for d in dilations)
