"""Stereo calibration (``hdr_dcs.calib.stereo``, ``hdr-dcs calibrate stereo``) on rendered views.

A synthetic rig with known intrinsics (mild radial and tangential distortion), a 6 cm
baseline and a ~1.2 degree rotation between the cameras sees a checkerboard in 12 poses.
Images are rendered by inverse mapping: every pixel is split into 3x3 sub-pixel samples,
each sample's ray (the lens distortion inverted exactly) meets the board plane, the board
is shaded there and the samples averaged (anti-aliasing); then a slight blur and noise.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from hdr_dcs.calib.stereo import (
    Board,
    CameraFit,
    Detection,
    StereoCalibrationResult,
    StereoCalibrator,
    StereoOptions,
    calibrate_stereo,
    detect_board,
    registration_calibrations,
    to_gray8,
)
from hdr_dcs.cli.calibrate_stereo import pair_stamps
from hdr_dcs.cli.main import main as hdr_dcs
from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.registration import Registration
from hdr_dcs.io.bag import BagWriter
from hdr_dcs.io.calibration_yaml import load_calibration, save_calibration
from hdr_dcs.sim.rig import RigConfig, calibrations

W, H = 320, 240
SS = 3  # sub-pixel samples per side
BOARD = Board(9, 6, 0.025)
K_REF = np.array([[300.0, 0.0, 161.3], [0.0, 302.0, 118.7], [0.0, 0.0, 1.0]])
D_REF = np.array([-0.12, 0.06, 0.0008, -0.0006, 0.0])
K_ANC = np.array([[310.0, 0.0, 157.6], [0.0, 309.0, 121.4], [0.0, 0.0, 1.0]])
D_ANC = np.array([-0.08, 0.03, -0.0005, 0.0004, 0.0])
R_S = cv2.Rodrigues(np.array([0.008, -0.018, 0.006]))[0]  # X_anchor = R_S X_ref + T_S
CENTRE = np.array([0.06, 0.0015, 0.0005])  # anchor camera centre in the reference frame, m
T_S = -R_S @ CENTRE
N_VIEWS = 12
#: board-plane coordinates (x, y), metres, of each sub-pixel sample -> intensity in [0, 1]
Shader = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --- rendering ----------------------------------------------------------------------------

def undistort(k: np.ndarray, d: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (any shape) -> normalised undistorted (x, y) of plumb_bob (k1, k2, p1, p2, k3),
    by fixed-point iteration (converged to ~1e-14 px for this mild distortion)."""
    xd, yd = (u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1]
    k1, k2, p1, p2, k3 = d
    x, y = xd.copy(), yd.copy()
    for _ in range(30):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
        x, y = ((xd - 2 * p1 * x * y - p2 * (r2 + 2 * x * x)) / radial,
                (yd - p1 * (r2 + 2 * y * y) - 2 * p2 * x * y) / radial)
    return x, y


@functools.cache
def camera_rays(camera: str, ss: int = SS) -> np.ndarray:
    """(H, W, ss * ss, 3) rays (z = 1) of every sub-pixel sample, in the camera's frame."""
    k, d = (K_REF, D_REF) if camera == "reference" else (K_ANC, D_ANC)
    off = (np.arange(ss) + 0.5) / ss - 0.5
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    u = np.broadcast_to(u[:, :, None, None] + off[None, None, None, :], (H, W, ss, ss)).reshape(H, W, -1)
    v = np.broadcast_to(v[:, :, None, None] + off[None, None, :, None], (H, W, ss, ss)).reshape(H, W, -1)
    x, y = undistort(k, d, u, v)
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def checker(board: Board) -> Shader:
    """Shader of a checkerboard with a one-square white margin on a grey background:
    board-plane coordinates (metres, first inner corner at the origin) -> intensity in [0, 1]."""
    def shade(bx: np.ndarray, by: np.ndarray) -> np.ndarray:
        i, j = bx / board.square_m, by / board.square_m
        squares = np.where((np.floor(i) + np.floor(j)) % 2 == 0, 0.1, 0.9)
        inside = (i >= -1) & (i <= board.cols) & (j >= -1) & (j <= board.rows)
        margin = (i >= -2) & (i <= board.cols + 1) & (j >= -2) & (j <= board.rows + 1)
        return np.where(inside, squares, np.where(margin, 0.9, 0.45))
    return shade


def charuco(board: Board, px: int = 32) -> Shader:
    """Shader of a ChArUco board (OpenCV's own drawing, ``px`` pixels a square) with a
    one-square white margin; board coordinates as its object points (outer corner at 0)."""
    squares = (board.cols + 1, board.rows + 1)
    cv_board = cv2.aruco.CharucoBoard(squares, board.square_m, board.marker_m,
                                      cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, board.dictionary)))
    texture = cv_board.generateImage(((squares[0] + 2) * px, (squares[1] + 2) * px), marginSize=px)
    texture = texture.astype(np.float32) / 255 * 0.8 + 0.1

    def shade(bx: np.ndarray, by: np.ndarray) -> np.ndarray:
        mx = (bx / board.square_m + 1) * px - 0.5
        my = (by / board.square_m + 1) * px - 0.5
        out = np.empty(bx.shape, np.float32)
        for s in range(bx.shape[-1]):
            out[..., s] = cv2.remap(texture, mx[..., s].astype(np.float32), my[..., s].astype(np.float32),
                                    cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.45)
        return out
    return shade


def render_board(rays: np.ndarray, r_b: np.ndarray, t_b: np.ndarray, shade: Shader,
                 rng: np.random.Generator) -> np.ndarray:
    """(H, W) uint8 image of a board at pose (r_b, t_b) (``X_cam = r_b X_board + t_b``)."""
    normal = r_b[:, 2]
    depth = (normal @ t_b) / (rays @ normal)
    on_board = (rays * depth[..., None] - t_b) @ r_b  # board coordinates of each sample
    value = np.where(depth > 0, shade(on_board[..., 0], on_board[..., 1]), 0.45).mean(axis=-1)
    image = cv2.GaussianBlur(value * 255.0, (0, 0), 0.6) + rng.normal(0.0, 1.5, value.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def board_visible(k: np.ndarray, d: np.ndarray, r_b: np.ndarray, t_b: np.ndarray,
                  outline: np.ndarray) -> bool:
    """Whether all ``outline`` points (board frame, m) project at least 4 px inside the image."""
    p, _ = cv2.projectPoints(outline, cv2.Rodrigues(r_b)[0], t_b, k, d)
    return bool(np.all((p.reshape(-1, 2) > 4) & (p.reshape(-1, 2) < [W - 5, H - 5])))


def board_poses(n: int, board: Board, rng: np.random.Generator, tilt_deg: float = 40.0,
                distance_m: tuple[float, float] = (0.38, 0.6)) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` board poses (reference frame) in which both cameras see the whole board and margin."""
    s = board.square_m
    if board.is_charuco:
        lo, hi, middle = -s, (board.cols + 2) * s, np.array([board.cols + 1, board.rows + 1, 0]) * s / 2
        bottom = (board.rows + 2) * s
        outline = np.array([[lo, lo, 0], [hi, lo, 0], [lo, bottom, 0], [hi, bottom, 0]])
    else:
        lo, middle = -2 * s, np.array([board.cols - 1, board.rows - 1, 0]) * s / 2
        outline = np.array([[lo, lo, 0], [(board.cols + 1) * s, lo, 0], [lo, (board.rows + 1) * s, 0],
                            [(board.cols + 1) * s, (board.rows + 1) * s, 0]])
    poses = []
    while len(poses) < n:
        angles = np.radians([rng.uniform(-tilt_deg, tilt_deg), rng.uniform(-tilt_deg, tilt_deg),
                             rng.uniform(-25, 25)])
        r_b = cv2.Rodrigues(angles)[0]
        z = rng.uniform(*distance_m)
        centre = np.array([rng.uniform(-0.12, 0.12) * z / 0.5, rng.uniform(-0.08, 0.08) * z / 0.5, z])
        t_b = centre - r_b @ middle
        if board_visible(K_REF, D_REF, r_b, t_b, outline) and \
                board_visible(K_ANC, D_ANC, R_S @ r_b, R_S @ t_b + T_S, outline):
            poses.append((r_b, t_b))
    return poses


def render_pairs(poses: list[tuple[np.ndarray, np.ndarray]], shade: Shader, rng: np.random.Generator
                 ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """("000", reference image, anchor image) for every board pose (reference frame)."""
    return [(f"{i:03d}", render_board(camera_rays("reference"), r_b, t_b, shade, rng),
             render_board(camera_rays("anchor"), R_S @ r_b, R_S @ t_b + T_S, shade, rng))
            for i, (r_b, t_b) in enumerate(poses)]


def distant_scene(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth texture at infinity: intensity of the direction (x, y, 1) of the reference frame."""
    return (0.5 + 0.18 * np.sin(2 * np.pi * x / 0.11) * np.cos(2 * np.pi * y / 0.08)
            + 0.12 * np.sin(2 * np.pi * (x + 0.6 * y) / 0.05)
            + 0.15 * np.exp(-((x - 0.1) ** 2 + (y + 0.05) ** 2) / 0.002)).astype(np.float32)


def render_distant(camera: str) -> np.ndarray:
    """(H, W) float32 view of ``distant_scene`` by one camera (rotation matters, translation not)."""
    rays = camera_rays(camera, 1)[:, :, 0]
    if camera == "anchor":
        rays = rays @ R_S  # anchor-frame rays in the reference frame: R_S^T @ ray
    return distant_scene(rays[..., 0] / rays[..., 2], rays[..., 1] / rays[..., 2])


def true_anchor_pixels(reference_map: Registration, depth_m: float) -> np.ndarray:
    """(H, W, 2) where the anchor camera truly sees, for every reference-grid pixel, the point
    that the reference camera sees there (at ``depth_m``, or infinitely far away)."""
    x, y = undistort(K_REF, D_REF, reference_map.map_x.astype(np.float64),
                     reference_map.map_y.astype(np.float64))
    rays = np.stack([x, y, np.ones_like(x)], axis=-1).reshape(-1, 3)
    if math.isinf(depth_m):
        p, _ = cv2.projectPoints(rays, cv2.Rodrigues(R_S)[0], np.zeros(3), K_ANC, D_ANC)
    else:
        p, _ = cv2.projectPoints(rays * depth_m, cv2.Rodrigues(R_S)[0], T_S, K_ANC, D_ANC)
    return p.reshape(H, W, 2)


def map_errors(ref_cal: CameraCalibration, anchor_cal: CameraCalibration, depth_m: float) -> np.ndarray:
    """Registration error (anchor raw pixels) at every reference-grid pixel both cameras see."""
    ref_reg, anc_reg = Registration(ref_cal, (W, H)), Registration(anchor_cal, (W, H))
    truth = true_anchor_pixels(ref_reg, depth_m)
    err = np.hypot(anc_reg.map_x - truth[..., 0], anc_reg.map_y - truth[..., 1])
    return err[ref_reg.valid_mask & anc_reg.valid_mask]


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    return render_pairs(board_poses(N_VIEWS, BOARD, rng), checker(BOARD), rng)


@pytest.fixture(scope="module")
def result(pairs) -> StereoCalibrationResult:
    return calibrate_stereo(pairs, BOARD)


def write_image_folder(root: Path, pairs: list[tuple[str, np.ndarray, np.ndarray]],
                       anchor_names: str = "{}.png") -> Path:
    """root/reference/<name>.png and root/anchor/<anchor_names with name>.png for every pair."""
    for sub in ("reference", "anchor"):
        (root / sub).mkdir(parents=True)
    for name, ref, anc in pairs:
        cv2.imwrite(str(root / "reference" / f"{name}.png"), ref)
        cv2.imwrite(str(root / "anchor" / anchor_names.format(name)), anc)
    return root


# --- the algorithm ------------------------------------------------------------------------

def test_renderer_inverts_the_distortion_exactly() -> None:
    v, u = np.mgrid[0:H:17, 0:W:23].astype(np.float64)
    x, y = undistort(K_REF, D_REF, u, v)
    p, _ = cv2.projectPoints(np.stack([x.ravel(), y.ravel(), np.ones(x.size)], 1), np.zeros(3), np.zeros(3),
                             K_REF, D_REF)
    assert np.abs(p.reshape(-1, 2) - np.stack([u.ravel(), v.ravel()], 1)).max() < 1e-9


def test_detected_corners_are_subpixel_accurate(pairs) -> None:
    rng = np.random.default_rng(7)
    poses = board_poses(N_VIEWS, BOARD, rng)  # the same poses as the fixture's
    obj = BOARD.object_points().astype(np.float64)
    errors = []
    for (_, ref, _), (r_b, t_b) in zip(pairs, poses, strict=True):
        det = detect_board(ref, BOARD)
        assert det is not None and det.corners.shape == (54, 2)
        truth, _ = cv2.projectPoints(obj, cv2.Rodrigues(r_b)[0], t_b, K_REF, D_REF)
        truth = truth.reshape(-1, 2)
        # the detector may number the grid from either end
        errors.append(min((det.corners - truth, det.corners[::-1] - truth), key=lambda e: np.abs(e).sum()))
    e = np.concatenate(errors)
    assert np.sqrt(np.mean(e ** 2)) < 0.1 and np.abs(e).max() < 0.5


def test_recovers_intrinsics_baseline_and_rotation(result: StereoCalibrationResult) -> None:
    for fit, k in ((result.reference_fit, K_REF), (result.anchor_fit, K_ANC)):
        assert fit.k[0, 0] == pytest.approx(k[0, 0], rel=0.005)
        assert fit.k[1, 1] == pytest.approx(k[1, 1], rel=0.005)
        assert fit.k[0, 2] == pytest.approx(k[0, 2], abs=1.5)
        assert fit.k[1, 2] == pytest.approx(k[1, 2], abs=1.5)
        assert fit.rms_px < 0.2 and fit.views == N_VIEWS and fit.size_wh == (W, H)
    assert result.baseline_m == pytest.approx(np.linalg.norm(CENTRE), rel=0.01)
    assert result.anchor_centre_m == pytest.approx(CENTRE, abs=0.001)
    # The rotation's error is dominated by the principal points' (each known to ~0.5 px =
    # 0.1 degree at f = 300 px from 12 views of 320x240): they shift the image the same way,
    # and compensate each other in the registration, which is what matters (tested below).
    error = cv2.Rodrigues(result.rotation_anchor_from_reference @ R_S.T)[0]
    assert np.degrees(np.linalg.norm(error)) < 0.3
    assert result.stereo_rms_px < 0.2
    assert result.views_used == N_VIEWS and result.rejected == {}
    assert all(v.status == "used" and v.stereo_rms_px < 0.5 for v in result.views)


def test_calibrations_follow_the_spec(result: StereoCalibrationResult) -> None:
    ref, anc = result.reference, result.anchor
    assert (ref.width, ref.height, anc.width, anc.height) == (W, H, W, H)
    assert np.array_equal(ref.r, np.eye(3))
    assert np.array_equal(ref.p, np.hstack([ref.k, np.zeros((3, 1))]))
    assert np.array_equal(anc.r, result.rotation_anchor_from_reference.T)
    assert np.array_equal(anc.p, ref.p)  # working distance inf: no shift
    assert ref.distortion_model == anc.distortion_model == "plumb_bob" and ref.d.size == 5 and ref.d[4] == 0
    assert anc.k[0, 0] == result.anchor_fit.k[0, 0]


def test_written_files_register_the_anchor_onto_the_reference(result, tmp_path: Path) -> None:
    save_calibration(tmp_path / "reference.yaml", result.reference)
    save_calibration(tmp_path / "anchor.yaml", result.anchor)
    ref_cal = load_calibration(tmp_path / "reference.yaml")
    anc_cal = load_calibration(tmp_path / "anchor.yaml")
    assert ref_cal == result.reference and anc_cal == result.anchor

    # Geometry: the anchor pixel each reference-grid pixel samples vs where the anchor truly
    # sees the same distant point.
    err = map_errors(ref_cal, anc_cal, math.inf)
    assert err.size > 0.7 * W * H
    assert np.mean(err) < 0.25 and np.percentile(err, 95) < 0.5 and err.max() < 1.0

    # Images: a distant scene seen by both cameras, both registered into the reference grid.
    ref_reg, anc_reg = Registration(ref_cal, (W, H)), Registration(anc_cal, (W, H))
    ref_img, anc_img = ref_reg.apply(render_distant("reference")), anc_reg.apply(render_distant("anchor"))
    both = ref_reg.valid_mask & anc_reg.valid_mask
    ys, xs = np.nonzero(both)
    box = (slice(ys.min() + 4, ys.max() - 4), slice(xs.min() + 4, xs.max() - 4))
    assert both[box].all()
    (dx, dy), _ = cv2.phaseCorrelate(ref_img[box].astype(np.float64), anc_img[box].astype(np.float64))
    assert math.hypot(dx, dy) < 0.25
    residual = np.abs(ref_img[box] - anc_img[box]).mean()
    unregistered = np.abs(ref_img[box] - render_distant("anchor")[box]).mean()
    assert residual < 0.01 and residual < unregistered / 10


def test_working_distance_shift_registers_that_depth(result: StereoCalibrationResult) -> None:
    depth = 1.0
    ref_cal, anc_cal = registration_calibrations(result.reference_fit, result.anchor_fit,
                                                 result.rotation_anchor_from_reference,
                                                 result.translation_anchor_from_reference_m, depth)
    shift = anc_cal.p[:2, 2] - ref_cal.k[:2, 2]
    # The anchor sits 6 cm to the right: a point at 1 m appears f * 0.06 px further left in it,
    # so the shift is positive, as sim.rig.calibrations' baseline_px.
    assert shift == pytest.approx(ref_cal.k[[0, 1], [0, 1]] * CENTRE[:2] / depth, rel=0.02, abs=0.05)
    assert shift[0] > 15
    assert np.mean(map_errors(ref_cal, anc_cal, depth)) < 0.2
    assert np.mean(map_errors(result.reference, result.anchor, depth)) > 15  # inf: off by the disparity
    flipped = replace(anc_cal, p=ref_cal.p - np.outer([*shift, 0], [0, 0, 1, 0]))
    assert np.mean(map_errors(ref_cal, flipped, depth)) > 30  # the opposite sign: twice as far off


def test_shift_convention_matches_the_simulated_rig() -> None:
    """sim.rig.calibrations puts the anchor's disparity at the working distance, baseline_px,
    into its P; a pinhole pair whose anchor sits baseline_px * Z / f to the right gets the same P."""
    f, b, z = 320.0, (1.5, -0.5), 2.0
    cfg = RigConfig(baseline_px=b, focal_px=f)
    sim_ref, sim_anchor = calibrations((W, H), cfg)
    fit = CameraFit((W, H), sim_ref.k, np.zeros(5), 0.0, 0, (0.0, 0.0, 0.0, 0.0))
    centre = np.array([b[0] * z / f, b[1] * z / f, 0.0])
    ref, anchor = registration_calibrations(fit, fit, np.eye(3), -centre, z)
    assert np.array_equal(ref.p, sim_ref.p) and np.array_equal(ref.r, sim_ref.r)
    assert anchor.p == pytest.approx(sim_anchor.p, abs=1e-12) and np.array_equal(anchor.r, sim_anchor.r)


def test_joint_refinement_tightens_the_registration(pairs, result) -> None:
    res = calibrate_stereo(pairs, BOARD, StereoOptions(refine_intrinsics=True))
    assert res.reference_fit.refined_in_stereo and res.anchor_fit.refined_in_stereo
    assert not result.reference_fit.refined_in_stereo
    assert res.reference_fit.d[4] == 0.0  # k3 stays fixed
    err = map_errors(res.reference, res.anchor, math.inf)
    assert np.mean(err) < 0.1 and err.max() < 0.5
    assert np.mean(err) < np.mean(map_errors(result.reference, result.anchor, math.inf))
    assert res.baseline_m == pytest.approx(np.linalg.norm(CENTRE), rel=0.005)


def test_too_few_views_are_refused_with_the_count(pairs) -> None:
    with pytest.raises(InputError, match=r"^found 5 usable views \(both cameras see the whole board\) "
                                         r"among 6 image pairs; calibration needs at least 8: capture 3 "
                                         r"more \(rejected: 1 board not found in the anchor image\)$"):
        calibrate_stereo([*pairs[:5], ("blank", pairs[0][1], np.full((H, W), 128, np.uint8))], BOARD)
    with pytest.raises(InputError, match="found 5 usable views .* at least 6: capture 1 more"):
        calibrate_stereo(pairs[:5], BOARD, StereoOptions(min_views=6))


def test_pairs_without_the_board_are_reported_and_still_serve_intrinsics(pairs, result) -> None:
    blank = np.full((H, W), 128, np.uint8)
    more = [*pairs, ("no-anchor", pairs[0][1], blank), ("no-reference", blank, pairs[1][2]),
            ("none", blank, blank)]
    res = calibrate_stereo(more, BOARD)
    assert res.views_used == N_VIEWS
    assert res.rejected == {"board not found in the anchor image": 1,
                            "board not found in the reference image": 1,
                            "board not found in either image": 1}
    assert res.reference_fit.views == res.anchor_fit.views == N_VIEWS + 1
    records = {v.name: v for v in res.views}
    assert records["no-anchor"].reference_rms_px is not None and records["no-anchor"].stereo_rms_px is None
    assert records["none"].reference_rms_px is None and not records["none"].reference_found
    report = json.loads(json.dumps(res.report()))
    assert report["views"]["used"] == N_VIEWS and report["views"]["offered"] == N_VIEWS + 3


def test_anchor_corners_numbered_from_the_other_end_are_matched(pairs, result) -> None:
    calibrator = StereoCalibrator(BOARD)
    calibrator.set_image_size("reference", (W, H))
    calibrator.set_image_size("anchor", (W, H))
    for name, ref, anc in pairs:
        r, a = detect_board(ref, BOARD), detect_board(anc, BOARD)
        grid = a.corners.reshape(BOARD.rows, BOARD.cols, 2)
        # the labellings a detector may choose: from the opposite corner, or mirrored
        relabelled = (grid, grid[::-1, ::-1], grid[::-1, :], grid[:, ::-1])[int(name) % 4]
        a = Detection(np.ascontiguousarray(relabelled.reshape(-1, 2)), a.ids)
        assert calibrator.add_detections(name, r, a) == "used"
    res = calibrator.calibrate()
    assert res.rotation_anchor_from_reference == pytest.approx(result.rotation_anchor_from_reference,
                                                               abs=1e-6)
    assert res.baseline_m == pytest.approx(result.baseline_m, rel=1e-6)


def test_max_views_thins_evenly(pairs) -> None:
    res = calibrate_stereo(pairs, BOARD, StereoOptions(min_views=8, max_views=8))
    assert res.views_used == 8 and res.rejected == {"thinned out (more usable views than max_views)": 4}
    assert res.baseline_m == pytest.approx(np.linalg.norm(CENTRE), rel=0.02)


def test_images_of_another_size_are_refused(pairs) -> None:
    calibrator = StereoCalibrator(BOARD)
    calibrator.add_pair("a", pairs[0][1], pairs[0][2])
    with pytest.raises(InputError, match=r"^b: the anchor image is 160x120 but earlier ones are 320x240"):
        calibrator.add_pair("b", pairs[1][1], cv2.resize(pairs[1][2], (160, 120)))


def test_detection_takes_16_bit_float_and_colour_images(pairs) -> None:
    image = pairs[0][1]
    expected = detect_board(image, BOARD)
    for variant in (image.astype(np.uint16) * 16, image.astype(np.float32) / 255.0,
                    cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), image[:, :, None]):
        det = detect_board(variant, BOARD)
        assert det is not None and np.abs(det.corners - expected.corners).max() < 0.05
    assert to_gray8(np.zeros((4, 4), np.float32)).dtype == np.uint8
    with pytest.raises(InputError, match="NaN or Inf"):
        to_gray8(np.full((4, 4), np.nan, np.float32))
    assert detect_board(np.zeros((H, W), np.uint8), BOARD) is None


def test_bad_options_and_boards_are_refused() -> None:
    with pytest.raises(InputError, match="at least 3x3"):
        Board(2, 6, 0.025)
    with pytest.raises(InputError, match="square size"):
        Board(9, 6, 0.0)
    with pytest.raises(InputError, match="working distance"):
        StereoOptions(working_distance_m=-1.0)
    with pytest.raises(InputError, match="k_coefficients"):
        StereoOptions(k_coefficients=4)


def test_charuco_board() -> None:
    board = Board(5, 4, 0.045, marker_m=0.034, dictionary="DICT_4X4_50")
    rng = np.random.default_rng(3)
    pairs = render_pairs(board_poses(10, board, rng, tilt_deg=30.0), charuco(board), rng)
    res = calibrate_stereo(pairs, board)
    assert res.views_used >= 8
    assert res.reference_fit.k[0, 0] == pytest.approx(K_REF[0, 0], rel=0.01)
    assert res.baseline_m == pytest.approx(np.linalg.norm(CENTRE), rel=0.02)
    assert res.stereo_rms_px < 0.3


# --- the command --------------------------------------------------------------------------

def test_cli_on_an_image_folder(pairs, result, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = write_image_folder(tmp_path / "views", pairs)
    cv2.imwrite(str(root / "reference" / "extra.png"), pairs[0][1])  # no partner
    out = tmp_path / "calib"
    assert hdr_dcs(["calibrate", "stereo", "--images", str(root), "--board", "9x6", "--square", "0.025",
                    "--working-distance", "2", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert stdout.startswith(f"stereo calibration: {N_VIEWS} of {N_VIEWS + 1} pairs used "
                             "(rejected: 1 no anchor image of this name)")
    baseline_mm = float(re.search(r"baseline ([0-9.]+) mm", stdout)[1])
    shift_px = float(re.search(r"working distance 2 m: principal point shift \(\+([0-9.]+), ", stdout)[1])
    assert baseline_mm == pytest.approx(60.0, rel=0.01)
    assert shift_px == pytest.approx(300 * 0.06 / 2, rel=0.02)
    ref, anc = load_calibration(out / "reference.yaml"), load_calibration(out / "anchor.yaml")
    # lossless PNG: the same numbers, up to OpenCV's multithreaded summation order (measured
    # up to 5e-7 px apart between runs on a loaded machine)
    assert ref.k == pytest.approx(result.reference.k, rel=1e-9, abs=1e-5)
    assert anc.p[0, 2] == pytest.approx(ref.k[0, 2] + ref.k[0, 0] * result.anchor_centre_m[0] / 2)
    report = json.loads((out / "stereo_report.json").read_text())
    assert report["source"]["paired_by"] == "name"
    assert report["views"]["used"] == N_VIEWS and report["working_distance_m"] == 2.0
    assert report["stereo"]["baseline_m"] == pytest.approx(0.06, rel=0.01)


def test_cli_pairs_differently_named_files_by_sorted_order(pairs, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    root = write_image_folder(tmp_path / "views", pairs[:8], anchor_names="cam1_{}.png")
    assert hdr_dcs(["calibrate", "stereo", "--images", str(root), "--board", "9x6", "--square", "0.025",
                    "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "stereo_report.json").read_text())
    assert report["source"]["paired_by"] == "sorted order" and report["views"]["used"] == 8
    assert report["views"]["per_view"][0]["name"] == "000.png+cam1_000.png"


def test_cli_refuses_bad_input_with_one_line(pairs, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    def error(*argv: str) -> str:
        assert hdr_dcs(["calibrate", "stereo", *argv, "--board", "9x6", "--square", "0.025",
                        "--out", str(tmp_path / "out")]) == 1
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines and lines[-1].startswith("hdr-dcs: error: ")
        return lines[-1]

    assert error("--images", str(tmp_path / "nope")) == f"hdr-dcs: error: {tmp_path / 'nope'}: no such folder"
    (tmp_path / "half" / "reference").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "half" / "reference" / "0.png"), pairs[0][1])
    assert "no anchor/ subfolder" in error("--images", str(tmp_path / "half"))
    root = write_image_folder(tmp_path / "few", pairs[:3])
    assert error("--images", str(root)).endswith("calibration needs at least 8: capture 5 more")
    assert "bag not found" in error("--bag", str(tmp_path / "nobag"))
    assert not (tmp_path / "out").exists()


def test_cli_on_a_bag(pairs, result, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bag = tmp_path / "calib_bag"
    ms = 1_000_000
    with BagWriter(bag) as writer:
        for i, (_, ref, anc) in enumerate(pairs):
            t = 1_000 * ms + i * 500 * ms
            writer.write_image("reference_image", ref, "mono8", t, "reference_optical_frame")
            # anchor frames 3 ms late, as colour; and one stray frame far from any reference frame
            writer.write_image("anchor_image", cv2.cvtColor(anc, cv2.COLOR_GRAY2RGB), "rgb8", t + 3 * ms,
                               "anchor_optical_frame")
        writer.write_image("anchor_image", pairs[0][2], "mono8", 1_250 * ms, "anchor_optical_frame")
        writer.write_image("reference_image", pairs[0][1], "mono8", 100_000 * ms, "reference_optical_frame")
    out = tmp_path / "calib"
    assert hdr_dcs(["calibrate", "stereo", "--bag", str(bag), "--board", "9x6", "--square", "0.025",
                    "--out", str(out), "--max-dt", "0.005"]) == 0
    captured = capsys.readouterr()
    assert f"{N_VIEWS} of {N_VIEWS + 1} pairs used (rejected: 1 no anchor frame within 5 ms)" in captured.out
    assert "detect" in captured.err  # progress
    report = json.loads((out / "stereo_report.json").read_text())
    assert report["source"]["pairs"] == N_VIEWS and report["source"]["anchor_frames"] == N_VIEWS + 1
    anchor = load_calibration(out / "anchor.yaml")  # same pixels: the same numbers up to OpenCV's rounding
    assert anchor.k == pytest.approx(result.anchor.k, rel=1e-9, abs=1e-5)  # see test_cli_on_an_image_folder
    assert anchor.r == pytest.approx(result.anchor.r, abs=1e-7)  # 1e-7 rad: OpenCV's summation order
    assert hdr_dcs(["calibrate", "stereo", "--bag", str(bag), "--board", "9x6", "--square", "0.025",
                    "--out", str(out), "--anchor-topic", "/cam/other"]) == 1
    assert "has no /cam/other" in capsys.readouterr().err


def test_pair_stamps_nearest_within_tolerance() -> None:
    assert pair_stamps([0, 100, 200, 300], [98, 5, 205, 207, 900], 10) == [(0, 1), (1, 0), (2, 2), (3, None)]
    # two reference frames want the same anchor frame: the closer one gets it
    assert pair_stamps([0, 8], [6], 10) == [(0, None), (1, 0)]
    assert pair_stamps([], [1], 10) == []
