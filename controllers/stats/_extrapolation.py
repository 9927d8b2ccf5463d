"""Learning-curve extrapolation: a trial's predicted accuracy at the end of its schedule.

Early in training, models that learn slower but end higher rank below faster ones: the raw
accuracy at a step ranks by speed as much as by quality. Fitting each curve and ranking by
the predicted final accuracy removes part of that, at the price of a fit's uncertainty.

Two saturating families of the progress ``x = (step + 1) / (horizon + 1)`` in ``(0, 1]``:

* ``exp``: exponential saturation ``a - b exp(-r x)``;
* ``power``: power law ``a - b x^-c``.

Each is written with its value at ``x = 1`` as a parameter, ``p - q (e^-rx - e^-r) / r`` and
``p - q (x^-c - 1) / c`` (finite as ``r`` or ``c`` go to 0: a line, a log). Both are linear in
``(p, q)`` for a fixed rate ``r`` or exponent ``c``, so the fit first solves the linear least
squares on a grid of rates (no starting guess to get wrong), then refines all three
parameters with ``scipy.optimize.curve_fit`` from the best grid point. The family with the
lower AIC wins (both have three parameters, so that is the lower residual sum of squares). The
prediction is ``p``, its std ``p``'s from the fit's covariance, widened for the residuals'
lag-1 autocorrelation (a curve's noise is smooth, so its points are not independent). A curve
with too few points, a failed fit, or a prediction that leaves the observed range by more than
``max_extrapolation`` observed spans (or is that uncertain) falls back to the last observed
value, with the reason.

The std covers the noise the fit sees, not a family that is wrong for the curve, nor a drift
the fit absorbs: in ``bench/decision_quality.py`` the error of a prediction from noisy curves
is two to four times its std (bench/RESULTS.md).

Pure: numbers in, numbers out (no I/O, no clocks).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from controllers.stats._common import check_real
from controllers.stats._retrain import roughness_std

__all__ = [
    "DEFAULT_MIN_FIT_POINTS",
    "DEFAULT_MAX_EXTRAPOLATION",
    "CURVE_MODELS",
    "Extrapolation",
    "extrapolate_curve",
    "extrapolate_curves",
]

#: Fewest finite points for a fit: three parameters and at least two residual degrees of freedom.
DEFAULT_MIN_FIT_POINTS = 5
#: How far (in observed spans of the curve) a prediction may leave the observed range.
DEFAULT_MAX_EXTRAPOLATION = 2.0
#: The fitted families; ``last`` is the fallback (the last observed value), ``none`` no data.
CURVE_MODELS = ("exp", "power", "last", "none")

# log-rate grid of the exponential (r from ~0.1 to ~150) and log-exponent grid of the power law
_EXP_GRID = np.linspace(math.log(0.1), math.log(150.0), 40)
_POW_GRID = np.linspace(math.log(0.02), math.log(4.0), 40)


@dataclass(frozen=True)
class Extrapolation:
    """A trial's predicted accuracy at its horizon.

    Attributes:
        prediction: The predicted accuracy (``None`` only without any finite point).
        std: Its standard deviation (finite, >= 0; ``None`` without any finite point).
        model: ``"exp"``, ``"power"``, ``"last"`` (fallback) or ``"none"``.
        reason: Why this model, in words.
        n_points: Finite points the prediction is based on.
    """

    prediction: float | None
    std: float | None
    model: str
    reason: str
    n_points: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "prediction": self.prediction,
            "std": self.std,
            "model": self.model,
            "reason": self.reason,
            "n_points": self.n_points,
        }


def _exp(x: np.ndarray, p: float, q: float, t: float) -> np.ndarray:
    r = np.exp(t)
    return p - q * (np.exp(-r * x) - np.exp(-r)) / r


def _power(x: np.ndarray, p: float, q: float, t: float) -> np.ndarray:
    c = np.exp(t)
    return p - q * (x ** (-c) - 1.0) / c


def _basis(name: str, x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The non-constant basis column for every grid value, shape (grid, n): ``f = p + q g``."""
    k = np.exp(grid)[:, None]
    if name == "exp":
        return -(np.exp(-k * x[None, :]) - np.exp(-k)) / k
    return -(x[None, :] ** (-k) - 1.0) / k


def _grid_start(name: str, x: np.ndarray, z: np.ndarray) -> tuple[float, float, float]:
    """Best (p, q, t) over the grid, each with its exact linear least squares in (p, q)."""
    grid = _EXP_GRID if name == "exp" else _POW_GRID
    g = _basis(name, x, grid)
    gm = g.mean(axis=1, keepdims=True)
    zm = z.mean()
    gc = g - gm
    var = (gc * gc).sum(axis=1)
    q = np.where(var > 0, (gc * (z - zm)).sum(axis=1) / np.where(var > 0, var, 1.0), 0.0)
    p = zm - q * gm[:, 0]
    rss = ((p[:, None] + q[:, None] * g - z) ** 2).sum(axis=1)
    i = int(np.argmin(rss))
    return float(p[i]), float(q[i]), float(grid[i])


def _fit(name: str, x: np.ndarray, z: np.ndarray) -> tuple[float, float, float] | None:
    """(prediction at x = 1, its std, RSS) on the normalised scale, or ``None`` if the fit fails.

    Both families are written so that their first parameter is the value at ``x = 1``: the
    prediction's variance is that parameter's, straight from the covariance.
    """
    from scipy.optimize import curve_fit

    f = _exp if name == "exp" else _power
    p0 = _grid_start(name, x, z)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, pcov = curve_fit(f, x, z, p0=p0, method="lm", maxfev=600)
    except (RuntimeError, ValueError, OverflowError, FloatingPointError):
        return None
    with np.errstate(all="ignore"):
        resid = f(x, *popt) - z
        rss = float(np.dot(resid, resid))
    pred, var = float(popt[0]), float(np.asarray(pcov, dtype=float)[0, 0])
    if not (math.isfinite(pred) and math.isfinite(rss) and math.isfinite(var)) or var < 0:
        return None
    return pred, math.sqrt(var * _autocorrelation_inflation(resid)), rss


def _autocorrelation_inflation(resid: np.ndarray) -> float:
    """Variance factor ``(1 + rho) / (1 - rho)`` for residuals with lag-1 autocorrelation ``rho``.

    The covariance assumes independent residuals; a learning curve's noise is smooth (a run
    drifts for a while), so neighbouring residuals agree and the curve has fewer independent
    points than it seems. An AR(1) noise has this many times the variance of the mean; ``rho``
    is clipped to [0, 0.9] (a factor from 1 to 19).
    """
    den = float(np.dot(resid, resid))
    if resid.size < 3 or not den > 0:
        return 1.0
    rho = min(0.9, max(0.0, float(np.dot(resid[1:], resid[:-1])) / den))
    return (1.0 + rho) / (1.0 - rho)


def _fallback(y: np.ndarray, reason: str) -> Extrapolation:
    rough = roughness_std([list(y)]) if y.size >= 5 else None
    std = rough if rough is not None else (float(np.std(y)) if y.size > 1 else 0.0)
    return Extrapolation(float(y[-1]), std, "last", reason, int(y.size))


def extrapolate_curve(
    steps: Sequence[int],
    accuracies: Sequence[float | None],
    *,
    horizon: int | None,
    min_points: int = DEFAULT_MIN_FIT_POINTS,
    max_extrapolation: float = DEFAULT_MAX_EXTRAPOLATION,
) -> Extrapolation:
    """Predicts one curve's accuracy at step ``horizon`` from the points given.

    Args:
        steps: 0-based training steps, strictly increasing.
        accuracies: The accuracy at each step; ``None``/NaN/inf points are left out.
        horizon: The 0-based last step of the trial's schedule; ``None``: unknown (fallback).
        min_points: Fewest finite points to fit (>= 4: three parameters and a residual).
        max_extrapolation: A prediction farther than this many observed spans outside the
            observed range, or with a std larger than that, is a diverged fit (fallback).

    Returns:
        An :class:`Extrapolation`; with no finite point, ``prediction`` and ``std`` are ``None``.
        A curve that already reached its horizon, a flat one, too short a one, or a failed or
        diverged fit gives the last observed value (``model == "last"``), with the std of the
        curve's own noise (its roughness, or the spread of its few points).

    Raises:
        ValueError: Lengths differ, steps are not strictly increasing or negative, or an option
            is out of range.
    """
    if len(steps) != len(accuracies):
        raise ValueError(f"steps and accuracies must have the same length, but got {len(steps)} and {len(accuracies)}")
    if isinstance(min_points, bool) or int(min_points) != min_points or min_points < 4:
        raise ValueError(f"min_points must be an integer >= 4, but got {min_points!r}")
    max_extrapolation = check_real(max_extrapolation, "max_extrapolation")
    if max_extrapolation <= 0:
        raise ValueError(f"max_extrapolation must be > 0, but got {max_extrapolation}")
    s = np.array([int(v) for v in steps], dtype=float)
    if s.size and (s[0] < 0 or np.any(np.diff(s) <= 0)):
        raise ValueError(f"steps must be >= 0 and strictly increasing, but got {list(steps)}")
    y = np.array([math.nan if v is None else float(v) for v in accuracies], dtype=float)
    keep = np.isfinite(y)
    s, y = s[keep], y[keep]
    dropped = int((~keep).sum())
    note = f" ({dropped} non-finite point{'s' if dropped != 1 else ''} left out)" if dropped else ""
    if y.size == 0:
        return Extrapolation(None, None, "none", "no finite accuracy" + note, 0)
    if horizon is None:
        return _fallback(y, "no horizon known: the last observed value" + note)
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 0:
        raise ValueError(f"horizon must be an integer >= 0 or None, but got {horizon!r}")
    if s[-1] >= horizon:
        return _fallback(y, f"reached the horizon (step {int(horizon)}): the last observed value" + note)
    if y.size < min_points:
        return _fallback(y, f"{y.size} point(s) < {min_points} needed for a fit: the last observed value" + note)
    span = float(y.max() - y.min())
    if span <= 1e-12 * max(1.0, float(np.abs(y).max())):
        return _fallback(y, "flat curve: the last observed value" + note)
    x = (s + 1.0) / (float(horizon) + 1.0)
    z = (y - y[-1]) / span  # observed range has width 1 on this scale
    fits = {name: _fit(name, x, z) for name in ("exp", "power")}
    n = y.size
    aic = {
        name: n * math.log(max(f[2], 1e-300) / n) + 2 * 3 for name, f in fits.items() if f is not None
    }  # equal parameter counts: AIC orders by the residual sum of squares
    if not aic:
        return _fallback(y, "both fits failed: the last observed value" + note)
    best = min(aic, key=lambda k: (aic[k], k))
    pred_z, std_z, _ = fits[best]  # type: ignore[misc]
    lo, hi = float(z.min()) - max_extrapolation, float(z.max()) + max_extrapolation
    if not lo <= pred_z <= hi:
        return _fallback(
            y,
            f"{best} fit diverged (prediction {pred_z:+.2f} spans from the last value): the last observed value" + note,
        )
    if std_z > max_extrapolation:
        return _fallback(y, f"{best} fit too uncertain (std {std_z:.2f} spans): the last observed value" + note)
    other = "power" if best == "exp" else "exp"
    versus = f" vs {other} {aic[other]:.1f}" if other in aic else f" ({other} fit failed)"
    return Extrapolation(
        float(y[-1] + pred_z * span),
        float(std_z * span),
        best,
        f"{best} fit on {n} points, AIC {aic[best]:.1f}{versus}" + note,
        int(n),
    )


def extrapolate_curves(
    curves: Sequence[Sequence[tuple[int, float]]],
    horizons: Sequence[int | None],
    *,
    min_points: int = DEFAULT_MIN_FIT_POINTS,
    max_extrapolation: float = DEFAULT_MAX_EXTRAPOLATION,
    cache: dict[tuple, Any] | None = None,
) -> list[list[Extrapolation]]:
    """For every trial and each of its points, the extrapolation from its points up to there.

    ``out[k][i]`` is trial ``k``'s prediction at its horizon from its first ``i + 1`` points:
    the score it would get if it were judged at its ``i``-th recorded step.

    Args:
        curves: Per trial, increasing ``(step, accuracy)`` pairs.
        horizons: Per trial, the 0-based last step of its schedule (``None`` = unknown).
        min_points, max_extrapolation: As in :func:`extrapolate_curve`.
        cache: Optional dict reused across calls (a controller's polls): a prefix already fitted
            is not fitted again, so a poll only fits the points that are new.

    Raises:
        ValueError: ``curves`` and ``horizons`` differ in length, or as :func:`extrapolate_curve`.
    """
    if len(curves) != len(horizons):
        raise ValueError(f"need one horizon per curve, but got {len(curves)} curves and {len(horizons)} horizons")
    out: list[list[Extrapolation]] = []
    for points, horizon in zip(curves, horizons):
        steps = [int(p[0]) for p in points]
        accs = [p[1] for p in points]
        row = []
        for i in range(len(points)):
            key = ("extrapolation", tuple(points[: i + 1]), horizon, min_points, max_extrapolation)
            got = cache.get(key) if cache is not None else None
            if got is None:
                got = extrapolate_curve(
                    steps[: i + 1],
                    accs[: i + 1],
                    horizon=horizon,
                    min_points=min_points,
                    max_extrapolation=max_extrapolation,
                )
                if cache is not None:
                    cache[key] = got
            row.append(got)
        out.append(row)
    return out
