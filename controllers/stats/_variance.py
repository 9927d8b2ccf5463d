"""Run-to-run variance and curve smoothness (the variance-measurement tool, reference §2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from controllers.stats._common import as_float_array, check_real

#: Section boundaries of the smoothness sampling, "empirically picked from step-wise LR decay".
SMOOTHNESS_SAMPLE_SECTIONS: tuple[float, ...] = (0.0, 0.7, 0.9, 1.0)
#: Points sampled per section (30 in all).
SMOOTHNESS_POINTS_PER_SECTION = 10


def _finite_values(values: Sequence[float], name: str) -> np.ndarray:
    arr = as_float_array(values, name)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} must be finite numbers, but {name}[{i}] is {values[i]!r}")
    return arr


def seed_std(values: Sequence[float]) -> float:
    """Population standard deviation (``ddof=0``) of the final scores of repeated runs.

    Args:
        values: Final scores of runs of the same model and setup (duplicates are ordinary values).

    Returns:
        The standard deviation; 0.0 for one value.

    Raises:
        ValueError: ``values`` is empty or holds ``None``/NaN/inf (drop failed runs first).
    """
    arr = _finite_values(values, "values")
    if arr.size == 0:
        raise ValueError("seed_std needs at least 1 value, but got an empty sequence")
    return float(np.std(arr))


def coefficient_of_variation(values: Sequence[float], *, min_abs_mean: float = 1e-8) -> float:
    """Coefficient of variation ``std / |mean|`` (population std), the reference's "variance".

    The reference computes ``np.std(a) / np.mean(a)`` and returns 0.0 for fewer than 2 runs; we
    return 0.0 for exactly one value too, but raise for none, and we divide by ``|mean|`` so that
    a negative-valued metric cannot produce a negative (always "good") variance.

    Args:
        values: Final scores of the repeated runs; duplicates are ordinary values.
        min_abs_mean: The CV is refused when ``|mean| < min_abs_mean`` (it explodes near 0).

    Returns:
        The coefficient of variation (>= 0); 0.0 for a single value.

    Raises:
        ValueError: ``values`` is empty, holds ``None``/NaN/inf, or its mean is too close to 0.
    """
    min_abs_mean = check_real(min_abs_mean, "min_abs_mean")
    if min_abs_mean < 0:
        raise ValueError(f"min_abs_mean must be >= 0, but got {min_abs_mean}")
    arr = _finite_values(values, "values")
    if arr.size == 0:
        raise ValueError("coefficient_of_variation needs at least 1 value, but got an empty sequence")
    if arr.size == 1:
        return 0.0
    mean = float(np.mean(arr))
    if abs(mean) < min_abs_mean or mean == 0.0:
        raise ValueError(
            f"coefficient of variation is undefined: |mean| = {abs(mean):.3g} is below "
            f"min_abs_mean={min_abs_mean:.3g} (values too close to zero)"
        )
    return float(np.std(arr) / abs(mean))


def smoothness_sample_points() -> np.ndarray:
    """The 30 sample points of the reference: 10 per section [0,0.7), [0.7,0.9), [0.9,1.0)."""
    sections = SMOOTHNESS_SAMPLE_SECTIONS
    parts = [
        np.arange(start, end, (end - start) / SMOOTHNESS_POINTS_PER_SECTION)
        for start, end in zip(sections[:-1], sections[1:], strict=True)
    ]
    return np.concatenate(parts)


def linear_spline_derivative(x: np.ndarray, y: np.ndarray, at: np.ndarray) -> np.ndarray:
    """First derivative of the piecewise-linear interpolant of ``(x, y)`` at the points ``at``.

    Equivalent to ``splev(at, splrep(x, y, k=1, s=0), der=1)``: the slope of the segment that
    contains each point; at an interior knot the right-hand segment, at or beyond the last knot
    the last segment, before the first knot the first segment.

    Args:
        x: Strictly increasing knots (at least 2).
        y: Values at the knots.
        at: Evaluation points.
    """
    slopes = np.diff(y) / np.diff(x)
    seg = np.searchsorted(x, at, side="right") - 1
    seg = np.clip(seg, 0, slopes.shape[0] - 1)
    return slopes[seg]


def smoothness(pcts: Sequence[float], accuracies: Sequence[float]) -> float:
    """The reference's smoothness of one validation curve (lower is smoother; 0 is monotone).

    Both axes are min-max normalised to [0, 1]; the curve is the linear interpolating spline
    (``splrep(k=1, s=0)``); its first derivative is sampled at :func:`smoothness_sample_points`;
    the result is ``|sum of the negative derivative values|`` (not multiplied by the spacing,
    exactly as the reference, so it depends on the 30-point sampling).

    Args:
        pcts: Training-step percentages, strictly increasing (duplicates are rejected).
        accuracies: Accuracy at each percentage, same length.

    Returns:
        The smoothness; 0.0 for fewer than 2 points and for a constant curve (the reference
        divides by zero there).

    Raises:
        ValueError: Lengths differ, a value is ``None``/NaN/inf, or ``pcts`` is not strictly
            increasing.
    """
    if len(pcts) != len(accuracies):
        raise ValueError(
            f"pcts and accuracies must have the same length, but got len(pcts)={len(pcts)} "
            f"and len(accuracies)={len(accuracies)}"
        )
    x = _finite_values(pcts, "pcts")
    y = _finite_values(accuracies, "accuracies")
    if x.size < 2:
        return 0.0
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"pcts must be strictly increasing, but got {list(pcts)!r}")
    y_range = float(y.max() - y.min())
    if y_range == 0.0:
        return 0.0
    xn = (x - x.min()) / (x.max() - x.min())
    yn = (y - y.min()) / y_range
    deriv = linear_spline_derivative(xn, yn, smoothness_sample_points())
    return float(abs(np.sum(deriv[deriv < 0])))


def mean_smoothness(curves: Sequence[tuple[Sequence[float], Sequence[float]]]) -> float:
    """Mean of :func:`smoothness` over ``(pcts, accuracies)`` curves; 0.0 for no curves.

    Raises:
        ValueError: As :func:`smoothness`, for any curve.
    """
    if len(curves) == 0:
        return 0.0
    return float(np.mean([smoothness(p, a) for p, a in curves]))
