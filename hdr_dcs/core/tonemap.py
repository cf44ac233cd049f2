"""mu-law tone mapping, the domain of the training losses and of PSNR-mu / SSIM-mu.

tau(H) = ln(1 + mu H) / ln(1 + mu), mu = 5000 (eq. 12 of the DCS/EAFNet paper, after
Kalantari & Ramamoorthi 2017). H must be normalised to [0, 1] first (see ``normalise``);
the functions accept numpy arrays and torch tensors alike.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

MU = 5000.0

ArrayT = TypeVar("ArrayT")


def mu_law(hdr: ArrayT, mu: float = MU) -> ArrayT:
    """Normalised linear HDR in [0, 1] -> mu-law domain in [0, 1]; negatives clamp to 0."""
    scale = 1.0 / math.log1p(mu)
    if isinstance(hdr, np.ndarray):
        return (np.log1p(mu * np.maximum(hdr, 0.0)) * scale).astype(hdr.dtype, copy=False)
    return (mu * hdr.clamp(min=0.0)).log1p() * scale  # type: ignore[attr-defined]


def inverse_mu_law(values: ArrayT, mu: float = MU) -> ArrayT:
    """Inverse of ``mu_law``: (exp(v ln(1 + mu)) - 1) / mu."""
    scale = math.log1p(mu)
    if isinstance(values, np.ndarray):
        return (np.expm1(values * scale) / mu).astype(values.dtype, copy=False)
    return (values * scale).expm1() / mu  # type: ignore[attr-defined]


def normalise(hdr: np.ndarray, peak: float) -> np.ndarray:
    """Divide radiance by ``peak`` (e.g. the ground truth's maximum) and clip to [0, 1].

    Metrics in the mu-law domain need a common scale for prediction and ground truth;
    evaluation uses one ``peak`` per sequence so that temporal metrics stay comparable.
    """
    if not (np.isfinite(peak) and peak > 0):
        raise ValueError(f"peak must be finite and > 0, got {peak}")
    return np.clip(hdr / np.float32(peak), 0.0, 1.0).astype(np.float32)
