"""Times as a person reads them: ``12.3 s``, ``4.5 min``, ``2.25 h`` (2-3 significant digits).

State files keep raw hours; only what is printed (CLI, progress, ``status``, reports) goes
through here. Pure functions.
"""

from __future__ import annotations

import math

__all__ = ["human_duration", "human_hours", "significant"]


def significant(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, never in e-notation (``0.00337``, ``45.6``, ``1230``)."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else str(value)
    decimals = digits - 1 - int(math.floor(math.log10(abs(value))))
    rounded = round(value, decimals)
    if rounded != 0 and int(math.floor(math.log10(abs(rounded)))) > int(math.floor(math.log10(abs(value)))):
        decimals -= 1  # 9.996 -> 10.0, not 10.00
    return f"{rounded:.{max(decimals, 0)}f}"


def human_duration(secs: float | None, *, unknown: str = "n/a") -> str:
    """Seconds -> ``"0.0121 s"``, ``"45.6 s"``, ``"12.5 min"``, ``"3.25 h"``; None -> ``unknown``."""
    if secs is None or not math.isfinite(secs):
        return unknown
    if abs(secs) < 60:
        return f"{significant(secs)} s"
    if abs(secs) < 3600:
        return f"{significant(secs / 60)} min"
    return f"{significant(secs / 3600)} h"


def human_hours(hours: float | None, *, unknown: str = "n/a") -> str:
    """Hours (as state files keep them) -> a human duration."""
    return human_duration(None if hours is None else hours * 3600.0, unknown=unknown)
