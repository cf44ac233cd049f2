"""Registration of raw images into the reference grid (SPEC.md, Calibration)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hdr_dcs.core.calibration import CameraCalibration
from hdr_dcs.core.errors import InputError
from hdr_dcs.core.registration import Registration, RegistrationCache

W, H = 160, 120
RNG_SEED = 1234


def _k(f: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])


def _p(k: np.ndarray) -> np.ndarray:
    return np.hstack([k, np.zeros((3, 1))])


def _texture(shape: tuple[int, ...], dtype: type, seed: int = RNG_SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


def _render_dots(centres: np.ndarray, size: tuple[int, int], sigma: float = 1.0) -> np.ndarray:
    """(h, w) float32 image of unit Gaussian dots at sub-pixel ``centres`` (N, 2) (x, y)."""
    w, h = size
    img = np.zeros((h, w), np.float64)
    r = int(np.ceil(5 * sigma))
    for cx, cy in centres:
        x0, y0 = round(cx), round(cy)
        ys, xs = np.mgrid[max(y0 - r, 0):min(y0 + r + 1, h), max(x0 - r, 0):min(x0 + r + 1, w)]
        img[ys, xs] += np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma**2))
    return img.astype(np.float32)


def _centroids(img: np.ndarray, expected: np.ndarray, radius: int = 6) -> np.ndarray:
    """Intensity centroid of the dot near each ``expected`` (x, y) position."""
    out = []
    for ex, ey in expected:
        x0, y0 = round(ex), round(ey)
        ys, xs = np.mgrid[y0 - radius:y0 + radius + 1, x0 - radius:x0 + radius + 1]
        wgt = img[ys, xs].astype(np.float64)
        out.append(((wgt * xs).sum() / wgt.sum(), (wgt * ys).sum() / wgt.sum()))
    return np.array(out)


def _pixel_grid(size: tuple[int, int], step: int, margin: int) -> np.ndarray:
    w, h = size
    xs, ys = np.meshgrid(np.arange(margin, w - margin, step, dtype=np.float64),
                         np.arange(margin, h - margin, step, dtype=np.float64))
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def _rays(pixels: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(N, 3) rays (z = 1) through ``pixels`` (N, 2) of a pinhole camera ``k``."""
    homog = np.hstack([pixels, np.ones((len(pixels), 1))])
    return homog @ np.linalg.inv(k).T


def _project(rays: np.ndarray, k: np.ndarray, rot: np.ndarray | None = None) -> np.ndarray:
    x = rays @ (np.eye(3) if rot is None else rot).T @ k.T
    return x[:, :2] / x[:, 2:]


def _inside(points: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    w, h = size
    return ((points[:, 0] >= margin) & (points[:, 0] <= w - 1 - margin)
            & (points[:, 1] >= margin) & (points[:, 1] <= h - 1 - margin))


# --- identity ------------------------------------------------------------------------------


@pytest.mark.parametrize("calib", [None, CameraCalibration.uncalibrated(W, H, "anchor")],
                         ids=["none", "zero_k"])
def test_uncalibrated_is_identity(calib: CameraCalibration | None) -> None:
    reg = Registration(calib, (W, H))
    assert reg.is_identity and reg.map_x is None and reg.map_y is None
    assert reg.raw_size == reg.reference_size == (W, H)
    assert reg.valid_mask.shape == (H, W) and reg.valid_mask.dtype == bool and reg.valid_mask.all()
    for img in (_texture((H, W), np.uint8), _texture((H, W, 3), np.float32)):
        assert reg.apply(img) is img
    with pytest.raises(InputError, match=r"161x120 but must be 160x120.*identity"):
        reg.apply(np.zeros((H, W + 1), np.float32))


def test_uncalibrated_size_must_equal_reference_size() -> None:
    with pytest.raises(InputError, match=r"uncalibrated camera 'anchor' is 160x120 .* 320x240"):
        Registration(CameraCalibration.uncalibrated(W, H, "anchor"), (320, 240))


def test_reference_camera_is_identity_up_to_rounding() -> None:
    """R = I, P = [K | 0], D = 0 with an off-centre principal point and a non-integer focal."""
    k = _k(612.3, 319.7, 241.2)
    calib = CameraCalibration(640, 480, k, np.zeros(5), np.eye(3), _p(k), "plumb_bob", "reference")
    reg = Registration(calib, (640, 480))
    assert not reg.is_identity
    ys, xs = np.mgrid[:480, :640]
    assert reg.map_x.dtype == np.float32 and reg.map_x.shape == (480, 640)
    assert np.abs(reg.map_x - xs).max() < 1e-3
    assert np.abs(reg.map_y - ys).max() < 1e-3
    assert reg.valid_mask.all()
    img = _texture((480, 640, 3), np.float32)
    np.testing.assert_allclose(reg.apply(img), img, atol=2e-3)
    img8 = _texture((480, 640), np.uint8)
    assert np.abs(reg.apply(img8).astype(int) - img8).max() <= 1


# --- principal-point shift -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("shift", [(3, -2), (-5, 4), (0, 7)])
def test_integer_principal_point_shift_is_exact(shift: tuple[int, int], dtype: type) -> None:
    dx, dy = shift
    reg = Registration(CameraCalibration.pinhole(W, H, 100.0, p_shift_px=(dx, dy)), (W, H))
    raw = _texture((H, W, 3), dtype)
    out = reg.apply(raw)
    assert out.shape == raw.shape and out.dtype == raw.dtype
    # out[v, u] = raw[v - dy, u - dx]: the image moves by (+dx, +dy).
    expected = np.zeros_like(raw)
    src = raw[max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
    expected[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = src
    np.testing.assert_array_equal(out, expected)
    mask = np.zeros((H, W), bool)
    mask[max(dy, 0):H + min(dy, 0), max(dx, 0):W + min(dx, 0)] = True
    np.testing.assert_array_equal(reg.valid_mask, mask)


def test_subpixel_principal_point_shift_interpolates_bilinearly() -> None:
    dx, dy = 2.5, -1.25
    reg = Registration(CameraCalibration.pinhole(W, H, 100.0, p_shift_px=(dx, dy)), (W, H))
    raw = _texture((H, W), np.float32)
    out = reg.apply(raw)
    # Bilinear sample of raw at (u - dx, v - dy) on the interior.
    ys, xs = np.mgrid[4:H - 4, 4:W - 4]
    sx, sy = xs - dx, ys - dy
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    expected = ((1 - fx) * (1 - fy) * raw[y0, x0] + fx * (1 - fy) * raw[y0, x0 + 1]
                + (1 - fx) * fy * raw[y0 + 1, x0] + fx * fy * raw[y0 + 1, x0 + 1])
    np.testing.assert_allclose(out[4:H - 4, 4:W - 4], expected, atol=1e-5)
    # Valid: the sample (u - 2.5, v + 1.25) lies in [0, W-1] x [0, H-1].
    mask = np.zeros((H, W), bool)
    mask[:H - 2, 3:] = True
    np.testing.assert_array_equal(reg.valid_mask, mask)
    assert np.all(out[~reg.valid_mask] < 1.0)  # blended with / set to the constant 0 border
    assert np.all(out[:, :2] == 0) and np.all(out[H - 1:, :] == 0)


# --- rotation: the R convention ------------------------------------------------------------

K_REF = _k(120.0, (W - 1) / 2, (H - 1) / 2)
ANCHOR_SIZE = (176, 132)
K_ANCHOR = _k(131.0, 88.7, 64.1)
R_ANCHOR_FROM_REF = cv2.Rodrigues(np.array([0.01, 0.06, -0.02]))[0]  # mostly a small yaw


def _anchor(r: np.ndarray, d: np.ndarray | None = None, model: str = "plumb_bob") -> CameraCalibration:
    return CameraCalibration(ANCHOR_SIZE[0], ANCHOR_SIZE[1], K_ANCHOR, np.zeros(5) if d is None else d,
                             r, _p(K_REF), model, "anchor")


def test_rotation_convention_maps() -> None:
    """cv2's R rotates raw-camera rays into the reference frame: R = R_ref_from_anchor."""
    reg = Registration(_anchor(R_ANCHOR_FROM_REF.T), (W, H))
    ref_px = _pixel_grid((W, H), 7, 0)
    expected_raw = _project(_rays(ref_px, K_REF), K_ANCHOR, R_ANCHOR_FROM_REF)
    u, v = ref_px[:, 0].astype(int), ref_px[:, 1].astype(int)
    got = np.stack([reg.map_x[v, u], reg.map_y[v, u]], axis=1)
    assert np.abs(got - expected_raw).max() < 1e-3


def test_rotation_registers_rendered_dot_grid() -> None:
    """Dots at infinity seen by the anchor land where the reference camera sees them."""
    ref_px = _pixel_grid((W, H), 20, 10) + np.array([0.3, -0.2])  # sub-pixel positions
    rays = _rays(ref_px, K_REF)  # points at infinity, in the reference frame
    raw_px = _project(rays, K_ANCHOR, R_ANCHOR_FROM_REF)
    keep = _inside(raw_px, ANCHOR_SIZE, 10)
    assert keep.sum() >= 20
    raw = _render_dots(raw_px[keep], ANCHOR_SIZE)

    out = Registration(_anchor(R_ANCHOR_FROM_REF.T), (W, H)).apply(raw)
    assert out.shape == (H, W)
    err = np.linalg.norm(_centroids(out, ref_px[keep]) - ref_px[keep], axis=1)
    assert err.max() < 0.1, err.max()  # dot centroid bias; the maps are exact to 1e-3 px

    # The opposite convention (R = R_anchor_from_ref) applies the rotation twice: the dots
    # land at K_ref @ R_anchor_from_ref^2 @ p, pixels away from the reference view.
    wrong = Registration(_anchor(R_ANCHOR_FROM_REF), (W, H)).apply(raw)
    twice = _project(rays, K_REF, R_ANCHOR_FROM_REF @ R_ANCHOR_FROM_REF)[keep]
    seen = _inside(twice, (W, H), 10)
    assert seen.sum() >= 10
    assert np.linalg.norm(twice - ref_px[keep], axis=1).min() > 5
    err_wrong = np.linalg.norm(_centroids(wrong, twice[seen]) - twice[seen], axis=1)
    assert err_wrong.max() < 0.1, err_wrong.max()


def test_valid_mask_of_rotated_anchor_matches_projection() -> None:
    reg = Registration(_anchor(R_ANCHOR_FROM_REF.T), (W, H))
    ref_px = _pixel_grid((W, H), 1, 0)
    raw_px = _project(_rays(ref_px, K_REF), K_ANCHOR, R_ANCHOR_FROM_REF)
    mask = reg.valid_mask.ravel()  # row-major, same order as _pixel_grid
    assert mask[_inside(raw_px, ANCHOR_SIZE, 0.01)].all()
    assert not mask[~_inside(raw_px, ANCHOR_SIZE, -0.01)].any()
    assert 0.5 < reg.valid_fraction < 1.0  # the anchor does not see part of the reference grid
    # float32 mono is sampled exactly: the mask is where the ones image stays 1.
    out = reg.apply(np.ones((ANCHOR_SIZE[1], ANCHOR_SIZE[0]), np.float32))
    np.testing.assert_array_equal(reg.valid_mask, out >= 0.999)
    # Whatever the path (fixed point for 2 channels, integers), valid pixels are never
    # blended with the 0 border, and pixels far outside are exactly 0.
    far = ~_inside(raw_px, ANCHOR_SIZE, -1.0).reshape(H, W)
    assert far.any()
    for dtype, top, channels in [(np.float32, 1.0, 2), (np.float64, 1.0, 1), (np.uint8, 255, 3),
                                 (np.uint16, 65535, 1)]:
        out = reg.apply(np.full((ANCHOR_SIZE[1], ANCHOR_SIZE[0], channels), top, dtype))
        assert out.shape == (H, W, channels)
        assert np.all(out[reg.valid_mask] == top) and np.all(out[far] == 0)


# --- lens distortion -----------------------------------------------------------------------

K_LENS = _k(110.0, 80.3, 59.1)
LENSES = {  # name: (distortion_model, D, raw size, K, R, reference K for P)
    "plumb_bob_barrel": ("plumb_bob", np.array([-0.28, 0.09, 8e-4, -5e-4, -0.01]), (W, H), K_LENS,
                         np.eye(3), K_LENS),
    "plumb_bob_pincushion": ("plumb_bob", np.array([0.15, 0.02, -6e-4, 4e-4, 0.0]), (W, H), K_LENS,
                             np.eye(3), K_LENS),
    "rational_polynomial": ("rational_polynomial", np.array([0.4, -0.1, 5e-4, 1e-4, 0.01, 0.6, -0.08, 0.02]),
                            (W, H), K_LENS, np.eye(3), K_LENS),
    "equidistant": ("equidistant", np.array([0.05, -0.01, 0.002, -0.0005]), (W, H), _k(70.0, 79.2, 60.4),
                    np.eye(3), _k(90.0, (W - 1) / 2, (H - 1) / 2)),
    "rotated_distorted_anchor": ("plumb_bob", np.array([-0.12, 0.03, 3e-4, -2e-4, 0.0]), ANCHOR_SIZE,
                                 K_ANCHOR, R_ANCHOR_FROM_REF.T, K_REF),
}


def _lens(name: str) -> CameraCalibration:
    model, d, (w, h), k, r, k_ref = LENSES[name]
    return CameraCalibration(w, h, k, d, r, _p(k_ref), model, name)


def _lens_forward(calib: CameraCalibration, ref_px: np.ndarray) -> np.ndarray:
    """Raw pixels (N, 2) where the camera sees the reference pixels ``ref_px`` (N, 2), by the
    lens model's forward projection (cv2.projectPoints / cv2.fisheye.projectPoints)."""
    rays = _rays(ref_px, calib.p[:, :3]) @ calib.r  # R^T @ ray: reference frame -> raw camera
    pts = rays.reshape(-1, 1, 3)
    if calib.distortion_model == "equidistant":
        raw = cv2.fisheye.projectPoints(pts, np.zeros(3), np.zeros(3), calib.k, calib.d)[0]
    else:
        raw = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), calib.k, calib.d)[0]
    return raw.reshape(-1, 2)


def _lens_inverse(calib: CameraCalibration, raw_px: np.ndarray) -> np.ndarray:
    """Reference pixels (N, 2) seen at ``raw_px`` (N, 2), by cv2's iterative undistortion;
    NaN where that iteration does not reproduce ``raw_px`` through the forward model."""
    pts = raw_px.reshape(-1, 1, 2)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-14)
    if calib.distortion_model == "equidistant":
        ref = cv2.fisheye.undistortPoints(pts, calib.k, calib.d, R=calib.r, P=calib.p[:, :3], criteria=crit)
    else:
        ref = cv2.undistortPoints(pts, calib.k, calib.d, R=calib.r, P=calib.p[:, :3], criteria=crit)
    ref = ref.reshape(-1, 2)
    bad = np.linalg.norm(_lens_forward(calib, ref) - raw_px, axis=1) > 1e-4
    ref[bad] = np.nan
    return ref


@pytest.mark.parametrize("name", list(LENSES))
def test_maps_and_mask_follow_the_lens_model(name: str) -> None:
    calib = _lens(name)
    reg = Registration(calib, (W, H))
    fwd = _lens_forward(calib, _pixel_grid((W, H), 1, 0))
    maps = np.stack([reg.map_x.ravel(), reg.map_y.ravel()], axis=1)
    assert np.abs(maps - fwd).max() < 1e-3
    mask = reg.valid_mask.ravel()
    raw_size = (calib.width, calib.height)
    assert mask[_inside(fwd, raw_size, 0.01)].all()
    assert not mask[~_inside(fwd, raw_size, -0.01)].any()
    if name == "plumb_bob_pincushion":  # the corners of the grid fall outside the raw image
        assert not reg.valid_mask[0, 0] and not reg.valid_mask[-1, -1] and reg.valid_mask[H // 2, W // 2]
    if name == "plumb_bob_barrel":  # the whole grid is seen
        assert reg.valid_mask.all()


@pytest.mark.parametrize("name", list(LENSES))
def test_registration_undoes_the_lens(name: str) -> None:
    """Render a raw image whose pixels hold the reference coordinates they see (independent
    inverse model); registered, every reference pixel must hold its own coordinates."""
    calib = _lens(name)
    w_raw, h_raw = calib.width, calib.height
    ref_of_raw = _lens_inverse(calib, _pixel_grid((w_raw, h_raw), 1, 0)).reshape(h_raw, w_raw, 2)
    known = np.all(np.isfinite(ref_of_raw), axis=2)
    assert known.mean() > 0.9
    raw = np.zeros((h_raw, w_raw, 3), np.float32)
    raw[known, :2] = ref_of_raw[known]
    raw[known, 2] = 1.0

    reg = Registration(calib, (W, H))
    out = reg.apply(raw)
    use = reg.valid_mask & (out[:, :, 2] == 1.0)  # all four bilinear taps known
    assert use.mean() > 0.5
    ys, xs = np.mgrid[:H, :W]
    err = np.hypot(out[:, :, 0] - xs, out[:, :, 1] - ys)[use]
    assert err.max() < 0.02, err.max()


@pytest.mark.parametrize("name", ["plumb_bob_barrel", "plumb_bob_pincushion", "rational_polynomial",
                                  "rotated_distorted_anchor"])
def test_distorted_dot_grid_is_registered(name: str) -> None:
    """Dots rendered where the lens puts them (cv2.projectPoints) come out < 0.1 px from where
    the reference camera sees them (the residual is the dots' centroid bias, not the maps)."""
    calib = _lens(name)
    raw_size = (calib.width, calib.height)
    ref_px = _pixel_grid((W, H), 20, 10) + np.array([0.37, 0.61])
    raw_px = _lens_forward(calib, ref_px)
    keep = _inside(raw_px, raw_size, 10)
    assert keep.sum() >= 20
    out = Registration(calib, (W, H)).apply(_render_dots(raw_px[keep], raw_size))
    err = np.linalg.norm(_centroids(out, ref_px[keep]) - ref_px[keep], axis=1)
    assert err.max() < 0.1, err.max()


def test_equidistant_is_not_plumb_bob() -> None:
    calib = _lens("equidistant")
    plumb = CameraCalibration(W, H, calib.k, np.r_[calib.d, 0.0], calib.r, calib.p, "plumb_bob")
    assert np.abs(Registration(plumb, (W, H)).map_x - Registration(calib, (W, H)).map_x).max() > 1


# --- images, sizes and errors --------------------------------------------------------------


def _smooth(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A smooth texture (gradients < 0.2 of full scale per pixel), one phase per channel."""
    ys, xs = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
    planes = [0.5 + 0.25 * np.sin(2 * np.pi * xs / 23 + c) + 0.25 * np.cos(2 * np.pi * ys / 17 + 2 * c)
              for c in range(int(np.prod(shape[2:])))]
    top = np.iinfo(dtype).max if np.dtype(dtype).kind == "u" else 1.0
    img = np.stack(planes, axis=2).reshape(shape) * top
    return (np.round(img) if np.dtype(dtype).kind == "u" else img).astype(dtype)


def _bilinear(img: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Reference bilinear sampling of (h, w) ``img`` at (mx, my), 0 outside, in float64."""
    x0, y0 = np.floor(mx).astype(int), np.floor(my).astype(int)
    fx, fy = mx - x0, my - y0
    out = np.zeros(mx.shape)
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                        (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi < img.shape[1]) & (yi >= 0) & (yi < img.shape[0])
        out[ok] += wgt[ok] * img[yi[ok], xi[ok]]
    return out


@pytest.mark.parametrize("shape", [(132, 176), (132, 176, 1), (132, 176, 2), (132, 176, 3), (132, 176, 5)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_apply_shapes_and_dtypes(shape: tuple[int, ...], dtype: type) -> None:
    """Every dtype and channel count is bilinearly sampled at the maps' positions (to the
    1/64 px of cv2's fixed-point path, plus rounding to integer codes)."""
    reg = Registration(_anchor(R_ANCHOR_FROM_REF.T, np.array([-0.12, 0.03, 3e-4, -2e-4, 0.0])), (W, H))
    raw = _smooth(shape, dtype)
    out = reg.apply(raw)
    assert out.dtype == raw.dtype and out.shape == (H, W, *shape[2:])
    top = float(np.iinfo(dtype).max) if np.dtype(dtype).kind == "u" else 1.0
    tol = 0.2 * top / 64 + (0.5 if np.dtype(dtype).kind == "u" else 1e-6)
    mx, my = reg.map_x.astype(np.float64), reg.map_y.astype(np.float64)
    planes, got = raw.reshape(shape[0], shape[1], -1), out.reshape(H, W, -1)
    for c in range(planes.shape[2]):
        expected = _bilinear(planes[:, :, c].astype(np.float64), mx, my)
        diff = np.abs(got[:, :, c].astype(np.float64) - expected)[reg.valid_mask]
        assert diff.max() <= tol, (c, diff.max(), tol)
    assert out.min() >= 0 and out.max() <= top


def test_apply_accepts_non_contiguous_views() -> None:
    reg = Registration(_anchor(R_ANCHOR_FROM_REF.T), (W, H))
    big = _texture((132, 352, 3), np.float32)
    view = big[:, ::2, ::-1]
    np.testing.assert_array_equal(reg.apply(view), reg.apply(np.ascontiguousarray(view)))
    assert reg(view).shape == (H, W, 3)


def test_raw_size_must_equal_calibration_size() -> None:
    reg = Registration(_anchor(R_ANCHOR_FROM_REF.T), (W, H))
    with pytest.raises(InputError, match=r"160x120 but must be 176x132.*'anchor'"):
        reg.apply(np.zeros((H, W), np.float32))


@pytest.mark.parametrize("image", [np.zeros((132, 176), np.int32), np.zeros((132, 176), bool),
                                   np.zeros((132, 176), np.float16), np.zeros((2, 132, 176, 3), np.uint8),
                                   np.zeros(176, np.uint8), np.zeros((132, 176, 0), np.uint8),
                                   [[0.0]]], ids=["int32", "bool", "float16", "4d", "1d", "0ch", "list"])
def test_apply_rejects_bad_images(image: object) -> None:
    with pytest.raises(InputError):
        Registration(_anchor(R_ANCHOR_FROM_REF.T), (W, H)).apply(image)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [(0, 10), (10,), "ab", (10.5, 4), (True, 4), (40000, 10)])
def test_bad_reference_size(size: object) -> None:
    with pytest.raises(InputError, match="reference size"):
        Registration(None, size)  # type: ignore[arg-type]


@pytest.mark.parametrize("calib,match", [
    (CameraCalibration(W, H, K_REF, np.zeros(5), np.eye(3), np.zeros((3, 4))), r"P\[:, :3\] is singular"),
    (CameraCalibration(W, H, K_REF, np.zeros(5), np.zeros((3, 3)), _p(K_REF)), "R is singular"),
    (CameraCalibration(W, H, np.diag([0.0, 100.0, 1.0]), np.zeros(5), np.eye(3), _p(K_REF)), "K is singular"),
    (CameraCalibration(W, H, K_REF, np.ones(5) * 0.1, np.eye(3), _p(K_REF), "kannala"), "unsupported"),
    (CameraCalibration(W, H, K_REF, np.zeros(5), np.eye(3), _p(K_REF), "equidistant"), "4 coefficients"),
    (CameraCalibration(W, H, K_REF, np.zeros(6), np.eye(3), _p(K_REF)), "6 coefficients"),
], ids=["zero_p", "zero_r", "singular_k", "unknown_model", "equidistant_5", "plumb_bob_6"])
def test_bad_calibrations(calib: CameraCalibration, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Registration(calib, (W, H))


def test_unknown_model_without_distortion_is_pinhole() -> None:
    calib = CameraCalibration(W, H, K_REF, np.zeros(0), np.eye(3), _p(K_REF), "")
    xs = np.mgrid[:H, :W][1]
    assert np.abs(Registration(calib, (W, H)).map_x - xs).max() < 1e-3


def test_maps_and_mask_are_read_only() -> None:
    reg = Registration(_anchor(R_ANCHOR_FROM_REF.T), (W, H))
    for arr in (reg.map_x, reg.map_y, reg.valid_mask, Registration(None, (W, H)).valid_mask):
        with pytest.raises(ValueError):
            arr[0, 0] = 0


# --- cache ---------------------------------------------------------------------------------


def test_cache_rebuilds_only_on_change() -> None:
    cache = RegistrationCache()
    assert cache.current is None and cache.builds == 0 and cache.rebuilds == 0
    a = _anchor(R_ANCHOR_FROM_REF.T)
    r1 = cache.get(a, (W, H))
    assert cache.builds == 1 and cache.rebuilds == 0 and cache.current is r1

    # Equal by value (a fresh object from the same CameraInfo) -> same registration, same maps.
    same = CameraCalibration(a.width, a.height, a.k.copy(), a.d.copy(), a.r.copy(), a.p.copy(),
                             a.distortion_model, a.camera_name)
    for _ in range(3):
        assert cache.get(same, [W, H]) is r1
    assert cache.builds == 1

    k2 = a.k.copy()
    k2[0, 0] += 1e-9
    changed = CameraCalibration(a.width, a.height, k2, a.d, a.r, a.p, a.distortion_model, a.camera_name)
    r2 = cache.get(changed, (W, H))
    assert r2 is not r1 and cache.builds == 2 and cache.rebuilds == 1
    assert cache.get(changed, (W, H)) is r2

    r3 = cache.get(changed, (W // 2, H // 2))  # reference size changed
    assert r3.reference_size == (W // 2, H // 2) and cache.builds == 3

    r4 = cache.get(None, (W, H))
    assert r4.is_identity and cache.get(None, (W, H)) is r4 and cache.builds == 4
    r5 = cache.get(CameraCalibration.uncalibrated(W, H), (W, H))
    assert r5 is not r4 and cache.builds == 5  # None and an uncalibrated CameraInfo differ

    # A failed build raises and keeps the previous registration.
    bad = CameraCalibration(W, H, K_REF, np.zeros(5), np.eye(3), np.zeros((3, 4)))
    with pytest.raises(InputError):
        cache.get(bad, (W, H))
    assert cache.current is r5 and cache.builds == 5
    assert cache.get(CameraCalibration.uncalibrated(W, H), (W, H)) is r5

    cache.clear()
    assert cache.current is None
    cache.get(None, (W, H))
    assert cache.builds == 6 and cache.rebuilds == 5
