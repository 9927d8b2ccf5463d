"""Small input helpers shared by the statistics modules (internal)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def as_float_array(values: Sequence[float | None], name: str) -> np.ndarray:
    """Converts a sequence of numbers (``None`` allowed) to a 1-D float64 array, ``None`` -> NaN.

    Raises:
        TypeError: An entry is neither a real number nor ``None`` (booleans and strings included).
    """
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values):
        if v is None:
            out[i] = math.nan
        elif isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name}[{i}] must be a real number or None, but got {v!r}")
        else:
            out[i] = float(v)
    return out


def optional_float(value: float | None) -> float | None:
    """``None`` for ``None`` or a non-finite number, else ``float(value)`` (JSON-safe)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def check_real(value: float, name: str) -> float:
    """Returns ``float(value)``; raises ``ValueError`` naming the argument when not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, but got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, but got {value}")
    return value
