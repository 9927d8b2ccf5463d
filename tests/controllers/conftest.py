"""Shared helpers of the controller tests: the replay trainer command and fast loop settings."""

from __future__ import annotations

import sys

import pytest

from controllers.engine.records import JobSettings

REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]


@pytest.fixture
def replay_command() -> list[str]:
    """The replay trainer as a trainer command (a real subprocess)."""
    return list(REPLAY)


@pytest.fixture
def fast_settings() -> JobSettings:
    """Loop timing for tests: quick polls, short timeouts."""
    return JobSettings(
        poll_interval_secs=0.05,
        no_metrics_timeout_secs=3.0,
        stop_grace_secs=5.0,
        cancel_grace_secs=1.0,
        heartbeat_interval_secs=0.5,
        nan_grace_secs=1.0,
    )
