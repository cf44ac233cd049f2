"""Scenes built from real HDR images: a slow pan over a background and a moving object.

Radiance is in SPEC.md units: the EXR's values times ``radiance_scale``. ``render`` gives
the radiance at one instant, ``render_exposure`` averages it over an exposure interval
(motion blur for long exposures).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np



@dataclass(frozen=True)
class Sprite:
    """An object that moves over the background.

    Attributes:
        radiance: (h, w, 3) float32 radiance of the object.
        alpha: (h, w) float32 coverage in [0, 1].
        start_xy: top-left position in the output frame at t = 0, pixels.
        velocity_xy: pixels per second.
    """

    radiance: np.ndarray
    alpha: np.ndarray
    start_xy: tuple[float, float]
    velocity_xy: tuple[float, float]


def _shift_matrix(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float64)


@dataclass(frozen=True)
class PanningScene:
    """A window panning over an HDR background, with sprites moving over it.

    Attributes:
        background: (H, W, 3) float32 radiance, larger than the output by the pan's extent.
        size_wh: output size (width, height).
        start_xy: top-left of the window at t = 0, background pixels.
        pan_velocity_xy: window velocity, background pixels per second.
        sprites: objects drawn over the background, in order.
    """

    background: np.ndarray
    size_wh: tuple[int, int]
    start_xy: tuple[float, float]
    pan_velocity_xy: tuple[float, float]
    sprites: tuple[Sprite, ...] = ()

    def render(self, t_s: float, offset_xy: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Radiance (H, W, 3) float32 at time ``t_s``; ``offset_xy`` shifts the view (parallax)."""
        w, h = self.size_wh
        ox = self.start_xy[0] + self.pan_velocity_xy[0] * t_s + offset_xy[0]
        oy = self.start_xy[1] + self.pan_velocity_xy[1] * t_s + offset_xy[1]
        frame = cv2.warpAffine(self.background, _shift_matrix(-ox, -oy), (w, h),
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for sp in self.sprites:
            sx = sp.start_xy[0] + sp.velocity_xy[0] * t_s - offset_xy[0]
            sy = sp.start_xy[1] + sp.velocity_xy[1] * t_s - offset_xy[1]
            m = _shift_matrix(sx, sy)
            rad = cv2.warpAffine(sp.radiance, m, (w, h), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            alpha = cv2.warpAffine(sp.alpha, m, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
            frame = frame * (1.0 - alpha) + rad * alpha
        return frame.astype(np.float32)

    def max_speed_px_s(self) -> float:
        speeds = [math.hypot(*self.pan_velocity_xy)]
        speeds += [math.hypot(sp.velocity_xy[0] - self.pan_velocity_xy[0],
                              sp.velocity_xy[1] - self.pan_velocity_xy[1]) for sp in self.sprites]
        return max(speeds)

    def render_exposure(self, t_mid_s: float, duration_s: float,
                        offset_xy: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Radiance averaged over [t_mid - d/2, t_mid + d/2]: motion blur, <= 0.5 px per sample."""
        blur_px = self.max_speed_px_s() * duration_s
        n = int(min(16, max(1, math.ceil(blur_px / 0.5))))
        if n == 1:
            return self.render(t_mid_s, offset_xy)
        times = t_mid_s + duration_s * ((np.arange(n) + 0.5) / n - 0.5)
        return np.mean([self.render(float(t), offset_xy) for t in times], axis=0).astype(np.float32)


def disc_sprite(source: np.ndarray, diameter_px: int, center_xy: tuple[int, int],
                start_xy: tuple[float, float], velocity_xy: tuple[float, float],
                radiance_gain: float = 1.0) -> Sprite:
    """Cut a feathered disc of ``diameter_px`` out of ``source`` around ``center_xy``."""
    r = diameter_px // 2
    cx, cy = center_xy
    patch = source[cy - r:cy + r, cx - r:cx + r].astype(np.float32) * np.float32(radiance_gain)
    if patch.shape[:2] != (2 * r, 2 * r):
        raise ValueError("disc does not fit inside the source image")
    yy, xx = np.mgrid[0:2 * r, 0:2 * r].astype(np.float32) + 0.5
    dist = np.hypot(xx - r, yy - r)
    alpha = np.clip(r - dist, 0.0, 1.0).astype(np.float32)
    return Sprite(np.ascontiguousarray(patch), alpha, start_xy, velocity_xy)


def resize_to_width(image: np.ndarray, width: int) -> np.ndarray:
    """Resize (H, W, 3) radiance to ``width`` keeping the aspect ratio (area filter when shrinking)."""
    height = int(round(image.shape[0] * width / image.shape[1]))
    interp = cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=interp), dtype=np.float32)
