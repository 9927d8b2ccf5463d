"""Test helpers of the controllers (never imported by production code): the replay trainer, waiting.

The fault points the tests trigger live in :mod:`controllers.engine.faults`; ``CRASH_ENV`` is
re-exported here for the tests that set it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from controllers.engine.faults import CRASH_ENV

__all__ = ["CRASH_ENV", "wait_until"]


def wait_until(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; raise AssertionError if it never is (tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not reached within {timeout} s")
