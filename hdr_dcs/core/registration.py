"""Geometric registration of a camera's raw image into the reference camera's image grid.

SPEC.md (Calibration) fixes the semantics: a camera's CameraInfo (D, K, R, P, size)
warps its raw image into the reference grid with

    map_x, map_y = cv2.initUndistortRectifyMap(K, D, R, P[:, :3], reference_size, CV_32FC1)
    registered   = cv2.remap(raw, map_x, map_y, INTER_LINEAR, BORDER_CONSTANT, 0)

(``cv2.fisheye.initUndistortRectifyMap`` for ``distortion_model == "equidistant"``).
P's fourth column (the stereo baseline term Tx, Ty) is not used.

Convention of R (verified numerically in test/core/test_registration.py): R rotates rays
of the *raw* camera into the *reference* (rectified) frame, ``ray_ref = R @ ray_raw``.
cv2 computes, for each reference pixel (u, v), the raw ray ``R^T @ P3^-1 @ [u, v, 1]``,
distorts and projects it with K and D. So if a direction p in the reference camera's
frame is seen by the anchor camera as ``R_anchor_from_ref @ p``, the anchor's CameraInfo
must carry ``R = R_ref_from_anchor = R_anchor_from_ref.T``. For the reference camera
R = I and P = [K | 0] (undistortion only).

Choices made here:

- maps are CV_32FC1 (not CV_16SC2, which quantises sample positions to 1/32 px). With
  them OpenCV 5 samples float32 images of 1, 3 or 4 channels at the exact positions;
  some other combinations (float64, 2 or more than 4 channels) go through its
  fixed-point path, whose positions are rounded to 1/32 px (error <= 1/64 px). Integer
  results are rounded to the nearest code;
- interpolation is bilinear; the border is constant 0. Reference pixels the camera does
  not see therefore read 0 (and pixels whose bilinear footprint straddles the raw image
  edge are partly blended with 0). They carry no information; ``valid_mask`` marks the
  others, and callers must ignore pixels outside it (replicating the edge would instead
  invent plausible-looking data that could be merged silently);
- an uncalibrated camera (None, or a CameraCalibration whose K is all zero) maps by
  identity, which needs its raw image to already be the reference size.

Every failure is an ``InputError`` with a one-line message.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from .calibration import CameraCalibration
from .errors import InputError

__all__ = ["VALID_MASK_TOLERANCE", "Registration", "RegistrationCache"]

#: Supported pixel dtypes of ``Registration.apply``.
_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32), np.dtype(np.float64))
#: cv2.remap refuses images or maps with a side of SHRT_MAX pixels or more.
_MAX_SIDE = 32767
#: D lengths cv2.initUndistortRectifyMap accepts for the plumb_bob / rational models.
_CV_D_LENGTHS = (0, 4, 5, 8, 12, 14)
#: A reference pixel is valid when at least 1 - this fraction of its bilinear weight
#: falls inside the raw image, i.e. it samples at most ~1e-3 px beyond the edge pixels.
VALID_MASK_TOLERANCE = 1e-3


def _size(size: object, name: str) -> tuple[int, int]:
    try:
        w, h = size  # type: ignore[misc]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be (width, height), got {size!r}") from None
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (w, h)):
        raise InputError(f"{name} must be two positive integers (width, height), got {size!r}")
    w, h = int(w), int(h)
    if w >= _MAX_SIDE or h >= _MAX_SIDE:
        raise InputError(f"{name} {w}x{h} too large: cv2.remap needs sides < {_MAX_SIDE} px")
    return w, h


def _well_conditioned(m: np.ndarray) -> bool:
    with np.errstate(all="ignore"):
        cond = np.linalg.cond(m)
    return bool(np.isfinite(cond) and cond < 1e12)


def _camera(calib: CameraCalibration) -> str:
    return f"camera {calib.camera_name!r}" if calib.camera_name else "camera"


def _build_maps(calib: CameraCalibration, reference_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(map_x, map_y), each (H_ref, W_ref) float32 raw pixel coordinates, per SPEC.md."""
    who = _camera(calib)
    p3 = np.ascontiguousarray(calib.p[:, :3])
    if not _well_conditioned(calib.k):
        raise InputError(f"{who}: K is singular: {calib.k.ravel().tolist()}")
    if not _well_conditioned(calib.r):
        raise InputError(f"{who}: R is singular: {calib.r.ravel().tolist()}")
    if not _well_conditioned(p3):
        raise InputError(f"{who}: P[:, :3] is singular (all-zero P?): {calib.p.ravel().tolist()}")
    d = calib.d
    model = calib.distortion_model
    try:
        if model == "equidistant":
            if d.size not in (0, 4):
                raise InputError(f"{who}: equidistant distortion needs 4 coefficients, got {d.size}")
            d4 = np.zeros(4) if d.size == 0 else d
            return cv2.fisheye.initUndistortRectifyMap(calib.k, d4, calib.r, p3, reference_size,
                                                       cv2.CV_32FC1)
        if model not in ("plumb_bob", "rational_polynomial") and np.any(d != 0):
            raise InputError(f"{who}: unsupported distortion_model {model!r} "
                             "(plumb_bob, rational_polynomial or equidistant)")
        if d.size not in _CV_D_LENGTHS:
            raise InputError(f"{who}: {model} distortion with {d.size} coefficients "
                             f"(cv2 accepts {', '.join(map(str, _CV_D_LENGTHS))})")
        return cv2.initUndistortRectifyMap(calib.k, d, calib.r, p3, reference_size, cv2.CV_32FC1)
    except cv2.error as exc:  # pragma: no cover - the checks above should prevent this
        msg = " ".join(str(exc).split())
        raise InputError(f"{who}: cv2 cannot build the registration maps: {msg}") from exc


class Registration:
    """Warp of one camera's raw images into the reference image grid; built once, applied per frame.

    Args:
        calibration: the camera's calibration (its CameraInfo), or None. None or an all-zero
            K means uncalibrated: identity mapping.
        reference_size: (width, height) in pixels of the reference camera's image grid.

    Attributes:
        calibration: the calibration given (None for None).
        reference_size: (W_ref, H_ref) in pixels: size of every registered image.
        raw_size: (W_raw, H_raw) in pixels: the size ``apply`` requires (the calibration's
            width and height; the reference size for identity).
        is_identity: True for an uncalibrated camera.
        map_x, map_y: (H_ref, W_ref) float32, read-only: the raw pixel coordinates (x right,
            y down, pixel centres at integers) that each reference pixel samples; None for
            identity.
        valid_mask: (H_ref, W_ref) bool, read-only: reference pixels that the camera actually
            sees, i.e. whose bilinear sample lies inside the raw image (up to
            ``VALID_MASK_TOLERANCE`` of its weight, i.e. at most ~1e-3 px beyond the edge
            pixel centres; ``apply`` never blends a valid pixel with the 0 border, whatever
            the dtype). All True for identity.

    Raises:
        InputError: bad reference size; an uncalibrated calibration whose size differs from
            the reference size; a singular K, R or P[:, :3]; an unsupported distortion model
            or number of coefficients.
    """

    def __init__(self, calibration: CameraCalibration | None, reference_size: tuple[int, int]) -> None:
        if calibration is not None and not isinstance(calibration, CameraCalibration):
            raise InputError(f"calibration must be a CameraCalibration or None, got "
                             f"{type(calibration).__name__}")
        self.calibration = calibration
        self.reference_size = _size(reference_size, "reference size")
        w_ref, h_ref = self.reference_size
        self.is_identity = calibration is None or not calibration.calibrated
        self.map_x: np.ndarray | None = None
        self.map_y: np.ndarray | None = None
        if self.is_identity:
            if calibration is not None and (calibration.width, calibration.height) != self.reference_size:
                raise InputError(
                    f"uncalibrated {_camera(calibration)} is {calibration.width}x{calibration.height} "
                    f"but the reference grid is {w_ref}x{h_ref}: identity mapping needs equal sizes "
                    "(calibrate the camera or resize its images)")
            self.raw_size = self.reference_size
            mask = np.ones((h_ref, w_ref), dtype=bool)
        else:
            assert calibration is not None
            self.raw_size = _size((calibration.width, calibration.height), "calibration image size")
            map_x, map_y = _build_maps(calibration, self.reference_size)
            for m in (map_x, map_y):
                m.setflags(write=False)
            self.map_x, self.map_y = map_x, map_y
            ones = np.ones((self.raw_size[1], self.raw_size[0]), dtype=np.float32)
            weight = cv2.remap(ones, map_x, map_y, cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            mask = weight >= 1.0 - VALID_MASK_TOLERANCE
        mask.setflags(write=False)
        self.valid_mask: np.ndarray = mask

    @property
    def valid_fraction(self) -> float:
        """Fraction of reference pixels inside ``valid_mask``, in [0, 1]."""
        return float(self.valid_mask.mean())

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Register a raw image into the reference grid.

        Args:
            image: (H_raw, W_raw) or (H_raw, W_raw, C) uint8, uint16, float32 or float64,
                of size ``raw_size``; values in any units (they are interpolated linearly).

        Returns:
            (H_ref, W_ref) or (H_ref, W_ref, C), same dtype (integers rounded). Bilinear
            interpolation; pixels outside ``valid_mask`` are 0 or blended with 0. For an
            identity registration the input array itself is returned (not copied).

        Raises:
            InputError: not an array, wrong dimensions, dtype or size.
        """
        if not isinstance(image, np.ndarray):
            raise InputError(f"image must be a numpy array, got {type(image).__name__}")
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] == 0):
            raise InputError(f"image must be (H, W) or (H, W, C) with C >= 1, got shape {image.shape}")
        if image.dtype not in _DTYPES:
            raise InputError(f"image dtype {image.dtype} not supported (uint8, uint16, float32, float64)")
        w_raw, h_raw = self.raw_size
        if image.shape[:2] != (h_raw, w_raw):
            what = ("the reference size (uncalibrated camera: identity mapping)" if self.is_identity
                    else f"the calibration's width/height of {_camera(self.calibration)}")  # type: ignore[arg-type]
            raise InputError(f"image is {image.shape[1]}x{image.shape[0]} but must be "
                             f"{w_raw}x{h_raw}, {what}")
        if self.is_identity:
            return image
        out = cv2.remap(np.ascontiguousarray(image), self.map_x, self.map_y, cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        if image.ndim == 3 and out.ndim == 2:
            out = out[:, :, np.newaxis]
        return out

    __call__ = apply

    def __repr__(self) -> str:
        kind = "identity" if self.is_identity else f"raw {self.raw_size[0]}x{self.raw_size[1]}"
        return f"Registration({kind} -> reference {self.reference_size[0]}x{self.reference_size[1]})"


def _same(a: CameraCalibration | None, b: CameraCalibration | None) -> bool:
    if a is None or b is None:
        return a is b
    return a is b or a == b


class RegistrationCache:
    """The Registration of one camera, rebuilt only when its calibration or the reference size changes.

    Calibrations are compared by value (``CameraCalibration.__eq__``), so a node may build a
    new CameraCalibration from every CameraInfo message. Thread-safe. A failed build raises
    and leaves the previous registration in place (it is retried on the next call).

    Attributes:
        builds: number of Registrations built so far (the first one included).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[CameraCalibration | None, tuple[int, int]] | None = None
        self._registration: Registration | None = None
        self.builds = 0

    @property
    def rebuilds(self) -> int:
        """Number of builds caused by a change (builds after the first)."""
        return max(self.builds - 1, 0)

    @property
    def current(self) -> Registration | None:
        """The registration last returned, or None before the first ``get``."""
        return self._registration

    def get(self, calibration: CameraCalibration | None, reference_size: tuple[int, int]) -> Registration:
        """The Registration for ``calibration`` into the ``reference_size`` (width, height) grid.

        Returns the same object as the previous call while both are unchanged (by value).
        """
        size = _size(reference_size, "reference size")
        with self._lock:
            if (self._registration is not None and self._key is not None
                    and self._key[1] == size and _same(self._key[0], calibration)):
                return self._registration
            registration = Registration(calibration, size)
            self._key = (calibration, size)
            self._registration = registration
            self.builds += 1
            return registration

    def clear(self) -> None:
        """Forget the current registration (the build counter is kept)."""
        with self._lock:
            self._key = None
            self._registration = None
