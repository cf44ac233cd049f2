"""The LoCAtion backend: the rolling-window video model, live or offline.

Groups are collected into windows of T reference frames that share one anchor pair
(``core.grouper.WindowAssembler``); when a window closes (T frames, a new pair, or the end
of the stream) the model runs on it with the state carried from the previous window and
all of its frames come out at once. Latency: up to T - 1 frames of waiting plus the
model's run time. A window whose frames have no anchor pair uses its middle reference
frame as both anchors: the model then sees no extra dynamic range, only the backbone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.grouper import GroupWindow, WindowAssembler
from ..core.photometry import DEFAULT_RESPONSE, CameraResponse
from ..core.types import FrameGroup
from ..models.location import LoCAtion, LoCAtionConfig, LoCAtionState
from ..models.location_io import classical_prior, decode_output, encode_window
from . import HdrOutput
from .weights import load_model

def load_location(weights: Path | str | None = None, variant: str = "lite") -> LoCAtion:
    """A LoCAtion model with weights loaded strictly from a checkpoint carrying its config."""
    return load_model("location", LoCAtion, LoCAtionConfig, weights, variant)  # type: ignore[return-value]


class LocationBackend:
    """Backend protocol over LoCAtion (see the module docstring)."""

    name = "location"

    def __init__(self, weights: Path | str | None = None, variant: str = "lite", device: str = "cpu",
                 response: CameraResponse = DEFAULT_RESPONSE, model: LoCAtion | None = None,
                 threads: int | None = None) -> None:
        if threads:
            torch.set_num_threads(int(threads))
        self.model = (model or load_location(weights, variant)).to(device).eval()
        self.device = torch.device(device)
        self.response = response
        self.window = self.model.config.window
        self.latency_frames = self.window - 1
        self.assembler = WindowAssembler(self.window)
        self.state: LoCAtionState | None = None
        self._shape: tuple[int, int] | None = None

    def reset(self) -> None:
        self.assembler.reset()
        self.state = None
        self._shape = None

    def push(self, group: FrameGroup) -> list[HdrOutput]:
        return [out for w in self.assembler.push(group) for out in self._run(w)]

    def flush(self) -> list[HdrOutput]:
        return [out for w in self.assembler.flush() for out in self._run(w)]

    def _run(self, window: GroupWindow) -> list[HdrOutput]:
        groups = window.groups
        ref = np.stack([g.reference.pixels for g in groups])
        h, w = ref.shape[1:3]
        if self._shape != (h, w):
            self.state, self._shape = None, (h, w)
        if window.anchors is not None:
            low, high = window.anchors.low, window.anchors.high
        else:
            mid = groups[len(groups) // 2].reference
            low = high = mid
        dev = self.device

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

        ref_scale = torch.tensor([[g.reference.exposure.scale for g in groups]], dtype=torch.float32, device=dev)
        prior = None
        if self.model.config.prior == "classical":
            scales = np.array([g.reference.exposure.scale for g in groups])
            ages = np.array([g.anchor_age_s for g in groups])
            prior_np = classical_prior(ref, scales, low.pixels, low.exposure.scale, high.pixels, high.exposure.scale,
                                       ages, self.response)
            prior = t(prior_np).permute(0, 3, 1, 2).unsqueeze(0)
        inputs = encode_window(t(ref).permute(0, 3, 1, 2).unsqueeze(0), ref_scale,
                               t(low.pixels).permute(2, 0, 1).unsqueeze(0),
                               torch.tensor([low.exposure.scale], device=dev),
                               t(high.pixels).permute(2, 0, 1).unsqueeze(0),
                               torch.tensor([high.exposure.scale], device=dev),
                               self.model.config.max_radiance, self.response, prior=prior)
        pad_h, pad_w = (-h) % 4, (-w) % 4
        with torch.inference_mode():
            args = [_pad(x, pad_h, pad_w) for x in (inputs.ref, inputs.base, inputs.low, inputs.high)]
            y, self.state = self.model(*args, self.state)
        y = y[..., :h, :w]
        hdr = decode_output(y, inputs.norm, self.model.config.max_radiance)[0].permute(0, 2, 3, 1).cpu().numpy()
        outs = []
        for i, g in enumerate(groups):
            info = {"anchors_used": window.anchors is not None, "anchor_age_s": g.anchor_age_s,
                    "window_size": len(groups), "window_closed_by": window.closed_by}
            outs.append(HdrOutput(np.ascontiguousarray(hdr[i], dtype=np.float32), g.reference.stamp_ns,
                                  g.reference.sequence_id, info))
        return outs


def _pad(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Reflect-pad the last two dims of (B, [T,] C, H, W) up to multiples of 4."""
    if not (pad_h or pad_w):
        return x
    shape = x.shape
    flat = x.reshape(-1, *shape[-3:])
    flat = F.pad(flat, (0, pad_w, 0, pad_h), mode="replicate")
    return flat.reshape(*shape[:-2], *flat.shape[-2:])


