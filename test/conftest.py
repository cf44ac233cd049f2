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
