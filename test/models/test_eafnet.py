"""EAFNet: configurations, shapes, gradients, the paper's equations, io, checkpoints, backend, task."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hdr_dcs.backends.eafnet import EAFNetBackend, load_eafnet
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.grouping import group_offline, pair_anchors
from hdr_dcs.core.merge import merge
from hdr_dcs.core.photometry import GammaResponse, global_luminance_alignment
from hdr_dcs.core.tonemap import mu_law
from hdr_dcs.core.types import FrameGroup
from hdr_dcs.models.blocks import count_parameters
from hdr_dcs.models.eafnet import (
    CONFIGS,
    AsymmetricCrossAttention,
    EAFNet,
    EAFNetConfig,
    ExposureFeatureSelection,
    WaveletBandPass,
    WaveletMix,
    attention_map,
    example_inputs,
)
from hdr_dcs.models.eafnet_io import encode_frame, gla
from hdr_dcs.sim.rig import RigConfig, simulate
from hdr_dcs.sim.scenes import make_scene
from hdr_dcs.train.checkpoint import params_hash, save_checkpoint
from hdr_dcs.train.eafnet_task import EAFNetTask
from hdr_dcs.train.tasks import LossWeights

TINY3 = EAFNetConfig(channels=8, scales=3, window=2, guide_channels=4)


def random_model(config: EAFNetConfig = CONFIGS["lite"], seed: int = 0) -> EAFNet:
    torch.manual_seed(seed)
    model = EAFNet(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # the zero-initialised head too
    return model.eval()


def frame_inputs(b: int = 1, h: int = 32, w: int = 32):
    g = torch.Generator().manual_seed(1)
    ref, low, high = (torch.rand(b, 3, h, w, generator=g) for _ in range(3))
    ref_scale, low_scale, high_scale = (torch.full((b,), s) for s in (0.004, 0.001, 0.016))
    return encode_frame(ref, ref_scale, low, low_scale, high, high_scale)


def street_groups(size_wh: tuple[int, int] = (60, 44), frames: int = 8) -> list[FrameGroup]:
    scene = make_scene("street", size_wh=size_wh, duration_s=1.0)
    seq = simulate(scene.render_exposure, frames, RigConfig(seed=2))
    return group_offline(seq.reference, pair_anchors(seq.anchors))


def test_configurations() -> None:
    lite, paper = EAFNet(CONFIGS["lite"]), EAFNet(CONFIGS["paper"])
    assert count_parameters(lite) < 0.5e6
    assert CONFIGS["paper"].channels == 64 and count_parameters(paper) > 4 * count_parameters(lite)
    # Table VII's 2:1 feature : exposure code widths.
    assert lite.efsb.exposure_code(torch.zeros(1)).shape == (1, CONFIGS["lite"].channels // 2)
    assert lite.multiple == 16 and EAFNet(TINY3).multiple == 8


@pytest.mark.parametrize("config", [CONFIGS["lite"], CONFIGS["paper"], TINY3], ids=["lite", "paper", "tiny3"])
def test_shapes_and_gradients(config: EAFNetConfig) -> None:
    model = random_model(config).train()
    inp = frame_inputs(b=2, h=32, w=48)
    y = model(inp.ref, inp.base, inp.low, inp.high, inp.exposure)
    assert y.shape == (2, 3, 32, 48)
    y.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) > 0 for g in grads) > 0.95 * len(grads)
    for name, child in model.named_children():  # every subnetwork with parameters takes part
        params = list(child.parameters())
        assert not params or sum(float(p.grad.abs().sum()) for p in params) > 0, name


def test_sizes_on_and_off_the_grid() -> None:
    inp = frame_inputs(h=24, w=32)
    with pytest.raises(ValueError, match="multiples of 16"):
        EAFNet()(inp.ref, inp.base, inp.low, inp.high, inp.exposure)
    args = example_inputs(CONFIGS["lite"], 24, 30)  # rounded up to 32 x 32
    assert args[0].shape == (1, 9, 32, 32) and EAFNet()(*args).shape == (1, 3, 32, 32)


def test_untrained_model_returns_the_reference_estimate() -> None:
    inp = frame_inputs()
    y = EAFNet()(inp.ref, inp.base, inp.low, inp.high, inp.exposure)
    assert torch.equal(y, inp.base)
    assert not torch.equal(random_model()(inp.ref, inp.base, inp.low, inp.high, inp.exposure), inp.base)


def test_gla_hand_computed() -> None:
    ref = torch.full((1, 3, 1, 2), 0.5)
    low = torch.tensor([0.1, 0.3]).view(1, 1, 1, 2).expand(1, 3, 1, 2)  # mean 0.2: x 2.5
    high = torch.tensor([0.9, 0.6]).view(1, 1, 1, 2).expand(1, 3, 1, 2)  # mean 0.75: x 2/3
    assert torch.allclose(gla(low, ref)[0, :, 0], torch.tensor([0.25, 0.75]).expand(3, 2))
    assert torch.allclose(gla(high, ref)[0, :, 0], torch.tensor([0.6, 0.4]).expand(3, 2))
    bright = torch.full((1, 3, 1, 2), 0.8)
    assert torch.allclose(gla(low, bright)[0, 0, 0], torch.tensor([0.4, 1.0]))  # 1.2 clipped
    # The same as the numpy implementation in core.photometry.
    g = torch.Generator().manual_seed(0)
    a, r = torch.rand(2, 3, 5, 4, generator=g), torch.rand(2, 3, 5, 4, generator=g)
    hwc = a.permute(0, 2, 3, 1).numpy(), r.permute(0, 2, 3, 1).numpy()
    expected = np.stack([global_luminance_alignment(hwc[0][i], hwc[1][i]) for i in range(2)])
    assert np.allclose(gla(a, r).permute(0, 2, 3, 1).numpy(), expected, atol=1e-6)


def test_encode_frame_layout_and_exposure_embedding() -> None:
    ref, low, high = (torch.full((1, 3, 2, 2), v) for v in (0.5, 0.25, 0.75))
    inp = encode_frame(ref, torch.tensor([0.004]), low, torch.tensor([0.001]), high, torch.tensor([0.016]),
                       64.0)
    assert torch.allclose(inp.exposure, torch.tensor([[-0.2, 0.2]]))  # eq. 3: 0.1 log2(1/4), 0.1 log2(4)
    # [L, tau(f^-1(L) s_m / s / M), GLA]; GLA of the reference is itself.
    low_mu = float(np.log1p(5000 * 0.25**2.2 * 4 / 64) / np.log1p(5000))
    assert torch.allclose(inp.low[0, :, 0, 0], torch.tensor([0.25] * 3 + [low_mu] * 3 + [0.5] * 3))
    assert torch.allclose(inp.high[0, 3, 0, 0], mu_law(torch.tensor(0.75**2.2 / 4 / 64)))
    assert torch.equal(inp.ref[:, 6:], ref) and torch.equal(inp.ref[:, 3:6], inp.base)
    assert torch.equal(inp.norm, torch.tensor([0.004]))
    # v^t = sigmoid(FC(ReLU(FC(e)))) with hand-set weights.
    efsb = ExposureFeatureSelection(4, ratio=2)
    with torch.no_grad():
        first, second = efsb.exposure[0], efsb.exposure[2]
        first.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        first.bias.zero_()
        second.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
        second.bias.copy_(torch.tensor([0.1, 0.0]))
        code = efsb.exposure_code(inp.exposure[0])  # e_l = -0.2, e_h = 0.2
    # e = -0.2: hidden relu(-0.2, 0.2) = (0, 0.2) -> (0.2 + 0.1, 0) ; e = 0.2: (0.2, 0) -> (0.1, 0.4)
    expected = torch.sigmoid(torch.tensor([[0.3, 0.0], [0.1, 0.4]]))
    assert torch.allclose(code, expected)


def test_attention_matches_a_naive_loop() -> None:
    torch.manual_seed(3)
    c, h, w, win = 4, 4, 4, 2
    aca = AsymmetricCrossAttention(c, win)
    ref, low, high = torch.randn(1, c, h, w), torch.randn(1, c, h, w), torch.randn(1, c, h, w)
    out, attn = aca(ref, torch.cat([low, high]))
    wq, wk, wv = aca.q.weight, aca.kv.weight[:c], aca.kv.weight[c:]
    for j, anchor in enumerate((low, high)):  # both anchors use the reference's queries
        expected = torch.zeros(c, h, w)
        for wy in range(0, h, win):
            for wx in range(0, w, win):
                pixels = [(wy + i, wx + jj) for i in range(win) for jj in range(win)]
                for y, x in pixels:
                    q, k = wq @ ref[0, :, y, x], wk @ anchor[0, :, y, x]
                    keys = [wk @ anchor[0, :, yy, xx] for yy, xx in pixels]
                    values = [wv @ anchor[0, :, yy, xx] for yy, xx in pixels]
                    a = torch.softmax(torch.stack([(q + k) @ key / math.sqrt(c) for key in keys]), 0)  # eq. 7
                    expected[:, y, x] = sum(a[n] * values[n] for n in range(len(pixels)))
        assert torch.allclose(out[j], expected, atol=1e-5)
    assert attn.shape == (8, 4, 4) and torch.allclose(attn.sum(-1), torch.ones(8, 4))


def test_attention_map_reads_where_each_query_looked() -> None:
    # One 2x2 window, every query attends to the bottom-right key (token 3) only.
    attn = torch.zeros(1, 4, 4)
    attn[:, :, 3] = 1.0
    psi = attention_map(attn, 2, 2, 2)
    assert psi.shape == (1, 4, 2, 2)
    assert torch.allclose(psi[0, 0], torch.tensor([[0.5, 0.5], [0.0, 0.0]]))  # dy / w
    assert torch.allclose(psi[0, 1], torch.tensor([[0.5, 0.0], [0.5, 0.0]]))  # dx / w
    assert torch.allclose(psi[0, 2], torch.zeros(2, 2), atol=1e-6)  # no spread
    assert torch.equal(psi[0, 3], torch.ones(2, 2))  # peak
    uniform = attention_map(torch.full((1, 4, 4), 0.25), 2, 2, 2)
    assert torch.allclose(uniform[0, 2], torch.full((2, 2), 0.125))  # var of {0, 0.5} twice


def test_wavelet_restoration_round_trip() -> None:
    x = torch.randn(2, 6, 8, 12)
    band_pass = WaveletBandPass(6, blocks=2)
    assert band_pass(x).shape == x.shape
    with torch.no_grad():
        for lbf in band_pass.modules():
            if hasattr(lbf, "filter"):
                lbf.filter.weight.zero_()
                lbf.filter.bias.zero_()
    assert torch.allclose(band_pass(x), x, atol=1e-5)  # all-pass filters: IDWT(DWT(x))
    mix = WaveletMix(6)
    with torch.no_grad():
        mix.mix.weight.copy_(torch.eye(24)[:, :, None, None])
        mix.mix.bias.zero_()
    assert torch.allclose(mix(x), x, atol=1e-5)
    # Zeroing the high bands leaves the 2x2 block means.
    with torch.no_grad():
        mix.mix.weight[6:] = 0
    means = torch.nn.functional.avg_pool2d(x, 2).repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert torch.allclose(mix(x), means, atol=1e-5)


def test_checkpoint_round_trip_and_strict_loading(tmp_path: Path) -> None:
    model = random_model(TINY3)
    path = tmp_path / "eafnet_tiny.pt"
    save_checkpoint(path, "eafnet", model, model.config)
    loaded = load_eafnet(path)
    assert loaded.config == TINY3
    inp = frame_inputs(h=16, w=24)
    with torch.no_grad():
        args = (inp.ref, inp.base, inp.low, inp.high, inp.exposure)
        assert torch.equal(model(*args), loaded(*args))
    group = street_groups(size_wh=(24, 16), frames=6)[-1]
    from_file, in_memory = EAFNetBackend(weights=path), EAFNetBackend(model=model)
    assert np.array_equal(from_file.push(group)[0].hdr, in_memory.push(group)[0].hdr)
    blob = torch.load(path, weights_only=False)
    blob["params"].pop("stem.low.0.weight")
    blob["sha256"] = params_hash(blob["params"])
    bad = tmp_path / "bad.pt"
    torch.save(blob, bad)
    with pytest.raises(InputError, match=r"missing \[stem.low.0.weight\]"):
        load_eafnet(bad)
    save_checkpoint(bad, "location", model, model.config)
    with pytest.raises(InputError, match="not eafnet"):
        load_eafnet(bad)
    with pytest.raises(InputError, match="no shipped weights named eafnet_nonexistent"):
        load_eafnet(variant="nonexistent")


def test_backend_on_simulated_groups() -> None:
    groups = street_groups()
    backend = EAFNetBackend(model=random_model(TINY3))
    assert backend.latency_frames == 0 and backend.name == "eafnet"
    with_anchors = next(g for g in groups if g.anchors is not None)
    for group in (with_anchors, FrameGroup(with_anchors.reference)):
        out = backend.push(group)
        assert len(out) == 1 and out[0].stamp_ns == group.reference.stamp_ns
        assert out[0].hdr.shape == (44, 60, 3) and out[0].hdr.dtype == np.float32
        assert np.isfinite(out[0].hdr).all() and (out[0].hdr >= 0).all()
        assert out[0].info["anchors_used"] is (group.anchors is not None)
    # Anchors change the result of a (random) model; flush holds nothing back.
    alone = backend.push(FrameGroup(with_anchors.reference))[0].hdr
    assert not np.allclose(backend.push(with_anchors)[0].hdr, alone)
    assert backend.flush() == []


def test_untrained_backend_returns_its_prior() -> None:
    """The head starts at zero, so an untrained model returns the estimate it corrects:
    the reference's own radiance, or the classical merge of the group."""
    group = next(g for g in street_groups() if g.anchors is not None)
    ref = group.reference
    scale = ref.exposure.scale
    response = GammaResponse(2.2)
    own = EAFNetBackend(model=EAFNet(EAFNetConfig(prior="reference")), response=response).push(group)[0].hdr
    expected = ref.pixels.astype(np.float64) ** 2.2 / scale  # f^-1(L) / (t g)
    assert np.allclose(own, expected, rtol=1e-3, atol=1e-4 / scale)
    merged = EAFNetBackend(model=EAFNet(EAFNetConfig(prior="classical")), response=response).push(group)[0].hdr
    expected = merge(group, response).hdr
    assert np.allclose(merged, expected, rtol=1e-3, atol=1e-4 / scale)
    # the anchors add range the reference does not have: the two priors differ
    assert np.abs(merged - own).max() > 10 * (1e-4 / scale)
    with pytest.raises(ValueError, match="prior"):
        EAFNetConfig(prior="gt")


def test_task_losses_on_simulated_windows() -> None:
    from hdr_dcs.data.dataset import SimulatedWindows

    ds = SimulatedWindows(seed=0, T=3, crop=32, alt=False)
    batch = {k: v.unsqueeze(0) for k, v in ds.sample(0).items()}
    task = EAFNetTask.from_variant("lite", {"channels": 8, "guide_channels": 4})
    y, gt = task.predict(batch)
    assert y.shape == gt.shape == (1, 3, 3, 32, 32)
    terms = task.losses(batch)
    assert torch.allclose(terms["total"], terms["l1"] + 0.25 * terms["sobel"])
    assert terms["l1"].item() > 0 and torch.isfinite(terms["total"])
    terms["total"].backward()
    assert task.model.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="anchor consistency"):
        EAFNetTask.from_variant("lite", weights=LossWeights())


def test_shipped_weights_load_strictly_and_beat_the_classical_merge() -> None:
    from hdr_dcs.backends import make_backend
    from hdr_dcs.core.metrics import psnr_mu_per_frame
    from hdr_dcs.core.tonemap import normalise

    backend = make_backend("eafnet")
    assert backend.model.config == CONFIGS["lite"]
    scene = make_scene("night", size_wh=(96, 72), duration_s=1.0)  # an evaluation scene: never trained on
    seq = simulate(scene.render_exposure, 10, RigConfig(seed=4))
    groups = group_offline(seq.reference, pair_anchors(seq.anchors))
    hdr = np.stack([backend.push(g)[0].hdr for g in groups])
    classical = np.stack([merge(g).hdr for g in groups])
    assert hdr.shape == seq.ground_truth.shape and np.isfinite(hdr).all()
    peak = float(seq.ground_truth.max())
    ours = psnr_mu_per_frame(normalise(hdr, peak), normalise(seq.ground_truth, peak)).mean()
    baseline = psnr_mu_per_frame(normalise(classical, peak), normalise(seq.ground_truth, peak)).mean()
    assert ours > baseline + 0.5, (ours, baseline)
