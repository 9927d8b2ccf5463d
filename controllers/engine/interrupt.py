"""Ctrl-C as a request, not an exception: the job loop stops at a safe point.

The CLI installs :func:`install` for SIGINT. The first Ctrl-C only sets a flag; the job loop
(:func:`controllers.engine.jobs.run_job`) sees it at its next poll (it sleeps in short slices),
launches nothing more, posts "stop now" to its live trials (or, with ``detach``, leaves them
running and recorded), saves, and raises :class:`controllers.errors.RunInterrupted`. The
second Ctrl-C exits at once (exit 130): every state file is written atomically, so the state
on disk is the last consistent save and ``--resume`` continues from it.

Without :func:`install` (library use) nothing changes: Ctrl-C raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["install", "requested", "detach", "request", "reset", "interruptible_sleep"]

_state: dict[str, Any] = {"requested": False, "detach": False, "hint": ""}


def requested() -> bool:
    """Whether the user asked to stop (first Ctrl-C)."""
    return bool(_state["requested"])


def detach() -> bool:
    """Whether live trials are left running on an interrupt (``--detach``)."""
    return bool(_state["detach"])


def request() -> None:
    """Ask the loop to stop at its next poll (what the first Ctrl-C does; tests call it directly)."""
    _state["requested"] = True


def reset(*, detach_trials: bool = False, hint: str = "") -> None:
    """Clear the request; ``detach_trials`` and the resume ``hint`` apply to the next interrupt."""
    _state.update(requested=False, detach=detach_trials, hint=hint)


def _on_sigint(signum: int, frame: object) -> None:
    if not _state["requested"]:
        _state["requested"] = True
        print("\nstopping: no new trials; Ctrl-C again to exit at once", file=sys.stderr, flush=True)
        return
    hint = f"; resume with: {_state['hint']}" if _state["hint"] else ""
    print(f"interrupted again: exiting at once, the state is as last saved{hint}", file=sys.stderr, flush=True)
    os._exit(130)


def install(*, detach_trials: bool = False, hint: str = "") -> Callable[[], None]:
    """Handle SIGINT as described above (main thread only); returns a function that restores the old handler."""
    reset(detach_trials=detach_trials, hint=hint)
    previous = signal.signal(signal.SIGINT, _on_sigint)

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)
        reset()

    return restore


def interruptible_sleep(sleep: Callable[[float], None]) -> Callable[[float], None]:
    """``sleep`` that returns early once an interrupt is requested (only for the real ``time.sleep``)."""
    if sleep is not time.sleep:
        return sleep

    def nap(secs: float) -> None:
        end = time.monotonic() + secs
        while not requested():
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.2))

    return nap
