"""Fixtures for tests with real rclpy nodes over real DDS (Fast DDS on loopback)."""

from __future__ import annotations

import os
import random

import pytest


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A ROS_DOMAIN_ID of its own for the test and the processes it starts."""
    domain = random.Random(os.getpid()).randint(101, 199)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_LOCALHOST_ONLY", "1")
    return domain
