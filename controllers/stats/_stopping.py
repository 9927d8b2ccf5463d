"""Per-step statistics, crossing point, stop decision and best proxy (reference §4.3, §4.4, §4.6).

Pure decide-side code (STYLE rule 4): nothing here posts a stop signal; it returns a decision
and a reason for the controller loop to act on and log. ``None`` means "no data" or "rule
disabled"; 0.0 is always a real value or threshold. No sentinel (-1, -5) is ever used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Literal, NamedTuple

import numpy as np

from controllers.stats._common import as_float_array, check_real

# ``stopping_state`` strings of SEARCH_CONTROLLER_STATE.json (reference §4.7).
MET_DESIRED_ACCURACY_CORRELATION = "Met desired correlation"
MET_DESIRED_ACCURACY = "Met desired accuracy"
EXCEEDED_TRAIN_TIME_LIMIT = "Exceeded training time limit"
EXCEEDED_BEST_TRAIN_TIME = "Exceeded best training time"
NOT_STOPPED = ""
#: States that make a proxy task "successful" (candidates for the best proxy).
SUCCESSFUL_STATES: frozenset[str] = frozenset({MET_DESIRED_ACCURACY_CORRELATION, MET_DESIRED_ACCURACY})

StopRule = Literal["point", "lower_bound", "retrain"]
STOP_RULES: tuple[str, ...] = ("point", "lower_bound", "retrain")
#: Defaults of the ``retrain`` rule, chosen by ``bench/decision_quality.py``.
DEFAULT_FALSE_PASS_RATE = 0.05
DEFAULT_CONFIRM = 2
#: Evaluations averaged per model before the ``retrain`` rule's probability.
DEFAULT_SMOOTH = 2


@dataclass(frozen=True)
class Crossing:
    """Where a per-step series first reaches a target.

    Attributes:
        step: Training step at the crossing (interpolated, so fractional).
        step_int: ``floor(step)`` (the reference stores ``int(...)`` of the same value).
        hours: Median training hours at the crossing (interpolated), >= 0.
        index: Index of the first step whose value reaches the target.
        interpolated: Whether ``step``/``hours`` were interpolated from the previous step.
    """

    step: float
    step_int: int
    hours: float
    index: int
    interpolated: bool

    def to_dict(self) -> dict[str, object]:
        """Returns a dict of standard-JSON values."""
        return asdict(self)


def _hours_array(hours: Sequence[float | None], name: str = "hours") -> np.ndarray:
    arr = as_float_array(hours, name)
    bad = np.flatnonzero(np.isinf(arr) | (arr < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name} must be finite and >= 0 (or None), but {name}[{i}] is {hours[i]!r}")
    return arr


def crossing_point(
    steps: Sequence[float],
    values: Sequence[float | None],
    hours: Sequence[float | None],
    target: float,
) -> Crossing | None:
    """First point at which ``values`` reaches ``target``, linearly interpolated.

    An index counts only when both its value and its hours are known (not ``None``/NaN). Let
    ``k`` be the first such index with ``values[k] >= target``. If ``k > 0`` and index ``k-1`` is
    known too (so ``values[k-1] < target``), step and hours are interpolated at the fraction
    ``(target - values[k-1]) / (values[k] - values[k-1])`` between ``k-1`` and ``k``; otherwise
    the crossing is at ``k`` itself. Unlike the reference, an invalid previous step (its -5/-1
    sentinels) never enters the interpolation, so hours are never negative.

    Args:
        steps: Training step of each index (e.g. the absolute 0-based step).
        values: The series (correlation, its CI lower bound or median accuracy); ``None``/NaN
            for an invalid step.
        hours: Median training hours of each index; ``None``/NaN when unknown.
        target: Threshold to reach (``>=``); 0.0 is a real threshold.

    Returns:
        A :class:`Crossing`, or ``None`` when the target is never reached (or inputs are empty).

    Raises:
        ValueError: Lengths differ, ``target`` or a step is not finite, or an hours value is
            negative or infinite.
    """
    if not (len(steps) == len(values) == len(hours)):
        raise ValueError(
            f"steps, values and hours must have the same length, but got {len(steps)}, {len(values)} and {len(hours)}"
        )
    target = check_real(target, "target")
    s = as_float_array(steps, "steps")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"steps must be finite numbers, but got {list(steps)!r}")
    v = as_float_array(values, "values")
    h = _hours_array(hours)
    known = np.isfinite(v) & np.isfinite(h)
    hits = np.flatnonzero(known & (v >= target))
    if hits.size == 0:
        return None
    k = int(hits[0])
    if k > 0 and known[k - 1]:
        frac = (target - v[k - 1]) / (v[k] - v[k - 1])  # v[k-1] < target <= v[k]
        step = float(s[k - 1] + frac * (s[k] - s[k - 1]))
        hrs = float(h[k - 1] + frac * (h[k] - h[k - 1]))
        return Crossing(step, math.floor(step), max(0.0, hrs), k, True)
    return Crossing(float(s[k]), math.floor(float(s[k])), float(h[k]), k, False)


@dataclass(frozen=True)
class StepSeries:
    """Per-step statistics of one proxy task, one entry per recorded training step.

    Attributes:
        training_steps: Absolute 0-based training step of each entry, increasing.
        correlation: Rank correlation at each step, ``None`` when invalid.
        ci_low: Lower end of its bootstrap interval, ``None`` when unknown.
        median_accuracy: Median proxy accuracy, ``None`` when no valid trial.
        median_hours: Median training hours, ``None`` when unknown.
        hold_prob: Probability that the correlation holds under retraining noise (see
            ``controllers.stats.hold_probability``), ``None`` when unknown; ``None`` for the whole
            list when not computed (the ``retrain`` rule then never fires).
    """

    training_steps: Sequence[int]
    correlation: Sequence[float | None]
    ci_low: Sequence[float | None]
    median_accuracy: Sequence[float | None]
    median_hours: Sequence[float | None]
    hold_prob: Sequence[float | None] | None = None

    def __post_init__(self) -> None:
        names = ["training_steps", "correlation", "ci_low", "median_accuracy", "median_hours"]
        if self.hold_prob is not None:
            names.append("hold_prob")
        lengths = {name: len(getattr(self, name)) for name in names}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"StepSeries lists must have the same length, but got {lengths}")

    def __len__(self) -> int:
        return len(self.training_steps)


@dataclass(frozen=True)
class StopDecision:
    """Whether to stop a proxy task, and why.

    Attributes:
        stop: Whether a stopping rule held.
        state: The reference ``stopping_state`` string (``""`` when not stopped).
        reason: Human-readable explanation with the numbers that decided it.
        crossing: Interpolated crossing for the two success states, else ``None``.
        index: Index of the step at which the rule held (``None`` when not stopped); later than
            the crossing's when the rule needed confirmation.
    """

    stop: bool
    state: str
    reason: str
    crossing: Crossing | None
    index: int | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the state is one of :data:`SUCCESSFUL_STATES`."""
        return self.state in SUCCESSFUL_STATES


def _optional_threshold(value: float | None, name: str) -> float | None:
    return None if value is None else check_real(value, name)


def decide_stop(
    series: StepSeries,
    *,
    desired_correlation: float | None = None,
    desired_accuracy: float | None = None,
    training_time_hrs_limit: float | None = None,
    best_training_time_hrs: float | None = None,
    early_stop_if_not_best: bool = False,
    stop_rule: StopRule = "point",
    false_pass_rate: float = DEFAULT_FALSE_PASS_RATE,
    confirm: int = DEFAULT_CONFIRM,
) -> StopDecision:
    """Decides whether a proxy task should stop (reference §4.4, without its truthiness bugs).

    Indices are scanned from the first; at the first index where a rule holds the decision is
    returned. At each index the rules are checked in the reference order:

    1. ``desired_correlation`` is not None and the correlation (``stop_rule="point"``) or its CI
       lower bound (``"lower_bound"``) is ``>=`` it -> "Met desired correlation". With
       ``"retrain"``, the probability that it holds under retraining noise
       (``series.hold_prob``) is ``>= 1 - false_pass_rate`` at this index and the ``confirm - 1``
       before it; the crossing is then the first index of that run (not interpolated: the proxy
       needs that many steps, the later ones only confirmed it).
    2. ``desired_accuracy`` is not None and the median accuracy is ``>=`` it -> "Met desired accuracy".
    3. ``training_time_hrs_limit`` is not None and the median hours are ``>=`` it ->
       "Exceeded training time limit".
    4. ``early_stop_if_not_best`` and ``best_training_time_hrs`` is not None and the median hours
       are ``>=`` it -> "Exceeded best training time".

    A ``None`` entry never satisfies a rule. Rules 1 and 2 also need the step's median hours
    (the crossing's time is what ranks proxies), so a step without hours does not count for them;
    their crossing comes from :func:`crossing_point` on the same series.

    Args:
        series: The per-step statistics.
        desired_correlation: Target correlation, in [-1, 1]; ``None`` disables rule 1.
        desired_accuracy: Target median accuracy; ``None`` disables rule 2.
        training_time_hrs_limit: Time limit in hours (>= 0); ``None`` disables rule 3.
        best_training_time_hrs: Final hours of the best proxy so far (>= 0); ``None`` disables rule 4.
        early_stop_if_not_best: Enables rule 4.
        stop_rule: ``"point"`` (the reference's), ``"lower_bound"`` (the bootstrap CI over models
            must clear the target) or ``"retrain"`` (it must hold under retraining noise).
        false_pass_rate: ``retrain`` only: accepted probability that the noise-free correlation
            is below the target, in (0, 1).
        confirm: ``retrain`` only: consecutive evaluations that must pass (>= 1).

    Returns:
        A :class:`StopDecision`; ``stop=False`` with state ``""`` when no rule held.

    Raises:
        ValueError: An option is out of range or ``stop_rule`` is unknown.
    """
    if stop_rule not in STOP_RULES:
        raise ValueError(f"stop_rule must be 'point', 'lower_bound' or 'retrain', but got {stop_rule!r}")
    false_pass_rate = check_real(false_pass_rate, "false_pass_rate")
    if not 0.0 < false_pass_rate < 1.0:
        raise ValueError(f"false_pass_rate must be in (0, 1), but got {false_pass_rate}")
    if isinstance(confirm, bool) or int(confirm) != confirm or confirm < 1:
        raise ValueError(f"confirm must be an integer >= 1, but got {confirm!r}")
    desired_correlation = _optional_threshold(desired_correlation, "desired_correlation")
    if desired_correlation is not None and not -1.0 <= desired_correlation <= 1.0:
        raise ValueError(f"desired_correlation must be in [-1, 1], but got {desired_correlation}")
    desired_accuracy = _optional_threshold(desired_accuracy, "desired_accuracy")
    limit = _optional_threshold(training_time_hrs_limit, "training_time_hrs_limit")
    best = _optional_threshold(best_training_time_hrs, "best_training_time_hrs")
    for value, name in ((limit, "training_time_hrs_limit"), (best, "best_training_time_hrs")):
        if value is not None and value < 0:
            raise ValueError(f"{name} must be >= 0, but got {value}")

    corr_series = series.ci_low if stop_rule == "lower_bound" else series.correlation
    corr_label = "correlation CI lower bound" if stop_rule == "lower_bound" else "correlation"
    steps = list(series.training_steps)
    corr = as_float_array(corr_series, "correlation")
    acc = as_float_array(series.median_accuracy, "median_accuracy")
    hrs = _hours_array(series.median_hours, "median_hours")
    has_hours = np.isfinite(hrs)
    need = 1.0 - false_pass_rate
    passes = np.zeros(len(series), dtype=bool)
    if stop_rule == "retrain" and series.hold_prob is not None:
        prob = as_float_array(series.hold_prob, "hold_prob")
        passes = np.isfinite(prob) & (prob >= need - 1e-12) & has_hours
    run = 0

    for i in range(len(series)):
        where = f"at step {steps[i]} (index {i})"
        run = run + 1 if passes[i] else 0
        if desired_correlation is not None and stop_rule == "retrain" and run >= confirm:
            k = i - int(confirm) + 1
            confirmed = Crossing(float(steps[k]), math.floor(float(steps[k])), float(hrs[k]), k, False)
            assert series.hold_prob is not None
            probs = ", ".join(f"{float(series.hold_prob[j]):.0%}" for j in range(k, i + 1))  # type: ignore[arg-type]
            return StopDecision(
                True,
                MET_DESIRED_ACCURACY_CORRELATION,
                f"holds under retraining noise: P({corr_label} >= {desired_correlation:.4g}) = {probs} "
                f">= {need:.0%} on {confirm} consecutive evaluation(s) from step {steps[k]} "
                f"(correlation {corr[k]:.4g}) to step {steps[i]} (index {i})",
                confirmed,
                i,
            )
        if (
            desired_correlation is not None
            and stop_rule != "retrain"
            and has_hours[i]
            and corr[i] >= desired_correlation
        ):
            crossing = crossing_point(
                steps[: i + 1], corr_series[: i + 1], series.median_hours[: i + 1], desired_correlation
            )
            return StopDecision(
                True,
                MET_DESIRED_ACCURACY_CORRELATION,
                f"{corr_label} {corr[i]:.4g} >= desired {desired_correlation:.4g} {where}",
                crossing,
                i,
            )
        if desired_accuracy is not None and has_hours[i] and acc[i] >= desired_accuracy:
            crossing = crossing_point(
                steps[: i + 1], series.median_accuracy[: i + 1], series.median_hours[: i + 1], desired_accuracy
            )
            return StopDecision(
                True,
                MET_DESIRED_ACCURACY,
                f"median accuracy {acc[i]:.4g} >= desired {desired_accuracy:.4g} {where}",
                crossing,
                i,
            )
        if limit is not None and has_hours[i] and hrs[i] >= limit:
            return StopDecision(
                True,
                EXCEEDED_TRAIN_TIME_LIMIT,
                f"median training time {hrs[i]:.4g} h >= limit {limit:.4g} h {where}",
                None,
                i,
            )
        if early_stop_if_not_best and best is not None and has_hours[i] and hrs[i] >= best:
            return StopDecision(
                True,
                EXCEEDED_BEST_TRAIN_TIME,
                f"median training time {hrs[i]:.4g} h >= best proxy's final time {best:.4g} h {where}",
                None,
                i,
            )
    return StopDecision(False, NOT_STOPPED, f"no stopping rule met over {len(series)} steps", None)


def median_accuracy_and_hours(
    accuracies: Sequence[float | None],
    seconds_per_step: Sequence[float | None],
    training_step: int,
) -> tuple[float | None, float | None]:
    """Median accuracy and median training hours over the trials at one training step.

    Args:
        accuracies: Each trial's accuracy at ``training_step``; ``None``/NaN/inf = no valid value.
        seconds_per_step: Each trial's average training seconds per step; ``None``/NaN = unknown.
        training_step: The 0-based training step (``training_step + 1`` steps have been done).

    Returns:
        ``(median_accuracy, median_hours)``. The accuracy is the true median of the valid
        accuracies (the two middle values averaged for an even count, unlike the reference's
        upper median). The hours are the median, over trials with a valid accuracy and known
        seconds per step, of ``seconds_per_step * (training_step + 1) / 3600`` (each trial's own
        time, and no 0-based off-by-one). Either is ``None`` when no trial qualifies.
        Duplicate values are ordinary values.

    Raises:
        ValueError: Lengths differ, ``training_step < 0`` or a seconds value is negative/infinite.
    """
    if len(accuracies) != len(seconds_per_step):
        raise ValueError(
            f"accuracies and seconds_per_step must have the same length, but got "
            f"len(accuracies)={len(accuracies)} and len(seconds_per_step)={len(seconds_per_step)}"
        )
    if isinstance(training_step, bool) or int(training_step) != training_step or training_step < 0:
        raise ValueError(f"training_step must be an integer >= 0, but got {training_step!r}")
    acc = as_float_array(accuracies, "accuracies")
    sps = _hours_array(seconds_per_step, "seconds_per_step")
    ok = np.isfinite(acc)
    if not ok.any():
        return None, None
    median_acc = float(np.median(acc[ok]))
    timed = ok & np.isfinite(sps)
    if not timed.any():
        return median_acc, None
    hours = sps[timed] * (int(training_step) + 1) / 3600.0
    return median_acc, float(np.median(hours))


def median_accuracy_and_time(
    accuracies: Sequence[float | None], seconds_done: Sequence[float | None]
) -> tuple[float | None, float | None]:
    """Median accuracy and median training hours over the trials at one step, from true times.

    Args:
        accuracies: Each trial's accuracy at the step; ``None``/NaN/inf = no valid value.
        seconds_done: Each trial's cumulative training seconds up to that step, as recorded
            (``controllers.stats.seconds_at_step``); ``None``/NaN = unknown.

    Returns:
        ``(median_accuracy, median_hours)``: the true medians (even counts average the middle
        two) over the trials with a valid accuracy (and, for the hours, a known time). ``None``
        when no trial qualifies.

    Raises:
        ValueError: Lengths differ, or a time is negative/infinite.
    """
    if len(accuracies) != len(seconds_done):
        raise ValueError(
            f"accuracies and seconds_done must have the same length, but got {len(accuracies)} and {len(seconds_done)}"
        )
    acc = as_float_array(accuracies, "accuracies")
    secs = _hours_array(seconds_done, "seconds_done")
    ok = np.isfinite(acc)
    if not ok.any():
        return None, None
    timed = ok & np.isfinite(secs)
    median_hours = float(np.median(secs[timed])) / 3600.0 if timed.any() else None
    return float(np.median(acc[ok])), median_hours


def seconds_at_step(anchors: Sequence[tuple[float, float]], step: float) -> float | None:
    """Cumulative training seconds at a 0-based step, from recorded ``(step, seconds)`` anchors.

    Each anchor is what the trainer had recorded when its last entry was ``step``: the total
    training seconds at that point. Between two anchors (and between the start, step -1 at 0 s,
    and the first anchor) the time is interpolated linearly, so a trainer that slows down or
    speeds up is followed at the resolution of the anchors, never by a whole-curve average.

    Args:
        anchors: ``(step, cumulative_seconds)`` pairs, any order; duplicates of a step keep the last.
        step: The step asked for.

    Returns:
        The seconds, or ``None`` past the last anchor or without anchors.
    """
    if not anchors:
        return None
    by_step: dict[float, float] = {}
    for s, secs in anchors:
        by_step[float(s)] = float(secs)
    xs = [-1.0, *sorted(by_step)]
    ys = [0.0, *(by_step[x] for x in xs[1:])]
    if step > xs[-1] or step < xs[0]:
        return None
    return float(np.interp(step, xs, np.maximum.accumulate(ys)))


class ProxyOutcome(NamedTuple):
    """Outcome of one evaluated proxy task, input of :func:`best_proxy`.

    ``final_steps`` and ``spread`` (the relative half-width of its cost per step, e.g. half the
    interquartile range over the median) are optional: without them hours alone decide.
    """

    name: str
    succeeded: bool
    final_hours: float | None
    order_index: int
    final_steps: int | None = None
    spread: float = 0.0


def best_proxy(candidates: Sequence[tuple]) -> str | None:
    """Name of the cheapest successful proxy task; costs inside each other's spread are a tie.

    Args:
        candidates: :class:`ProxyOutcome` values, or tuples ``(name, succeeded, final_hours,
            order_index[, final_steps, spread])``; ``order_index`` is the order of evaluation.

    Returns:
        Among successful candidates with known hours: the one with the smallest ``final_hours``,
        unless others are tied with it: a candidate whose interval ``hours * (1 +- spread)``
        overlaps the cheapest one's. Ties go to fewer ``final_steps`` (unknown counts last), then
        the smaller name (then ``order_index``). With all spreads 0 only equal hours tie, which
        are then broken the same way. 0.0 hours is a valid time; successful candidates whose
        ``final_hours`` is ``None``/NaN are skipped. ``None`` when none qualifies (or empty input).

    Raises:
        ValueError: A ``final_hours`` is negative or infinite, or a spread is negative.
    """
    ranked: list[tuple[float, float, int, str, int]] = []
    for cand in candidates:
        c = ProxyOutcome(*cand)
        if not c.succeeded or c.final_hours is None or math.isnan(float(c.final_hours)):
            continue
        hours = float(c.final_hours)
        if math.isinf(hours) or hours < 0:
            raise ValueError(f"final_hours of proxy {c.name!r} must be finite and >= 0, but got {c.final_hours!r}")
        spread = float(c.spread)
        if not spread >= 0:
            raise ValueError(f"spread of proxy {c.name!r} must be >= 0, but got {c.spread!r}")
        steps = math.inf if c.final_steps is None else int(c.final_steps)
        ranked.append((hours, spread, int(c.order_index), str(c.name), steps))  # type: ignore[arg-type]
    if not ranked:
        return None
    cheapest = min(ranked, key=lambda r: (r[0], r[4], r[3], r[2]))
    top = cheapest[0] * (1.0 + cheapest[1])
    tied = [r for r in ranked if r[0] * (1.0 - r[1]) <= top]
    return min(tied, key=lambda r: (r[4], r[3], r[2]))[3]
