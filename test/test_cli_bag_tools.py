"""`hdr-dcs reconstruct` and `hdr-dcs evaluate` on real bags made with `hdr-dcs generate`
(96x72, 1 s), as a user or a script runs them."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from hdr_dcs.cli import evaluate as evaluate_cli
from hdr_dcs.cli.main import main
from hdr_dcs.core.errors import InputError
from hdr_dcs.eval.bagrun import run_bag
from hdr_dcs.io.bag import BagReader, BagWriter, Topics, hdr_from_msg, stamp_ns_of
from hdr_dcs.io.image_msg import image_to_numpy

T = Topics()
NO_REFERENCE = {"t_psnr_nr", "t_ssim_nr", "l_avg", "lsd", "madb", "ab"}


def hdr_dcs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("hdr-dcs", path=str(Path(sys.executable).parent))
    assert exe, "the hdr-dcs console script is not installed next to this Python"
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def generate(path: Path, storage: str = "mcap", seconds: float = 1.0) -> Path:
    assert main(["generate", str(path), "--scene", "procedural_1", "--seconds", str(seconds),
                 "--size", "96x72", "--storage", storage]) == 0
    return path


def raw_by_topic(path: Path) -> dict[str, list[tuple[int, str, bytes]]]:
    out: dict[str, list] = defaultdict(list)
    with BagReader(path) as reader:
        for m in reader.raw_messages():
            out[m.topic].append((m.log_time_ns, m.msgtype, m.data))
    return {t: sorted(v) for t, v in out.items()}


def reference_stamps(path: Path) -> list[int]:
    with BagReader(path) as reader:
        return [stamp_ns_of(m.msg) for m in reader.messages([T.reference_image])]




@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli_bags")
    out = {"mcap": generate(root / "rig_mcap"), "sqlite3": generate(root / "rig_sqlite", "sqlite3")}
    no_gt = root / "rig_no_gt"
    with BagReader(out["mcap"]) as reader, BagWriter(no_gt) as writer:
        for m in reader.raw_messages():
            if m.topic != T.ground_truth:
                writer.copy_message(m)
    out["no_gt"] = no_gt
    return out


# --- reconstruct ------------------------------------------------------------------------------

@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_reconstruct_copies_every_message_and_adds_one_hdr_frame_per_reference_frame(
        bags, tmp_path: Path, capsys, storage: str) -> None:
    src, out = bags[storage], tmp_path / "out"
    assert main(["reconstruct", str(src), str(out), "--backend", "classical"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]          # no staging folder left
    assert any(out.glob("*.db3" if storage == "sqlite3" else "*.mcap"))
    before, after = raw_by_topic(src), raw_by_topic(out)
    assert set(after) == set(before) | {T.hdr_image, T.hdr_tonemapped}
    for topic, messages in before.items():
        assert after[topic] == messages, topic                      # verbatim: bytes, types, log times
    stamps = reference_stamps(src)
    assert summary["frames_out"] == summary["reference_images"] == len(stamps)
    expected = {f.stamp_ns: f for f in run_bag(src, "classical")}
    with BagReader(out) as reader:
        hdr = [(m.log_time_ns, m.msg) for m in reader.messages([T.hdr_image])]
        tm = [(m.log_time_ns, m.msg) for m in reader.messages([T.hdr_tonemapped])]
    assert [stamp_ns_of(msg) for _, msg in hdr] == stamps == [stamp_ns_of(msg) for _, msg in tm]
    assert [t for t, _ in hdr] == stamps                            # log time = the reference's
    for _, msg in hdr:
        assert msg.encoding == "32FC3" and msg.header.frame_id == "reference_optical_frame"
        frame = hdr_from_msg(msg)
        assert frame.shape == (72, 96, 3) and np.isfinite(frame).all()
        assert np.array_equal(frame, expected[stamp_ns_of(msg)].hdr)    # deterministic
    for _, msg in tm:
        assert msg.encoding == "bgr8"
        assert np.array_equal(image_to_numpy(msg), expected[stamp_ns_of(msg)].tonemapped)


def test_reconstruct_options(bags, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["reconstruct", str(bags["mcap"]), str(out), "--no-tonemapped", "--storage", "sqlite3"]) == 0
    assert any(out.glob("*.db3"))
    with BagReader(out) as reader:
        topics = reader.topics()
    assert T.hdr_tonemapped not in topics and topics[T.hdr_image][1] == len(reference_stamps(bags["mcap"]))
    # --overwrite replaces it; the remapped output topic is honoured
    assert main(["reconstruct", str(bags["mcap"]), str(out), "--overwrite",
                 "--remap", "hdr_image=/x/hdr"]) == 0
    assert any(out.glob("*.mcap")) and not any(out.glob("*.db3"))
    with BagReader(out) as reader:
        topics = reader.topics()
    assert "/x/hdr" in topics and T.hdr_image not in topics and T.hdr_tonemapped in topics
    capsys.readouterr()


def test_reconstruct_counts_malformed_messages_and_copies_them(bags, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad"
    with BagReader(bags["mcap"]) as reader, BagWriter(bad) as writer:
        refs = exps = 0
        for m in reader.messages():
            msg = m.msg
            if m.topic == T.reference_image:
                refs += 1
                if refs == 8:
                    msg = dataclasses.replace(msg, encoding="yuv422")
            elif m.topic == T.reference_exposure:
                exps += 1
                if exps == 4:
                    msg = dataclasses.replace(msg, exposure_time_us=math.nan)
            writer.write_message(m.topic, m.msgtype, msg, m.log_time_ns)
    out = tmp_path / "out"
    assert main(["reconstruct", str(bad), str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["rejected_inputs"] == {T.reference_image: {"unsupported encoding 'yuv422'": 1}}
    assert summary["grouper"]["drops"]["reference"] == {"bad exposure": 1, "missing image": 1}
    assert summary["frames_out"] == summary["reference_images"] - 2
    assert "reference bad exposure 1" in captured.err and "yuv422" in captured.err
    before, after = raw_by_topic(bad), raw_by_topic(out)
    assert all(after[t] == v for t, v in before.items())
    assert len(after[T.hdr_image]) == summary["frames_out"]


# --- evaluate ---------------------------------------------------------------------------------

def test_evaluate_scores_backends_per_bag_with_and_without_ground_truth(bags, tmp_path: Path, capsys) -> None:
    report_path = tmp_path / "eval" / "report.json"
    gt_bag, no_gt = str(bags["mcap"]), str(bags["no_gt"])
    assert main(["evaluate", gt_bag, no_gt, "--backend", "classical", "--report", str(report_path)]) == 0
    out = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["complete"] is True and report["backends"] == ["classical", "reference_only"]
    assert list(report["bags"]) == [gt_bag, no_gt]
    n = len(reference_stamps(bags["mcap"]))

    with_gt = report["bags"][gt_bag]
    c, r = with_gt["classical"], with_gt["reference_only"]
    assert c["metric_kind"] == r["metric_kind"] == "full_reference"
    assert c["metrics"]["psnr_mu"] > r["metrics"]["psnr_mu"] + 1.0
    assert c["frames"] == {"reference_images": n, "out": n, "scored": n, "without_ground_truth": 0}
    assert len(c["per_frame"]["psnr_mu"]) == len(c["per_frame"]["stamp_ns"]) == n
    assert np.mean(c["per_frame"]["psnr_mu"]) == pytest.approx(c["metrics"]["psnr_mu"])
    assert c["timing"]["per_frame_ms"] > 0 and c["drops"]["reference"] == {}
    assert c["groups_without_anchors"] == 0 and c["info_mean"]["anchors_used"] == 1.0
    info = report["bag_info"][gt_bag]
    assert info["ground_truth"] is True and info["metrics_scale"] == 1
    assert info["normalisation"]["source"] == "ground truth maximum" and info["normalisation"]["peak"] > 0

    without = report["bags"][no_gt]
    for name in ("classical", "reference_only"):
        assert without[name]["metric_kind"] == "no_reference"
        assert set(without[name]["metrics"]) == NO_REFERENCE
        assert "psnr_mu" not in without[name]["per_frame"]
    assert report["bag_info"][no_gt]["normalisation"]["source"] == "1 / min exposure (t g)"

    table = (tmp_path / "eval" / "report.md").read_text()
    assert table == report["summary_markdown"] and table in out
    assert len(report["summary"]) == 4 and table.count("| classical |") == 2
    plots = tmp_path / "eval" / "report_plots"
    names = sorted(p.name for p in plots.iterdir())
    assert names == ["rig_mcap_luminance.png", "rig_mcap_psnr_mu.png", "rig_mcap_strip.png",
                     "rig_no_gt_luminance.png", "rig_no_gt_strip.png"]
    assert all((plots / name).stat().st_size > 5000 for name in names)
    assert info["plots"]["strip"] == str(plots / "rig_mcap_strip.png")


def test_evaluate_scores_what_a_bag_recorded(bags, tmp_path: Path, capsys) -> None:
    rebuilt = tmp_path / "rebuilt"
    assert main(["reconstruct", str(bags["mcap"]), str(rebuilt)]) == 0
    report_path = tmp_path / "r.json"
    assert main(["evaluate", str(rebuilt), "--backend", "recorded", "--backend", "classical",
                 "--report", str(report_path), "--no-plots"]) == 0
    capsys.readouterr()
    entries = json.loads(report_path.read_text())["bags"][str(rebuilt)]
    assert list(entries) == ["recorded", "classical", "reference_only"]
    assert entries["recorded"]["metrics"] == pytest.approx(entries["classical"]["metrics"])
    assert "timing" in entries["recorded"] and "drops" not in entries["recorded"]
    assert not (tmp_path / "r_plots").exists()


@pytest.mark.parametrize("failure", ["interrupt", "error"])
def test_a_failed_evaluation_leaves_a_valid_partial_report(bags, tmp_path: Path, monkeypatch, capsys,
                                                           failure: str) -> None:
    real_score, calls = evaluate_cli.score, []

    def score_then_fail(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt if failure == "interrupt" else InputError("scoring broke")
        return real_score(*args, **kwargs)

    monkeypatch.setattr(evaluate_cli, "score", score_then_fail)
    report_path = tmp_path / "r.json"
    rc = main(["evaluate", str(bags["mcap"]), "--report", str(report_path), "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    report = json.loads(report_path.read_text())
    assert report["complete"] is False
    if failure == "interrupt":
        assert rc == 130 and err[-1] == "hdr-dcs: interrupted" and report["error"] == "interrupted"
    else:
        assert rc == 1 and err[-1] == "hdr-dcs: error: scoring broke" and report["error"] == "scoring broke"
    assert list(report["bags"][str(bags["mcap"])]) == ["reference_only"]     # what was done is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]          # no table, no temporary


def test_an_interrupted_reconstruction_leaves_nothing_behind(bags, tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    from hdr_dcs.cli import reconstruct as reconstruct_cli

    out = tmp_path / "out"
    assert main(["reconstruct", str(bags["mcap"]), str(out)]) == 0
    before = raw_by_topic(out)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(reconstruct_cli, "_write_frame", interrupt)
    assert main(["reconstruct", str(bags["mcap"]), str(out), "--overwrite"]) == 130
    capsys.readouterr()
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and raw_by_topic(out) == before   # old OUT kept


# --- errors: one readable line, non-zero --------------------------------------------------------

@pytest.fixture(scope="module")
def truncated(bags, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("broken") / "truncated"
    shutil.copytree(bags["mcap"], path)
    (mcap,) = path.glob("*.mcap")
    with open(mcap, "r+b") as f:
        f.truncate(mcap.stat().st_size // 2)
    return path


ERROR_CASES = ["missing", "corrupt", "unknown backend", "unavailable backend", "out exists",
               "evaluate missing", "evaluate corrupt", "evaluate unavailable backend"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_are_one_readable_line(case: str, bags, truncated, tmp_path: Path) -> None:
    src, out = bags["mcap"], tmp_path / "out"
    report = tmp_path / "r.json"
    args, expect = {
        "missing": (["reconstruct", tmp_path / "nope", out], "bag not found"),
        "corrupt": (["reconstruct", truncated, out], "cannot read bag"),
        "unknown backend": (["reconstruct", src, out, "--backend", "magic"], "unknown backend 'magic'"),
        "unavailable backend": (["reconstruct", src, out, "--backend", "@unavailable"], ""),
        "out exists": (["reconstruct", src, out], "exists already; pass --overwrite to replace it"),
        "evaluate missing": (["evaluate", tmp_path / "nope", "--report", report], "bag not found"),
        "evaluate corrupt": (["evaluate", src, truncated, "--report", report], "cannot read bag"),
        "evaluate unavailable backend": (["evaluate", src, "--backend", "@unavailable",
                                          "--report", report], ""),
    }[case]
    if "@unavailable" in args:  # a learned backend whose weights are not where it looks
        args[args.index("@unavailable")] = "location"
        expect = "no shipped weights named location_lite-*.pt"
    if case == "out exists":
        out.mkdir()
    run = hdr_dcs(*args, env={"HDR_DCS_WEIGHTS_DIR": str(tmp_path / "no_weights")})
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hdr-dcs: error: "), run.stderr
    assert expect in lines[0]
    assert not report.exists()
    if case != "out exists":
        assert not out.exists()
    assert list(tmp_path.iterdir()) in ([], [out])


def test_reconstruct_refuses_in_place_and_nested_outputs(bags, capsys) -> None:
    src = bags["mcap"]
    for out in (src, src / "inner", src.parent):
        assert main(["reconstruct", str(src), str(out), "--overwrite"]) == 1
        assert "must be another place" in capsys.readouterr().err
    assert raw_by_topic(src)          # untouched
