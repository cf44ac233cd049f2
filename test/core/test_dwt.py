"""Haar DWT / IDWT: agreement with PyWavelets, inverse round trips, gradients, modules."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from hdr_dcs.core.dwt import (
    HaarDWT,
    HaarIDWT,
    dwt2,
    dwt2_packed,
    haar_analysis_filters,
    haar_synthesis_filters,
    idwt2,
    idwt2_packed,
)

SHAPES = [(1, 1, 2, 2), (2, 3, 4, 6), (3, 2, 8, 4), (2, 5, 16, 10)]


def _pywt_bands(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """pywt.dwt2 over the last two axes of (B, C, H, W): (cA, cH, cV, cD)."""
    ca, (ch, cv, cd) = pywt.dwt2(x, "haar", axes=(-2, -1))
    return ca, ch, cv, cd


@pytest.mark.parametrize("shape", SHAPES)
def test_dwt2_matches_pywt(shape: tuple[int, ...]) -> None:
    x = np.random.default_rng(0).standard_normal(shape)
    ours = dwt2(torch.from_numpy(x))
    for band, ref in zip(ours, _pywt_bands(x), strict=True):
        assert band.shape == ref.shape
        np.testing.assert_allclose(band.numpy(), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_idwt2_matches_pywt(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    half = (*shape[:2], shape[2] // 2, shape[3] // 2)
    ll, lh, hl, hh = (rng.standard_normal(half) for _ in range(4))
    ref = pywt.idwt2((ll, (lh, hl, hh)), "haar", axes=(-2, -1))
    ours = idwt2(*(torch.from_numpy(b) for b in (ll, lh, hl, hh)))
    assert ours.shape == shape
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)


def test_golden_2x2_block() -> None:
    # [[a, b], [c, d]] -> ll=(a+b+c+d)/2, lh=(a+b-c-d)/2, hl=(a-b+c-d)/2, hh=(a-b-c+d)/2.
    x = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]], dtype=torch.float64)
    ll, lh, hl, hh = (b.item() for b in dwt2(x))
    assert (ll, lh, hl, hh) == pytest.approx((5.5, -2.5, -1.5, 0.5), abs=1e-12)


def test_taps_come_from_pywt() -> None:
    wavelet = pywt.Wavelet("haar")
    analysis, synthesis = haar_analysis_filters(), haar_synthesis_filters()
    assert analysis.shape == synthesis.shape == (4, 1, 2, 2)
    assert analysis.dtype == torch.float64
    lo = np.asarray(wavelet.rec_lo)
    np.testing.assert_array_equal(synthesis[0, 0].numpy(), np.outer(lo, lo))
    # Orthonormal: the four analysis kernels form an orthonormal basis of 2x2 blocks.
    flat = analysis.reshape(4, 4)
    torch.testing.assert_close(flat @ flat.T, torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-15)


@pytest.mark.parametrize(("dtype", "atol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_perfect_reconstruction(dtype: torch.dtype, atol: float) -> None:
    x = torch.randn(3, 4, 12, 18, dtype=dtype, generator=torch.Generator().manual_seed(2)) * 10
    y = idwt2(*dwt2(x))
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y, x, rtol=0, atol=atol * 10)
    torch.testing.assert_close(idwt2_packed(dwt2_packed(x)), x, rtol=0, atol=atol * 10)


def test_dtype_follows_input() -> None:
    x = torch.rand(1, 2, 4, 4, dtype=torch.float32)
    assert all(b.dtype == torch.float32 for b in dwt2(x))
    assert idwt2(*dwt2(x.double())).dtype == torch.float64


def test_energy_preserved() -> None:
    x = torch.randn(2, 3, 16, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    bands = dwt2(x)
    energy = sum(float((b**2).sum()) for b in bands)
    assert energy == pytest.approx(float((x**2).sum()), rel=1e-12)
    # ... and per (batch, channel): the transform does not mix images or channels.
    per_image = sum((b**2).sum(dim=(-2, -1)) for b in bands)
    torch.testing.assert_close(per_image, (x**2).sum(dim=(-2, -1)), rtol=1e-12, atol=0)


def test_gradcheck_dwt2() -> None:
    x = torch.randn(2, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: dwt2(t), (x,))


def test_gradcheck_idwt2() -> None:
    bands = tuple(torch.randn(2, 2, 2, 3, dtype=torch.float64, requires_grad=True) for _ in range(4))
    assert torch.autograd.gradcheck(idwt2, bands)


@pytest.mark.parametrize("shape", [(1, 1, 3, 4), (2, 3, 4, 5), (1, 1, 1, 1)])
def test_odd_size_raises(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="even H and W"):
        dwt2(torch.zeros(shape))


def test_bad_inputs_raise() -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        dwt2(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="floating"):
        dwt2(torch.zeros(1, 1, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="one shape"):
        idwt2(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2),
              torch.zeros(1, 1, 2, 3))
    with pytest.raises(ValueError, match="4C"):
        idwt2_packed(torch.zeros(1, 3, 2, 2))


def test_packed_layout_is_band_major() -> None:
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    packed = dwt2_packed(x)
    assert packed.shape == (2, 12, 4, 4)
    for i, band in enumerate(dwt2(x)):
        torch.testing.assert_close(packed[:, 3 * i:3 * (i + 1)], band, rtol=0, atol=0)


def test_module_equals_function() -> None:
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    dwt, idwt = HaarDWT(), HaarIDWT()
    assert not list(dwt.parameters()) and not list(idwt.parameters())
    assert dwt.state_dict() == {} and idwt.state_dict() == {}
    for a, b in zip(dwt(x), dwt2(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(idwt(*dwt2(x)), idwt2(*dwt2(x)), rtol=0, atol=0)
    packed_dwt, packed_idwt = HaarDWT(packed=True), HaarIDWT(packed=True)
    torch.testing.assert_close(packed_dwt(x), dwt2_packed(x), rtol=0, atol=0)
    torch.testing.assert_close(packed_idwt(packed_dwt(x)), x, rtol=0, atol=1e-12)


def test_module_buffers_follow_to() -> None:
    dwt = HaarDWT().to(torch.float32)
    assert dwt.filters.dtype == torch.float32
    x = torch.randn(1, 2, 4, 4)
    for a, b in zip(dwt(x), dwt2(x), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="four sub-bands"):
        HaarIDWT()(x)


def test_channels_last_input() -> None:
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    assert not x_cl.is_contiguous()
    for a, b in zip(dwt2(x_cl), dwt2(x), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    bands_cl = tuple(b.contiguous(memory_format=torch.channels_last) for b in dwt2(x))
    torch.testing.assert_close(idwt2(*bands_cl), x, rtol=0, atol=1e-12)


def test_gradient_flows_through_round_trip() -> None:
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    idwt2(*dwt2(x)).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, torch.ones_like(x), rtol=0, atol=1e-12)
