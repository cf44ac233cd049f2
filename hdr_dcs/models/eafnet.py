"""EAFNet: the per-frame fusion network of the DCS paper (dcs-eafnet-dual-camera.txt, IV).

One reference frame L_m and one registered anchor pair (L_l, L_h) in, one HDR frame out.
Three subnetworks, each a few lines of ``EAFNet.forward``:

1. Pre-alignment (IV-B). Three parallel 3x3 convs turn the 9-channel triples
   {L, H, G} (built by ``eafnet_io``) into f_l, f_m, f_h; strided 3x3 convs, shared by the
   three branches so that their features stay comparable, build N scales. At every
   scale a shared FSB modulates the reference, f^r * v^r, and a shared EFSB the anchors,
   f^nr * u^nr with u^nr = sigmoid(FC_3(<v^nr, v^t>)) (eqs. 4-5); the relative exposure
   e (eq. 3) is what tells the low anchor from the high one.
2. Asymmetric cross-feature fusion (IV-C). At every scale, window attention with queries
   from the reference and keys and values from an anchor, A = softmax((Q + K) K^T /
   sqrt(C)) (eqs. 6-7); coarse-to-fine guidance from the coarser scale's attention
   (eq. 8) and fusion across scales (eq. 9); a spatial attention gate (eq. 10). One set of
   weights serves both anchors, which run as one batch and share the reference's queries.
3. Restoration (IV-D). Three scales (x1, x2, x4); on the finer two, a Haar DWT, learnable
   band-pass filters on every sub-band and the inverse DWT; on the coarsest, a 1x1 conv
   across the sub-bands; eq. 11 combines them.

Decisions where the paper is silent or contradicts itself:

- Widths of the EFSM codes: the text gives v^nr 64 and v^t 128 wide (1:2 feature :
  exposure), Table VII measures 1:2 as the worst ratio and 2:1 as the best. We follow the
  measurement, v^t = C / 2 wide (``exposure_ratio``): the exposure is one number per
  image, so a code wider than the feature code carries no extra information and only
  outweighs the content statistics in FC_3's input.
- phi (eq. 6) partitions the map into non-overlapping w x w windows of pixel tokens, as in
  Swin [54], which eq. 7 follows: N = w^2 tokens per window, A is N x N per window, and
  folding is the exact inverse of the partition (memory O(C H W); overlapping windows
  would materialise C w^2 values per pixel). Windows do not see across their borders at
  one scale; the coarser scale's windows, twice as large in the image, do (eq. 8).
- psi (eq. 8) turns the coarser attention into a feature map of *where each reference
  pixel looked* in the anchor: per query, the attention-weighted mean offset to its keys
  (dy, dx: a soft flow), the variance of that offset and the peak weight (confidence), in
  units of the window: 4 channels. (The raw rows, N channels indexed by absolute position
  in the window, mean different things at different pixels of a window.) U is a learned
  pixel-shuffle upsampling (1x1 conv to 4x the channels, PixelShuffle(2)), here and in
  eqs. 9 and 11.
- Eq. (9) for N > 2 scales: fused coarse to fine, g_N = f_N^anr and g_i =
  C_v(<f_i^anr, U(g_{i+1}), f_i^guid>); for N = 2 that is eq. (9) itself.
- Eq. (10) with two anchors: one gate per anchor (shared weights), f^out =
  <gate_l * f~_l, gate_h * f~_h, f_m> (3C channels).
- LBF ([39], [55]): within one Haar sub-band, a depthwise 3x3 filter (a learnable
  frequency response inside that band, per channel) added as a residual and scaled by a
  content gate per channel: b + gate(b) * dw(b), gate = sigmoid(FC(ReLU(FC(mean |b|)))).
  The gate reads each channel's mean magnitude in the band (its energy there), not its
  mean, which is ~0 in a detail band. Each of the four sub-bands has its own stack.
- Eq. (11)'s output: instead of sigmoid(Conv(...)) the head predicts a correction to the
  reference's own estimate, y = tau(E_m / M) + Conv(...), zero-initialised so that an
  untrained model returns the reference's estimate (as LoCAtion does). The sigmoid's
  vanishing slope near 0 and 1 would slow exactly the corrections the anchors exist for
  (deep shadows, saturated highlights); ``decode_output`` clamps y to [0, 1].

Units: see ``eafnet_io``; y is tau(E / M) in the reference frame's exposure units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor, nn

from ..core.dwt import dwt2, dwt2_packed, idwt2, idwt2_packed
from .blocks import ConvAct, conv3x3, res_stack

IN_CHANNELS = 9  # L, tau(E / M), GLA of one image (eafnet_io)
PSI_CHANNELS = 4  # mean offset (dy, dx), offset variance, peak weight


@dataclass(frozen=True)
class EAFNetConfig:
    """Sizes of EAFNet.

    Attributes:
        channels: C, feature channels everywhere.
        scales: N, scales of pre-alignment and attention (the paper's eq. 9 has 2).
        window: w, side of the attention windows (N = w^2 tokens) at every scale.
        encoder_blocks: residual blocks after each stem conv (shared by the branches).
        exposure_ratio: width of the feature code v^nr (C) : width of the exposure code
            v^t (Table VII's best, 2:1).
        guide_channels: channels of the upsampled attention map in eq. 8.
        restore_blocks: residual blocks of the x1 restoration scale.
        coarse_blocks: residual blocks of each of the x2 and x4 scales (cheap: 1/4 and
            1/16 of the pixels).
        lbf_blocks: LBF modules per sub-band on the finer restoration scales.
        max_radiance: M, the largest normalised radiance represented.
        prior: the estimate the network corrects (``base`` of ``forward``): "classical" =
            the classical merge of the frame with its anchor pair (``core.merge``), or
            "reference" = the reference frame's own radiance f^-1(L_m) / s_m. The paper's
            output head predicts the HDR image outright (eq. 11); a residual on the
            classical merge starts from a physically right answer wherever the merge is
            right (well-exposed, static pixels), so the network's capacity goes to
            ghosts, registration residue and noise, which a CPU-sized model can learn in
            a few thousand steps.
    """

    channels: int = 20
    scales: int = 2
    window: int = 8
    encoder_blocks: int = 0
    exposure_ratio: int = 2
    guide_channels: int = 8
    restore_blocks: int = 1
    coarse_blocks: int = 2
    lbf_blocks: int = 1
    max_radiance: float = 64.0
    prior: str = "classical"

    def __post_init__(self) -> None:
        if self.prior not in ("classical", "reference"):
            raise ValueError(f"prior must be 'classical' or 'reference', got {self.prior!r}")


CONFIGS: dict[str, EAFNetConfig] = {
    # Sized for a 2-core CPU.
    "lite": EAFNetConfig(),
    # The paper's settings: 64 channels in every 3x3 conv.
    "paper": EAFNetConfig(channels=64, encoder_blocks=1, guide_channels=16, restore_blocks=2,
                           coarse_blocks=2, lbf_blocks=2),
}


# ---------------------------------------------------------------------------- windows

def window_partition(x: Tensor, w: int) -> Tensor:
    """phi: (B, C, H, W) -> (B * H/w * W/w, w*w, C) tokens, row-major inside a window."""
    b, c, h, wd = x.shape
    x = x.view(b, c, h // w, w, wd // w, w).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(-1, w * w, c)


def window_merge(tokens: Tensor, w: int, h: int, wd: int) -> Tensor:
    """Fold, the inverse of ``window_partition``: (B * nW, w*w, C) -> (B, C, H, W)."""
    c = tokens.shape[-1]
    x = tokens.view(-1, h // w, wd // w, w, w, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(-1, c, h, wd)


def asymmetric_attention(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Eq. (7): A = softmax((Q + K) K^T / sqrt(C)); returns (A V, A).

    Args:
        q, k, v: (..., N, C) tokens of one window each.
    Returns:
        (..., N, C) aligned values and the (..., N, N) attention (rows: queries).
    """
    # Scaling Q + K (C values a token) rather than the scores (N values a token) is cheaper.
    # (torch's fused scaled_dot_product_attention is slower than this on CPU.)
    attn = torch.softmax(((q + k) / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1), dim=-1)
    return attn @ v, attn


def attention_map(attn: Tensor, w: int, h: int, wd: int) -> Tensor:
    """psi of eq. (8): (B * nW, N, N) attention -> (B, 4, H, W) map of where each query looked.

    Channels: attention-weighted mean offset (dy, dx) from the query to its keys, the
    variance of that offset (dy^2 + dx^2 summed), and the peak weight; offsets in window
    units (divided by w).
    """
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], -1).to(attn) / w  # (N, 2)
    mean = attn @ pos - pos  # (B*nW, N, 2): sum_k A_pk (pos_k - pos_p)
    second = attn @ (pos**2).sum(-1, keepdim=True)  # E|pos_k|^2
    var = second - (mean + pos).pow(2).sum(-1, keepdim=True)  # E|pos_k - E pos_k|^2
    peak = attn.amax(-1, keepdim=True)
    return window_merge(torch.cat([mean, var, peak], -1), w, h, wd)


# ---------------------------------------------------------------------------- blocks

def _mlp(*widths: int) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(widths)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU(inplace=True)] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


class UpShuffle(nn.Sequential):
    """U: learned pixel-shuffle upsampling, (B, cin, h, w) -> (B, cout, 2h, 2w)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, 4 * cout, 1), nn.PixelShuffle(2))


class FeatureSelection(nn.Module):
    """FSB: f * v with v = sigmoid(FC(ReLU(FC(GAP(f))))), (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.fc = _mlp(c, max(c // 4, 4), c)

    def coefficients(self, f: Tensor) -> Tensor:
        """v: (B, C) in (0, 1)."""
        return torch.sigmoid(self.fc(f.mean(dim=(2, 3))))

    def forward(self, f: Tensor) -> Tensor:
        return f * self.coefficients(f)[:, :, None, None]


class ExposureFeatureSelection(nn.Module):
    """EFSB (eqs. 4-5): f * u, u = sigmoid(FC_3(<v^nr, v^t>)).

    v^nr (C wide) are FSB coefficients of the anchor's own features, v^t (C / ratio wide)
    = sigmoid(FC(ReLU(FC(e)))) codes its relative exposure e (eq. 3).
    """

    def __init__(self, c: int, ratio: int) -> None:
        super().__init__()
        ct = max(c // ratio, 1)
        self.features = FeatureSelection(c)
        self.exposure = _mlp(1, ct, ct)
        self.select = _mlp(c + ct, c, c, c)

    def exposure_code(self, e: Tensor) -> Tensor:
        """v^t: (B,) relative exposures -> (B, C / ratio) in (0, 1)."""
        return torch.sigmoid(self.exposure(e[:, None]))

    def forward(self, f: Tensor, e: Tensor) -> Tensor:
        """f: (B, C, H, W) anchor features; e: (B,) -> (B, C, H, W)."""
        u = torch.sigmoid(self.select(torch.cat([self.features.coefficients(f), self.exposure_code(e)], 1)))
        return f * u[:, :, None, None]


class AsymmetricCrossAttention(nn.Module):
    """Eqs. (6-7) at one scale: reference queries, anchor keys and values, w x w windows.

    W^q, W^k, W^v are bias-free linear maps of the tokens (W^k and W^v as one matrix).
    """

    def __init__(self, c: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.q = nn.Linear(c, c, bias=False)
        self.kv = nn.Linear(c, 2 * c, bias=False)

    def forward(self, ref: Tensor, anchor: Tensor) -> tuple[Tensor, Tensor]:
        """Aligned anchor features and the attention.

        Args:
            ref: (B, C, h, w) reference features; anchor: (kB, C, h, w) features of k
                anchors stacked along the batch (block j = anchor j of every frame), which
                all use the reference's queries. h and w are multiples of the window.
        Returns:
            f^anr (kB, C, h, w) and A (kB * nW, N, N).
        """
        w, (h, wd) = self.window, ref.shape[-2:]
        q = self.q(window_partition(ref, w))
        k, v = self.kv(window_partition(anchor, w)).chunk(2, dim=-1)
        out, attn = asymmetric_attention(q.repeat(anchor.shape[0] // ref.shape[0], 1, 1), k, v)
        return window_merge(out, w, h, wd), attn


class LearnableBandPass(nn.Module):
    """LBF on one sub-band: b + gate(b) * dw(b), (B, C, h, w) -> (B, C, h, w); dw a
    depthwise 3x3 filter, gate per channel from the band's mean magnitude."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.filter = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.gate = _mlp(c, max(c // 4, 4), c)

    def forward(self, band: Tensor) -> Tensor:
        # The gate reads the band's mean magnitude: the plain mean of a detail band is ~0.
        gate = torch.sigmoid(self.gate(band.abs().mean(dim=(2, 3))))[:, :, None, None]
        return band + gate * self.filter(band)


class WaveletBandPass(nn.Module):
    """DWT -> a stack of LBFs per sub-band -> inverse DWT; (B, C, H, W), H, W even."""

    def __init__(self, c: int, blocks: int) -> None:
        super().__init__()
        self.bands = nn.ModuleList(nn.Sequential(*[LearnableBandPass(c) for _ in range(blocks)])
                                   for _ in range(4))

    def forward(self, x: Tensor) -> Tensor:
        return idwt2(*(lbf(b) for lbf, b in zip(self.bands, dwt2(x), strict=True)))


class WaveletMix(nn.Module):
    """DWT -> 1x1 conv across all sub-bands and channels -> inverse DWT (coarse scale)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(4 * c, 4 * c, 1)

    def forward(self, x: Tensor) -> Tensor:
        return idwt2_packed(self.mix(dwt2_packed(x)))


# ---------------------------------------------------------------------------- network

def size_multiple(config: EAFNetConfig) -> int:
    """H and W must be multiples of this: the attention windows at the coarsest scale, and
    the Haar DWT at the x4 restoration scale."""
    return math.lcm(config.window * 2 ** (config.scales - 1), 8)


def example_inputs(config: EAFNetConfig, h: int, w: int, seed: int = 0) -> tuple[Tensor, ...]:
    """Random arguments of ``EAFNet.forward`` for one h x w frame (rounded up to
    ``size_multiple``), for benchmarks and smoke tests: (ref, base, low, high, exposure)."""
    m = size_multiple(config)
    h, w = -(-h // m) * m, -(-w // m) * m
    g = torch.Generator().manual_seed(seed)
    ref, low, high = (torch.rand(1, IN_CHANNELS, h, w, generator=g) for _ in range(3))
    return ref, ref[:, 3:6], low, high, torch.tensor([[-0.2, 0.2]])


class EAFNet(nn.Module):
    """The network; see the module docstring for the design and ``eafnet_io`` for units."""

    def __init__(self, config: EAFNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or EAFNetConfig()
        c, n = cfg.channels, cfg.scales
        if n < 1 or cfg.window < 1:
            raise ValueError(f"need scales >= 1 and window >= 1, got {n} and {cfg.window}")
        # Pre-alignment: three parallel stems, shared downsampling, FSB and EFSB.
        self.stem = nn.ModuleDict({k: ConvAct(IN_CHANNELS, c) for k in ("low", "ref", "high")})
        self.encoder = res_stack(c, cfg.encoder_blocks)
        self.down = nn.ModuleList(ConvAct(c, c, stride=2) for _ in range(n - 1))
        self.fsb = FeatureSelection(c)
        self.efsb = ExposureFeatureSelection(c, cfg.exposure_ratio)
        # Asymmetric cross-feature fusion: attention per scale, guidance and fusion per
        # scale below the coarsest, the gate at full resolution.
        self.aca = nn.ModuleList(AsymmetricCrossAttention(c, cfg.window) for _ in range(n))
        self.guide_up = nn.ModuleList(UpShuffle(PSI_CHANNELS, cfg.guide_channels) for _ in range(n - 1))
        self.guide = nn.ModuleList(ConvAct(c + cfg.guide_channels, c) for _ in range(n - 1))
        self.fuse_up = nn.ModuleList(UpShuffle(c, c) for _ in range(n - 1))
        self.fuse = nn.ModuleList(ConvAct(3 * c, c) for _ in range(n - 1))
        self.gate = nn.Sequential(conv3x3(2 * c, c), nn.ReLU(inplace=True), conv3x3(c, c), nn.Sigmoid())
        # Restoration.
        self.merge = ConvAct(3 * c, c)
        self.restore1 = nn.Sequential(res_stack(c, cfg.restore_blocks), WaveletBandPass(c, cfg.lbf_blocks))
        self.down2 = ConvAct(c, c, stride=2)
        self.restore2 = nn.Sequential(res_stack(c, cfg.coarse_blocks), WaveletBandPass(c, cfg.lbf_blocks))
        self.down4 = ConvAct(c, c, stride=2)
        self.restore4 = nn.Sequential(res_stack(c, cfg.coarse_blocks), WaveletMix(c))
        self.up4 = UpShuffle(c, c)
        self.up2 = UpShuffle(c, c)
        self.head = conv3x3(c, 3)
        # Zero head: an untrained model returns the reference's own estimate.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @property
    def multiple(self) -> int:
        """H and W must be multiples of this (``size_multiple``)."""
        return size_multiple(self.config)

    def prealign(self, ref: Tensor, low: Tensor, high: Tensor, exposure: Tensor
                 ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Eqs. (3-5): the raw reference features f_m (B, C, H, W), and per scale (scale 1
        first) the modulated reference features f^_i^r (B, C, h, w) and anchor features
        f^_i^nr (2B, C, h, w): both anchors in one batch, low first."""
        f_m = self.encoder(self.stem["ref"](ref))
        f_nr = self.encoder(torch.cat([self.stem["low"](low), self.stem["high"](high)], 0))
        e = exposure.t().reshape(-1)  # (2B,): e_l of every frame, then e_h
        ref_scales, anchor_scales = [self.fsb(f_m)], [self.efsb(f_nr, e)]
        f_r = f_m
        for down in self.down:
            f_r, f_nr = down(f_r), down(f_nr)
            ref_scales.append(self.fsb(f_r))
            anchor_scales.append(self.efsb(f_nr, e))
        return f_m, ref_scales, anchor_scales

    def align(self, ref_scales: list[Tensor], anchor_scales: list[Tensor]) -> Tensor:
        """Eqs. (6-9), coarse to fine: per-scale reference features (B, C, h, w) and anchor
        features (kB, C, h, w) -> f~^nr (kB, C, H, W)."""
        fused, attn = None, None
        for i in reversed(range(len(ref_scales))):
            h, w = anchor_scales[i].shape[-2:]
            aligned, new_attn = self.aca[i](ref_scales[i], anchor_scales[i])
            if fused is None:
                fused = aligned  # g_N = f_N^anr
            else:
                psi = attention_map(attn, self.config.window, h // 2, w // 2)  # type: ignore[arg-type]
                guid = self.guide[i](torch.cat([anchor_scales[i], self.guide_up[i](psi)], 1))  # eq. 8
                fused = self.fuse[i](torch.cat([aligned, self.fuse_up[i](fused), guid], 1))  # eq. 9
            attn = new_attn
        return fused  # type: ignore[return-value]

    def restore(self, f_out: Tensor) -> Tensor:
        """Eq. (11) without its sigmoid: (B, 3C, H, W) -> (B, 3, H, W) correction."""
        x1 = self.merge(f_out)
        x2 = self.down2(x1)
        f1, f2, f4 = self.restore1(x1), self.restore2(x2), self.restore4(self.down4(x2))
        return self.head(self.up2(self.up4(f4) + f2) + f1)

    def forward(self, ref: Tensor, base: Tensor, low: Tensor, high: Tensor, exposure: Tensor) -> Tensor:
        """One batch of frames.

        Args:
            ref, low, high: (B, 9, H, W) triples [L, tau(E/M), GLA] (``eafnet_io``);
                H and W multiples of ``multiple``.
            base: (B, 3, H, W) the estimate to correct, tau(E / M) (``EAFNetConfig.prior``).
            exposure: (B, 2) relative exposures (e_l, e_h) of eq. (3).
        Returns:
            y: (B, 3, H, W) tau(E / M), not clamped.
        """
        m = self.multiple
        if ref.shape[-2] % m or ref.shape[-1] % m:
            raise ValueError(f"EAFNet needs H and W multiples of {m}, got {tuple(ref.shape[-2:])}; "
                             "pad the input")
        f_m, ref_scales, anchor_scales = self.prealign(ref, low, high, exposure)
        tilde = self.align(ref_scales, anchor_scales)  # (2B, C, H, W), low first
        gated = self.gate(torch.cat([ref_scales[0].repeat(2, 1, 1, 1), tilde], 1)) * tilde  # eq. 10
        return base + self.restore(torch.cat([*gated.chunk(2, 0), f_m], 1))
