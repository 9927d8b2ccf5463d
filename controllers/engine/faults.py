"""Fault points: where tests of resume may SIGKILL a controller.

The controllers call :func:`crash_point` at a few marked points (``before_launch``,
``after_launch``, ``after_poll``, ``after_round``). When the environment variable
``PROXY_TASK_TEST_CRASH_AT`` is ``<point>:<n>``, the process SIGKILLs itself the n-th time it
passes ``<point>`` (1-based). Unset (always, outside tests), a pass costs one dict lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "PROXY_TASK_TEST_CRASH_AT"
_counts: dict[str, int] = {}


def crash_point(point: str) -> None:
    """SIGKILL this process at the configured pass of ``point`` (see the module docstring)."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    name, _, nth = spec.partition(":")
    if name != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == int(nth or "1"):
        os.kill(os.getpid(), signal.SIGKILL)
