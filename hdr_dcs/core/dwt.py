"""Single-level 2-D Haar discrete wavelet transform and its inverse, in torch.

Batched, differentiable, and following the input's device and dtype. The analysis is a
stride-2 grouped ``conv2d`` and the synthesis a stride-2 grouped ``conv_transpose2d``; the
filter taps come from ``pywt.Wavelet("haar")`` at import time, so the transform is the
one PyWavelets computes, not a hand-typed copy of it.

Sub-bands follow ``pywt.dwt2(a, "haar") -> (cA, (cH, cV, cD))`` on the last two axes
(H = rows, axis -2; W = columns, axis -1), with the same signs:

==========  ===========  ==================================  =========================
ours        pywt         filters (along H, along W)          responds to
==========  ===========  ==================================  =========================
``ll``      ``cA``       low-pass,  low-pass                 local mean (approximation)
``lh``      ``cH``       high-pass, low-pass                 horizontal edges
``hl``      ``cV``       low-pass,  high-pass                vertical edges
``hh``      ``cD``       high-pass, high-pass                diagonal detail
==========  ===========  ==================================  =========================

so ``pywt.idwt2((ll, (lh, hl, hh)), "haar")`` equals ``idwt2(ll, lh, hl, hh)``. For a 2x2
block ``[[a, b], [c, d]]`` that is ``ll = (a+b+c+d)/2``, ``lh = (a+b-c-d)/2``,
``hl = (a-b+c-d)/2``, ``hh = (a-b-c+d)/2``. Haar is orthonormal: the sum of squares of
the four bands equals that of the input, and ``idwt2(*dwt2(x))`` is ``x`` to rounding.

Shapes: inputs are (B, C, H, W) with even H and W; each band is (B, C, H/2, W/2). The
packed layout stacks the bands band-major along channels, (B, 4C, H/2, W/2) =
``cat([ll, lh, hl, hh], dim=1)``, so ``packed[:, :C]`` is the approximation.
"""

from __future__ import annotations

import numpy as np
import pywt
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

__all__ = [
    "HaarDWT",
    "HaarIDWT",
    "dwt2",
    "dwt2_packed",
    "haar_analysis_filters",
    "haar_synthesis_filters",
    "idwt2",
    "idwt2_packed",
]


def _taps() -> tuple[np.ndarray, np.ndarray]:
    """(4, 2, 2) analysis and synthesis kernels in band order ll, lh, hl, hh (float64).

    pywt convolves with ``dec_*`` and keeps odd outputs, so coefficient k of a 1-D
    analysis is ``dec[1] * x[2k] + dec[0] * x[2k+1]``: a correlation with the reversed
    taps over the pair (x[2k], x[2k+1]), which is what a stride-2 conv2d computes.
    Synthesis puts ``rec[i] * c[k]`` at x[2k+i], which is what conv_transpose2d computes
    with the taps as they are.
    """
    wavelet = pywt.Wavelet("haar")
    dec_lo, dec_hi = np.asarray(wavelet.dec_lo)[::-1], np.asarray(wavelet.dec_hi)[::-1]
    rec_lo, rec_hi = np.asarray(wavelet.rec_lo), np.asarray(wavelet.rec_hi)
    # (filter along H, filter along W) per band; see the table in the module docstring.
    analysis = np.stack([np.outer(dec_lo, dec_lo), np.outer(dec_hi, dec_lo),
                         np.outer(dec_lo, dec_hi), np.outer(dec_hi, dec_hi)])
    synthesis = np.stack([np.outer(rec_lo, rec_lo), np.outer(rec_hi, rec_lo),
                          np.outer(rec_lo, rec_hi), np.outer(rec_hi, rec_hi)])
    return analysis, synthesis


_ANALYSIS, _SYNTHESIS = (torch.from_numpy(np.ascontiguousarray(k)).unsqueeze(1) for k in _taps())


def haar_analysis_filters() -> Tensor:
    """(4, 1, 2, 2) float64 analysis kernels for bands ll, lh, hl, hh (a fresh copy)."""
    return _ANALYSIS.clone()


def haar_synthesis_filters() -> Tensor:
    """(4, 1, 2, 2) float64 synthesis kernels for bands ll, lh, hl, hh (a fresh copy)."""
    return _SYNTHESIS.clone()


def _check_image(x: Tensor, name: str = "x") -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must be (B, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating point tensor, got {x.dtype}")
    height, width = x.shape[-2:]
    if height % 2 or width % 2:
        raise ValueError(f"Haar DWT needs even H and W, got H={height}, W={width}")


def _check_bands(bands: tuple[Tensor, ...]) -> None:
    shape = bands[0].shape
    for name, band in zip(("ll", "lh", "hl", "hh"), bands, strict=True):
        if not isinstance(band, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(band).__name__}")
        if band.ndim != 4 or not band.is_floating_point():
            raise ValueError(f"{name} must be a floating (B, C, h, w) tensor, got {band.dtype} "
                             f"{tuple(band.shape)}")
        if band.shape != shape:
            raise ValueError(f"sub-bands must share one shape, got ll {tuple(shape)} and "
                             f"{name} {tuple(band.shape)}")


def dwt2(x: Tensor, filters: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One level of the 2-D Haar DWT.

    Args:
        x: (B, C, H, W) floating tensor, H and W even.
        filters: (4, 1, 2, 2) analysis kernels (``haar_analysis_filters()``, the default);
            moved to x's device and dtype.
    Returns:
        ``(ll, lh, hl, hh)``, each (B, C, H/2, W/2): pywt's cA, cH, cV, cD.
    Raises:
        ValueError: x is not a floating (B, C, H, W) tensor with even H and W.
    """
    _check_image(x)
    batch, channels, height, width = x.shape
    weight = (_ANALYSIS if filters is None else filters).to(device=x.device, dtype=x.dtype)
    # Output channel 4c + b is band b of input channel c.
    out = F.conv2d(x, weight.repeat(channels, 1, 1, 1), stride=2, groups=channels)
    out = out.reshape(batch, channels, 4, height // 2, width // 2)
    return out[:, :, 0], out[:, :, 1], out[:, :, 2], out[:, :, 3]


def idwt2(ll: Tensor, lh: Tensor, hl: Tensor, hh: Tensor,
          filters: Tensor | None = None) -> Tensor:
    """Inverse of ``dwt2``: four (B, C, h, w) bands -> (B, C, 2h, 2w).

    Args:
        ll, lh, hl, hh: (B, C, h, w) floating tensors of one shape (pywt's cA, cH, cV, cD).
        filters: (4, 1, 2, 2) synthesis kernels (``haar_synthesis_filters()``, the default).
    Raises:
        ValueError: the bands are not floating 4-D tensors of one shape.
    """
    _check_bands((ll, lh, hl, hh))
    batch, channels, height, width = ll.shape
    weight = (_SYNTHESIS if filters is None else filters).to(device=ll.device, dtype=ll.dtype)
    stacked = torch.stack((ll, lh, hl, hh), dim=2).reshape(batch, 4 * channels, height, width)
    return F.conv_transpose2d(stacked, weight.repeat(channels, 1, 1, 1), stride=2, groups=channels)


def dwt2_packed(x: Tensor, filters: Tensor | None = None) -> Tensor:
    """``dwt2`` with the bands concatenated: (B, C, H, W) -> (B, 4C, H/2, W/2), band-major."""
    return torch.cat(dwt2(x, filters), dim=1)


def idwt2_packed(packed: Tensor, filters: Tensor | None = None) -> Tensor:
    """Inverse of ``dwt2_packed``: (B, 4C, h, w) band-major -> (B, C, 2h, 2w)."""
    if not isinstance(packed, Tensor) or packed.ndim != 4 or packed.shape[1] % 4:
        shape = tuple(packed.shape) if isinstance(packed, Tensor) else type(packed).__name__
        raise ValueError(f"packed bands must be (B, 4C, h, w), got {shape}")
    ll, lh, hl, hh = packed.chunk(4, dim=1)
    return idwt2(ll, lh, hl, hh, filters)


class HaarDWT(nn.Module):
    """Module form of ``dwt2`` (or ``dwt2_packed`` with ``packed=True``); no parameters.

    The taps are a non-persistent buffer: ``.to(device)`` moves them, state dicts omit them.
    Casting the module (``.float()``) casts the taps; they are cast to the input's dtype on
    every call, so float64 inputs keep full precision only with float64 taps (the default).
    """

    filters: Tensor

    def __init__(self, packed: bool = False) -> None:
        super().__init__()
        self.packed = packed
        self.register_buffer("filters", haar_analysis_filters(), persistent=False)

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor, Tensor, Tensor]:
        """(B, C, H, W) -> (ll, lh, hl, hh) each (B, C, H/2, W/2), or (B, 4C, H/2, W/2)."""
        return dwt2_packed(x, self.filters) if self.packed else dwt2(x, self.filters)

    def extra_repr(self) -> str:
        return f"packed={self.packed}"


class HaarIDWT(nn.Module):
    """Module form of ``idwt2`` (or ``idwt2_packed`` with ``packed=True``); no parameters."""

    filters: Tensor

    def __init__(self, packed: bool = False) -> None:
        super().__init__()
        self.packed = packed
        self.register_buffer("filters", haar_synthesis_filters(), persistent=False)

    def forward(self, *bands: Tensor) -> Tensor:
        """(ll, lh, hl, hh) each (B, C, h, w), or one (B, 4C, h, w) -> (B, C, 2h, 2w)."""
        if self.packed:
            if len(bands) != 1:
                raise ValueError(f"a packed HaarIDWT takes one tensor, got {len(bands)}")
            return idwt2_packed(bands[0], self.filters)
        if len(bands) != 4:
            raise ValueError(f"HaarIDWT takes four sub-bands (ll, lh, hl, hh), got {len(bands)}")
        return idwt2(*bands, filters=self.filters)

    def extra_repr(self) -> str:
        return f"packed={self.packed}"
