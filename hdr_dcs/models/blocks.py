"""Building blocks shared by the models (LoCAtion, EAFNet)."""

from __future__ import annotations

from torch import Tensor, nn


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """conv-LeakyReLU-conv with an identity skip; (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.LeakyReLU(0.1, inplace=True),
                                  conv3x3(channels, channels))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ConvAct(nn.Sequential):
    """conv3x3 + LeakyReLU(0.1)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(conv3x3(cin, cout, stride), nn.LeakyReLU(0.1, inplace=True))


def res_stack(channels: int, n: int) -> nn.Sequential:
    """``n`` ResBlocks in a row (an identity for n = 0)."""
    return nn.Sequential(*[ResBlock(channels) for _ in range(n)])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
