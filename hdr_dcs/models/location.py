"""LoCAtion: the rolling-window HDR video model (location-hdr-video.txt).

A window of T backbone (reference) frames shares one anchor pair. Stage 1 (Collaborative
Feature Attention) fuses the anchors into every backbone frame in the Haar LL band:
the Temporal Prior Aggregator (TPA) turns motion seen along the constant-exposure backbone
and cross-exposure mismatch into reliability maps, Content-Faithful Fusion (CFF) soft-gates
anchor features into the backbone with them, and the inverse DWT restores full
resolution with the backbone's high-frequency bands. No optical flow, no deformable
convolution. Stage 2 (Global Sequence Consistency) encodes the Stage-1 sequence at half
resolution, propagates it with Bidirectional Context Aggregation (two forward/backward
recurrent passes, the second fed by the first) and stacked RWKV blocks over time, and
adds the upsampled result as a residual to the Stage-1 output (eq. 2).

Streaming: forward recurrences (BCA's and the WKV's past sums) carry over from window to
window in ``LoCAtionState``; backward ones run within the window, whose future beyond
its end is unknown live. Processing a sequence window by window with the state is the
model's definition, offline and live alike.

Units: inputs and outputs are normalised (``hdr_dcs.models.location_io``): the output
``y`` is the mu-law value of radiance in units of the window's reference exposure divided
by ``max_radiance``; the backend converts to SPEC.md radiance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..core.dwt import dwt2, idwt2
from .blocks import ConvAct, conv3x3, res_stack
from .rwkv import TemporalRWKVBlock, WkvState

REF_CHANNELS = 9  # L, mu-law radiance and the prior estimate of a backbone frame
ANCHOR_CHANNELS = 10  # L, mu-law radiance, GLA-aligned L, relative exposure plane


@dataclass(frozen=True)
class LoCAtionConfig:
    """Sizes of LoCAtion.

    Attributes:
        channels: Stage-1 feature channels (also in the LL band).
        encoder_blocks: residual blocks of the frame encoders (full resolution).
        fusion_blocks: residual blocks after CFF (LL band, half resolution).
        tpa_blocks: residual blocks of each TPA branch.
        stage2_channels: Stage-2 channels (half resolution).
        bca_blocks: residual blocks of each BCA propagation step.
        rwkv_blocks: stacked RWKV blocks of LTM.
        window: T, backbone frames per anchor pair.
        max_radiance: M, the largest normalised radiance represented (64 = 6 stops above
            the reference's full scale).
        prior: the estimate both stages refine (``base``): "classical" = the classical
            merge of each backbone frame with the window's anchors (core.merge), or
            "reference" = the backbone frame's own radiance. The paper's Stage 1 outputs an
            HDR estimate made from backbone and anchors; starting that estimate from the
            classical merge rather than from the backbone alone lets a model trained for a
            few CPU-hours spend its capacity on what the classical merge gets wrong
            (ghosts it let through, detail it rejected, noise, flicker) instead of
            re-learning exposure arithmetic. The network still sees the raw backbone and
            anchors and gates them itself (TPA, CFF).
    """

    channels: int = 24
    encoder_blocks: int = 1
    fusion_blocks: int = 2
    tpa_blocks: int = 1
    stage2_channels: int = 32
    bca_blocks: int = 1
    rwkv_blocks: int = 1
    window: int = 5
    max_radiance: float = 64.0
    prior: str = "classical"


CONFIGS: dict[str, LoCAtionConfig] = {
    # Sized for a 2-core CPU: ~0.3 M parameters.
    "lite": LoCAtionConfig(),
    # The paper's 4.63 M parameters (Table IV) within 10 %.
    "paper": LoCAtionConfig(channels=64, encoder_blocks=2, fusion_blocks=4, tpa_blocks=2, stage2_channels=80,
                            bca_blocks=3, rwkv_blocks=4),
}


@dataclass
class LoCAtionState:
    """What carries over between windows: BCA forward hidden states and WKV past sums."""

    bca: list[Tensor] = field(default_factory=list)
    wkv: list[WkvState] = field(default_factory=list)

    def detach(self) -> LoCAtionState:
        return LoCAtionState([h.detach() for h in self.bca], [s.detach() for s in self.wkv])


class TemporalPriorAggregator(nn.Module):
    """Reliability maps of one anchor for every backbone frame (eq. 1).

    Motion along the backbone (differences to the previous and the next frame, through
    a forward and a backward branch) and the mismatch between anchor and backbone are
    aggregated and squashed to a per-feature map in (0, 1).
    """

    def __init__(self, c: int, blocks: int) -> None:
        super().__init__()
        self.forward_branch = nn.Sequential(ConvAct(2 * c, c), res_stack(c, blocks))
        self.backward_branch = nn.Sequential(ConvAct(2 * c, c), res_stack(c, blocks))
        self.mismatch = nn.Sequential(ConvAct(2 * c, c), res_stack(c, blocks))
        self.head = nn.Sequential(ConvAct(3 * c, c), nn.Conv2d(c, c, 1))

    def motion(self, ll: Tensor) -> tuple[Tensor, Tensor]:
        """ll: (B, T, C, h, w) backbone LL features -> forward and backward motion features."""
        prev = torch.cat([ll[:, :1], ll[:, :-1]], 1)
        nxt = torch.cat([ll[:, 1:], ll[:, -1:]], 1)
        b, t, c, h, w = ll.shape
        flat = ll.reshape(b * t, c, h, w)
        fwd = self.forward_branch(torch.cat([flat, (ll - prev).reshape(b * t, c, h, w)], 1))
        bwd = self.backward_branch(torch.cat([flat, (ll - nxt).reshape(b * t, c, h, w)], 1))
        return fwd, bwd

    def forward(self, ll: Tensor, anchor_ll: Tensor, motion: tuple[Tensor, Tensor]) -> Tensor:
        """ll: (B, T, C, h, w); anchor_ll: (B, C, h, w) -> reliability (B*T, C, h, w)."""
        b, t, c, h, w = ll.shape
        flat = ll.reshape(b * t, c, h, w)
        anchor = anchor_ll.unsqueeze(1).expand(b, t, c, h, w).reshape(b * t, c, h, w)
        mis = self.mismatch(torch.cat([flat, anchor - flat], 1))
        return torch.sigmoid(self.head(torch.cat([motion[0], motion[1], mis], 1)))


class ContentFaithfulFusion(nn.Module):
    """Soft-gates both anchors' LL features into every backbone frame's LL features."""

    def __init__(self, c: int, blocks: int) -> None:
        super().__init__()
        self.inject = nn.Sequential(ConvAct(2 * c, c), conv3x3(c, c))
        self.refine = res_stack(c, blocks)

    def forward(self, ll: Tensor, anchors: list[tuple[Tensor, Tensor]]) -> Tensor:
        """ll: (B*T, C, h, w); anchors: [(anchor LL (B*T, C, h, w), reliability)] -> fused."""
        fused = ll
        for anchor_ll, reliability in anchors:
            fused = fused + reliability * self.inject(torch.cat([anchor_ll, ll], 1))
        return self.refine(fused)


class BidirectionalContextAggregation(nn.Module):
    """Two passes of forward and backward recurrences over time (eq. 3).

    Each step is ``h_t = R([x_t, h_{t-1}])`` with R a conv and shared residual blocks;
    the second pass takes the first pass's concatenated features as input.
    """

    def __init__(self, c: int, blocks: int, passes: int = 2) -> None:
        super().__init__()
        self.passes = passes
        self.fwd = nn.ModuleList(nn.Sequential(ConvAct(2 * c, c), res_stack(c, blocks)) for _ in range(passes))
        self.bwd = nn.ModuleList(nn.Sequential(ConvAct(2 * c, c), res_stack(c, blocks)) for _ in range(passes))
        self.mix = nn.ModuleList(nn.Conv2d(2 * c, c, 1) for _ in range(passes))

    def forward(self, x: Tensor, hidden: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """x: (B, T, C, h, w); hidden: forward states of the previous window (or []) ->
        aggregated (B, T, C, h, w) and the new forward states."""
        new_hidden = []
        for p in range(self.passes):
            h = hidden[p] if hidden else torch.zeros_like(x[:, 0])
            fwd = []
            for t in range(x.shape[1]):
                h = self.fwd[p](torch.cat([x[:, t], h], 1))
                fwd.append(h)
            new_hidden.append(h)
            g = torch.zeros_like(x[:, 0])
            bwd = [torch.empty(0)] * x.shape[1]
            for t in reversed(range(x.shape[1])):
                g = self.bwd[p](torch.cat([x[:, t], g], 1))
                bwd[t] = g
            x = torch.stack([self.mix[p](torch.cat([f, b], 1)) for f, b in zip(fwd, bwd, strict=True)], 1)
        return x, new_hidden


class LoCAtion(nn.Module):
    """The two-stage model. See the module docstring for units and streaming."""

    def __init__(self, config: LoCAtionConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or LoCAtionConfig()
        c, c2 = cfg.channels, cfg.stage2_channels
        self.encode_ref = nn.Sequential(ConvAct(REF_CHANNELS, c), res_stack(c, cfg.encoder_blocks))
        self.encode_anchor = nn.Sequential(ConvAct(ANCHOR_CHANNELS, c), res_stack(c, cfg.encoder_blocks))
        self.tpa = nn.ModuleDict({"low": TemporalPriorAggregator(c, cfg.tpa_blocks),
                                  "high": TemporalPriorAggregator(c, cfg.tpa_blocks)})
        self.cff = ContentFaithfulFusion(c, cfg.fusion_blocks)
        self.stage1_head = nn.Sequential(ConvAct(2 * c, c), conv3x3(c, 3))
        self.encode2 = nn.Sequential(ConvAct(c + 3, c2, stride=2), ConvAct(c2, c2))
        self.bca = BidirectionalContextAggregation(c2, cfg.bca_blocks)
        self.ltm = nn.ModuleList(TemporalRWKVBlock(c2) for _ in range(cfg.rwkv_blocks))
        self.decode2 = nn.Sequential(nn.Conv2d(c2, 4 * c, 3, padding=1), nn.PixelShuffle(2),
                                     nn.LeakyReLU(0.1, inplace=True), conv3x3(c, 3))
        # Both heads start at zero: an untrained model returns the backbone's own estimate.
        for head in (self.stage1_head[-1], self.decode2[-1]):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def stage1(self, ref: Tensor, base: Tensor, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
        """Collaborative Feature Attention: (B, T, 3, H, W) Stage-1 output and the
        (B*T, C, H, W) full-resolution features after the inverse DWT."""
        b, t, _, h, w = ref.shape
        feats = self.encode_ref(ref.reshape(b * t, REF_CHANNELS, h, w))
        ll, lh, hl, hh = dwt2(feats)
        c = ll.shape[1]
        ll_seq = ll.view(b, t, c, h // 2, w // 2)
        fusion_inputs = []
        motions = {}
        for name, anchor in (("low", low), ("high", high)):
            a_ll = dwt2(self.encode_anchor(anchor))[0]
            tpa = self.tpa[name]
            motions[name] = tpa.motion(ll_seq)
            reliability = tpa(ll_seq, a_ll, motions[name])
            a_rep = a_ll.unsqueeze(1).expand(b, t, c, h // 2, w // 2).reshape(b * t, c, h // 2, w // 2)
            fusion_inputs.append((a_rep, reliability))
        fused = self.cff(ll, fusion_inputs)
        full = idwt2(fused, lh, hl, hh)
        y1 = base + self.stage1_head(torch.cat([full, feats], 1)).view(b, t, 3, h, w)
        return y1, full

    def forward(self, ref: Tensor, base: Tensor, low: Tensor, high: Tensor, state: LoCAtionState | None = None,
                return_stage1: bool = False) -> tuple[Tensor, ...]:
        """One window.

        Args:
            ref: (B, T, 9, H, W) backbone inputs; base: (B, T, 3, H, W) the prior estimate
                (mu-law domain, see ``LoCAtionConfig.prior``); low, high: (B, 10, H, W) anchor
                inputs; H, W multiples of 4.
            state: carried from the previous window, or None at a cut.
        Returns:
            y (B, T, 3, H, W) mu-law domain, the new state, and with ``return_stage1`` the
            Stage-1 output (B, T, 3, H, W) as well.
        """
        y1, full = self.stage1(ref, base, low, high)
        b, t, _, h, w = ref.shape
        state = state or LoCAtionState()
        x2 = self.encode2(torch.cat([full, y1.reshape(b * t, 3, h, w)], 1))
        x2 = x2.view(b, t, *x2.shape[1:])
        x2, bca_hidden = self.bca(x2, state.bca)
        wkv_states = []
        for i, block in enumerate(self.ltm):
            x2, s = block(x2, state.wkv[i] if state.wkv else None)
            wkv_states.append(s)
        delta = self.decode2(x2.reshape(b * t, *x2.shape[2:])).view(b, t, 3, h, w)
        y = y1 + delta
        new_state = LoCAtionState(bca_hidden, wkv_states)
        return (y, new_state, y1) if return_stage1 else (y, new_state)
