"""The EAFNet backend: the DCS paper's per-frame fusion network, live or offline.

Every FrameGroup is reconstructed on its own as soon as it arrives (latency: the model's
run time, no waiting frames, no state). A group without an anchor pair uses its
reference frame as both anchors: the model then sees no extra dynamic range (e = 0, GLA
= identity) and returns what it makes of the reference alone. The encoded inputs are
padded with replicated borders to a multiple of the network's downsampling factor
(``EAFNet.multiple``) and the output is cropped back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from ..core.errors import InputError
from ..core.photometry import DEFAULT_RESPONSE, CameraResponse
from ..core.types import Frame, FrameGroup
from ..models.eafnet import EAFNet, EAFNetConfig
from ..models.eafnet_io import decode_output, encode_frame
from ..models.location_io import classical_prior
from . import HdrOutput
from .weights import load_model


def load_eafnet(weights: Path | str | None = None, variant: str = "lite") -> EAFNet:
    """An EAFNet with weights loaded strictly from a checkpoint carrying its config
    (the shipped ``weights/eafnet_<variant>-<hash8>.pt`` by default)."""
    return load_model("eafnet", EAFNet, EAFNetConfig, weights, variant)  # type: ignore[return-value]


class EAFNetBackend:
    """Backend protocol over EAFNet (see the module docstring)."""

    name = "eafnet"
    latency_frames = 0

    def __init__(self, weights: Path | str | None = None, variant: str = "lite", device: str = "cpu",
                 response: CameraResponse = DEFAULT_RESPONSE, model: EAFNet | None = None,
                 threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(int(threads))
        self.model = (model or load_eafnet(weights, variant)).to(device).eval()
        self.device = torch.device(device)
        self.response = response

    def reset(self) -> None:
        """Nothing to forget: every frame is independent."""

    def flush(self) -> list[HdrOutput]:
        return []

    def push(self, group: FrameGroup) -> list[HdrOutput]:
        ref = group.reference
        low, high = (group.anchors.low, group.anchors.high) if group.anchors is not None else (ref, ref)
        hdr = self.reconstruct(ref, low, high, group.anchor_age_s)
        info = {"anchors_used": group.anchors is not None, "anchor_age_s": group.anchor_age_s}
        return [HdrOutput(hdr, ref.stamp_ns, ref.sequence_id, info)]

    def reconstruct(self, ref: Frame, low: Frame, high: Frame, anchor_age_s: float = 0.0) -> np.ndarray:
        """(H, W, 3) radiance in SPEC.md units from a reference and two registered anchors
        (``anchor_age_s``: the pair's age, which weighs it in the classical prior)."""
        h, w = ref.pixels.shape[:2]
        for name, frame in (("low", low), ("high", high)):
            if frame.pixels.shape != ref.pixels.shape:
                raise InputError(f"{name} anchor {frame.pixels.shape} does not match the reference "
                                 f"{ref.pixels.shape}; anchors must be registered into the reference grid")
        dev = self.device

        def image(f: Frame) -> torch.Tensor:
            pixels = torch.from_numpy(np.ascontiguousarray(f.pixels, dtype=np.float32))
            return pixels.to(dev).permute(2, 0, 1)[None]

        def scale(f: Frame) -> torch.Tensor:
            return torch.tensor([f.exposure.scale], dtype=torch.float32, device=dev)

        m = self.model.multiple
        pad = (0, (-w) % m, 0, (-h) % m)
        cfg = self.model.config
        prior = None
        if cfg.prior == "classical":
            merged = classical_prior(ref.pixels[None], np.array([ref.exposure.scale]), low.pixels,
                                     low.exposure.scale, high.pixels, high.exposure.scale,
                                     np.array([anchor_age_s or 0.0]), self.response)[0]
            prior = torch.from_numpy(merged).to(dev).permute(2, 0, 1)[None]
        with torch.inference_mode():
            inp = encode_frame(image(ref), scale(ref), image(low), scale(low), image(high), scale(high),
                               cfg.max_radiance, self.response, prior=prior)
            # Encoded first, padded second: GLA's means are those of the real image.
            x = [F.pad(t, pad, mode="replicate") for t in (inp.ref, inp.base, inp.low, inp.high)]
            y = self.model(*x, inp.exposure)[..., :h, :w]
            hdr = decode_output(y, inp.norm, cfg.max_radiance)[0].permute(1, 2, 0)
        return np.ascontiguousarray(hdr.cpu().numpy(), dtype=np.float32)
