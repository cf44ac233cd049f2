"""LoCAtion: configurations, shapes, gradients, streaming == offline, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hdr_dcs.backends.location import LocationBackend, load_location
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.grouping import group_offline, pair_anchors
from hdr_dcs.models.blocks import count_parameters
from hdr_dcs.models.location import CONFIGS, LoCAtion
from hdr_dcs.models.location_io import classical_prior, decode_output, encode_window, target
from hdr_dcs.sim.rig import RigConfig, simulate
from hdr_dcs.sim.scenes import make_scene
from hdr_dcs.train.checkpoint import read_checkpoint, save_checkpoint


def random_model(variant: str = "lite", seed: int = 0) -> LoCAtion:
    torch.manual_seed(seed)
    model = LoCAtion(CONFIGS[variant])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))  # the zero-initialised heads too
    return model.eval()


def window_inputs(b: int = 1, t: int = 5, h: int = 32, w: int = 32):
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(b, t, 3, h, w, generator=g)
    low, high = torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)
    return encode_window(ref, torch.full((b, t), 0.004), low, torch.full((b,), 0.001), high, torch.full((b,), 0.016))


def test_paper_config_matches_parameter_count() -> None:
    assert abs(count_parameters(LoCAtion(CONFIGS["paper"])) / 4.63e6 - 1) < 0.10
    assert count_parameters(LoCAtion(CONFIGS["lite"])) < 0.6e6


@pytest.mark.parametrize("variant", ["lite", "paper"])
def test_shapes_and_gradients(variant: str) -> None:
    model = random_model(variant).train()
    inp = window_inputs(b=2, t=3, h=16, w=24)
    y, state, y1 = model(inp.ref, inp.base, inp.low, inp.high, return_stage1=True)
    assert y.shape == y1.shape == (2, 3, 3, 16, 24)
    (y.mean() + y1.mean()).backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) > 0 for g in grads) > 0.9 * len(grads)


def test_untrained_model_returns_the_backbone_estimate() -> None:
    inp = window_inputs()
    y, _ = LoCAtion()(inp.ref, inp.base, inp.low, inp.high)
    assert torch.equal(y, inp.base)


def test_io_round_trip_units() -> None:
    hdr = torch.rand(1, 2, 3, 8, 8) * 1000
    norm = torch.tensor([0.004])
    back = decode_output(target(hdr, norm), norm)
    assert torch.allclose(back, hdr.clamp(max=64 / 0.004), rtol=1e-4)


def test_streaming_equals_offline() -> None:
    """Groups pushed one by one into the backend == windows run by hand with the state."""
    model = random_model()
    scene = make_scene("street", size_wh=(64, 48), duration_s=1.0)
    seq = simulate(scene.render_exposure, 17, RigConfig(seed=2))
    groups = group_offline(seq.reference, pair_anchors(seq.anchors))
    backend = LocationBackend(model=model)
    streamed = [o for g in groups for o in backend.push(g)] + backend.flush()
    assert [o.stamp_ns for o in streamed] == [g.reference.stamp_ns for g in groups]
    # Offline: cut the same windows, run the model window by window, carry the state.
    state, offline, i = None, [], 0
    while i < len(groups):
        window = [groups[i]]
        while len(window) < 5 and i + len(window) < len(groups) and \
                groups[i + len(window)].anchors == groups[i].anchors:
            window.append(groups[i + len(window)])
        ref = torch.from_numpy(np.stack([g.reference.pixels for g in window])).permute(0, 3, 1, 2)[None]
        low, high = window[0].anchors.low, window[0].anchors.high
        scales = np.array([g.reference.exposure.scale for g in window])
        prior = classical_prior(np.stack([g.reference.pixels for g in window]), scales, low.pixels,
                                low.exposure.scale, high.pixels, high.exposure.scale,
                                np.array([g.anchor_age_s for g in window]))
        inp = encode_window(ref, torch.tensor([scales], dtype=torch.float32),
                            torch.from_numpy(low.pixels).permute(2, 0, 1)[None], torch.tensor([low.exposure.scale]),
                            torch.from_numpy(high.pixels).permute(2, 0, 1)[None],
                            torch.tensor([high.exposure.scale]), prior=torch.from_numpy(prior).permute(0, 3, 1, 2)[None])
        with torch.no_grad():
            y, state = model(inp.ref, inp.base, inp.low, inp.high, state)
        offline += list(decode_output(y, inp.norm)[0].permute(0, 2, 3, 1).numpy())
        i += len(window)
    assert len(offline) == len(streamed)
    for a, b in zip(streamed, offline, strict=True):
        assert np.allclose(a.hdr, b, rtol=1e-5, atol=1e-6)
    # And the carried state matters: a fresh state per window gives other outputs.
    backend2 = LocationBackend(model=model)
    first = [o for g in groups[:10] for o in backend2.push(g)]
    backend2.reset()
    again = [o for g in groups[5:10] for o in backend2.push(g)]
    assert not np.allclose(first[5].hdr, again[0].hdr)


def test_checkpoint_round_trip_and_strict_loading(tmp_path: Path) -> None:
    model = random_model()
    path = tmp_path / "m.pt"
    digest = save_checkpoint(path, "location", model, model.config)
    loaded = load_location(path)
    inp = window_inputs()
    with torch.no_grad():
        assert torch.equal(model(inp.ref, inp.base, inp.low, inp.high)[0], loaded(inp.ref, inp.base, inp.low, inp.high)[0])
    assert read_checkpoint(path)["sha256"] == digest
    # A checkpoint of another configuration does not load into this one.
    blob = torch.load(path, weights_only=False)
    blob["params"].pop("encode_ref.0.0.weight")
    bad = tmp_path / "bad.pt"
    torch.save(blob, bad)
    with pytest.raises(InputError, match="corrupt"):
        load_location(bad)
    blob["sha256"] = __import__("hdr_dcs.train.checkpoint", fromlist=["x"]).params_hash(blob["params"])
    torch.save(blob, bad)
    with pytest.raises(InputError, match="missing \\[encode_ref.0.0.weight\\]"):
        load_location(bad)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot be read"):
        load_location(bad)


def test_shipped_weights_load_strictly_and_beat_the_reference_alone() -> None:
    from hdr_dcs.backends import make_backend
    from hdr_dcs.core.merge import reference_only
    from hdr_dcs.core.metrics import psnr_mu_per_frame
    from hdr_dcs.core.tonemap import normalise

    backend = make_backend("location")
    assert backend.model.config == CONFIGS["lite"]
    scene = make_scene("night", size_wh=(96, 72), duration_s=1.0)  # an evaluation scene: never trained on
    seq = simulate(scene.render_exposure, 10, RigConfig(seed=4))
    groups = group_offline(seq.reference, pair_anchors(seq.anchors))
    outs = [o for g in groups for o in backend.push(g)] + backend.flush()
    hdr = np.stack([o.hdr for o in outs])
    assert hdr.shape == seq.ground_truth.shape and np.isfinite(hdr).all()
    peak = float(seq.ground_truth.max())
    ref = np.stack([reference_only(f) for f in seq.reference])
    ours = psnr_mu_per_frame(normalise(hdr, peak), normalise(seq.ground_truth, peak)).mean()
    baseline = psnr_mu_per_frame(normalise(ref, peak), normalise(seq.ground_truth, peak)).mean()
    assert ours > baseline + 1.0
