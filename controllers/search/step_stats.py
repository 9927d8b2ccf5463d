"""Per-step statistics of one proxy task from its trials' curves (reference §4.3, fixed).

Pure: curves in, numbers out. For every recorded training step (the union over trials of the
absolute 0-based ``training_step``), each trial's accuracy is its recorded value there, or a
linear interpolation between its two neighbouring records (never extrapolated, never
towards an implicit 0). Both Spearman and Kendall are computed (with n, p-value and bootstrap
CI); the decision uses one of them, named explicitly.

The score correlated is the accuracy seen (``score="raw"``, the default), or each trial's
predicted accuracy at the end of its schedule from its points so far (``"extrapolated"``,
``controllers.stats.extrapolate_curves``): at a step, a trial's score is the prediction from its
points up to that step. The median accuracy stays the accuracy seen either way.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from controllers.stats import (
    DEFAULT_SMOOTH,
    Correlation,
    StepSeries,
    both_correlations,
    combine_noise,
    extrapolate_curves,
    hold_probability,
    median_accuracy_and_time,
    roughness_std,
    seconds_at_step,
)

__all__ = [
    "SCORES",
    "TrialCurve",
    "HoldSettings",
    "StepStats",
    "accuracy_at_step",
    "trial_seconds_at",
    "compute_step_stats",
]

#: What a trial's score at a step is: the accuracy seen, or its extrapolated final accuracy.
SCORES = ("raw", "extrapolated")


@dataclass(frozen=True)
class TrialCurve:
    """One proxy trial: recorded ``(training_step, accuracy)`` pairs and its training time.

    Attributes:
        points: Increasing 0-based steps with their accuracy.
        seconds_per_step: Average training seconds per step of the whole file (``None`` when
            unknown); used only where no ``times`` were recorded (a finished folder read once).
        ended: Whether the trial will record nothing more (finished, stopped or failed).
        times: ``(step, cumulative training seconds)`` as the monitor saw them: the file's
            ``total_training_time_in_secs`` when its last entry was ``step``.
        horizon: The 0-based last step of the trial's schedule (``None`` = unknown): where the
            extrapolated score predicts the accuracy.
    """

    points: tuple[tuple[int, float], ...]
    seconds_per_step: float | None
    ended: bool
    times: tuple[tuple[int, float], ...] = ()
    horizon: int | None = None

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


def _held(points: Sequence[tuple[int, float]], step: int) -> int | None:
    """Index of the last point at or before ``step``; ``None`` outside the recorded range."""
    if not points or step < points[0][0] or step > points[-1][0]:
        return None
    return bisect.bisect_right([p[0] for p in points], step) - 1


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def trial_seconds_at(curve: TrialCurve, step: int) -> float | None:
    """Training seconds the trial had spent when it reached ``step`` (its recorded times first)."""
    if curve.times:
        return seconds_at_step(curve.times, step)
    if curve.seconds_per_step is None or curve.last_step is None or step > curve.last_step:
        return None
    return curve.seconds_per_step * (step + 1)


@dataclass(frozen=True)
class HoldSettings:
    """Inputs of the ``retrain`` rule's probability: the target and the known seed noise.

    Attributes:
        target: The correlation to hold.
        seed_std: Run-to-run std of a score from the variance measurement or the config;
            ``None``: the noise is estimated from the curves' roughness alone.
        n_sim: Draws per step.
        seed: Seed of the draws.
        smooth: Each model's score is the mean of its last ``smooth`` evaluations (this step's
            and the ones before), and the curves' roughness shrinks by ``sqrt`` of the count:
            one noisy evaluation then moves the decision less.
        seed_source: Where ``seed_std`` came from, in words (for the report).
    """

    target: float
    seed_std: float | None = None
    n_sim: int = 400
    seed: int = 0
    smooth: int = DEFAULT_SMOOTH
    seed_source: str = ""


@dataclass
class StepStats:
    """Statistics at every recorded step of one proxy task.

    Attributes:
        training_steps: The union of recorded 0-based steps, increasing.
        correlations: ``{"spearman": [...], "kendall": [...]}``, one :class:`Correlation` per step.
        median_accuracy: Median accuracy of the trials at each step (``None`` if none).
        median_hours: Median training hours to reach each step (``None`` if unknown).
        settled: Whether the step's inputs are final: no trial still running is short of it.
        hold_prob: ``{"spearman": [...], "kendall": [...]}``: probability that the correlation
            holds under retraining noise (empty lists when not computed).
        noise_std: The noise of one score used for ``hold_prob`` at each step.
        noise_source: Where that noise came from, in words.
        score: What was correlated: ``"raw"`` accuracy or the ``"extrapolated"`` one.
    """

    training_steps: list[int] = field(default_factory=list)
    correlations: dict[str, list[Correlation]] = field(default_factory=lambda: {"spearman": [], "kendall": []})
    median_accuracy: list[float | None] = field(default_factory=list)
    median_hours: list[float | None] = field(default_factory=list)
    settled: list[bool] = field(default_factory=list)
    hold_prob: dict[str, list[float | None]] = field(default_factory=lambda: {"spearman": [], "kendall": []})
    noise_std: list[float | None] = field(default_factory=list)
    noise_source: str = ""
    score: str = "raw"

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
            hold_prob=self.hold_prob[method][:n] if len(self.hold_prob[method]) == len(self) else None,
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
    hold: HoldSettings | None = None,
    score: str = "raw",
) -> StepStats:
    """Per-step correlations and medians.

    Args:
        curves: One curve per proxy trial, aligned with ``reference`` (trial ``k`` re-trains
            reference model ``k``).
        reference: Full-training accuracy of each reference model (``None`` = unknown).
        min_pairs, min_valid_ratio, n_bootstrap, confidence, seed: Passed to the correlation.
        cache: Optional dict reused across polls: a step whose inputs did not change is not
            recomputed (the bootstrap is the expensive part).
        hold: When given, the probability that each step's correlation holds under retraining
            noise; the noise at a step is ``seed_std`` combined with the roughness of the curves
            recorded up to that step. With the extrapolated score, the curves' part is the median
            std of the trials' predictions at that step instead.
        score: ``"raw"`` (the accuracy seen) or ``"extrapolated"`` (each trial's predicted
            accuracy at its ``horizon``; a trial without one, or too few points, keeps its last
            value: see ``controllers.stats.extrapolate_curve``).

    Raises:
        ValueError: ``curves`` and ``reference`` differ in length, or ``score`` is unknown.
    """
    if len(curves) != len(reference):
        raise ValueError(
            f"need one curve per reference model, but got {len(curves)} curves and {len(reference)} scores"
        )
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, but got {score!r}")
    steps = sorted({s for c in curves for s, _ in c.points})
    out = StepStats(score=score)
    extrap = score == "extrapolated"
    curves_part = "the predictions' std" if extrap else "the curves' roughness"
    if hold is not None:
        out.noise_source = curves_part
        if hold.seed_std is not None:
            origin = f" ({hold.seed_source})" if hold.seed_source else ""
            out.noise_source = f"seed_std {hold.seed_std:.4g}{origin} + {curves_part}"
    predicted = (
        extrapolate_curves([c.points for c in curves], [c.horizon for c in curves], cache=cache) if extrap else []
    )
    ref = list(reference)
    history: list[list[float | None]] = []
    for step in steps:
        if extrap:
            held = [_held(c.points, step) for c in curves]
            fits = [None if i is None else predicted[k][i] for k, i in enumerate(held)]
            accs = [None if f is None else f.prediction for f in fits]
            spread = [f.std for f in fits if f is not None and f.std is not None]
        else:
            accs = [accuracy_at_step(c.points, step) for c in curves]
        history.append(accs)
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
        if hold is not None:
            window = history[-max(1, hold.smooth) :]
            scores = [_mean([h[k] for h in window]) for k in range(len(curves))]
            if extrap:  # successive predictions share their points: averaging them shrinks nothing
                rough = statistics.median(spread) if spread else None
            else:
                rough = roughness_std([[a for s_, a in c.points if s_ <= step] for c in curves])
                if rough is not None:
                    rough /= math.sqrt(len(window))
            noise = combine_noise(hold.seed_std, rough)
            hkey = ("hold", tuple(scores), tuple(ref), noise, hold)
            probs = cache.get(hkey) if cache is not None else None
            if probs is None:
                probs = {
                    m: None
                    if noise is None
                    else hold_probability(
                        scores, ref, noise, target=hold.target, method=m, n_sim=hold.n_sim, seed=hold.seed
                    )
                    for m in ("spearman", "kendall")
                }
                if cache is not None:
                    cache[hkey] = probs  # type: ignore[assignment]
            for m in ("spearman", "kendall"):
                out.hold_prob[m].append(probs[m])  # type: ignore[arg-type]
            out.noise_std.append(noise)
        seen = [accuracy_at_step(c.points, step) for c in curves] if extrap else accs
        med_acc, med_hrs = median_accuracy_and_time(seen, [trial_seconds_at(c, step) for c in curves])
        out.training_steps.append(step)
        for method in ("spearman", "kendall"):
            out.correlations[method].append(corr[method])
        out.median_accuracy.append(med_acc)
        out.median_hours.append(med_hrs)
        out.settled.append(all(c.ended or (c.last_step is not None and c.last_step >= step) for c in curves))
    return out
