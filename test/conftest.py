"""Shared fixtures: where the OpenEXR sample images live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def exr_images_dir() -> Path:
    """The OpenEXR sample set: $HDR_DCS_EXR_DIR, else ../shared/data/openexr-images."""
    env = os.environ.get("HDR_DCS_EXR_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "openexr-images"


@pytest.fixture(scope="session")
def exr_dir() -> Path:
    path = exr_images_dir()
    if not (path / "ScanLines").is_dir():
        pytest.fail(f"OpenEXR sample images not found at {path}; set HDR_DCS_EXR_DIR")
    return path


_used_domains: set[int] = set()


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A ROS_DOMAIN_ID of the test's own (and of the processes it starts), localhost only."""
    import random

    rng = random.SystemRandom()
    domain = rng.randint(1, 232)
    while domain in _used_domains:
        domain = rng.randint(1, 232)
    _used_domains.add(domain)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.delenv("ROS_LOCALHOST_ONLY", raising=False)
    return domain
