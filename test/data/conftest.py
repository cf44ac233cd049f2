"""Shared fixtures of the training-data tests: a tiny hand-built scene and its simulation."""

from __future__ import annotations

import numpy as np
import pytest

from hdr_dcs.sim.rig import RigConfig, RigSequence, simulate
from hdr_dcs.sim.scene import CameraPath, Layer, LayeredScene, disc_layer


def toy_scene(pan: tuple[float, float] = (20.0, 5.0), moving: bool = True) -> LayeredScene:
    """64x48 textured HDR background (depth 1: registers exactly) panning, plus a moving disc."""
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0.0, 5.0, size=(10, 15, 3)).astype(np.float32)
    import cv2

    bg = np.exp(cv2.resize(coarse, (120, 80), interpolation=cv2.INTER_CUBIC)).astype(np.float32)
    layers = [Layer(bg, None, 1.0, (-8.0, -8.0))]
    if moving:
        disc = np.full((40, 40, 3), 30.0, np.float32)
        layers.append(disc_layer(disc, 16, (20, 20), (0.0, 20.0), (60.0, 0.0)))
    return LayeredScene((64, 48), tuple(layers), (), CameraPath(pan_px_s=pan))


@pytest.fixture(scope="session")
def rig_cfg() -> RigConfig:
    return RigConfig(seed=3)


@pytest.fixture(scope="session")
def rig_seq(rig_cfg: RigConfig) -> RigSequence:
    """12 reference frames at 30 Hz, one anchor pair per 5 frames (pairs centred near frames 2, 7, 12)."""
    return simulate(toy_scene().render_exposure, 12, rig_cfg)


@pytest.fixture(scope="session")
def make_toy_scene():
    """The ``toy_scene`` factory (test modules here are not a package, so no imports)."""
    return toy_scene
