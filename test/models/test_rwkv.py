"""Bidirectional WKV: linear scans against the direct formula, gradients, streaming."""

from __future__ import annotations

import torch
from torch.autograd import gradcheck

from hdr_dcs.models.rwkv import TemporalRWKVBlock, bi_wkv, bi_wkv_direct


def inputs(b: int = 2, t: int = 6, c: int = 3, n: int = 4, scale: float = 3.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(c, generator=g, dtype=torch.float64) * 2
    u = torch.randn(c, generator=g, dtype=torch.float64)
    k = torch.randn(b, t, c, n, generator=g, dtype=torch.float64) * scale
    v = torch.randn(b, t, c, n, generator=g, dtype=torch.float64)
    return w, u, k, v


def test_scan_equals_direct_quadratic_formula() -> None:
    for t in (1, 2, 5, 9):
        w, u, k, v = inputs(t=t, seed=t)
        out, _ = bi_wkv(w, u, k, v)
        assert torch.allclose(out, bi_wkv_direct(w, u, k, v), atol=1e-12)


def test_streaming_windows_equal_direct_with_past() -> None:
    w, u, k, v = inputs(t=12)
    state = None
    for lo, hi in ((0, 5), (5, 10), (10, 12)):
        out, state = bi_wkv(w, u, k[:, lo:hi], v[:, lo:hi], state)
        expected = bi_wkv_direct(w, u, k[:, lo:hi], v[:, lo:hi], k[:, :lo] if lo else None, v[:, :lo] if lo else None)
        assert torch.allclose(out, expected, atol=1e-12)


def test_large_exponents_stay_finite() -> None:
    w, u, k, v = inputs(scale=300.0)
    out, state = bi_wkv(w, u, k, v)
    assert torch.isfinite(out).all() and torch.isfinite(state.num).all()
    assert torch.allclose(out, bi_wkv_direct(w, u, k, v), atol=1e-9)
    out32, _ = bi_wkv(w.float(), u.float(), k.float(), v.float())
    assert torch.isfinite(out32).all()


def test_gradcheck_float64() -> None:
    w, u, k, v = inputs(b=1, t=4, c=2, n=2)
    for x in (w, u, k, v):
        x.requires_grad_(True)
    assert gradcheck(lambda w, u, k, v: bi_wkv(w, u, k, v)[0], (w, u, k, v), eps=1e-6, atol=1e-6)


def test_gradcheck_with_carried_state() -> None:
    w, u, k, v = inputs(b=1, t=6, c=2, n=2, seed=3)
    k.requires_grad_(True)
    v.requires_grad_(True)

    def two_windows(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        a, s = bi_wkv(w, u, k[:, :3], v[:, :3])
        b, _ = bi_wkv(w, u, k[:, 3:], v[:, 3:], s)
        return torch.cat([a, b], 1)

    assert gradcheck(two_windows, (k, v), eps=1e-6, atol=1e-6)


def test_block_shapes_and_state() -> None:
    block = TemporalRWKVBlock(8)
    x = torch.randn(2, 5, 8, 6, 7)
    y, state = block(x)
    assert y.shape == x.shape and state.num.shape == (2, 8, 42)
    y2, _ = block(x, state)
    assert not torch.allclose(y, y2)  # the carried past changes the output
