"""The scene set: dynamic range, motion, lights, parallax, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from hdr_dcs.core.photometry import channel_max, luminance
from hdr_dcs.core.types import Role
from hdr_dcs.sim.procedural import ProceduralConfig, procedural_scene
from hdr_dcs.sim.rig import RigConfig, simulate
from hdr_dcs.sim.scene import CameraPath, Layer, LayeredScene, Light
from hdr_dcs.sim.scenes import EVALUATION_SCENES, SCENES, make_scene

SIZE = (160, 120)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_procedural_radiance_spans_configured_range(seed: int) -> None:
    cfg = ProceduralConfig()
    scene = procedural_scene(seed, SIZE, 4.0, cfg)
    frames = np.stack([scene.render(t) for t in np.linspace(0.0, 3.9, 14)])
    lum = luminance(frames) / cfg.radiance_scale  # back to the generator's relative units
    # Deep shadows reach the configured shadow range, lights the light range (when on).
    assert np.percentile(lum, 0.5) < 10 * cfg.shadow[1]
    assert lum.max() >= cfg.lights[0] * 0.3
    assert np.log2(lum.max() / max(np.percentile(lum, 0.5), 1e-9)) > 12  # > 12 stops
    assert np.all(np.isfinite(frames)) and frames.min() >= 0


def test_procedural_is_deterministic() -> None:
    a = procedural_scene(7, SIZE, 2.0).render(1.0)
    b = procedural_scene(7, SIZE, 2.0).render(1.0)
    c = procedural_scene(8, SIZE, 2.0).render(1.0)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_saturation_ordered_by_exposure_and_anchors_recover_highlights() -> None:
    # Without light sources (they clip every exposure) the low anchor recovers most highlights.
    scene = procedural_scene(1, SIZE, 1.0, ProceduralConfig(n_lights=(0, 0)))
    p90 = float(np.percentile(channel_max(scene.render(0.0)), 90))
    seq = simulate(scene.render_exposure, 15, RigConfig(seed=1, reference_exposure_s=1.0 / p90))

    def saturated(frames: list) -> float:
        return float(np.mean([(channel_max(f.pixels) >= 0.97).mean() for f in frames]))

    ref = saturated(list(seq.reference))
    low = saturated([f for f in seq.anchors if f.role == Role.LOW])
    high = saturated([f for f in seq.anchors if f.role == Role.HIGH])
    assert low < ref < high
    assert ref > 0.05 and low < 0.5 * ref


def _flat_scene(lights: tuple[Light, ...] = (), velocity: tuple[float, float] = (0.0, 0.0),
                camera: CameraPath | None = None, depth: float = 1.0) -> LayeredScene:
    rng = np.random.default_rng(0)
    bg = np.exp(rng.normal(0, 1, size=(200, 260, 3))).astype(np.float32)
    disc = np.full((20, 20, 3), 50.0, np.float32)
    alpha = np.ones((20, 20), np.float32)
    layers = (Layer(bg, None, 10.0, (-40.0, -40.0)), Layer(disc, alpha, depth, (60.0, 40.0), velocity))
    return LayeredScene(SIZE, layers, lights, camera or CameraPath())


def test_moving_object_occludes_and_moves_at_its_speed() -> None:
    scene = _flat_scene(velocity=(100.0, 0.0))
    a, b = scene.render(0.0), scene.render(0.1)
    assert np.allclose(a[40:60, 60:80], 50.0) and np.allclose(b[40:60, 70:90], 50.0)
    assert not np.allclose(b[40:60, 60:68], 50.0)  # uncovered background


def test_parallax_depends_on_depth() -> None:
    near = _flat_scene(depth=0.5)
    far = _flat_scene(depth=2.0)
    base = (4.0, 0.0)
    # A layer at depth z appears shifted by baseline / z in the anchor camera's view.
    for scene, shift in ((near, 8), (far, 2)):
        view = scene.render(0.0, base)
        assert np.allclose(view[40:60, 60 - shift + 1:80 - shift - 1], 50.0)


def test_lights_switch_and_flicker_and_exposures_integrate_them() -> None:
    switching = Light((30.0, 30.0), 5.0, (1000.0, 1000.0, 1000.0), 1.0, ((0.5, 10.0),))
    flicker = Light((120.0, 30.0), 5.0, (1000.0, 1000.0, 1000.0), 1.0, None, 100.0, 1.0)
    scene = _flat_scene(lights=(switching, flicker))
    assert scene.render(0.4)[30, 30, 0] < 100 and scene.render(0.6)[30, 30, 0] == pytest.approx(1000.0)
    # Flicker at 100 Hz with full depth: instants vary 0..1000, a 10 ms exposure sees ~500.
    instants = [scene.render(t)[30, 120, 0] for t in np.linspace(0, 0.01, 7)]
    assert max(instants) - min(instants) > 800
    assert scene.render_exposure(0.003, 0.01)[30, 120, 0] == pytest.approx(500.0, rel=0.05)


def test_camera_motion_pan_zoom_shake() -> None:
    still = _flat_scene()
    panning = _flat_scene(camera=CameraPath(pan_px_s=(50.0, 0.0)))
    zooming = _flat_scene(camera=CameraPath(zoom_per_s=0.5))
    shaking = _flat_scene(camera=CameraPath(shake_px=3.0, shake_hz=5.0, seed=1))
    assert np.allclose(panning.render(0.2)[:, :-10], still.render(0.0)[:, 10:], atol=1e-4)
    assert zooming.displacement_px(1.0, 0.1) > 1.0
    assert shaking.displacement_px(1.0, 0.1) > 0.5 and still.displacement_px(1.0, 0.1) == 0.0


def test_named_scenes_build_and_evaluation_set_is_known(exr_dir) -> None:
    for name in SCENES:
        frame = make_scene(name, exr_dir, (96, 72), 1.0).render(0.5)
        assert frame.shape == (72, 96, 3) and np.all(np.isfinite(frame)) and frame.max() > 0, name
    assert set(EVALUATION_SCENES) <= set(SCENES)
