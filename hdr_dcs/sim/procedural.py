"""Procedural HDR scenes: sky gradients, textured layers from deep shadow to bright
surfaces, light sources that switch and flicker, moving objects and camera motion.

Everything is drawn from one seed, so a scene is reproducible by name and seed. Radiance
spans at least 1e-3 .. 1e3 relative units (SPEC.md units once the rig exposes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .scene import CameraPath, Layer, LayeredScene, Light


@dataclass(frozen=True)
class ProceduralConfig:
    """Ranges the generator draws from (all radiances in relative units).

    Attributes:
        sky: (low, high) radiance of the sky at the horizon and at the top.
        surfaces: (low, high) median radiance of lit surfaces.
        shadow: (low, high) median radiance inside deep shadows.
        lights: (low, high) radiance of light sources.
        n_objects: (low, high) number of independently moving objects.
        n_lights: (low, high) number of lights.
        object_speed_px_s: (low, high) speed of objects.
        pan_px_s: (low, high) camera pan speed.
        zoom_per_s: maximum |zoom rate|.
        shake_px: (low, high) shake amplitude.
        switching_light: one light switches on half-way (a tunnel exit, a lamp turned on).
        flicker_hz: mains flicker frequency of one light (0 = none).
        radiance_scale: SPEC.md radiance per relative unit; sets the exposure a rig needs
            (the default lands a 30 Hz reference camera at a few milliseconds).
    """

    sky: tuple[float, float] = (2.0, 30.0)
    surfaces: tuple[float, float] = (0.5, 20.0)
    shadow: tuple[float, float] = (1e-3, 2e-2)
    lights: tuple[float, float] = (300.0, 1500.0)
    n_objects: tuple[int, int] = (1, 3)
    n_lights: tuple[int, int] = (1, 4)
    object_speed_px_s: tuple[float, float] = (20.0, 120.0)
    pan_px_s: tuple[float, float] = (5.0, 40.0)
    zoom_per_s: float = 0.02
    shake_px: tuple[float, float] = (0.0, 1.5)
    switching_light: bool = True
    flicker_hz: float = 100.0
    radiance_scale: float = 30.0


def fractal_noise(rng: np.random.Generator, height: int, width: int, octaves: int | None = None,
                  base_cells: int = 4, persistence: float = 0.72) -> np.ndarray:
    """(height, width) float32 noise with zero mean and unit standard deviation.

    ``octaves`` None: as many as it takes to reach features about 3 pixels wide.
    """
    if octaves is None:
        octaves = max(1, int(math.log2(max(width, height) / (3 * base_cells))) + 1)
    acc = np.zeros((height, width), np.float32)
    amp = 1.0
    for o in range(octaves):
        cells = base_cells * 2 ** o
        grid = rng.standard_normal((max(2, cells * height // max(height, width)) + 1, cells + 1)).astype(np.float32)
        acc += amp * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        amp *= persistence
    acc -= acc.mean()
    return acc / max(float(acc.std()), 1e-6)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _tint(rng: np.random.Generator, strength: float = 0.25) -> np.ndarray:
    t = np.exp(rng.normal(0.0, strength, size=3)).astype(np.float32)
    return t / t.mean()


def _textured(rng: np.random.Generator, h: int, w: int, median: float, contrast: float) -> np.ndarray:
    """(h, w, 3) radiance with log-normal texture around ``median``."""
    # Large-scale variation plus fine texture at about 30 and 8 pixels, so that edges and
    # detail exist at the scale the networks work at, whatever the layer's size.
    lum = median * np.exp(contrast * fractal_noise(rng, h, w)
                          + 0.35 * fractal_noise(rng, h, w, octaves=3, base_cells=max(4, w // 32)))
    colour = 1.0 + 0.15 * np.stack([fractal_noise(rng, h, w, octaves=3) for _ in range(3)], axis=-1)
    return (lum[..., None] * np.clip(colour, 0.5, 1.5) * _tint(rng)).astype(np.float32)


def _sky(rng: np.random.Generator, h: int, w: int, cfg: ProceduralConfig) -> np.ndarray:
    horizon, top = sorted((_log_uniform(rng, *cfg.sky), _log_uniform(rng, *cfg.sky)))
    ramp = np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None]
    lum = np.exp(np.log(horizon) + (np.log(top) - np.log(horizon)) * ramp) * np.exp(0.15 * fractal_noise(rng, h, w))
    blue = np.array([0.8, 0.95, 1.25], np.float32)
    return (lum[..., None] * blue).astype(np.float32)


def _skyline_alpha(rng: np.random.Generator, h: int, w: int, row: float, amplitude: float) -> np.ndarray:
    """Coverage of a ragged skyline around layer row ``row`` (+- ``amplitude`` rows)."""
    profile = row + amplitude * fractal_noise(rng, 1, w, octaves=4, base_cells=3)[0]
    steps = np.repeat(profile[:: 16], 16)[:w] if rng.random() < 0.5 else profile  # buildings or hills
    rows = np.arange(h, dtype=np.float32)[:, None]
    return np.clip(rows - steps[None, :] + 0.5, 0.0, 1.0).astype(np.float32)


def _shadow_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Soft (h, w) mask of deep shadow regions covering roughly a quarter of the layer."""
    n = fractal_noise(rng, h, w, octaves=3, base_cells=2)
    return cv2.GaussianBlur(np.clip((n - 0.6) * 3.0, 0.0, 1.0), (0, 0), 2.0)


def _object(rng: np.random.Generator, size: int, cfg: ProceduralConfig) -> tuple[np.ndarray, np.ndarray]:
    """A textured ellipse or rounded box: (size, size, 3) radiance and (size, size) alpha."""
    rad = _textured(rng, size, size, _log_uniform(rng, 0.05, cfg.surfaces[1]), 0.6)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    c = size / 2
    ax, ay = rng.uniform(0.3, 0.5) * size, rng.uniform(0.3, 0.5) * size
    if rng.random() < 0.5:
        d = (np.hypot((xx - c) / ax, (yy - c) / ay) - 1.0) * min(ax, ay)
    else:
        d = np.maximum(np.abs(xx - c) - ax, np.abs(yy - c) - ay)
    alpha = np.clip(0.5 - d, 0.0, 1.0).astype(np.float32)
    return rad, alpha


def procedural_scene(seed: int, size_wh: tuple[int, int] = (640, 480), duration_s: float = 10.0,
                     cfg: ProceduralConfig | None = None, name: str = "") -> LayeredScene:
    """Draw a scene: sky, a far skyline, a textured mid layer with deep shadows, moving
    objects in front, lights (one switching on, one flickering) and a moving camera.

    The layers are large enough for the camera's pan and zoom over ``duration_s``.
    """
    cfg = cfg or ProceduralConfig()
    rng = np.random.default_rng(seed)
    w, h = size_wh
    angle = rng.uniform(0, 2 * math.pi)
    pan_speed = rng.uniform(*cfg.pan_px_s)
    pan = (pan_speed * math.cos(angle), 0.4 * pan_speed * math.sin(angle))
    camera = CameraPath(pan_px_s=pan, translate_px_s=(rng.uniform(-4, 4), rng.uniform(-1, 1)),
                        zoom_per_s=float(rng.uniform(-cfg.zoom_per_s, cfg.zoom_per_s)),
                        shake_px=float(rng.uniform(*cfg.shake_px)), seed=seed)
    margin = int(math.ceil(pan_speed * duration_s + 12 * duration_s)) + 32
    lw, lh = w + 2 * margin, h + 2 * margin
    origin = (-margin, -margin)

    layers = [Layer(_sky(rng, lh, lw, cfg), None, depth=50.0, origin_xy=origin, name="sky")]
    far = _textured(rng, lh, lw, _log_uniform(rng, *cfg.surfaces), 0.5)
    layers.append(Layer(far, _skyline_alpha(rng, lh, lw, margin + rng.uniform(0.25, 0.45) * h, 0.12 * h), depth=6.0,
                        origin_xy=origin, name="skyline"))
    mid = _textured(rng, lh, lw, _log_uniform(rng, *cfg.surfaces), 0.7)
    shade = _shadow_mask(rng, lh, lw)
    # One deep shadow is always in view at the start (under the skyline, lower half).
    yy, xx = np.ogrid[0:lh, 0:lw]
    cx, cy = margin + rng.uniform(0.2, 0.8) * w, margin + rng.uniform(0.75, 0.9) * h
    blob = ((xx - cx) / (0.18 * w)) ** 2 + ((yy - cy) / (0.12 * h)) ** 2
    shade = np.maximum(shade, np.clip(1.5 - blob, 0.0, 1.0))[..., None]
    deep = _log_uniform(rng, *cfg.shadow) / float(np.median(mid))
    mid = mid * (1.0 - shade + shade * np.float32(deep))
    layers.append(Layer(mid.astype(np.float32), _skyline_alpha(rng, lh, lw, margin + rng.uniform(0.5, 0.65) * h, 0.08 * h),
                        depth=2.0,
                        origin_xy=origin, name="ground"))
    for i in range(int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))):
        size = int(rng.uniform(0.15, 0.35) * h)
        rad, alpha = _object(rng, size, cfg)
        speed = rng.uniform(*cfg.object_speed_px_s)
        direction = rng.choice([-1.0, 1.0])
        start_x = -size if direction > 0 else w
        layers.append(Layer(rad, alpha, depth=float(rng.uniform(0.6, 1.2)),
                            origin_xy=(start_x + rng.uniform(-0.2, 0.6) * w * direction, rng.uniform(0.3, 0.8) * h),
                            velocity_xy=(direction * speed, rng.uniform(-0.15, 0.15) * speed), name=f"object{i}"))

    lights = []
    for j in range(int(rng.integers(cfg.n_lights[0], cfg.n_lights[1] + 1))):
        level = _log_uniform(rng, *cfg.lights)
        on = None
        flicker = 0.0
        if j == 0 and cfg.switching_light:
            on = ((duration_s * rng.uniform(0.3, 0.6), math.inf),)
        elif j == 1 and cfg.flicker_hz > 0:
            flicker = cfg.flicker_hz
        # Spread along the camera's path so that lights stay in view over the sequence.
        along = rng.uniform(0.0, duration_s)
        lights.append(Light(center_xy=(rng.uniform(0.1, 0.9) * w + pan[0] * along,
                                       rng.uniform(0.15, 0.6) * h + pan[1] * along),
                            radius_px=float(rng.uniform(3.0, 10.0)),
                            radiance=tuple((level * _tint(rng, 0.15)).tolist()), depth=2.0,
                            on_intervals_s=on, flicker_hz=flicker, flicker_depth=0.6 if flicker else 0.0))
    k = np.float32(cfg.radiance_scale)
    layers = [Layer(layer.radiance * k, layer.alpha, layer.depth, layer.origin_xy, layer.velocity_xy, layer.name)
              for layer in layers]
    lights = [Light(light.center_xy, light.radius_px, tuple(v * cfg.radiance_scale for v in light.radiance),
                    light.depth, light.on_intervals_s, light.flicker_hz, light.flicker_depth) for light in lights]
    return LayeredScene(size_wh, tuple(layers), tuple(lights), camera, name or f"procedural-{seed}")
