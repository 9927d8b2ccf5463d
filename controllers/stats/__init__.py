"""Statistics of the proxy-task tools: pure functions on numbers (no I/O, no clocks).

Rank correlation with n, p-value and bootstrap interval; run-to-run variance and curve
smoothness; model-selection filtering and schedule; crossing points, stop decisions and the
best proxy; the noise ceiling of a correlation target. ``None`` always means "no value";
0.0 is a value. Results are frozen dataclasses whose ``to_dict()`` gives standard JSON.
"""

from __future__ import annotations

from controllers.stats._correlation import Correlation, bootstrap_interval, both_correlations, rank_correlation
from controllers.stats._filtering import Candidate, FilterResult, filter_candidates, trial_id_sort_key
from controllers.stats._noise import Ceiling, noise_ceiling, prob_target_reachable
from controllers.stats._retrain import combine_noise, hold_probability, models_for_half_width, roughness_std
from controllers.stats._schedule import (
    FINAL_ROUND_PCT,
    desired_training_pcts,
    next_desired_pct,
    num_models_to_remove,
)
from controllers.stats._scores import ScoreCheck, check_same_scale, degenerate_scores, score_scale
from controllers.stats._stopping import (
    DEFAULT_CONFIRM,
    DEFAULT_FALSE_PASS_RATE,
    DEFAULT_SMOOTH,
    EXCEEDED_BEST_TRAIN_TIME,
    EXCEEDED_TRAIN_TIME_LIMIT,
    MET_DESIRED_ACCURACY,
    MET_DESIRED_ACCURACY_CORRELATION,
    NOT_STOPPED,
    STOP_RULES,
    SUCCESSFUL_STATES,
    Crossing,
    ProxyOutcome,
    StepSeries,
    StopDecision,
    best_proxy,
    crossing_point,
    decide_stop,
    median_accuracy_and_hours,
    median_accuracy_and_time,
    seconds_at_step,
)
from controllers.stats._variance import (
    SMOOTHNESS_POINTS_PER_SECTION,
    SMOOTHNESS_SAMPLE_SECTIONS,
    coefficient_of_variation,
    mean_smoothness,
    seed_std,
    smoothness,
    smoothness_sample_points,
)

__all__ = [
    "DEFAULT_CONFIRM",
    "DEFAULT_FALSE_PASS_RATE",
    "DEFAULT_SMOOTH",
    "STOP_RULES",
    "combine_noise",
    "hold_probability",
    "median_accuracy_and_time",
    "models_for_half_width",
    "roughness_std",
    "seconds_at_step",
    "EXCEEDED_BEST_TRAIN_TIME",
    "EXCEEDED_TRAIN_TIME_LIMIT",
    "FINAL_ROUND_PCT",
    "MET_DESIRED_ACCURACY",
    "MET_DESIRED_ACCURACY_CORRELATION",
    "NOT_STOPPED",
    "SMOOTHNESS_POINTS_PER_SECTION",
    "SMOOTHNESS_SAMPLE_SECTIONS",
    "SUCCESSFUL_STATES",
    "Candidate",
    "Ceiling",
    "Correlation",
    "Crossing",
    "FilterResult",
    "ProxyOutcome",
    "StepSeries",
    "StopDecision",
    "best_proxy",
    "both_correlations",
    "bootstrap_interval",
    "coefficient_of_variation",
    "crossing_point",
    "decide_stop",
    "desired_training_pcts",
    "filter_candidates",
    "mean_smoothness",
    "median_accuracy_and_hours",
    "next_desired_pct",
    "noise_ceiling",
    "num_models_to_remove",
    "prob_target_reachable",
    "rank_correlation",
    "ScoreCheck",
    "check_same_scale",
    "degenerate_scores",
    "score_scale",
    "seed_std",
    "smoothness",
    "smoothness_sample_points",
    "trial_id_sort_key",
]
