"""hdr_dcs.eval.report and hdr_dcs.eval.plots: scoring, the summary table, atomic JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hdr_dcs.core.errors import InputError
from hdr_dcs.core.metrics import PSNR_CAP_DB, sequence_report
from hdr_dcs.core.tonemap import normalise
from hdr_dcs.eval import plots
from hdr_dcs.eval.bagrun import RunStats
from hdr_dcs.eval.report import (
    GroundTruthStore,
    SequenceStore,
    backend_entry,
    box_downsample,
    choose_scale,
    markdown_table,
    plain,
    score,
    summary_rows,
    write_json_atomic,
)


def _sequence(n: int = 6, h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.lognormal(0.0, 2.0, size=(n, h, w, 3)).astype(np.float32)


def _stores(pred: np.ndarray, gt: np.ndarray | None, stamps: list[int], peak: float, scale: int = 1):
    p = SequenceStore(len(pred), scale)
    for s, f in zip(stamps, pred, strict=True):
        p.add(s, f)
    g = None
    if gt is not None:
        g = GroundTruthStore(len(gt), scale)
        for s, f in zip(stamps, gt, strict=True):
            g.add(s, f)
        g.normalise(peak)
    p.normalise(peak)
    return p, g


# --- storage --------------------------------------------------------------------------------

def test_scale_is_the_smallest_factor_that_fits_and_keeps_16_px() -> None:
    frame = 480 * 640 * 3 * 4
    assert choose_scale(480, 640, 100, 2 * 100 * frame) == 1
    assert choose_scale(480, 640, 100, 2 * 100 * frame - 1) == 2
    assert choose_scale(480, 640, 100, 2 * 100 * frame // 9) == 3
    assert choose_scale(48, 64, 10**6, 1) == 3         # 16 x 21 px, not smaller


def test_box_downsample_averages_blocks() -> None:
    img = np.arange(5 * 7 * 3, dtype=np.float32).reshape(5, 7, 3)
    assert box_downsample(img, 1) is img
    small = box_downsample(img, 2)
    assert small.shape == (2, 3, 3) and small.dtype == np.float32
    np.testing.assert_allclose(small[1, 2], img[2:4, 4:6].mean(axis=(0, 1)))


def test_stores_keep_frames_grow_and_normalise_in_place() -> None:
    seq = _sequence(5)
    store = SequenceStore(capacity=2)
    for i, f in enumerate(seq):
        store.add(100 + i, f)
    assert len(store) == 5 and store.stamps == [100, 101, 102, 103, 104]
    np.testing.assert_array_equal(store.frames, seq)
    assert store.peak == float(seq.max())
    store.normalise(10.0)
    np.testing.assert_array_equal(store.frames, normalise(seq, 10.0))
    with pytest.raises(InputError, match="unlike the frames before"):
        store.add(200, seq[0][:10])
    with pytest.raises(InputError, match="peak"):
        store.normalise(0.0)
    gt = GroundTruthStore(3)
    assert gt.add(7, seq[0]) == 0 and gt.add(9, seq[1]) == 1 and gt.add(7, seq[2]) == 0
    assert gt.rows == {7: 0, 9: 1}


# --- scoring --------------------------------------------------------------------------------

def test_full_reference_score_equals_sequence_report_with_one_peak() -> None:
    gt = _sequence(6)
    pred = gt * np.float32(1.1)
    stamps = list(range(10, 16))
    peak = float(gt.max())
    p, g = _stores(pred, gt, stamps, peak)
    out = score(p, g)
    assert out["metric_kind"] == "full_reference" and out["frames_scored"] == 6
    assert out["frames_without_ground_truth"] == 0 and "metrics_error" not in out
    expected = sequence_report(normalise(pred, peak), normalise(gt, peak))
    assert out["metrics"] == pytest.approx(expected)
    assert len(out["per_frame"]["psnr_mu"]) == 6 and len(out["per_frame"]["brightness"]) == 6
    assert np.mean(out["per_frame"]["psnr_mu"]) == pytest.approx(expected["psnr_mu"])


def test_identical_frames_are_capped_and_frames_without_truth_left_out() -> None:
    gt = _sequence(5)
    p, g = _stores(gt, gt, [1, 2, 3, 4, 5], float(gt.max()))
    p.add(6, gt[0] * 0)                         # a frame without ground truth
    out = score(p, g)
    assert out["frames_scored"] == 5 and out["frames_without_ground_truth"] == 1
    assert out["per_frame"]["psnr_mu"] == [PSNR_CAP_DB] * 5 + [None]
    assert out["metrics"]["psnr_mu"] == PSNR_CAP_DB
    json.dumps(plain(out), allow_nan=False)


def test_no_reference_score_has_only_no_reference_metrics() -> None:
    pred = _sequence(4)
    p, _ = _stores(pred, None, [1, 2, 3, 4], float(pred.max()))
    out = score(p, None)
    assert out["metric_kind"] == "no_reference" and out["frames_scored"] == 4
    assert set(out["metrics"]) == {"t_psnr_nr", "t_ssim_nr", "l_avg", "lsd", "madb", "ab"}
    assert "psnr_mu" not in out["per_frame"]


def test_unscorable_sequences_give_an_error_not_an_exception() -> None:
    pred = _sequence(1)
    p, g = _stores(pred, pred, [1], 1.0)
    out = score(p, g)
    assert out["metrics"] == {} and "at least 2 frames" in out["metrics_error"]
    small = _sequence(3, 8, 8)
    p, g = _stores(small, small, [1, 2, 3], 1.0)
    assert "11 x 11" in score(p, g)["metrics_error"]
    assert score(SequenceStore(3), None)["metrics_error"] == "no frames"


def test_backend_entry_and_summary_table() -> None:
    pred = _sequence(4)
    p, g = _stores(pred, pred * np.float32(0.9), [1, 2, 3, 4], float(pred.max()))
    scored = score(p, g)
    stats = RunStats("classical", reference_images=4, frames_out=4)
    stats.reject("/dcs/anchor/image_raw", "unsupported encoding 'yuv422'", InputError("bad"))
    infos = [{"anchors_used": True, "reason": "", "age": 0.5, "arr": np.zeros(2)},
             {"anchors_used": False, "reason": "no anchors"}, {}, {"age": 1.5}]
    entry = backend_entry(stats, scored, p.stamps, infos)
    assert entry["metrics"]["psnr_mu"] == scored["metrics"]["psnr_mu"]
    assert entry["frames"] == {"reference_images": 4, "out": 4, "scored": 4, "without_ground_truth": 0}
    assert entry["per_frame"]["stamp_ns"] == [1, 2, 3, 4]
    assert entry["per_frame"]["info"]["age"] == [0.5, None, None, 1.5]
    assert "arr" not in entry["per_frame"]["info"]
    assert entry["info_mean"]["age"] == 1.0 and entry["info_mean"]["anchors_used"] == 0.5
    assert "reason" not in entry["info_mean"]
    assert entry["rejected_inputs"] == {"/dcs/anchor/image_raw": {"unsupported encoding 'yuv422'": 1}}
    rows = summary_rows({"/data/a.mcap": {"classical": entry}, "/data/b": {"x": {"metrics": {"lsd": 1.0}}}})
    assert rows[0]["backend"] == "classical" and rows[0]["psnr_mu"] == entry["metrics"]["psnr_mu"]
    assert rows[0]["rejected"] == 1 and rows[1]["psnr_mu"] is None
    table = markdown_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| bag | backend | frames | PSNR-mu |") and len(lines) == 4
    assert lines[2].startswith("| a.mcap | classical | 4 |") and "| b | x | - | -" in lines[3]
    assert "ms/frame" not in lines[0]          # empty in every row


# --- files ----------------------------------------------------------------------------------

def test_plain_makes_strict_json() -> None:
    obj = {"a": np.float32(1.5), "b": [np.int64(3), math.inf, math.nan], "c": (np.bool_(True), Path("/x")),
           "d": np.arange(3)}
    assert plain(obj) == {"a": 1.5, "b": [3, None, None], "c": [True, "/x"], "d": [0, 1, 2]}


def test_json_is_written_atomically(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json_atomic(path, {"x": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"x": object()})
    assert json.loads(path.read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


# --- plots ----------------------------------------------------------------------------------

def test_plots_are_written(tmp_path: Path) -> None:
    stamps = [0, 33_000_000, 66_000_000]
    series = {"a": (stamps, [1.0, 2.0, 3.0]), "b": (stamps[:2], [2, 1])}
    lum = plots.plot_luminance(tmp_path / "l.png", series, (stamps, [1.5, 2.5, 3.5]))
    psnr = plots.plot_psnr_mu(tmp_path / "p.png", {"a": (stamps, [30.0, None, 31.0])})
    assert lum.stat().st_size > 5000 and psnr.stat().st_size > 5000
    columns = {"a": [np.full((8, 10, 3), 7, np.uint8), None],
               "b": [np.zeros((16, 20, 3), np.uint8), np.ones((8, 10, 3), np.uint8)]}
    stacks = plots.strip_stacks((8, 10), columns)
    assert stacks["a"].shape == stacks["b"].shape == (2, 8, 10, 3)
    assert stacks["a"][1].max() == 0 and stacks["a"][0].min() == 7
