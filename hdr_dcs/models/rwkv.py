"""Bidirectional RWKV over time, as LoCAtion's Long-Range Temporal Modelling uses it.

The bidirectional WKV of Vision-RWKV (Duan et al. 2024, eq. 4), for token t of a
sequence of length T, per channel c (w >= 0 a decay, u a bonus for the token itself):

    wkv_t = ( sum_{i != t} exp(-(|t - i| - 1) w + k_i) v_i + exp(u + k_t) v_t )
          / ( sum_{i != t} exp(-(|t - i| - 1) w + k_i)     + exp(u + k_t) )

Vision-RWKV divides the distance by T; we do not, so that a token's weight does not
change as a stream grows (the division would make streaming output depend on the length
of the whole stream, which a live backend cannot know).

It splits into a past part (i < t) and a future part (i > t), each a linear recurrence:

    a_t = exp(-w) a_{t-1} + exp(k_{t-1}) v_{t-1}   (a_0 = state carried from earlier windows)

so a forward scan and a backward scan give the whole thing in O(T). Exponentials are
kept finite with a running maximum exponent per recurrence (the numerator and
denominator share it), as the CUDA kernels of RWKV do. Gradients come from autograd
through the scans (still O(T)). ``bi_wkv_direct`` evaluates the formula quadratically
for tests.

Only the past recurrence carries over between windows: a stream's future is unknown,
so the backward scan starts empty at each window's end. Processing a sequence window by
window with the carried state is the definition of the output, offline and live alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class WkvState:
    """Past recurrence carried between windows: (num, den, max_exp), each (B, C, N)."""

    num: Tensor
    den: Tensor
    exp: Tensor

    def detach(self) -> WkvState:
        return WkvState(self.num.detach(), self.den.detach(), self.exp.detach())


def _scan(w: Tensor, k: Tensor, v: Tensor, state: WkvState | None) -> tuple[list[tuple[Tensor, Tensor, Tensor]],
                                                                                 WkvState]:
    """Past sums before each token: list over t of (num, den, exp) with value num*e^exp.

    w: (C, 1) decay >= 0; k, v: (B, T, C, N). Returns the per-token (exclusive) sums and
    the state after the last token.
    """
    b, t_len, c, n = k.shape
    if state is None:
        zeros = k.new_zeros((b, c, n))
        num, den, ex = zeros, zeros, torch.full_like(zeros, -1e30)
    else:
        num, den, ex = state.num, state.den, state.exp
    out = []
    for t in range(t_len):
        out.append((num, den, ex))
        kt, vt = k[:, t], v[:, t]
        # Decay the sum by e^-w, then add e^{k_t} v_t; rescale to the new maximum exponent.
        decayed = ex - w
        new_ex = torch.maximum(decayed, kt)
        a, bb = torch.exp(decayed - new_ex), torch.exp(kt - new_ex)
        num = a * num + bb * vt
        den = a * den + bb
        ex = new_ex
    return out, WkvState(num, den, ex)


def bi_wkv(w: Tensor, u: Tensor, k: Tensor, v: Tensor,
           state: WkvState | None = None) -> tuple[Tensor, WkvState]:
    """Bidirectional WKV with linear cost.

    Args:
        w: (C,) decay per channel, >= 0 (per step).
        u: (C,) bonus of the current token.
        k, v: (B, T, C, N) keys and values (N independent sequences per channel, e.g.
            spatial positions).
        state: the past recurrence from previous windows, or None.
    Returns:
        (B, T, C, N) wkv, and the past state after this window.
    """
    wc, uc = w.view(-1, 1), u.view(-1, 1)
    past, new_state = _scan(wc, k, v, state)
    future, _ = _scan(wc, k.flip(1), v.flip(1), None)
    future = future[::-1]
    outs = []
    for t in range(k.shape[1]):
        (pn, pd, pe), (fn, fd, fe) = past[t], future[t]
        se = uc + k[:, t]
        m = torch.maximum(torch.maximum(pe, fe), se)
        a, b, c = torch.exp(pe - m), torch.exp(fe - m), torch.exp(se - m)
        num = a * pn + b * fn + c * v[:, t]
        den = a * pd + b * fd + c
        outs.append(num / den)
    return torch.stack(outs, dim=1), new_state


def bi_wkv_direct(w: Tensor, u: Tensor, k: Tensor, v: Tensor, past_k: Tensor | None = None,
                  past_v: Tensor | None = None) -> Tensor:
    """The bidirectional WKV formula evaluated directly, O(T^2), for tests.

    ``past_k``/``past_v`` (B, P, C, N) are tokens of earlier windows: they count as past
    for every token of this window, and nothing of the future beyond the window counts.
    """
    if past_k is not None:
        k_all, v_all = torch.cat([past_k, k], 1), torch.cat([past_v, v], 1)
        offset = past_k.shape[1]
    else:
        k_all, v_all, offset = k, v, 0
    total = k_all.shape[1]
    wc, uc = w.view(1, -1, 1), u.view(1, -1, 1)
    outs = []
    for t in range(k.shape[1]):
        tt = t + offset
        logits, values = [], []
        for i in range(total):
            if i == tt:
                logits.append(uc + k_all[:, i])
            else:
                logits.append(-(abs(tt - i) - 1) * wc + k_all[:, i])
            values.append(v_all[:, i])
        lg = torch.stack(logits, 1)
        weights = torch.softmax(lg, dim=1)
        outs.append((weights * torch.stack(values, 1)).sum(1))
    return torch.stack(outs, 1)


class TemporalRWKVBlock(nn.Module):
    """One RWKV block over time on a (B, T, C, H, W) feature sequence.

    Spatial mixing (a 3x3 depthwise conv stands in for Vision-RWKV's Q-shift), then a
    time mix with the bidirectional WKV (receptance-gated), then a channel mix (squared
    ReLU FFN); pre-norm residuals. The WKV runs per pixel over time, so long-range
    temporal context is linear in the number of frames.
    """

    def __init__(self, channels: int, hidden_ratio: float = 2.0) -> None:
        super().__init__()
        c = channels
        self.norm1 = nn.GroupNorm(1, c)
        self.shift = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.key, self.value, self.receptance = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.out = nn.Conv2d(c, c, 1)
        # Decay in (0, inf) via softplus; initialised to a spread of memory lengths.
        self.decay_raw = nn.Parameter(torch.linspace(-2.0, 1.0, c))
        self.bonus = nn.Parameter(torch.zeros(c))
        self.norm2 = nn.GroupNorm(1, c)
        hidden = int(c * hidden_ratio)
        self.ffn_in, self.ffn_gate, self.ffn_out = nn.Conv2d(c, hidden, 1), nn.Conv2d(c, c, 1), nn.Conv2d(hidden, c, 1)

    def forward(self, x: Tensor, state: WkvState | None = None) -> tuple[Tensor, WkvState]:
        """x: (B, T, C, H, W) -> same shape, and the WKV past state for the next window."""
        b, t, c, h, w = x.shape
        flat = x.reshape(b * t, c, h, w)
        y = self.norm1(flat)
        y = y + self.shift(y)
        k = self.key(y).view(b, t, c, h * w)
        v = self.value(y).view(b, t, c, h * w)
        r = torch.sigmoid(self.receptance(y))
        wkv, state = bi_wkv(nn.functional.softplus(self.decay_raw), self.bonus, k, v, state)
        flat = flat + self.out(r * wkv.reshape(b * t, c, h, w))
        y = self.norm2(flat)
        flat = flat + torch.sigmoid(self.ffn_gate(y)) * self.ffn_out(torch.relu(self.ffn_in(y)) ** 2)
        return flat.view(b, t, c, h, w), state
