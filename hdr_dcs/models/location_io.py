"""Inputs and outputs of LoCAtion in physical terms.

Everything photometric happens here, outside the network (normalisation, linearisation):

- the window's unit of radiance is its mean reference exposure: E = f^-1(L) * s_n / s,
  with s = t * g of the frame and s_n the mean over the window's reference frames, so
  the reference's full scale is E = 1 and an anchor 2 stops down reaches E = 4;
- radiance enters the network mu-law compressed: tau(E / M) (eq. 12 of the DCS paper,
  mu = 5000), M = ``max_radiance``;
- anchors also carry their GLA-aligned values (EAFNet eq. 2, see photometry.py for why
  the ratio is mean(L_ref) / mean(L)) and their relative exposure e = 0.1 log2(s / s_n)
  (EAFNet eq. 3) as a constant plane;
- the output y is tau(E / M); radiance in SPEC.md units is M tau^-1(y) / s_n;
- the prior (``LoCAtionConfig.prior``) enters the same way, tau(H s_n / M), as the base
  the network refines and as three more backbone input channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..core.merge import MergeConfig, merge
from ..core.photometry import DEFAULT_RESPONSE, CameraResponse, GammaResponse, TabulatedResponse
from ..core.tonemap import inverse_mu_law, mu_law
from ..core.types import AnchorPair, Exposure, Frame, FrameGroup, Role


def inverse_response(values: Tensor, response: CameraResponse = DEFAULT_RESPONSE) -> Tensor:
    """f^-1 on a tensor of pixel values in [0, 1] (differentiable for the gamma curve)."""
    v = values.clamp(0.0, 1.0)
    if isinstance(response, GammaResponse):
        return v ** response.gamma
    if isinstance(response, TabulatedResponse):
        table = torch.as_tensor(response.inverse_samples, dtype=v.dtype, device=v.device)
        pos = v * (table.numel() - 1)
        lo = pos.floor().clamp(max=table.numel() - 2).long()
        frac = pos - lo
        return table[lo] * (1 - frac) + table[lo + 1] * frac
    raise TypeError(f"unsupported camera response {type(response).__name__}")


_MERGE = MergeConfig()


@dataclass
class LoCAtionInputs:
    """Network inputs of one batch of windows (see the module docstring).

    Attributes:
        ref: (B, T, 9, H, W); base: (B, T, 3, H, W); low, high: (B, 10, H, W);
        norm: (B,) s_n in seconds (t * g).
    """

    ref: Tensor
    base: Tensor
    low: Tensor
    high: Tensor
    norm: Tensor


def _scaled(values: Tensor, scale: Tensor, norm: Tensor, response: CameraResponse, m: float) -> Tensor:
    """tau(f^-1(L) * s_n / s / M)."""
    shape = scale.shape + (1,) * (values.dim() - scale.dim())
    e = inverse_response(values, response) * (norm.view(*norm.shape, *([1] * (len(shape) - 1)))
                                               / scale.reshape(shape))
    return mu_law(e / m)


def encode_window(ref: Tensor, ref_scale: Tensor, low: Tensor, low_scale: Tensor, high: Tensor, high_scale: Tensor,
                  max_radiance: float = 64.0, response: CameraResponse = DEFAULT_RESPONSE,
                  prior: Tensor | None = None) -> LoCAtionInputs:
    """Pixel values and exposures -> network inputs.

    Args:
        ref: (B, T, 3, H, W) reference pixel values in [0, 1]; ref_scale: (B, T) t*g, s.
        low, high: (B, 3, H, W) registered anchor pixel values; low_scale, high_scale: (B,).
        prior: (B, T, 3, H, W) prior radiance (SPEC.md units), e.g. ``classical_prior``;
            None = the backbone's own radiance.
    """
    norm = ref_scale.mean(dim=1)
    ref_mu = _scaled(ref, ref_scale, norm, response, max_radiance)
    base = ref_mu if prior is None else target(prior, norm, max_radiance)
    ref_in = torch.cat([ref, ref_mu, base], dim=2)
    ref_mean = ref.mean(dim=(1, 2, 3, 4))
    anchors = []
    for values, scale in ((low, low_scale), (high, high_scale)):
        mu = _scaled(values, scale, norm, response, max_radiance)
        gla = (values * (ref_mean / values.mean(dim=(1, 2, 3)).clamp(min=1e-6)).view(-1, 1, 1, 1)).clamp(0, 1)
        e = (0.1 * torch.log2(scale / norm)).view(-1, 1, 1, 1).expand_as(values[:, :1])
        anchors.append(torch.cat([values, mu, gla, e], dim=1))
    return LoCAtionInputs(ref_in, base, anchors[0], anchors[1], norm)


def classical_prior(ref: np.ndarray, ref_scale: np.ndarray, low: np.ndarray, low_scale: float, high: np.ndarray,
                    high_scale: float, ages_s: np.ndarray | None = None,
                    response: CameraResponse = DEFAULT_RESPONSE) -> np.ndarray:
    """The classical merge of every backbone frame with one anchor pair.

    Args:
        ref: (T, H, W, 3) float32 pixel values; ref_scale: (T,) t*g in seconds.
        low, high: (H, W, 3) registered anchors; their scales in seconds.
        ages_s: (T,) anchor pair age per frame (0 when None).
    Returns:
        (T, H, W, 3) float32 radiance (SPEC.md units).
    """
    lo = Frame(np.ascontiguousarray(low, dtype=np.float32), 0, Role.LOW, Exposure(float(low_scale)))
    hi = Frame(np.ascontiguousarray(high, dtype=np.float32), 0, Role.HIGH, Exposure(float(high_scale)))
    pair = AnchorPair(lo, hi)
    out = []
    for t in range(ref.shape[0]):
        frame = Frame(np.ascontiguousarray(ref[t], dtype=np.float32), 0, Role.REFERENCE, Exposure(float(ref_scale[t])))
        age = 0.0 if ages_s is None else float(ages_s[t])
        # The prior must exist for every frame: stale pairs still count here (age weight
        # only), the network decides how far to trust them.
        out.append(merge(FrameGroup(frame, pair, min(age, _MERGE.max_anchor_age_s)), response, _MERGE).hdr)
    return np.stack(out)


def decode_output(y: Tensor, norm: Tensor, max_radiance: float = 64.0) -> Tensor:
    """Network output (B, T, 3, H, W) -> radiance in SPEC.md units (per second, unity gain)."""
    e = inverse_mu_law(y.clamp(0.0, 1.0)) * max_radiance
    return e / norm.view(-1, *([1] * (y.dim() - 1)))


def target(hdr: Tensor, norm: Tensor, max_radiance: float = 64.0) -> Tensor:
    """Ground-truth radiance (B, T, 3, H, W) -> the network's output domain tau(E / M)."""
    e = hdr * norm.view(-1, *([1] * (hdr.dim() - 1)))
    return mu_law((e / max_radiance).clamp(0.0, 1.0))


