"""Test helpers of the controllers (never imported by production code): the replay trainer, waiting.

The fault points the tests trigger live in :mod:`controllers.engine.faults`; ``CRASH_ENV`` is
re-exported here for the tests that set it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable

from controllers.engine.faults import CRASH_ENV

__all__ = ["CRASH_ENV", "wait_until", "crash_with_trials"]


def wait_until(predicate: Callable[[], object], *, timeout: float = 30.0, interval: float = 0.02) -> None:
    """Poll ``predicate`` until it is true; raise AssertionError if it never is (tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not reached within {timeout} s")


def crash_with_trials(pid: int) -> list[int]:
    """SIGKILL a controller and every process below it, each trial's process group included.

    What a machine crash does to them: nothing gets to record an exit code. The
    descendants are listed (and frozen) first, so none escapes by being reparented.
    Returns the pids killed.
    """
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.suspend()
    groups = set()
    for proc in procs:
        with contextlib.suppress(OSError):
            groups.add(os.getpgid(proc.pid))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    for pgid in groups - {os.getpgid(0)}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)
    return [proc.pid for proc in procs]
