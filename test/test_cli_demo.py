"""The README's main job, `hdr-dcs demo`, end to end as a user runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def hdr_dcs(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("hdr-dcs", path=str(Path(sys.executable).parent))
    assert exe, "the hdr-dcs console script is not installed next to this Python"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_demo_beats_reference_only_and_writes_everything(tmp_path: Path, exr_dir: Path) -> None:
    out = tmp_path / "demo"
    run = hdr_dcs("demo", "--out", str(out), "--scene", "desk_pan", "--exr-dir", str(exr_dir),
                  "--seconds", "0.7", "--size", "256x192")
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    c, r = report["metrics"]["classical"], report["metrics"]["reference_only"]
    assert c["psnr_mu"] > r["psnr_mu"] + 1.0
    assert report["psnr_mu_gain_db"] == pytest.approx(c["psnr_mu"] - r["psnr_mu"])
    assert len(report["per_frame_psnr_mu"]["classical"]) == 21
    # Every reference frame went through grouping with its anchors.
    assert report["grouper"]["groups_out"] == 21 and report["grouper"]["groups_without_anchors"] == 0
    for name in ("strip.png", "video.mp4", "psnr_mu.png"):
        assert (out / name).stat().st_size > 1000, name


def test_demo_missing_data_is_one_readable_line(tmp_path: Path) -> None:
    run = hdr_dcs("demo", "--out", str(tmp_path), "--scene", "desk_pan", "--exr-dir", str(tmp_path / "nowhere"))
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hdr-dcs: error:") and "not found" in lines[0]


@pytest.mark.slow
def test_demo_default_procedural_scene_needs_no_data(tmp_path: Path) -> None:
    run = hdr_dcs("demo", "--out", str(tmp_path), "--seconds", "0.5", "--size", "192x144",
                  "--exr-dir", str(tmp_path / "nowhere"))
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["scene"] == "street"
    assert report["metrics"]["classical"]["psnr_mu"] > report["metrics"]["reference_only"]["psnr_mu"]
