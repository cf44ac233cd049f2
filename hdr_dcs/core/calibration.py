"""Camera calibration as SPEC.md defines it: what sensor_msgs/CameraInfo carries.

A camera's (D, K, R, P, size) says how its raw image is warped into the reference
camera's grid: ``cv2.initUndistortRectifyMap(K, D, R, P[:, :3], reference_size, ...)``
then ``cv2.remap``. An all-zero K means uncalibrated: identity mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError


def _matrix(values: object, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size != shape[0] * shape[1]:
        raise InputError(f"{name} needs {shape[0] * shape[1]} values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or Inf")
    return arr.reshape(shape)


@dataclass(frozen=True, eq=False)
class CameraCalibration:
    """Intrinsics and rectification of one camera (the fields of sensor_msgs/CameraInfo).

    Attributes:
        width, height: raw image size in pixels.
        k: (3, 3) camera matrix.
        d: (n,) distortion coefficients of ``distortion_model``.
        r: (3, 3) rectification rotation into the reference camera's orientation.
        p: (3, 4) projection matrix of the target (reference) grid.
        distortion_model: "plumb_bob", "rational_polynomial" or "equidistant".
        camera_name: free text.
    """

    width: int
    height: int
    k: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    d: np.ndarray = field(default_factory=lambda: np.zeros(5))
    r: np.ndarray = field(default_factory=lambda: np.eye(3))
    p: np.ndarray = field(default_factory=lambda: np.zeros((3, 4)))
    distortion_model: str = "plumb_bob"
    camera_name: str = ""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"image size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "k", _matrix(self.k, (3, 3), "K"))
        object.__setattr__(self, "r", _matrix(self.r, (3, 3), "R"))
        object.__setattr__(self, "p", _matrix(self.p, (3, 4), "P"))
        d = np.asarray(self.d, dtype=np.float64).ravel()
        if not np.all(np.isfinite(d)):
            raise InputError("D contains NaN or Inf")
        object.__setattr__(self, "d", d)

    @property
    def calibrated(self) -> bool:
        """False when K is all zero (SPEC.md: identity mapping)."""
        return bool(np.any(self.k != 0))

    @classmethod
    def uncalibrated(cls, width: int, height: int, camera_name: str = "") -> CameraCalibration:
        return cls(width, height, camera_name=camera_name)

    @classmethod
    def pinhole(cls, width: int, height: int, focal_px: float, camera_name: str = "",
                r: np.ndarray | None = None, p_shift_px: tuple[float, float] = (0.0, 0.0),
                d: np.ndarray | None = None) -> CameraCalibration:
        """A centred pinhole camera; P = [K | 0] with its principal point shifted by ``p_shift_px``."""
        k = np.array([[focal_px, 0.0, (width - 1) / 2], [0.0, focal_px, (height - 1) / 2], [0.0, 0.0, 1.0]])
        p = np.hstack([k, np.zeros((3, 1))])
        p[0, 2] += p_shift_px[0]
        p[1, 2] += p_shift_px[1]
        return cls(width, height, k, np.zeros(5) if d is None else d, np.eye(3) if r is None else r, p,
                   "plumb_bob", camera_name)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CameraCalibration):
            return NotImplemented
        return (self.width, self.height, self.distortion_model, self.camera_name) == \
            (other.width, other.height, other.distortion_model, other.camera_name) and \
            all(np.array_equal(a, b) for a, b in ((self.k, other.k), (self.d, other.d),
                                                   (self.r, other.r), (self.p, other.p)))

    def __hash__(self) -> int:
        return hash((self.width, self.height, self.camera_name, self.k.tobytes(), self.d.tobytes(),
                     self.r.tobytes(), self.p.tobytes()))
