"""From trial files to a proxy task's verdict: per-step stats, stop decision, latency, cost.

Pure functions over parsed records (no storage, no clock): the controller feeds them what the
monitor read, and writes what they return into the state entry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from controllers.search.state import (
    FAILED_DESIRED_LATENCY_CORRELATION,
    ProxyTaskEntry,
)
from controllers.search.step_stats import StepStats, TrialCurve
from controllers.stats import (
    DEFAULT_CONFIRM,
    DEFAULT_FALSE_PASS_RATE,
    Correlation,
    EliminationDecision,
    ProxyOutcome,
    StopDecision,
    both_correlations,
    decide_elimination,
    decide_stop,
)
from proxy_task_utils import protocol

__all__ = [
    "Targets",
    "TimeAnchors",
    "record_time_anchors",
    "cost_per_step",
    "CostPerStep",
    "curves_from_metrics",
    "planned_last_step",
    "proxy_outcome",
    "cost_trial_hours",
    "fill_step_stats",
    "decide",
    "decision_record",
    "eliminate",
    "apply_elimination",
    "latency_check",
    "LatencyCheck",
]


@dataclass(frozen=True)
class Targets:
    """The stopping thresholds (None disables a rule; 0.0 is a threshold)."""

    desired_correlation: float | None
    desired_accuracy: float | None
    training_time_hrs_limit: float | None
    desired_latency_correlation: float | None
    early_stop_if_not_best: bool
    stop_rule: str
    method: str
    false_pass_rate: float = DEFAULT_FALSE_PASS_RATE
    confirm: int = DEFAULT_CONFIRM

    def to_dict(self) -> dict[str, Any]:
        return {
            "false_pass_rate": self.false_pass_rate,
            "confirm_evaluations": self.confirm,
            "desired_accuracy_correlation": self.desired_correlation,
            "desired_accuracy": self.desired_accuracy,
            "training_time_hrs_limit": self.training_time_hrs_limit,
            "desired_latency_correlation": self.desired_latency_correlation,
            "early_stop_proxy_task_if_not_best": self.early_stop_if_not_best,
            "stop_rule": self.stop_rule,
            "correlation": self.method,
        }


#: Per trial (by position in reference order): ``[step, cumulative training seconds]`` pairs.
TimeAnchors = list[list[list[float]]]


def record_time_anchors(anchors: TimeAnchors, metrics: Sequence[protocol.TrialTrainingMetrics | None]) -> bool:
    """Adds what each trial's file says now: its last entry's step and its total training seconds.

    The wire format keeps only the running total, so the time *at* each step is what the total
    was when that step was the last one: one anchor per change the monitor saw. Between anchors,
    time is interpolated (``controllers.stats.seconds_at_step``). A step seen again (a restarted
    trial) keeps its latest total. Returns whether anything was added (``anchors`` is changed in
    place and grown to ``len(metrics)``).
    """
    while len(anchors) < len(metrics):
        anchors.append([])
    changed = False
    for k, m in enumerate(metrics):
        if m is None or not m.training_accuracy_over_steps:
            continue
        point = [
            float(m.training_accuracy_over_steps[-1].training_step),
            float(m.training_time.total_training_time_in_secs),
        ]
        trial = anchors[k]
        if trial and trial[-1][0] == point[0]:
            if trial[-1][1] != point[1]:
                trial[-1] = point
                changed = True
            continue
        trial[:] = [a for a in trial if a[0] != point[0]] + [point]
        trial.sort(key=lambda a: a[0])
        changed = True
    return changed


def proxy_outcome(entry: ProxyTaskEntry) -> ProxyOutcome:
    """What :func:`controllers.stats.best_proxy` ranks: hours, steps and the cost spread of a proxy."""
    s = entry.proxy_task_stats
    spread = 0.0
    cost = entry.cost_per_step
    if cost and cost.get("median"):
        spread = max(0.0, (float(cost["high"]) - float(cost["low"])) / (2.0 * float(cost["median"])))
    return ProxyOutcome(
        entry.proxy_task_name,
        entry.succeeded,
        s.final_training_time_in_hours,
        entry.order_index,
        s.final_training_steps,
        spread,
    )


def planned_last_step(metrics: protocol.TrialTrainingMetrics | None) -> int | None:
    """The 0-based last step of a trial's schedule, from its last entry's step and percentage.

    ``training_step_pct = 100 (step + 1) / total`` (``protocol.compute_training_step_pct``), so
    ``total = 100 (step + 1) / pct``; ``None`` without an entry with a positive percentage.
    """
    if metrics is None or not metrics.training_accuracy_over_steps:
        return None
    last = metrics.training_accuracy_over_steps[-1]
    if not last.training_step_pct > 0:
        return None
    total = round(100.0 * (last.training_step + 1) / last.training_step_pct)
    return max(int(total) - 1, last.training_step)


def curves_from_metrics(
    metrics: Sequence[protocol.TrialTrainingMetrics | None],
    ended: Sequence[bool],
    anchors: TimeAnchors | None = None,
) -> list[TrialCurve]:
    """One :class:`TrialCurve` per trial (an absent record is an empty curve), with its recorded
    times and the last step of its schedule (:func:`planned_last_step`)."""
    out = []
    for k, (m, done) in enumerate(zip(metrics, ended)):
        if m is None:
            out.append(TrialCurve((), None, done))
            continue
        points = tuple((e.training_step, e.accuracy) for e in m.training_accuracy_over_steps)
        times = tuple((int(a[0]), float(a[1])) for a in anchors[k]) if anchors and k < len(anchors) else ()
        out.append(TrialCurve(points, m.seconds_per_step, done, times, planned_last_step(m)))
    return out


@dataclass(frozen=True)
class CostPerStep:
    """A proxy's training seconds per step: the median over its trials, and the spread.

    Attributes:
        median: Median seconds per step.
        low, high: 25th and 75th percentiles of the rates (over trials and over the intervals
            between recorded times, so a load that changed during the run widens them).
        rates: How many rates they come from.
    """

    median: float
    low: float
    high: float
    rates: int

    @property
    def relative_spread(self) -> float:
        """Half the interquartile range over the median (0 for a single rate)."""
        return 0.0 if self.median <= 0 else (self.high - self.low) / (2.0 * self.median)

    def to_dict(self) -> dict[str, Any]:
        return {"median": self.median, "low": self.low, "high": self.high, "rates": self.rates}


def cost_per_step(
    metrics: Sequence[protocol.TrialTrainingMetrics | None], anchors: TimeAnchors | None = None
) -> CostPerStep | None:
    """Seconds per step from every trial's recorded times (intervals between anchors), else its total."""
    import numpy as np

    rates: list[float] = []
    for k, m in enumerate(metrics):
        trial = anchors[k] if anchors and k < len(anchors) else []
        pts = [(-1.0, 0.0), *((float(a[0]), float(a[1])) for a in trial)]
        got = [(s1 - s0, t1 - t0) for (s0, t0), (s1, t1) in zip(pts, pts[1:]) if s1 > s0 and t1 >= t0]
        if got:
            rates += [dt / ds for ds, dt in got]
        elif m is not None and m.seconds_per_step is not None:
            rates.append(m.seconds_per_step)
    if not rates:
        return None
    low, med, high = np.quantile(rates, [0.25, 0.5, 0.75])
    return CostPerStep(float(med), float(low), float(high), len(rates))


def cost_trial_hours(metrics: Sequence[protocol.TrialTrainingMetrics | None]) -> float:
    """Training hours summed over trials (what the proxy cost, in trial-hours)."""
    return sum(m.training_time.total_training_time_in_secs for m in metrics if m is not None) / 3600.0


def fill_step_stats(entry: ProxyTaskEntry, stats: StepStats, method: str) -> None:
    """Writes the per-step lists (reference keys with null for invalid steps, and ours)."""
    s = entry.proxy_task_stats
    chosen = stats.correlations[method]
    s.training_steps = list(stats.training_steps)
    s.accuracy_correlation_over_step = [c.coefficient for c in chosen]
    s.accuracy_correlation_p_value_over_step = [c.p_value for c in chosen]
    s.median_accuracy_over_step = list(stats.median_accuracy)
    s.median_training_time_hrs_over_step = list(stats.median_hours)
    entry.correlation_over_step = {m: [c.to_dict() for c in cs] for m, cs in stats.correlations.items()}
    entry.settled_over_step = list(stats.settled)
    entry.best_correlation = stats.best_correlation(method)
    entry.hold_prob_over_step = list(stats.hold_prob[method])
    entry.noise_std_over_step = list(stats.noise_std)
    entry.noise_source = stats.noise_source
    entry.score = stats.score


def decide(stats: StepStats, targets: Targets, best_hours: float | None) -> StopDecision:
    """The stop decision on the settled steps (a step still short of a running trial waits)."""
    return decide_stop(
        stats.series(targets.method),
        desired_correlation=targets.desired_correlation,
        desired_accuracy=targets.desired_accuracy,
        training_time_hrs_limit=targets.training_time_hrs_limit,
        best_training_time_hrs=best_hours,
        early_stop_if_not_best=targets.early_stop_if_not_best,
        stop_rule=targets.stop_rule,  # type: ignore[arg-type]
        false_pass_rate=targets.false_pass_rate,
        confirm=targets.confirm,
    )


def eliminate(
    stats: StepStats,
    targets: Targets,
    best_hours: float | None,
    *,
    window: int,
    plateau_points: int,
    z: float,
    noise_floor: float,
    min_fraction: float,
) -> EliminationDecision:
    """Early elimination on the settled steps' point correlation (disabled without a correlation target).

    The point correlation is what every stop rule's evidence grows from; a proxy whose point
    trend cannot reach the target cannot pass the stricter rules either.
    """
    if targets.desired_correlation is None:
        return EliminationDecision(False, "", "no desired correlation: elimination is off")
    series = stats.series(targets.method)
    return decide_elimination(
        series.median_hours,
        series.correlation,
        target=targets.desired_correlation,
        best_hours=best_hours,
        horizon_hours=targets.training_time_hrs_limit,
        window=window,
        plateau_points=plateau_points,
        z=z,
        noise_floor=noise_floor,
        min_fraction=min_fraction,
    )


def apply_elimination(record: dict[str, Any], decision: StopDecision, elimination: EliminationDecision) -> StopDecision:
    """Adds the elimination check to a decision's log record; returns the decision that stands.

    The earlier evaluation decides (the stop rule on a tie), so the verdict is the same however
    many evaluations a poll happened to see at once.
    """
    record["elimination"] = {
        "stop": elimination.stop,
        "state": elimination.state,
        "reason": elimination.reason,
        "index": elimination.index,
        "inputs": elimination.inputs,
    }
    if not elimination.stop:
        return decision
    if decision.stop and (decision.index is None or elimination.index is None or decision.index <= elimination.index):
        return decision
    record.update(stop=True, state=elimination.state, reason=elimination.reason)
    return StopDecision(True, elimination.state, elimination.reason, None, elimination.index)


def _opt(v: float | None) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def decision_record(
    stats: StepStats, targets: Targets, best_hours: float | None, decision: StopDecision, *, poll: int | None
) -> dict[str, Any]:
    """A log line for one decision: its inputs (thresholds, the last settled step) and outcome."""
    series = stats.series(targets.method)
    n = len(series)
    last: dict[str, Any] = {}
    if n:
        last = {
            "training_step": series.training_steps[-1],
            "correlation": _opt(series.correlation[-1]),
            "ci_low": _opt(series.ci_low[-1]),
            "median_accuracy": _opt(series.median_accuracy[-1]),
            "median_hours": _opt(series.median_hours[-1]),
            "hold_prob": None if series.hold_prob is None else _opt(series.hold_prob[-1]),
            "noise_std": _opt(stats.noise_std[n - 1]) if len(stats.noise_std) >= n else None,
        }
    record: dict[str, Any] = {
        "poll": poll,
        "score": stats.score,
        "settled_steps": n,
        "recorded_steps": len(stats),
        "last_settled": last,
        "targets": targets.to_dict(),
        "best_training_time_hrs": best_hours,
        "stop": decision.stop,
        "state": decision.state,
        "reason": decision.reason,
        "crossing": None if decision.crossing is None else decision.crossing.to_dict(),
    }
    if decision.crossing is not None:
        i = decision.crossing.index
        corr = stats.correlations[targets.method][i]
        record["at_crossing"] = {
            "training_step": stats.training_steps[i],
            "correlation": corr.to_dict(),
            "median_accuracy": stats.median_accuracy[i],
            "median_hours": stats.median_hours[i],
            "hold_prob": stats.hold_prob[targets.method][i] if i < len(stats.hold_prob[targets.method]) else None,
        }
    return record


@dataclass(frozen=True)
class LatencyCheck:
    """Latency rank correlation of a proxy against the reference, and whether it passes."""

    correlations: dict[str, Correlation]
    passed: bool
    reason: str


def latency_check(
    reference_latency: Sequence[float | None],
    proxy_latency: Sequence[float | None],
    targets: Targets,
    *,
    min_pairs: int,
    min_valid_ratio: float,
    n_bootstrap: int,
    confidence: float,
    seed: int = 0,
) -> LatencyCheck:
    """Reference §4.5: an invalid or too-low latency correlation fails the proxy.

    Only called when the reference has latencies. A disabled target (None) always passes.
    """
    corrs = both_correlations(
        proxy_latency,
        reference_latency,
        min_pairs=min_pairs,
        min_valid_ratio=min_valid_ratio,
        n_bootstrap=n_bootstrap,
        confidence=confidence,
        seed=seed,
    )
    chosen = corrs[targets.method]
    want = targets.desired_latency_correlation
    if want is None:
        return LatencyCheck(corrs, True, "no desired latency correlation set")
    if chosen.coefficient is None:
        return LatencyCheck(
            corrs, False, f"{FAILED_DESIRED_LATENCY_CORRELATION}: latency correlation invalid ({chosen.reason})"
        )
    if chosen.coefficient < want:
        return LatencyCheck(
            corrs,
            False,
            f"{FAILED_DESIRED_LATENCY_CORRELATION}: {targets.method} {chosen.coefficient:.3f} < desired {want:.3f}",
        )
    return LatencyCheck(corrs, True, f"latency {targets.method} {chosen.coefficient:.3f} >= desired {want:.3f}")
