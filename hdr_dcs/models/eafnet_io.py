"""Inputs and outputs of EAFNet in physical terms (DCS/EAFNet paper, Section IV-B).

Everything photometric happens here, outside the network. EAFNet is per frame: the unit
of radiance is the frame's own reference exposure s_m = t * g, so E = f^-1(L) * s_m / s
and the reference's full scale is E = 1 (an anchor 2 stops down reaches E = 4).

Each of the three images i in {l, m, h} enters as the paper's 9-channel triple
{L_i, H_i, G_i} (eqs. 1-2):

- ``L_i``: the pixel values in [0, 1];
- ``H_i``: the exposure-normalised linear image. Eq. (1) writes it as L^gamma / t; we use
  the project's normalised mu-law radiance tau(E_i / M) instead: the same
  linearise-and-divide-by-exposure (f^-1 is the calibrated curve, gamma 2.2 by default,
  and the gain counts too), but bounded in [0, 1] whatever the exposure time's unit,
  and in the domain of the output and of the loss (eq. 12);
- ``G_i``: GLA, L_i scaled to the reference's mean, ``clip(L_i * mean(L_m) / mean(L_i))``.
  Eq. (2) as printed has the ratio inverted; see ``core.photometry.
  global_luminance_alignment`` for why we use the form that actually aligns. G_m = L_m.

The relative exposures are eq. (3), e_i = 0.1 log2(s_i / s_m), with s = t * g: the
exposure that matters photometrically is the signal per unit radiance, gain included.

The output is y = tau(E / M) like LoCAtion's; ``decode_output`` and ``target`` are
LoCAtion's (same units, one frame instead of a window).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.photometry import DEFAULT_RESPONSE, CameraResponse
from ..core.tonemap import mu_law
from .location_io import decode_output, inverse_response, target

__all__ = ["EXPOSURE_SCALE", "EAFNetInputs", "decode_output", "encode_frame", "gla", "relative_exposure",
           "target"]

#: c of eq. (3).
EXPOSURE_SCALE = 0.1


@dataclass
class EAFNetInputs:
    """Network inputs of a batch of frames.

    Attributes:
        ref, low, high: (B, 9, H, W) the triples [L, H, G] of the reference and anchors.
        base: (B, 3, H, W) the estimate the network corrects, tau(E / M): the prior's when
            one is given, else the reference's own (= ref[:, 3:6]).
        exposure: (B, 2) relative exposures (e_l, e_h) of eq. (3).
        norm: (B,) s_m = t * g of the reference frame, seconds: the unit of radiance.
    """

    ref: Tensor
    base: Tensor
    low: Tensor
    high: Tensor
    exposure: Tensor
    norm: Tensor


def relative_exposure(scale: Tensor, ref_scale: Tensor) -> Tensor:
    """Eq. (3): e = 0.1 log2(s / s_m) for (B,) scales -> (B,)."""
    return EXPOSURE_SCALE * torch.log2(scale / ref_scale)


def gla(values: Tensor, reference: Tensor, eps: float = 1e-6) -> Tensor:
    """Eq. (2) in its aligning form: (B, 3, H, W) -> clip(L * mean(L_m) / mean(L), 0, 1).

    The means are over C, H, W per batch element (``core.photometry``'s convention).
    """
    mean = values.mean(dim=(1, 2, 3), keepdim=True).clamp(min=eps)
    ratio = reference.mean(dim=(1, 2, 3), keepdim=True) / mean
    return (values * ratio).clamp(0.0, 1.0)


def encode_frame(ref: Tensor, ref_scale: Tensor, low: Tensor, low_scale: Tensor, high: Tensor,
                 high_scale: Tensor, max_radiance: float = 64.0,
                 response: CameraResponse = DEFAULT_RESPONSE, prior: Tensor | None = None) -> EAFNetInputs:
    """Pixel values and exposures -> network inputs.

    Args:
        ref: (B, 3, H, W) reference pixel values in [0, 1]; ref_scale: (B,) its t * g, s.
        low, high: (B, 3, H, W) anchors registered into the reference grid, in [0, 1];
            low_scale, high_scale: (B,) their t * g.
        max_radiance: M, the largest E represented.
        response: the camera response f (the anchors' and the reference's alike).
        prior: (B, 3, H, W) prior radiance (SPEC.md units), e.g. the classical merge; the
            base becomes tau(prior * s_m / M) instead of the reference's own estimate.
    """
    if ref.dim() != 4 or ref.shape[1] != 3:
        raise ValueError(f"ref must be (B, 3, H, W), got {tuple(ref.shape)}")
    for name, x in (("low", low), ("high", high)):
        if x.shape != ref.shape:
            raise ValueError(f"{name} must have the reference's shape {tuple(ref.shape)}, "
                             f"got {tuple(x.shape)}")
    view = (-1, 1, 1, 1)

    def mu(values: Tensor, scale: Tensor) -> Tensor:  # H_i = tau(f^-1(L) * s_m / s / M)
        return mu_law(inverse_response(values, response) * (ref_scale / scale).view(view) / max_radiance)

    ref_mu = mu(ref, ref_scale)
    triples = [torch.cat([ref, ref_mu, ref], dim=1)]  # G_m = L_m
    for values, scale in ((low, low_scale), (high, high_scale)):
        triples.append(torch.cat([values, mu(values, scale), gla(values, ref)], dim=1))
    exposure = torch.stack([relative_exposure(s, ref_scale) for s in (low_scale, high_scale)], 1)
    base = ref_mu if prior is None else target(prior, ref_scale, max_radiance)
    return EAFNetInputs(triples[0], base, triples[1], triples[2], exposure, ref_scale)
