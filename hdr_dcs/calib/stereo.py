"""Stereo calibration of the rig from views of a checkerboard (or ChArUco board) seen by both cameras.

Pipeline (``StereoCalibrator``, or ``calibrate_stereo`` for a list of image pairs):

1. detect the board's inner corners in every image (``detect_board``:
   ``cv2.findChessboardCornersSB``, falling back to ``cv2.findChessboardCorners`` +
   ``cv2.cornerSubPix``; ``cv2.aruco.CharucoDetector`` for ChArUco boards);
2. calibrate each camera's intrinsics (``cv2.calibrateCamera``) from every view in which
   that camera sees the board, whether or not the other camera does;
3. ``cv2.stereoCalibrate`` with those intrinsics fixed, from the pairs in which both
   cameras see the (whole) board: the rotation R_s and translation T_s (metres) with
   ``X_anchor = R_s @ X_reference + T_s``;
4. the two CameraInfos of SPEC.md (``registration_calibrations``).

Conventions (SPEC.md "Calibration", ``core/registration.py``, ``sim/rig.py``):

- pixel coordinates: x right, y down, pixel centres at integers (OpenCV's);
- reference camera: R = I, P = [K_ref | 0]: registration only undistorts;
- anchor camera: R = R_s^T (rotates anchor-camera rays into the reference orientation,
  ``ray_ref = R @ ray_anchor``, the convention ``core.registration`` documents), and
  P = [K_ref with its principal point shifted by (s_x, s_y) | 0], where
  ``s = (fx_ref * C_x / Z, fy_ref * C_y / Z)``, C = -R_s^T T_s the anchor camera's centre in
  the reference camera frame (metres) and Z the working distance (metres; infinity, the
  default, gives s = 0). Derivation: a point at depth Z seen by the reference at pixel u is
  seen by the (reference-oriented) anchor in direction ``X - C``, i.e. at
  ``u - f C / Z``; registration maps reference pixel u to anchor ray
  ``P3^-1 [u, v, 1] = ((u - cx - s_x) / fx, ...)``, so s = f C / Z makes the two agree.
  An anchor camera to the right of the reference (C_x > 0) sees a near object further
  left, and gets s_x > 0, as ``sim.rig.calibrations`` does (its ``baseline_px`` is s).
  Only the depth component C_z is neglected: it scales the anchor's view by
  Z / (Z - C_z), a relative error below 1e-3 when the cameras sit side by side.
  P's fourth column stays 0 (registration does not use it); the baseline is in the report.

Every failure is an ``InputError`` with a one-line message.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError

__all__ = [
    "ARUCO_DICTIONARIES",
    "Board",
    "CameraFit",
    "Detection",
    "StereoCalibrationResult",
    "StereoCalibrator",
    "StereoOptions",
    "ViewRecord",
    "calibrate_stereo",
    "detect_board",
    "registration_calibrations",
    "to_gray8",
]

#: Names ``Board.dictionary`` accepts (``cv2.aruco.DICT_*``), when cv2.aruco exists.
ARUCO_DICTIONARIES: tuple[str, ...] = tuple(
    sorted(n for n in dir(getattr(cv2, "aruco", object())) if n.startswith("DICT_")))

#: Rejection reasons recorded in ``ViewRecord.status`` (and counted in the report).
USED = "used"
NOT_IN_EITHER = "board not found in either image"
NOT_IN_REFERENCE = "board not found in the reference image"
NOT_IN_ANCHOR = "board not found in the anchor image"
TOO_FEW_COMMON = "too few corners seen by both cameras"
THINNED = "thinned out (more usable views than max_views)"

_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
_SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 40, 1e-3)
_K_COEFFICIENTS = {2: cv2.CALIB_FIX_K3, 3: 0, 6: cv2.CALIB_RATIONAL_MODEL}


# --- the board ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Board:
    """A planar calibration target.

    Attributes:
        cols, rows: inner corners along a row and along a column (a board of 10 x 7 squares
            has 9 x 6 inner corners; for ChArUco too, so its squares are (cols+1) x (rows+1)).
        square_m: side of one square, metres (sets the unit of the baseline).
        marker_m: ChArUco: side of the ArUco markers, metres; None: a plain checkerboard.
        dictionary: ChArUco: the ``cv2.aruco`` dictionary name, e.g. "DICT_5X5_100".
        legacy_pattern: ChArUco: OpenCV < 4.6 layout of boards with an even number of rows.
    """

    cols: int
    rows: int
    square_m: float
    marker_m: float | None = None
    dictionary: str = "DICT_5X5_100"
    legacy_pattern: bool = False

    def __post_init__(self) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.cols, self.rows)) \
                or self.cols < 3 or self.rows < 3:
            raise InputError(f"board needs at least 3x3 inner corners, got {self.cols}x{self.rows}")
        if not (math.isfinite(self.square_m) and self.square_m > 0):
            raise InputError(f"board square size must be a positive number of metres, got {self.square_m}")
        if self.marker_m is not None:
            if not hasattr(cv2, "aruco"):
                raise InputError("ChArUco boards need cv2.aruco, which this OpenCV build lacks")
            if not (math.isfinite(self.marker_m) and 0 < self.marker_m < self.square_m):
                raise InputError(f"ChArUco marker size must be in (0, square size {self.square_m}) m, "
                                 f"got {self.marker_m}")
            if self.dictionary not in ARUCO_DICTIONARIES:
                raise InputError(f"unknown ArUco dictionary {self.dictionary!r}; one of "
                                 f"{', '.join(ARUCO_DICTIONARIES)}")
            size = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary)).bytesList.shape[0]
            needed = (self.cols + 1) * (self.rows + 1) // 2
            if size < needed:
                raise InputError(f"{self.dictionary} has {size} markers but a "
                                 f"{self.cols + 1}x{self.rows + 1} ChArUco board needs {needed}")

    @property
    def is_charuco(self) -> bool:
        return self.marker_m is not None

    @property
    def corner_count(self) -> int:
        return self.cols * self.rows

    def object_points(self) -> np.ndarray:
        """(rows * cols, 3) float32 corner positions on the board plane (z = 0), metres,
        row by row; index i is the corner id ``Detection.ids`` refers to."""
        if self.is_charuco:
            return np.asarray(_charuco_board(self).getChessboardCorners(), dtype=np.float32).reshape(-1, 3)
        j, i = np.mgrid[0:self.rows, 0:self.cols]
        pts = np.stack([i.ravel(), j.ravel(), np.zeros(i.size)], axis=1) * self.square_m
        return pts.astype(np.float32)

    def describe(self) -> str:
        if self.is_charuco:
            return (f"ChArUco {self.cols + 1}x{self.rows + 1} squares of {self.square_m * 1e3:g} mm, "
                    f"markers {self.marker_m * 1e3:g} mm {self.dictionary}")  # type: ignore[operator]
        return f"checkerboard {self.cols}x{self.rows} inner corners, squares of {self.square_m * 1e3:g} mm"


@functools.cache
def _charuco_board(board: Board) -> Any:
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, board.dictionary))
    b = cv2.aruco.CharucoBoard((board.cols + 1, board.rows + 1), board.square_m, board.marker_m, dictionary)
    b.setLegacyPattern(board.legacy_pattern)
    return b


@functools.cache
def _charuco_detector(board: Board) -> Any:
    return cv2.aruco.CharucoDetector(_charuco_board(board))


# --- detection ----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Detection:
    """Board corners found in one image.

    Attributes:
        corners: (N, 2) float32 pixel coordinates (x right, y down, pixel centres at integers).
        ids: (N,) int32 corner ids, indices into ``Board.object_points()``; all of them, in
            order, for a checkerboard.
    """

    corners: np.ndarray
    ids: np.ndarray


def to_gray8(image: np.ndarray) -> np.ndarray:
    """An image as (H, W) uint8 grey for corner detection.

    Args:
        image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8, uint16 or float. Colour is
            averaged with BGR luma weights (the channel order hardly matters for a black and
            white board); alpha is dropped. uint16 and float images are stretched min..max to
            0..255: detection only needs contrast, and dim 12-bit codes in 16 bits stay usable.

    Raises:
        InputError: another shape or dtype, or NaN / Inf values.
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0 \
            or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        shape = getattr(image, "shape", type(image).__name__)
        raise InputError(f"image must be (H, W) or (H, W, 1|3|4), got {shape}")
    if image.dtype not in (np.uint8, np.uint16) and image.dtype.kind != "f":
        raise InputError(f"image dtype {image.dtype} not supported (uint8, uint16, float)")
    if image.dtype == np.uint8:
        if image.ndim == 3:
            image = image[:, :, 0] if image.shape[2] == 1 else \
                cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_BGR2GRAY)
        return np.ascontiguousarray(image)
    values = image.astype(np.float32)
    if values.ndim == 3:
        bgr_luma = np.float32([0.114, 0.587, 0.299])
        values = values[:, :, 0] if values.shape[2] == 1 else values[:, :, :3] @ bgr_luma
    if not np.all(np.isfinite(values)):
        raise InputError("image contains NaN or Inf")
    lo, hi = float(values.min()), float(values.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((values - lo) * scale), 0, 255).astype(np.uint8)


def _subpix_window(corners: np.ndarray, cols: int) -> int:
    """Half side of the cornerSubPix window: ~40 % of the smallest corner spacing, 2..11 px."""
    grid = corners.reshape(-1, cols, 2)
    spacing = min(float(np.min(np.linalg.norm(np.diff(grid, axis=1), axis=2))),
                  float(np.min(np.linalg.norm(np.diff(grid, axis=0), axis=2))) if grid.shape[0] > 1 else 1e9)
    return int(np.clip(round(0.4 * spacing), 2, 11))


def detect_board(image: np.ndarray, board: Board) -> Detection | None:
    """Find ``board``'s inner corners in ``image``.

    A checkerboard is found only whole (all ``cols * rows`` corners); a ChArUco board
    may be partly visible (the corners whose neighbouring markers were decoded).

    Args:
        image: see ``to_gray8``.

    Returns:
        The corners, or None when the board is not found.
    """
    gray = to_gray8(image)
    if board.is_charuco:
        corners, ids, _, _ = _charuco_detector(board).detectBoard(gray)
        if ids is None or len(ids) == 0:
            return None
        order = np.argsort(ids.ravel())
        return Detection(corners.reshape(-1, 2)[order].astype(np.float32),
                         ids.ravel()[order].astype(np.int32))
    size = (board.cols, board.rows)
    found, corners = cv2.findChessboardCornersSB(gray, size, flags=cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not found:
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
        found, corners = cv2.findChessboardCorners(gray, size, flags=flags)
        if not found:
            return None
    # Both detectors' corners gain from a gradient-based refinement (about halves the error
    # of findChessboardCornersSB's on rendered boards).
    win = _subpix_window(corners.reshape(-1, 2), board.cols)
    corners = cv2.cornerSubPix(gray, np.ascontiguousarray(corners, np.float32), (win, win), (-1, -1),
                               _SUBPIX_CRITERIA)
    return Detection(corners.reshape(-1, 2).astype(np.float32), np.arange(board.corner_count, dtype=np.int32))


def _grid_symmetries(cols: int, rows: int) -> list[np.ndarray]:
    """Index permutations of a rows x cols corner grid that map it onto itself (flips, and
    for a square grid transposes): every labelling a detector may choose for a planar board."""
    idx = np.arange(rows * cols).reshape(rows, cols)
    base = [idx, idx[::-1, :], idx[:, ::-1], idx[::-1, ::-1]]
    if rows == cols:
        base += [g.T for g in base]
    return [g.ravel() for g in base]


def _match_labelling(reference: np.ndarray, anchor: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """``anchor`` (N, 2) corners relabelled to agree with ``reference``'s labelling.

    A checkerboard's grid is symmetric, so each camera's detector may number its corners
    from a different end; stereo calibration needs both numbered alike. The two cameras are
    nearly parallel, so the right labelling is the one whose centred grid shape is closest
    to the reference's.
    """
    ref = reference - reference.mean(axis=0)
    best, best_cost = anchor, math.inf
    for perm in _grid_symmetries(cols, rows):
        candidate = anchor[perm]
        cost = float(np.sum((candidate - candidate.mean(axis=0) - ref) ** 2))
        if cost < best_cost:
            best, best_cost = candidate, cost
    return best


# --- results ------------------------------------------------------------------------------

@dataclass(frozen=True)
class StereoOptions:
    """How views are chosen and what is estimated.

    Attributes:
        min_views: fewest pairs in which both cameras see the board (whole, for a
            checkerboard) that calibration accepts.
        max_views: use at most this many such pairs (evenly spread over the sequence) and
            at most this many views per camera for its intrinsics; None: all.
        k_coefficients: radial distortion terms: 2 (k1, k2; plus p1, p2; k3 fixed at 0, the
            ROS camera_calibration default), 3 (k1..k3), 6 (rational model, 8 coefficients,
            distortion_model "rational_polynomial").
        working_distance_m: distance (metres) at which the anchor registers exactly onto the
            reference; inf: distant scenes (no principal point shift).
        min_charuco_corners: ChArUco: fewest corners a view needs (in one camera for
            intrinsics; seen by both cameras for stereo); None: half the board, at least 6.
        refine_intrinsics: after the stereo calibration with fixed intrinsics, refine both
            cameras' intrinsics and the pair together (stereo views only). On rendered
            320x240 views it lowered the mean registration error in 7 of 8 trials, by up to 6x.
    """

    min_views: int = 8
    max_views: int | None = 60
    k_coefficients: int = 2
    working_distance_m: float = math.inf
    min_charuco_corners: int | None = None
    refine_intrinsics: bool = False

    def __post_init__(self) -> None:
        if self.min_views < 3:
            raise InputError(f"min_views must be at least 3, got {self.min_views}")
        if self.max_views is not None and self.max_views < self.min_views:
            raise InputError(f"max_views ({self.max_views}) must not be below min_views ({self.min_views})")
        if self.k_coefficients not in _K_COEFFICIENTS:
            raise InputError(f"k_coefficients must be 2, 3 or 6, got {self.k_coefficients}")
        if math.isnan(self.working_distance_m) or self.working_distance_m <= 0:
            raise InputError(f"working distance must be a positive number of metres or inf, "
                             f"got {self.working_distance_m}")
        if self.min_charuco_corners is not None and self.min_charuco_corners < 6:
            raise InputError(f"min_charuco_corners must be at least 6, got {self.min_charuco_corners}")


@dataclass(frozen=True)
class ViewRecord:
    """What became of one image pair.

    Attributes:
        name: the pair's name (file name, bag stamp...).
        reference_found, anchor_found: whether each camera's image showed the board.
        status: ``"used"`` (a stereo view) or the reason it is not one.
        reference_rms_px, anchor_rms_px: the view's RMS reprojection error in each camera's
            intrinsic calibration (None when the camera's view was not used).
        stereo_rms_px: the view's RMS reprojection error over both cameras in the stereo
            calibration (None unless used).
    """

    name: str
    reference_found: bool
    anchor_found: bool
    status: str
    reference_rms_px: float | None = None
    anchor_rms_px: float | None = None
    stereo_rms_px: float | None = None


@dataclass(frozen=True, eq=False)
class CameraFit:
    """One camera's intrinsic calibration.

    Attributes:
        size_wh: image size (width, height), pixels.
        k: (3, 3) camera matrix, pixels.
        d: (5,) or (8,) distortion coefficients (k1, k2, p1, p2, k3[, k4, k5, k6]).
        rms_px: RMS reprojection error over all its views, pixels.
        views: number of views used.
        std_fx_fy_cx_cy_px: estimated standard deviations of fx, fy, cx, cy, pixels.
        refined_in_stereo: k and d were refined jointly with the other camera
            (``StereoOptions.refine_intrinsics``); rms_px, views and the deviations then
            describe the single-camera calibration the refinement started from.
    """

    size_wh: tuple[int, int]
    k: np.ndarray
    d: np.ndarray
    rms_px: float
    views: int
    std_fx_fy_cx_cy_px: tuple[float, float, float, float]
    refined_in_stereo: bool = False

    def summary(self) -> dict[str, Any]:
        """JSON-ready description."""
        k = self.k
        return {"width": self.size_wh[0], "height": self.size_wh[1],
                "fx": float(k[0, 0]), "fy": float(k[1, 1]), "cx": float(k[0, 2]), "cy": float(k[1, 2]),
                "d": [float(v) for v in self.d], "std_fx_fy_cx_cy_px": list(self.std_fx_fy_cx_cy_px),
                "rms_px": self.rms_px, "views": self.views, "refined_in_stereo": self.refined_in_stereo}


@dataclass(frozen=True, eq=False)
class StereoCalibrationResult:
    """The calibrated pair.

    Attributes:
        reference, anchor: the CameraInfos (SPEC.md semantics, module docstring).
        reference_fit, anchor_fit: each camera's intrinsic calibration.
        rotation_anchor_from_reference: (3, 3) R_s, ``X_anchor = R_s @ X_ref + T_s``.
        translation_anchor_from_reference_m: (3,) T_s, metres.
        stereo_rms_px: RMS reprojection error of the stereo calibration (both cameras), px.
        working_distance_m: the distance the anchor's P registers at (inf: distant scenes).
        board: the board.
        views: every pair offered, in order.
    """

    reference: CameraCalibration
    anchor: CameraCalibration
    reference_fit: CameraFit
    anchor_fit: CameraFit
    rotation_anchor_from_reference: np.ndarray
    translation_anchor_from_reference_m: np.ndarray
    stereo_rms_px: float
    working_distance_m: float
    board: Board
    views: tuple[ViewRecord, ...] = field(default_factory=tuple)

    @property
    def anchor_centre_m(self) -> np.ndarray:
        """(3,) the anchor camera's centre in the reference camera frame, metres (-R_s^T T_s)."""
        return -self.rotation_anchor_from_reference.T @ self.translation_anchor_from_reference_m

    @property
    def baseline_m(self) -> float:
        """Distance between the two camera centres, metres."""
        return float(np.linalg.norm(self.translation_anchor_from_reference_m))

    @property
    def rotation_deg(self) -> float:
        """Angle of the rotation between the two cameras, degrees."""
        rvec, _ = cv2.Rodrigues(self.rotation_anchor_from_reference)
        return float(np.degrees(np.linalg.norm(rvec)))

    @property
    def views_used(self) -> int:
        return sum(v.status == USED for v in self.views)

    @property
    def rejected(self) -> dict[str, int]:
        """{reason: number of pairs} of the pairs not used for the stereo calibration."""
        out: dict[str, int] = {}
        for v in self.views:
            if v.status != USED:
                out[v.status] = out.get(v.status, 0) + 1
        return out

    def report(self) -> dict[str, Any]:
        """JSON-ready summary: board, intrinsics, extrinsics, errors, views."""
        rvec, _ = cv2.Rodrigues(self.rotation_anchor_from_reference)
        shift = self.anchor.p[:2, 2] - self.reference.k[:2, 2]
        return {
            "board": self.board.describe(),
            "working_distance_m": None if math.isinf(self.working_distance_m) else self.working_distance_m,
            "reference": self.reference_fit.summary(),
            "anchor": self.anchor_fit.summary(),
            "stereo": {
                "rms_px": self.stereo_rms_px,
                "baseline_m": self.baseline_m,
                "anchor_centre_in_reference_m": [float(v) for v in self.anchor_centre_m],
                "rotation_deg": self.rotation_deg,
                "rotation_vector_anchor_from_reference": [float(v) for v in rvec.ravel()],
                "translation_anchor_from_reference_m":
                    [float(v) for v in self.translation_anchor_from_reference_m],
                "principal_point_shift_px": [float(v) for v in shift],
            },
            "views": {"offered": len(self.views), "used": self.views_used, "rejected": self.rejected,
                      "per_view": [asdict(view) for view in self.views]},
        }


def registration_calibrations(reference: CameraFit, anchor: CameraFit,
                              rotation_anchor_from_reference: np.ndarray,
                              translation_anchor_from_reference_m: np.ndarray,
                              working_distance_m: float = math.inf
                              ) -> tuple[CameraCalibration, CameraCalibration]:
    """The reference and anchor CameraInfos of SPEC.md from a calibrated pair.

    Args:
        reference, anchor: the cameras' intrinsics.
        rotation_anchor_from_reference: (3, 3) R_s with ``X_anchor = R_s @ X_ref + T_s``.
        translation_anchor_from_reference_m: (3,) T_s, metres.
        working_distance_m: depth (metres, reference frame) registered exactly; inf: none.

    Returns:
        (reference, anchor): reference R = I, P = [K_ref | 0]; anchor R = R_s^T, P =
        [K_ref with principal point + f * C_xy / Z | 0] (module docstring).
    """
    if math.isnan(working_distance_m) or working_distance_m <= 0:
        raise InputError(f"working distance must be a positive number of metres or inf, "
                         f"got {working_distance_m}")
    r_s = np.asarray(rotation_anchor_from_reference, dtype=np.float64).reshape(3, 3)
    t_s = np.asarray(translation_anchor_from_reference_m, dtype=np.float64).reshape(3)
    k_ref = reference.k
    p_ref = np.hstack([k_ref, np.zeros((3, 1))])
    centre = -r_s.T @ t_s
    p_anchor = p_ref.copy()
    if math.isfinite(working_distance_m):
        p_anchor[0, 2] += k_ref[0, 0] * centre[0] / working_distance_m
        p_anchor[1, 2] += k_ref[1, 1] * centre[1] / working_distance_m

    def model(d: np.ndarray) -> str:
        return "rational_polynomial" if d.size == 8 else "plumb_bob"

    ref = CameraCalibration(reference.size_wh[0], reference.size_wh[1], k_ref, reference.d, np.eye(3), p_ref,
                            model(reference.d), "reference")
    anc = CameraCalibration(anchor.size_wh[0], anchor.size_wh[1], anchor.k, anchor.d, r_s.T, p_anchor,
                            model(anchor.d), "anchor")
    return ref, anc


# --- the calibrator -----------------------------------------------------------------------

@dataclass
class _View:
    name: str
    reference: Detection | None
    anchor: Detection | None
    status: str = ""
    common_ids: np.ndarray | None = None  # stereo views: ids both cameras saw


def _evenly(items: list, limit: int | None) -> tuple[list, list]:
    """(kept, dropped): at most ``limit`` items spread evenly over ``items``."""
    if limit is None or len(items) <= limit:
        return items, []
    keep = set(np.unique(np.round(np.linspace(0, len(items) - 1, limit)).astype(int)).tolist())
    return [x for i, x in enumerate(items) if i in keep], [x for i, x in enumerate(items) if i not in keep]


def _stereo_calibrate(obj: list[np.ndarray], img_ref: list[np.ndarray], img_anc: list[np.ndarray],
                      ref_fit: CameraFit, anc_fit: CameraFit, flags: int, r_s: np.ndarray | None = None,
                      t_s: np.ndarray | None = None
                      ) -> tuple[float, CameraFit, CameraFit, np.ndarray, np.ndarray, np.ndarray]:
    """One cv2.stereoCalibrate run from (N_i, 3) object and (N_i, 1, 2) image points per view.

    Returns:
        (RMS px, reference fit, anchor fit, R_s (3, 3), T_s (3,) m, per-view RMS (N, 2) px per
        camera); the fits are the given ones unless ``flags`` lets the intrinsics change.
    """
    k1, d1, k2, d2 = ref_fit.k.copy(), ref_fit.d.copy(), anc_fit.k.copy(), anc_fit.d.copy()
    r0 = np.eye(3) if r_s is None else r_s.copy()
    t0 = np.zeros((3, 1)) if t_s is None else t_s.reshape(3, 1).copy()
    try:
        rms, k1, d1, k2, d2, r, t, *_, errors = cv2.stereoCalibrateExtended(
            obj, img_ref, img_anc, k1, d1, k2, d2, ref_fit.size_wh, r0, t0, flags=flags, criteria=_CRITERIA)
    except cv2.error as exc:
        raise InputError(f"stereo calibration failed: {' '.join(str(exc).split())}") from exc
    if not flags & cv2.CALIB_FIX_INTRINSIC:
        ref_fit, anc_fit = (replace(fit, k=np.asarray(k, np.float64), refined_in_stereo=True,
                                    d=np.asarray(d, np.float64).ravel()[:fit.d.size])
                            for fit, k, d in ((ref_fit, k1, d1), (anc_fit, k2, d2)))
    return (float(rms), ref_fit, anc_fit, np.asarray(r, np.float64), np.asarray(t, np.float64).ravel(),
            np.asarray(errors, np.float64).reshape(-1, 2))


class StereoCalibrator:
    """Collects image pairs, then calibrates the rig.

    ``add_pair`` detects the board and keeps only the corners (memory stays small);
    ``calibrate`` runs the calibration. Both cameras' images keep one size each.

    Args:
        board: the target.
        options: view selection and model.
    """

    def __init__(self, board: Board, options: StereoOptions | None = None) -> None:
        self.board = board
        self.options = options or StereoOptions()
        self._views: list[_View] = []
        self._sizes: dict[str, tuple[int, int]] = {}
        self._min_corners = (self.options.min_charuco_corners or max(6, board.corner_count // 2)) \
            if board.is_charuco else board.corner_count

    @property
    def pairs(self) -> int:
        """Number of pairs offered so far."""
        return len(self._views)

    @property
    def usable_views(self) -> int:
        """Pairs so far in which both cameras see the board (enough of a ChArUco board)."""
        return sum(v.status == USED for v in self._views)

    def _check_size(self, camera: str, image: np.ndarray, name: str) -> tuple[int, int]:
        size = (int(image.shape[1]), int(image.shape[0]))
        first = self._sizes.setdefault(camera, size)
        if size != first:
            raise InputError(f"{name}: the {camera} image is {size[0]}x{size[1]} but earlier ones are "
                             f"{first[0]}x{first[1]}; all images of a camera must have one size")
        return size

    def add_pair(self, name: str, reference_image: np.ndarray | None, anchor_image: np.ndarray | None) -> str:
        """Detect the board in one pair of images (see ``to_gray8`` for the layouts).

        Args:
            name: how the pair is named in the report.
            reference_image, anchor_image: the two images, or None for a missing one.

        Returns:
            The pair's status: "used" or why it cannot be a stereo view (it may still serve
            one camera's intrinsics).
        Raises:
            InputError: an image of another size than the camera's earlier ones, or a bad layout.
        """
        detections: list[Detection | None] = []
        for camera, image in (("reference", reference_image), ("anchor", anchor_image)):
            if image is None:
                detections.append(None)
                continue
            self._check_size(camera, image, name)
            detections.append(detect_board(image, self.board))
        return self.add_detections(name, detections[0], detections[1])

    def add_detections(self, name: str, reference: Detection | None, anchor: Detection | None) -> str:
        """Add one pair's corners found elsewhere (``detect_board``); returns its status.

        Image sizes must have been set by ``add_pair`` or ``set_image_size``.
        """
        ok = [d if d is not None and len(d.ids) >= self._min_corners else None for d in (reference, anchor)]
        view = _View(name, ok[0], ok[1])
        if ok[0] is None or ok[1] is None:
            view.status = NOT_IN_EITHER if ok[0] is None and ok[1] is None else \
                NOT_IN_REFERENCE if ok[0] is None else NOT_IN_ANCHOR
        elif self.board.is_charuco:
            common = np.intersect1d(ok[0].ids, ok[1].ids)
            view.status = USED if len(common) >= self._min_corners else TOO_FEW_COMMON
            view.common_ids = common
        else:
            relabelled = _match_labelling(ok[0].corners, ok[1].corners, self.board.cols, self.board.rows)
            view.anchor = Detection(relabelled, ok[1].ids)
            view.common_ids = ok[0].ids
            view.status = USED
        self._views.append(view)
        return view.status

    def set_image_size(self, camera: str, size_wh: tuple[int, int]) -> None:
        """Declare a camera's image size (width, height) when using ``add_detections`` alone."""
        if camera not in ("reference", "anchor"):
            raise InputError(f"camera must be 'reference' or 'anchor', got {camera!r}")
        self._sizes[camera] = (int(size_wh[0]), int(size_wh[1]))

    def reject(self, name: str, reason: str) -> None:
        """Record a pair that could not be formed (no partner image, unreadable file...)."""
        self._views.append(_View(name, None, None, reason))

    def _not_enough(self) -> InputError:
        n, need = self.usable_views, self.options.min_views
        what = "both cameras see the whole board" if not self.board.is_charuco else \
            f"both cameras see at least {self._min_corners} corners"
        reasons = {}
        for v in self._views:
            if v.status != USED:
                reasons[v.status] = reasons.get(v.status, 0) + 1
        why = "; ".join(f"{c} {r}" for r, c in sorted(reasons.items(), key=lambda x: -x[1]))
        total = len(self._views)
        return InputError(f"found {n} usable view{'s' if n != 1 else ''} ({what}) among {total} "
                          f"image pair{'s' if total != 1 else ''}; calibration needs at least {need}: "
                          f"capture {need - n} more" + (f" (rejected: {why})" if why else ""))

    def _fit_camera(self, camera: str, detections: list[Detection]) -> tuple[CameraFit, list[float]]:
        """cv2.calibrateCamera from one camera's views: its fit and each view's RMS error, px."""
        obj_all = self.board.object_points()
        obj = [obj_all[d.ids] for d in detections]
        img = [d.corners.reshape(-1, 1, 2) for d in detections]
        size = self._sizes.get(camera)
        if size is None:
            raise InputError(f"the {camera} image size is unknown: call set_image_size before add_detections")
        flags = _K_COEFFICIENTS[self.options.k_coefficients]
        try:
            rms, k, d, _, _, std, _, per_view = cv2.calibrateCameraExtended(
                obj, img, size, None, None, flags=flags, criteria=_CRITERIA)
        except cv2.error as exc:
            raise InputError(f"{camera} camera calibration failed: {' '.join(str(exc).split())}") from exc
        n_d = 8 if self.options.k_coefficients == 6 else 5
        std4 = tuple(float(s) for s in np.asarray(std).ravel()[:4])
        fit = CameraFit(size, np.asarray(k, np.float64), np.asarray(d, np.float64).ravel()[:n_d], float(rms),
                        len(detections), std4)  # type: ignore[arg-type]
        return fit, [float(e) for e in np.asarray(per_view).ravel()]

    def calibrate(self) -> StereoCalibrationResult:
        """Calibrate both cameras, then the pair.

        Raises:
            InputError: fewer than ``options.min_views`` usable pairs (the message says how
                many were found and how many more are needed), or OpenCV failing.
        """
        if self.usable_views < self.options.min_views:
            raise self._not_enough()
        for v in self._views:  # a second call starts afresh
            if v.status == THINNED:
                v.status = USED
        stereo, thinned = _evenly([v for v in self._views if v.status == USED], self.options.max_views)
        for v in thinned:
            v.status = THINNED
        per_view: dict[int, dict[str, float]] = {id(v): {} for v in self._views}
        fits = {}
        for camera in ("reference", "anchor"):
            seen = [v for v in self._views if getattr(v, camera) is not None and v.status != THINNED]
            views, _ = _evenly(seen, self.options.max_views)
            fit, errors = self._fit_camera(camera, [getattr(v, camera) for v in views])
            fits[camera] = fit
            for v, e in zip(views, errors, strict=True):
                per_view[id(v)][f"{camera}_rms_px"] = e
        ref_fit, anc_fit = fits["reference"], fits["anchor"]

        obj_all = self.board.object_points()
        obj, img_ref, img_anc = [], [], []
        for v in stereo:
            assert v.reference is not None and v.anchor is not None and v.common_ids is not None
            obj.append(obj_all[v.common_ids])
            for det, out in ((v.reference, img_ref), (v.anchor, img_anc)):
                lookup = dict(zip(det.ids.tolist(), range(len(det.ids)), strict=True))
                out.append(det.corners[[lookup[i] for i in v.common_ids.tolist()]].reshape(-1, 1, 2))
        model = cv2.CALIB_RATIONAL_MODEL if self.options.k_coefficients == 6 else 0
        rms, ref_fit, anc_fit, r_s, t_s, errors = _stereo_calibrate(obj, img_ref, img_anc, ref_fit, anc_fit,
                                                                    cv2.CALIB_FIX_INTRINSIC | model)
        if self.options.refine_intrinsics:
            # All of both cameras' parameters at once, from the fixed-intrinsics solution:
            # the rigid pair ties each view's two poses together, which pins the
            # registration-relevant parameters better than either camera's views alone.
            flags = cv2.CALIB_USE_INTRINSIC_GUESS | cv2.CALIB_USE_EXTRINSIC_GUESS | \
                _K_COEFFICIENTS[self.options.k_coefficients]
            rms, ref_fit, anc_fit, r_s, t_s, errors = _stereo_calibrate(
                obj, img_ref, img_anc, ref_fit, anc_fit, flags, r_s, t_s)
        for v, e in zip(stereo, errors, strict=True):
            per_view[id(v)]["stereo_rms_px"] = float(np.sqrt(np.mean(e ** 2)))
        ref_cal, anc_cal = registration_calibrations(ref_fit, anc_fit, r_s, t_s,
                                                     self.options.working_distance_m)
        records = tuple(ViewRecord(v.name, v.reference is not None, v.anchor is not None, v.status,
                                   **per_view[id(v)]) for v in self._views)
        return StereoCalibrationResult(ref_cal, anc_cal, ref_fit, anc_fit, r_s, t_s, float(rms),
                                       self.options.working_distance_m, self.board, records)


def calibrate_stereo(pairs: Iterable[tuple[str, np.ndarray | None, np.ndarray | None]], board: Board,
                     options: StereoOptions | None = None) -> StereoCalibrationResult:
    """Calibrate the rig from ``(name, reference_image, anchor_image)`` pairs (``StereoCalibrator``)."""
    calibrator = StereoCalibrator(board, options)
    for name, ref, anchor in pairs:
        calibrator.add_pair(name, ref, anchor)
    return calibrator.calibrate()
