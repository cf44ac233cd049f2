"""The named scene set: scenes built from the OpenEXR sample images and procedural ones.

``make_scene(name, ...)`` builds any of ``SCENES``; EXR-based scenes read
../shared/data/openexr-images (or ``exr_dir`` / $HDR_DCS_EXR_DIR).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.photometry import luminance
from ..io.exr import read_exr
from .procedural import ProceduralConfig, procedural_scene
from .scene import CameraPath, Layer, LayeredScene, Light, disc_layer, resize_to_width

_REPO = Path(__file__).resolve().parents[2]


def default_exr_dir() -> Path:
    """$HDR_DCS_EXR_DIR, else ../shared/data/openexr-images next to the repository."""
    env = os.environ.get("HDR_DCS_EXR_DIR")
    return Path(env) if env else _REPO.parent / "shared" / "data" / "openexr-images"


def _read(root: Path, relative: str) -> np.ndarray:
    path = root / relative
    if not path.is_file():
        raise InputError(f"scene image {path} not found; pass --exr-dir or set HDR_DCS_EXR_DIR")
    return np.maximum(read_exr(path), 0.0)


def _normalised(image: np.ndarray, median: float, percentile: float = 50.0) -> np.ndarray:
    """Scale radiance so that the ``percentile`` of its luminance is ``median``."""
    m = float(np.percentile(luminance(image), percentile))
    if m <= 0:
        raise InputError("image has a zero median luminance")
    return (image * np.float32(median / m)).astype(np.float32)


def _exr_pan(background: str, sprite: str, size_wh: tuple[int, int], duration_s: float,
             pan_px_s: tuple[float, float], object_px_s: float, exr_dir: Path | None, name: str,
             lights: tuple[Light, ...] = (), start_frac: float = 0.18,
             level: tuple[float, float] = (50.0, 50.0)) -> LayeredScene:
    root = exr_dir or default_exr_dir()
    w, h = size_wh
    extent = (abs(pan_px_s[0]) * duration_s, abs(pan_px_s[1]) * duration_s)
    image = resize_to_width(_read(root, background), int(w + extent[0] + 16))
    if image.shape[0] < h + extent[1] + 8:
        image = resize_to_width(image, int(image.shape[1] * (h + extent[1] + 8) / image.shape[0]) + 1)
    image = _normalised(image, level[0], level[1])
    start_y = min(max(4.0, image.shape[0] * start_frac), image.shape[0] - h - extent[1] - 4)
    origin = (-8.0, -start_y)
    source = _normalised(_read(root, sprite), 60.0)
    diameter = h // 3
    disc = disc_layer(source, diameter, (source.shape[1] // 2, source.shape[0] // 2),
                      origin_xy=(-diameter * 0.5, h * 0.55), velocity_xy=(object_px_s, -6.0), depth=0.8,
                      name="disc")
    return LayeredScene(size_wh, (Layer(image, None, 1.0, origin, name="background"), disc), lights,
                        CameraPath(pan_px_s=pan_px_s), name)


def desk_pan(exr_dir: Path | None = None, size_wh: tuple[int, int] = (384, 288),
             duration_s: float = 2.0) -> LayeredScene:
    """A slow pan down Desk.exr (bright stained glass over a dark desk); a disc cut from
    Cannon.exr moves across at mid-tone radiance, in front of the background."""
    return _exr_pan("ScanLines/Desk.exr", "ScanLines/Cannon.exr", size_wh, duration_s, (0.0, 24.0), 90.0,
                    exr_dir, "desk_pan")


def golden_gate_pan(exr_dir: Path | None = None, size_wh: tuple[int, int] = (384, 288),
                    duration_s: float = 2.0) -> LayeredScene:
    """A sideways pan over GoldenGate.exr (sky, city lights at dusk) with a Carrots.exr disc."""
    return _exr_pan("Tiles/GoldenGate.exr", "ScanLines/Carrots.exr", size_wh, duration_s, (20.0, 0.0), -70.0,
                    exr_dir, "golden_gate_pan", start_frac=0.3)


def candle_switch(exr_dir: Path | None = None, size_wh: tuple[int, int] = (384, 288),
                  duration_s: float = 2.0) -> LayeredScene:
    """CandleGlass.exr with a slow pan; a lamp switches on half-way and another flickers at 100 Hz."""
    w, h = size_wh
    lights = (Light((0.25 * w, 0.3 * h), 6.0, (2500.0, 2200.0, 1800.0), 1.0, ((duration_s / 2, np.inf),)),
              Light((0.75 * w, 0.25 * h), 4.0, (1500.0, 1500.0, 1500.0), 1.0, None, 100.0, 0.6))
    return _exr_pan("ScanLines/CandleGlass.exr", "ScanLines/StillLife.exr", size_wh, duration_s, (12.0, 6.0),
                    50.0, exr_dir, "candle_switch", lights=lights, level=(2000.0, 99.9))


def _procedural(seed: int, **overrides: object) -> Callable[..., LayeredScene]:
    def build(exr_dir: Path | None = None, size_wh: tuple[int, int] = (640, 480),
              duration_s: float = 10.0) -> LayeredScene:
        cfg = ProceduralConfig(**overrides)  # type: ignore[arg-type]
        return procedural_scene(seed, size_wh, duration_s, cfg, name=f"procedural_{seed}")
    build.__doc__ = f"Procedural scene drawn from seed {seed} ({overrides or 'default ranges'})."
    return build


#: name -> builder(exr_dir, size_wh, duration_s)
SCENES: dict[str, Callable[..., LayeredScene]] = {
    "desk_pan": desk_pan,
    "golden_gate_pan": golden_gate_pan,
    "candle_switch": candle_switch,
    "street": _procedural(1),
    "night": _procedural(2, sky=(0.2, 2.0), surfaces=(0.05, 2.0), n_lights=(3, 6)),
    "fast": _procedural(3, object_speed_px_s=(150.0, 300.0), pan_px_s=(40.0, 80.0), shake_px=(1.0, 3.0)),
    "tunnel": _procedural(4, sky=(100.0, 800.0), shadow=(1e-3, 5e-3), n_lights=(1, 2)),
}

#: held out of training: the evaluation set (issue of train/test leakage)
EVALUATION_SCENES = ("desk_pan", "golden_gate_pan", "candle_switch")


def make_scene(name: str, exr_dir: Path | None = None, size_wh: tuple[int, int] = (640, 480),
               duration_s: float = 10.0) -> LayeredScene:
    """Build a named scene; procedural names of the form ``procedural_<seed>`` work too."""
    if name.startswith("procedural_") and name[len("procedural_"):].isdigit():
        return procedural_scene(int(name[len("procedural_"):]), size_wh, duration_s)
    if name not in SCENES:
        raise InputError(f"unknown scene {name!r}; choose one of {', '.join(SCENES)} or procedural_<seed>")
    return SCENES[name](exr_dir, size_wh, duration_s)
