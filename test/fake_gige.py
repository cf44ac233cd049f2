"""Aravis' fake GigE Vision camera (``arv-fake-gv-camera-0.8``) on a loopback address: a
real GVCP/GVSP device that the real Aravis stack discovers, controls and streams from.

What it renders (Aravis' arvfakecamera.c): a diagonal ramp that moves one code per frame,
scaled by the exposure, ``code = clip(((x + y + frame_id) % 255) * s, 0, 255)`` with
``s = 1 + gain + log10(exposure_us / 10000)``. ``ramp_scale`` recovers s from a frame,
so a test can tell which exposure a frame really had.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

FAKE_CAMERA = "arv-fake-gv-camera-0.8"


def expected_scale(exposure_us: float, gain: float = 0.0) -> float:
    """The fake camera's brightness factor for an exposure."""
    return 1.0 + gain + float(np.log10(exposure_us / 10000.0))


def ramp_scale(pixels: np.ndarray) -> float:
    """The brightness factor s of a Mono8 fake-camera frame (least squares over unsaturated
    pixels, for the ramp phase that fits best)."""
    h, w = pixels.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    p = pixels.astype(np.float64)
    best = (np.inf, 0.0)
    for phase in range(255):
        ramp = ((x + y + phase) % 255).astype(np.float64)
        use = (p < 250) & (ramp > 0)
        s = float(((p[use] + 0.5) * ramp[use]).sum() / (ramp[use] ** 2).sum())  # codes are truncated
        err = float(np.abs(np.floor(ramp[use] * s) - p[use]).mean())
        if err < best[0]:
            best = (err, s)
    return best[1]


def ensure_loopback_address(address: str) -> None:
    """The fake camera listens on an interface address: 127.0.0.1 always exists, a second
    camera needs another one, added to ``lo`` here (root, iproute2: scripts/setup.sh)."""
    shown = subprocess.run(["ip", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True, check=True)
    if f"inet {address}/" in shown.stdout:
        return
    added = subprocess.run(["ip", "addr", "add", f"{address}/8", "dev", "lo"], capture_output=True, text=True)
    if added.returncode != 0:
        raise RuntimeError(f"cannot add {address} to lo for a second fake camera ({added.stderr.strip()}); "
                           f"run as root: ip addr add {address}/8 dev lo")


def _discovered(address: str) -> bool:
    from hdr_dcs.camera.gige_backend import import_aravis

    aravis, _ = import_aravis()
    aravis.update_device_list()
    return any(aravis.get_device_address(i) == address for i in range(aravis.get_n_devices()))


class FakeCamera:
    """One fake camera process; ``stop`` / ``start`` unplug and replug it."""

    def __init__(self, address: str, serial: str, lost_per_thousand: int = 0, log: Path | None = None) -> None:
        if shutil.which(FAKE_CAMERA) is None:
            raise RuntimeError(f"{FAKE_CAMERA} is missing: run scripts/setup.sh (Debian package aravis-tools)")
        self.address, self.serial, self.lost = address, serial, lost_per_thousand
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        ensure_loopback_address(self.address)
        args = [FAKE_CAMERA, "-i", self.address, "-s", self.serial]
        if self.lost:
            args += ["-r", str(self.lost)]
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{FAKE_CAMERA} -i {self.address} exited with {self.proc.returncode} "
                                   "(is the address in use?)")
            if _discovered(self.address):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{FAKE_CAMERA} at {self.address} was not discovered within {timeout_s} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # unplugged: no goodbye on the wire
            self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def fake_camera(address: str, serial: str, lost_per_thousand: int = 0, log: Path | None = None) -> Iterator[FakeCamera]:
    camera = FakeCamera(address, serial, lost_per_thousand, log)
    camera.start()
    try:
        yield camera
    finally:
        camera.stop()
