"""Liveness of local processes: is this pid alive, and is it still the same process?

Portable through psutil (Linux, macOS, Windows); no ``/proc`` parsing. A process is
identified by its pid and its *start ticks*: its start time in hundredths of a
second since boot, the number Linux keeps in ``/proc/<pid>/stat`` (so records
written by earlier versions still match), computed the same way on every platform.
"""

from __future__ import annotations

import psutil

__all__ = ["process_start_ticks", "pid_alive", "pid_stopped", "find_processes"]

_TICKS_PER_SEC = 100


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in 1/100 s since boot; None if it is gone (or not ours to see)."""
    try:
        created = psutil.Process(pid).create_time()
    except (psutil.Error, OSError, ValueError):
        return None
    return round((created - psutil.boot_time()) * _TICKS_PER_SEC)


def pid_alive(pid: int, start_ticks: int | None) -> bool:
    """Whether ``pid`` is alive and (when known) is the same process (same start time), not a zombie.

    A start time one tick off still matches (the boot time is known to the second on some systems).
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
    except psutil.AccessDenied:
        return start_ticks is None  # alive, but whose? only a pid without a start time may say yes
    except (psutil.Error, OSError, ValueError):
        return False
    if start_ticks is None:
        return True
    ticks = process_start_ticks(pid)
    return ticks is not None and abs(ticks - start_ticks) <= 1


def find_processes(argv_parts: list[str]) -> list[tuple[int, int | None]]:
    """``(pid, start ticks)`` of the live processes whose command line holds every one of ``argv_parts``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if all(part in cmdline for part in argv_parts):
            found.append((proc.pid, process_start_ticks(proc.pid)))
    return found


def pid_stopped(pid: int) -> bool:
    """Whether ``pid`` is frozen (SIGSTOP, a debugger's stop): alive, but acting on nothing."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except (psutil.Error, OSError, ValueError):
        return False
