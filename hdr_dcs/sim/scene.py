"""Layered HDR scenes with ground-truth radiance: camera motion, parallax, moving objects,
occlusion and lights that switch or flicker.

A scene is a stack of planar layers, back to front, each at a depth measured in units
of the rig's working distance (depth 1 = the distance the cameras are registered at).
The virtual camera pans, zooms and shakes; a layer moves in the image by the camera's
rotation-like pan plus its translation divided by the layer's depth (parallax), and may
move on its own (an independently moving object). The anchor camera sits ``baseline_px``
(disparity at depth 1) beside the reference camera, so a layer at depth z appears shifted
by baseline / z in the anchor's raw image.

Radiance is in SPEC.md units. ``render`` gives it at one instant, ``render_exposure``
averages it over an exposure interval (motion blur; lights integrate their flicker).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np


@dataclass(frozen=True)
class CameraPath:
    """Motion of the virtual camera.

    Attributes:
        pan_px_s: image-space velocity of the view (pixels per second at depth 1; a
            rotation-like pan moves every layer by this, whatever its depth).
        translate_px_s: camera translation, pixels per second at depth 1 (parallax).
        zoom_per_s: relative magnification rate (0.05 = 5 % per second).
        shake_px: amplitude of a smooth random shake, pixels.
        shake_hz: its bandwidth.
        seed: of the shake.
    """

    pan_px_s: tuple[float, float] = (0.0, 0.0)
    translate_px_s: tuple[float, float] = (0.0, 0.0)
    zoom_per_s: float = 0.0
    shake_px: float = 0.0
    shake_hz: float = 3.0
    seed: int = 0

    def pose(self, t_s: float) -> tuple[float, float, float, float, float]:
        """(pan_x, pan_y, translate_x, translate_y, scale) at ``t_s``."""
        sx = sy = 0.0
        if self.shake_px > 0:
            freqs, phases = self._shake
            waves = np.sin(2 * math.pi * freqs * t_s + phases).sum(axis=1) / math.sqrt(3)
            sx, sy = (self.shake_px * waves).tolist()
        return (self.pan_px_s[0] * t_s + sx, self.pan_px_s[1] * t_s + sy,
                self.translate_px_s[0] * t_s, self.translate_px_s[1] * t_s,
                1.0 + self.zoom_per_s * t_s)

    @cached_property
    def _shake(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return rng.uniform(0.3, 1.0, size=(2, 3)) * self.shake_hz, rng.uniform(0, 2 * math.pi, size=(2, 3))

    def max_speed_px_s(self) -> float:
        speed = math.hypot(*self.pan_px_s) + math.hypot(*self.translate_px_s)
        return speed + 2 * math.pi * self.shake_hz * self.shake_px


@dataclass(frozen=True)
class Layer:
    """A planar layer of the scene.

    Attributes:
        radiance: (h, w, 3) float32 radiance.
        alpha: (h, w) float32 coverage in [0, 1], or None for an opaque layer.
        depth: distance in units of the working distance (sets parallax).
        origin_xy: where the layer's top-left sits in the image at t = 0 (depth-1 pixels).
        velocity_xy: the layer's own motion, pixels per second (a moving object).
        name: for reports.
    """

    radiance: np.ndarray
    alpha: np.ndarray | None = None
    depth: float = 1.0
    origin_xy: tuple[float, float] = (0.0, 0.0)
    velocity_xy: tuple[float, float] = (0.0, 0.0)
    name: str = ""


@dataclass(frozen=True)
class Light:
    """An emitting disc: a lamp, a headlight. Switches and flickers.

    Attributes:
        center_xy: position in the image at t = 0 (depth-1 pixels, moves with ``depth``).
        radius_px: radius of the disc (soft edge of one pixel).
        radiance: (3,) radiance when fully on.
        depth: as for layers.
        on_intervals_s: when the light is on, as (start, end) pairs; None = always on.
        flicker_hz: intensity modulation frequency (e.g. 100 for 50 Hz mains), 0 = steady.
        flicker_depth: modulation depth in [0, 1].
    """

    center_xy: tuple[float, float]
    radius_px: float
    radiance: tuple[float, float, float]
    depth: float = 1.0
    on_intervals_s: tuple[tuple[float, float], ...] | None = None
    flicker_hz: float = 0.0
    flicker_depth: float = 0.0

    def mean_intensity(self, t0_s: float, t1_s: float, samples: int = 64) -> float:
        """Mean relative intensity over [t0, t1] (what an exposure integrates)."""
        if t1_s <= t0_s:
            return self.intensity(t0_s)
        times = t0_s + (t1_s - t0_s) * (np.arange(samples) + 0.5) / samples
        return float(np.mean([self.intensity(float(t)) for t in times]))

    def intensity(self, t_s: float) -> float:
        """Relative intensity in [0, 1] at ``t_s``."""
        if self.on_intervals_s is not None and not any(a <= t_s < b for a, b in self.on_intervals_s):
            return 0.0
        if self.flicker_hz > 0:
            return 1.0 - self.flicker_depth * 0.5 * (1.0 + math.cos(2 * math.pi * self.flicker_hz * t_s))
        return 1.0


@dataclass(frozen=True)
class LayeredScene:
    """Layers (back to front) and lights seen by a moving camera.

    Attributes:
        size_wh: output size (width, height) of both cameras.
        layers: back to front; the first should be opaque and cover the view.
        lights: drawn over the layer of the same or larger depth, in order.
        camera: the camera's motion.
        name: for reports.
    """

    size_wh: tuple[int, int]
    layers: tuple[Layer, ...]
    lights: tuple[Light, ...] = ()
    camera: CameraPath = field(default_factory=CameraPath)
    name: str = ""

    def _view_matrix(self, t_s: float, depth: float, own_xy: tuple[float, float],
                     baseline_xy: tuple[float, float]) -> np.ndarray:
        """2x3 matrix mapping image pixels to layer pixels at ``t_s``."""
        pan_x, pan_y, tr_x, tr_y, scale = self.camera.pose(t_s)
        w, h = self.size_wh
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        # Image point u sees layer point: (u - c) / scale + c + pan + (translation + baseline) / depth - own
        off_x = pan_x + (tr_x + baseline_xy[0]) / depth - own_xy[0]
        off_y = pan_y + (tr_y + baseline_xy[1]) / depth - own_xy[1]
        inv = 1.0 / scale
        return np.array([[inv, 0.0, cx - cx * inv + off_x], [0.0, inv, cy - cy * inv + off_y]])

    def render(self, t_s: float, baseline_xy: tuple[float, float] = (0.0, 0.0),
               light_window_s: float = 0.0) -> np.ndarray:
        """Radiance (H, W, 3) float32 at ``t_s`` seen from ``baseline_xy`` beside the reference.

        Lights are drawn with their mean intensity over ``t_s +- light_window_s / 2``.
        """
        w, h = self.size_wh
        frame = np.zeros((h, w, 3), np.float32)
        items: list[tuple[float, int, object]] = [(layer.depth, i, layer) for i, layer in enumerate(self.layers)]
        items += [(light.depth, len(self.layers) + j, light) for j, light in enumerate(self.lights)]
        # Back to front: larger depth first; equal depth keeps the given order.
        for _, _, item in sorted(items, key=lambda x: (-x[0], x[1])):
            if isinstance(item, Layer):
                frame = self._draw_layer(frame, item, t_s, baseline_xy)
            else:
                frame = self._draw_light(frame, item, t_s, baseline_xy, light_window_s)  # type: ignore[arg-type]
        return frame

    def _draw_layer(self, frame: np.ndarray, layer: Layer, t_s: float,
                    baseline_xy: tuple[float, float]) -> np.ndarray:
        w, h = self.size_wh
        own = (layer.origin_xy[0] + layer.velocity_xy[0] * t_s, layer.origin_xy[1] + layer.velocity_xy[1] * t_s)
        m = self._view_matrix(t_s, layer.depth, own, baseline_xy)
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        if layer.alpha is None:
            return cv2.warpAffine(layer.radiance, m, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT)
        # Only the image rectangle the layer covers is warped and blended.
        lh, lw = layer.alpha.shape
        corners = np.array([[0, 0], [lw, 0], [0, lh], [lw, lh]], np.float64)
        img = np.linalg.solve(m[:, :2], (corners - m[:, 2]).T).T
        x0, y0 = np.maximum(np.floor(img.min(axis=0)) - 1, 0).astype(int)
        x1, y1 = np.minimum(np.ceil(img.max(axis=0)) + 2, (w, h)).astype(int)
        if x0 >= x1 or y0 >= y1:
            return frame
        roi = m.copy()
        roi[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
        size = (int(x1 - x0), int(y1 - y0))
        rad = cv2.warpAffine(layer.radiance, roi, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
        alpha = cv2.warpAffine(layer.alpha, roi, size, flags=flags, borderMode=cv2.BORDER_CONSTANT)
        region = frame[y0:y1, x0:x1]
        frame[y0:y1, x0:x1] = cv2.blendLinear(rad, region, alpha, 1.0 - alpha)
        return frame

    def _draw_light(self, frame: np.ndarray, light: Light, t_s: float,
                    baseline_xy: tuple[float, float], window_s: float) -> np.ndarray:
        level = light.mean_intensity(t_s - window_s / 2, t_s + window_s / 2)
        if level <= 0:
            return frame
        m = self._view_matrix(t_s, light.depth, (0.0, 0.0), baseline_xy)
        # Invert the layer mapping to find the light's image position.
        a = m[:, :2]
        centre = np.linalg.solve(a, np.array(light.center_xy) - m[:, 2])
        radius = light.radius_px / a[0, 0]
        h, w = frame.shape[:2]
        x0, x1 = int(max(0, math.floor(centre[0] - radius - 2))), int(min(w, math.ceil(centre[0] + radius + 2)))
        y0, y1 = int(max(0, math.floor(centre[1] - radius - 2))), int(min(h, math.ceil(centre[1] + radius + 2)))
        if x0 >= x1 or y0 >= y1:
            return frame
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        cover = np.clip(radius + 0.5 - np.hypot(xx - centre[0], yy - centre[1]), 0.0, 1.0)[..., None]
        patch = frame[y0:y1, x0:x1]
        frame[y0:y1, x0:x1] = patch * (1 - cover) + cover * np.float32(level) * np.asarray(light.radiance, np.float32)
        return frame

    def max_speed_px_s(self) -> float:
        """Upper bound of any image point's speed, for choosing motion-blur samples."""
        w, h = self.size_wh
        speed = self.camera.max_speed_px_s() + abs(self.camera.zoom_per_s) * math.hypot(w, h) / 2
        own = max((math.hypot(*layer.velocity_xy) for layer in self.layers), default=0.0)
        near = min((layer.depth for layer in self.layers), default=1.0)
        return speed / min(near, 1.0) + own

    def displacement_px(self, t_mid_s: float, duration_s: float) -> float:
        """Largest distance any layer's image corner moves during [t_mid - d/2, t_mid + d/2],
        evaluated at 4 instants (so a shake's curvature counts)."""
        if duration_s <= 0:
            return 0.0
        w, h = self.size_wh
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64).T
        times = t_mid_s + duration_s * np.array([-0.5, -1 / 6, 1 / 6, 0.5])
        worst = 0.0
        for layer in self.layers:
            pts = []
            for t in times:
                own = (layer.origin_xy[0] + layer.velocity_xy[0] * t, layer.origin_xy[1] + layer.velocity_xy[1] * t)
                pts.append(self._view_matrix(float(t), layer.depth, own, (0.0, 0.0)) @ corners)
            steps = np.linalg.norm(np.diff(np.stack(pts), axis=0), axis=1).sum(axis=0)
            worst = max(worst, float(steps.max()))
        return worst

    def render_exposure(self, t_mid_s: float, duration_s: float,
                        baseline_xy: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Radiance averaged over [t_mid - d/2, t_mid + d/2]: motion blur with samples at most
        1 px apart (up to 16); each sample's lights integrate their switching and flicker
        over the sample's share of the exposure."""
        n = int(min(16, max(1, math.ceil(self.displacement_px(t_mid_s, duration_s)))))
        if n == 1:
            return self.render(t_mid_s, baseline_xy, duration_s)
        times = t_mid_s + duration_s * ((np.arange(n) + 0.5) / n - 0.5)
        acc = np.zeros((self.size_wh[1], self.size_wh[0], 3), np.float32)
        for t in times:
            acc += self.render(float(t), baseline_xy, duration_s / n)
        return acc / np.float32(n)


def disc_layer(source: np.ndarray, diameter_px: int, center_xy: tuple[int, int], origin_xy: tuple[float, float],
               velocity_xy: tuple[float, float], depth: float = 1.0, gain: float = 1.0, name: str = "") -> Layer:
    """A feathered disc of ``diameter_px`` cut from ``source`` around ``center_xy``, as a moving layer."""
    r = diameter_px // 2
    cx, cy = center_xy
    patch = source[cy - r:cy + r, cx - r:cx + r].astype(np.float32) * np.float32(gain)
    if patch.shape[:2] != (2 * r, 2 * r):
        raise ValueError("disc does not fit inside the source image")
    yy, xx = np.mgrid[0:2 * r, 0:2 * r].astype(np.float32) + 0.5
    alpha = np.clip(r - np.hypot(xx - r, yy - r), 0.0, 1.0).astype(np.float32)
    return Layer(np.ascontiguousarray(patch), alpha, depth, origin_xy, velocity_xy, name)


def resize_to_width(image: np.ndarray, width: int) -> np.ndarray:
    """Resize (H, W, 3) radiance to ``width`` keeping the aspect ratio (area filter when shrinking)."""
    height = int(round(image.shape[0] * width / image.shape[1]))
    interp = cv2.INTER_AREA if width < image.shape[1] else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=interp), dtype=np.float32)
