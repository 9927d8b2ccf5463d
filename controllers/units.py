"""Times as a person reads them: seconds, minutes or hours with 2-3 significant digits.

State files keep raw numbers (hours, as the reference); everything a person reads (CLI,
progress, status, reports) goes through :func:`human_duration`.
"""

from __future__ import annotations

import math

__all__ = ["human_duration", "human_hours"]


def _sig(value: float) -> str:
    """2 significant digits below 10, 3 from 10 on (``0.42``, ``4.2``, ``42.0`` -> ``42``)."""
    if value == 0:
        return "0"
    rounded = float(f"{value:.{2 if abs(value) < 10 else 3}g}")  # 9.96 -> 10.0, 99.98 -> 100.0
    digits = 2 if abs(rounded) < 10 else 3
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(rounded))))
    return f"{rounded:.{decimals}f}"


def human_duration(seconds: float | None) -> str:
    """``0.042 s``, ``12 s``, ``3.4 min``, ``2.1 h``; ``–`` for None or NaN; negative values keep their sign.

    The unit changes at 100 s (to minutes) and at 100 min (to hours), so a figure never has more
    than 3 significant digits and never looks like ``3.374e-06 h``.
    """
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "–"
    if math.isinf(seconds):
        return "∞"
    sign, value = ("-", -seconds) if seconds < 0 else ("", seconds)
    if value < 100:
        return f"{sign}{_sig(value)} s"
    if value < 100 * 60:
        return f"{sign}{_sig(value / 60)} min"
    return f"{sign}{_sig(value / 3600)} h"


def human_hours(hours: float | None) -> str:
    """:func:`human_duration` of a figure kept in hours (the state files' unit)."""
    return human_duration(None if hours is None else hours * 3600.0)
