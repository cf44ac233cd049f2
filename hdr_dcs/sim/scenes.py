"""Named scenes built from the OpenEXR sample images (../shared/data/openexr-images)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.photometry import luminance
from ..io.exr import read_exr
from .exr_scene import PanningScene, disc_sprite, resize_to_width

_REPO = Path(__file__).resolve().parents[2]


def default_exr_dir() -> Path:
    """$HDR_DCS_EXR_DIR, else ../shared/data/openexr-images next to the repository."""
    env = os.environ.get("HDR_DCS_EXR_DIR")
    return Path(env) if env else _REPO.parent / "shared" / "data" / "openexr-images"


def _normalised(image: np.ndarray, median: float) -> np.ndarray:
    """Scale radiance so that its median luminance is ``median`` (SPEC.md units)."""
    m = float(np.median(luminance(image)))
    if m <= 0:
        raise InputError("background has a zero median luminance")
    return (image * np.float32(median / m)).astype(np.float32)


def desk_pan(exr_dir: Path | None = None, size_wh: tuple[int, int] = (384, 288),
             duration_s: float = 2.0, pan_px_s: float = 24.0, object_px_s: float = 90.0) -> PanningScene:
    """A slow vertical pan down the Desk image (bright stained glass over a dark desk) with
    a disc cut from Cannon.exr moving across it at mid-tone radiance.

    Radiance is scaled so the background's median luminance is 50 units (a reference
    exposure of a few milliseconds, as on a real rig).
    """
    root = exr_dir or default_exr_dir()
    desk, cannon = root / "ScanLines" / "Desk.exr", root / "ScanLines" / "Cannon.exr"
    for path in (desk, cannon):
        if not path.is_file():
            raise InputError(f"scene image {path} not found; pass --exr-dir or set HDR_DCS_EXR_DIR")
    w, h = size_wh
    extent = pan_px_s * duration_s
    background = resize_to_width(np.maximum(read_exr(desk), 0.0), w + 16)
    if background.shape[0] < h + extent + 8:
        raise InputError(f"a {w}x{h} window panning {extent:.0f} px does not fit the Desk image")
    background = _normalised(background, 50.0)
    source = _normalised(np.maximum(read_exr(cannon), 0.0), 60.0)
    diameter = h // 3
    sprite = disc_sprite(source, diameter, (source.shape[1] // 2, source.shape[0] // 2),
                         start_xy=(-diameter * 0.5, h * 0.55), velocity_xy=(object_px_s, -6.0))
    start_y = max(4.0, background.shape[0] * 0.18)
    start_y = min(start_y, background.shape[0] - h - extent - 4)
    return PanningScene(background, size_wh, (8.0, start_y), (0.0, pan_px_s), (sprite,))
