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
from controllers.stats import Correlation, StopDecision, both_correlations, decide_stop
from proxy_task_utils import protocol

__all__ = [
    "Targets",
    "curves_from_metrics",
    "cost_trial_hours",
    "fill_step_stats",
    "decide",
    "decision_record",
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "desired_accuracy_correlation": self.desired_correlation,
            "desired_accuracy": self.desired_accuracy,
            "training_time_hrs_limit": self.training_time_hrs_limit,
            "desired_latency_correlation": self.desired_latency_correlation,
            "early_stop_proxy_task_if_not_best": self.early_stop_if_not_best,
            "stop_rule": self.stop_rule,
            "correlation": self.method,
        }


def curves_from_metrics(
    metrics: Sequence[protocol.TrialTrainingMetrics | None], ended: Sequence[bool]
) -> list[TrialCurve]:
    """One :class:`TrialCurve` per trial (an absent record is an empty curve)."""
    out = []
    for m, done in zip(metrics, ended):
        if m is None:
            out.append(TrialCurve((), None, done))
            continue
        points = tuple((e.training_step, e.accuracy) for e in m.training_accuracy_over_steps)
        out.append(TrialCurve(points, m.seconds_per_step, done))
    return out


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
    )


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
        }
    record: dict[str, Any] = {
        "poll": poll,
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
