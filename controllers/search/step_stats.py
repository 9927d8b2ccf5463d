"""Per-step statistics of one proxy task from its trials' curves (reference §4.3, fixed).

Pure: curves in, numbers out. For every recorded training step (the union over trials of the
absolute 0-based ``training_step``), each trial's accuracy is its recorded value there, or a
linear interpolation between its two neighbouring records (never extrapolated, never
towards an implicit 0). Both Spearman and Kendall are computed (with n, p-value and bootstrap
CI); the decision uses one of them, named explicitly.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from controllers.stats import Correlation, StepSeries, both_correlations, median_accuracy_and_hours

__all__ = ["TrialCurve", "StepStats", "accuracy_at_step", "compute_step_stats"]


@dataclass(frozen=True)
class TrialCurve:
    """One proxy trial: recorded ``(training_step, accuracy)`` pairs and seconds per step.

    Attributes:
        points: Increasing 0-based steps with their accuracy.
        seconds_per_step: Average training seconds per step (``None`` when unknown).
        ended: Whether the trial will record nothing more (finished, stopped or failed).
    """

    points: tuple[tuple[int, float], ...]
    seconds_per_step: float | None
    ended: bool

    @property
    def last_step(self) -> int | None:
        return self.points[-1][0] if self.points else None


def accuracy_at_step(points: Sequence[tuple[int, float]], step: int) -> float | None:
    """Recorded or interpolated accuracy at ``step``; ``None`` outside the recorded range."""
    if not points or step < points[0][0] or step > points[-1][0]:
        return None
    steps = [p[0] for p in points]
    i = bisect.bisect_left(steps, step)
    if steps[i] == step:
        return float(points[i][1])
    (s0, a0), (s1, a1) = points[i - 1], points[i]
    return float(a0 + (a1 - a0) * (step - s0) / (s1 - s0))


@dataclass
class StepStats:
    """Statistics at every recorded step of one proxy task.

    Attributes:
        training_steps: The union of recorded 0-based steps, increasing.
        correlations: ``{"spearman": [...], "kendall": [...]}``, one :class:`Correlation` per step.
        median_accuracy: Median accuracy of the trials at each step (``None`` if none).
        median_hours: Median training hours to reach each step (``None`` if unknown).
        settled: Whether the step's inputs are final: no trial still running is short of it.
    """

    training_steps: list[int] = field(default_factory=list)
    correlations: dict[str, list[Correlation]] = field(default_factory=lambda: {"spearman": [], "kendall": []})
    median_accuracy: list[float | None] = field(default_factory=list)
    median_hours: list[float | None] = field(default_factory=list)
    settled: list[bool] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.training_steps)

    def series(self, method: str, *, settled_only: bool = True) -> StepSeries:
        """The :class:`StepSeries` that ``decide_stop`` reads, cut before the first unsettled step."""
        n = len(self)
        if settled_only:
            n = next((i for i, ok in enumerate(self.settled) if not ok), n)
        corr = self.correlations[method][:n]
        return StepSeries(
            training_steps=self.training_steps[:n],
            correlation=[c.coefficient for c in corr],
            ci_low=[c.ci_low for c in corr],
            median_accuracy=self.median_accuracy[:n],
            median_hours=self.median_hours[:n],
        )

    def best_correlation(self, method: str) -> float | None:
        """The highest valid coefficient over the steps (for the ceiling comparison)."""
        values = [c.coefficient for c in self.correlations[method] if c.coefficient is not None]
        return max(values) if values else None


def compute_step_stats(
    curves: Sequence[TrialCurve],
    reference: Sequence[float | None],
    *,
    min_pairs: int = 5,
    min_valid_ratio: float = 0.7,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    cache: dict[tuple, dict[str, Correlation]] | None = None,
) -> StepStats:
    """Per-step correlations and medians.

    Args:
        curves: One curve per proxy trial, aligned with ``reference`` (trial ``k`` re-trains
            reference model ``k``).
        reference: Full-training accuracy of each reference model (``None`` = unknown).
        min_pairs, min_valid_ratio, n_bootstrap, confidence, seed: Passed to the correlation.
        cache: Optional dict reused across polls: a step whose inputs did not change is not
            recomputed (the bootstrap is the expensive part).

    Raises:
        ValueError: ``curves`` and ``reference`` differ in length.
    """
    if len(curves) != len(reference):
        raise ValueError(
            f"need one curve per reference model, but got {len(curves)} curves and {len(reference)} scores"
        )
    steps = sorted({s for c in curves for s, _ in c.points})
    out = StepStats()
    ref = list(reference)
    for step in steps:
        accs = [accuracy_at_step(c.points, step) for c in curves]
        key = (tuple(accs), tuple(ref), min_pairs, min_valid_ratio, n_bootstrap, confidence, seed)
        corr = cache.get(key) if cache is not None else None
        if corr is None:
            corr = both_correlations(
                accs,
                ref,
                min_pairs=min_pairs,
                min_valid_ratio=min_valid_ratio,
                n_bootstrap=n_bootstrap,
                confidence=confidence,
                seed=seed,
            )
            if cache is not None:
                cache[key] = corr
        med_acc, med_hrs = median_accuracy_and_hours(accs, [c.seconds_per_step for c in curves], step)
        out.training_steps.append(step)
        for method in ("spearman", "kendall"):
            out.correlations[method].append(corr[method])
        out.median_accuracy.append(med_acc)
        out.median_hours.append(med_hrs)
        out.settled.append(all(c.ended or (c.last_step is not None and c.last_step >= step) for c in curves))
    return out
