"""Liveness of local processes: is this pid alive, and is it still the same process?"""

from __future__ import annotations

__all__ = ["process_start_ticks", "pid_alive"]


def process_start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", errors="replace")
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    rest = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(rest[19])  # field 22 overall; rest starts at field 3
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None) -> bool:
    """Whether ``pid`` is alive and (when known) is the same process (same start time), not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", errors="replace")
    except OSError:
        return False
    rest = stat[stat.rfind(")") + 2 :].split()
    if rest and rest[0] in ("Z", "X"):
        return False
    if start_ticks is None:
        return True
    try:
        return int(rest[19]) == start_ticks
    except (IndexError, ValueError):
        return False
