"""Early elimination of a proxy task from its correlation trajectory (issue: search cost).

A proxy that cannot win should cost as little as possible: the not-best rule lets it spend the
best proxy's whole time, but its trend usually says much earlier that it will not get there.
Pure decide-side code, like ``_stopping``: it returns a decision, a reason and the numbers that
decided it; the controller acts on it and logs it.

The trend is a least-squares line of the correlation against the training hours over the last
``window`` evaluations. Its uncertainty is the residual scatter of those points around the line
(never taken below ``noise_floor``: two points fit any line exactly, and a rank correlation of a
few models moves in steps). Two rules, checked at each evaluation below the target:

1. **Cannot reach in time** (a best proxy is known): the upper end of the line's prediction
   interval at the best proxy's final hours, ``pred + z * sigma * sqrt(1/n + (x0 - xbar)^2 / Sxx)``
   with ``x0`` the best's hours, is below the target.
2. **Plateaued below the target** (with or without a best; needs the time limit): over at least
   ``plateau_points`` evaluations the slope is not significantly positive
   (``slope <= z * se(slope)``), and the line's upper band at the last evaluation
   (``level + z * sigma``, plus the rise of its slope, if positive, up to the time limit) stays
   below the target.

Both wait until the proxy has spent ``min_fraction`` of the time it is measured against (the
best's hours, the time limit). ``bench/decision_quality.py`` simulates proxies whose ranks cross
over training (better models learn slower): their correlation starts strongly negative, pauses
and rises late, so a line through the first evaluations, or a flat stretch early on, says
nothing about where it ends. Without that wait, elimination there removed the truly cheapest
proxy in most searches; with it, it does not raise the misses (bench/RESULTS.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controllers.stats._common import as_float_array, check_real

CANNOT_REACH_BEFORE_BEST = "Cannot reach desired correlation before best time"
PLATEAUED_BELOW_DESIRED = "Correlation plateaued below desired"
SKIPPED_CANNOT_BE_CHEAPER = "Skipped: cannot be cheaper than the best"
#: States of an eliminated proxy (never successful).
ELIMINATION_STATES: frozenset[str] = frozenset(
    {CANNOT_REACH_BEFORE_BEST, PLATEAUED_BELOW_DESIRED, SKIPPED_CANNOT_BE_CHEAPER}
)

#: Defaults, chosen by ``bench/search_cost.py`` and checked by ``bench/decision_quality.py``.
DEFAULT_ELIMINATION_WINDOW = 4
DEFAULT_PLATEAU_POINTS = 4
DEFAULT_ELIMINATION_Z = 1.645
DEFAULT_NOISE_FLOOR = 0.01
DEFAULT_MIN_FRACTION = 0.7


@dataclass(frozen=True)
class Trend:
    """A line through the last evaluations of a correlation trajectory.

    Attributes:
        points: Evaluations in the fit.
        slope: Correlation per hour.
        slope_se: Standard error of the slope (from ``sigma``).
        level: The line's value at the last evaluation's hours.
        last_hours: Hours of the last evaluation.
        mean_hours: Mean hours of the fitted evaluations.
        sxx: Sum of squared deviations of the hours from their mean.
        sigma: Scatter of a point around the line (residual std, at least the noise floor).
    """

    points: int
    slope: float
    slope_se: float
    level: float
    last_hours: float
    mean_hours: float
    sxx: float
    sigma: float

    def predict(self, hours: float) -> float:
        """The line's value at ``hours``."""
        return self.level + self.slope * (hours - self.last_hours)

    def upper(self, hours: float, z: float) -> float:
        """Upper end of the prediction interval of the line's value at ``hours``."""
        half = z * self.sigma * math.sqrt(1.0 / self.points + (hours - self.mean_hours) ** 2 / self.sxx)
        return self.predict(hours) + half

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "slope_per_hour": self.slope,
            "slope_se": self.slope_se,
            "level": self.level,
            "last_hours": self.last_hours,
            "sigma": self.sigma,
        }


def correlation_trend(
    hours: Sequence[float | None], values: Sequence[float | None], *, window: int, noise_floor: float
) -> Trend | None:
    """The least-squares line of ``values`` against ``hours`` over the last ``window`` known points.

    Returns ``None`` with fewer than two known points or when their hours do not differ.
    """
    h = as_float_array(hours, "hours")
    v = as_float_array(values, "values")
    ok = np.flatnonzero(np.isfinite(h) & np.isfinite(v))[-window:]
    if ok.size < 2:
        return None
    x, y = h[ok], v[ok]
    xbar = float(x.mean())
    sxx = float(((x - xbar) ** 2).sum())
    if sxx <= 0:
        return None
    slope = float(((x - xbar) * (y - y.mean())).sum() / sxx)
    fit = y.mean() + slope * (x - xbar)
    n = int(ok.size)
    resid = float(np.sqrt(((y - fit) ** 2).sum() / (n - 2))) if n > 2 else 0.0
    sigma = max(resid, noise_floor)
    return Trend(n, slope, sigma / math.sqrt(sxx), float(fit[-1]), float(x[-1]), xbar, sxx, sigma)


@dataclass(frozen=True)
class EliminationDecision:
    """Whether to eliminate a proxy task, and why.

    Attributes:
        stop: Whether an elimination rule held.
        state: :data:`CANNOT_REACH_BEFORE_BEST`, :data:`PLATEAUED_BELOW_DESIRED` or ``""``.
        reason: The numbers that decided it.
        index: Index of the evaluation at which it held (``None`` when not).
        inputs: The trend and thresholds at that evaluation (or at the last one), for the log.
    """

    stop: bool
    state: str
    reason: str
    index: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)


def decide_elimination(
    hours: Sequence[float | None],
    correlation: Sequence[float | None],
    *,
    target: float,
    best_hours: float | None = None,
    horizon_hours: float | None = None,
    window: int = DEFAULT_ELIMINATION_WINDOW,
    plateau_points: int = DEFAULT_PLATEAU_POINTS,
    z: float = DEFAULT_ELIMINATION_Z,
    noise_floor: float = DEFAULT_NOISE_FLOOR,
    min_fraction: float = DEFAULT_MIN_FRACTION,
) -> EliminationDecision:
    """Scans the evaluations from the first; returns the first at which a rule holds (module doc).

    An evaluation whose correlation already reaches the target never eliminates (the stop rule
    decides there). ``None`` entries are skipped.

    Args:
        hours: Median training hours of each evaluation (``None`` when unknown).
        correlation: The correlation the stop rule reads, per evaluation (``None`` when invalid).
        target: The desired correlation.
        best_hours: Final hours of the best proxy so far; ``None`` disables rule 1.
        horizon_hours: The latest time the proxy may run (its time limit), or ``None``.
        window: Evaluations in the fitted line (>= 2).
        plateau_points: Evaluations needed before rule 2 (>= 2).
        z: Width of the one-sided band in standard errors (>= 0).
        noise_floor: Smallest scatter of a point around the line (>= 0).
        min_fraction: Share of the best's hours (rule 1) or of the time limit (rule 2) the proxy
            must have run before either rule may hold, in [0, 1].

    Raises:
        ValueError: Lengths differ or an option is out of range.
    """
    if len(hours) != len(correlation):
        raise ValueError(
            f"hours and correlation must have the same length, but got {len(hours)} and {len(correlation)}"
        )
    target = check_real(target, "target")
    for value, name in ((window, "window"), (plateau_points, "plateau_points")):
        if isinstance(value, bool) or int(value) != value or value < 2:
            raise ValueError(f"{name} must be an integer >= 2, but got {value!r}")
    z, noise_floor = check_real(z, "z"), check_real(noise_floor, "noise_floor")
    if z < 0 or noise_floor < 0:
        raise ValueError(f"z and noise_floor must be >= 0, but got z={z} and noise_floor={noise_floor}")
    min_fraction = check_real(min_fraction, "min_fraction")
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], but got {min_fraction}")
    best = None if best_hours is None else check_real(best_hours, "best_hours")
    horizon = None if horizon_hours is None else check_real(horizon_hours, "horizon_hours")
    h = as_float_array(hours, "hours")
    c = as_float_array(correlation, "correlation")
    base: dict[str, Any] = {
        "target": target,
        "best_training_time_hrs": best,
        "horizon_hours": horizon,
        "window": int(window),
        "plateau_points": int(plateau_points),
        "z": z,
        "noise_floor": noise_floor,
        "min_fraction": min_fraction,
    }
    last_inputs = dict(base, trend=None)
    for i in range(len(h)):
        if not (math.isfinite(h[i]) and math.isfinite(c[i])) or c[i] >= target:
            continue
        trend = correlation_trend(list(h[: i + 1]), list(c[: i + 1]), window=int(window), noise_floor=noise_floor)
        if trend is None:
            continue
        inputs = dict(base, index=i, correlation=float(c[i]), hours=float(h[i]), trend=trend.to_dict())
        last_inputs = inputs
        if best is not None and min_fraction * best <= h[i] < best:
            upper = trend.upper(best, z)
            inputs["upper_at_best"] = upper
            if upper < target:
                return EliminationDecision(
                    True,
                    CANNOT_REACH_BEFORE_BEST,
                    f"correlation {c[i]:.4g} at {h[i]:.4g} h rising {trend.slope:.4g}/h over {trend.points} "
                    f"evaluations: at most {upper:.4g} by the best proxy's {best:.4g} h, below desired {target:.4g}",
                    i,
                    inputs,
                )
        late = horizon is not None and h[i] >= min_fraction * horizon
        if late and trend.points >= plateau_points and trend.slope <= z * trend.slope_se:
            upper_now = trend.level + z * trend.sigma
            reach = upper_now
            if horizon is not None and horizon > h[i]:
                reach += max(0.0, trend.slope) * (horizon - h[i])
            inputs["upper_plateau"] = reach
            if reach < target:
                return EliminationDecision(
                    True,
                    PLATEAUED_BELOW_DESIRED,
                    f"correlation {c[i]:.4g} at {h[i]:.4g} h: slope {trend.slope:.4g}/h over {trend.points} "
                    f"evaluations is not significantly above 0 (se {trend.slope_se:.4g}) and at most {reach:.4g} "
                    f"{'now' if horizon is None else f'by {horizon:.4g} h'}, below desired {target:.4g}",
                    i,
                    inputs,
                )
    return EliminationDecision(False, "", f"no elimination rule met over {len(h)} evaluations", None, last_inputs)


def cost_order(names: Sequence[str], secs_per_step: Mapping[str, float]) -> list[str]:
    """Names cheapest first by declared seconds per step; undeclared ones after, in their order.

    A stable order (ties keep the given order), so a resumed or re-run search walks the
    candidates the same way.
    """
    declared = sorted((n for n in names if n in secs_per_step), key=lambda n: float(secs_per_step[n]))
    return declared + [n for n in names if n not in secs_per_step]


def decide_skip(
    secs_per_step: float | None, first_eval_step: int | None, best_hours: float | None
) -> EliminationDecision:
    """Skips a candidate that cannot beat the best even if it crossed at its first evaluation.

    Its cheapest possible final time is ``secs_per_step * (first_eval_step + 1)`` (the 0-based
    step of the first evaluation); when that is ``>=`` the best proxy's final hours it is not run.
    Any unknown input means it runs.
    """
    if secs_per_step is None or first_eval_step is None or best_hours is None:
        return EliminationDecision(False, "", "no declared cost, first evaluation step or best time: it runs")
    secs = check_real(secs_per_step, "secs_per_step")
    if secs < 0 or first_eval_step < 0:
        raise ValueError(f"secs_per_step and first_eval_step must be >= 0, but got {secs} and {first_eval_step}")
    floor_hours = secs * (int(first_eval_step) + 1) / 3600.0
    inputs = {
        "secs_per_step": secs,
        "first_eval_step": int(first_eval_step),
        "cheapest_possible_hours": floor_hours,
        "best_training_time_hrs": float(best_hours),
    }
    if floor_hours >= best_hours:
        return EliminationDecision(
            True,
            SKIPPED_CANNOT_BE_CHEAPER,
            f"{secs:.4g} s per step: even a crossing at its first evaluation (step {first_eval_step}) would take "
            f"{floor_hours:.4g} h >= the best proxy's {float(best_hours):.4g} h",
            None,
            inputs,
        )
    return EliminationDecision(
        False,
        "",
        f"could be cheaper: {floor_hours:.4g} h at its first evaluation < best {float(best_hours):.4g} h",
        None,
        inputs,
    )
