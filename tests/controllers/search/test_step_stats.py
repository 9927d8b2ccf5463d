"""Per-step statistics of a proxy task: interpolation, settled steps, the decision series, the cache."""

from __future__ import annotations

import pytest
from scipy import stats as sps

from controllers.search.step_stats import StepStats, TrialCurve, accuracy_at_step, compute_step_stats
from controllers.stats import both_correlations

REF = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_last_step():
    assert TrialCurve(((3, 0.1), (7, 0.2)), None, False).last_step == 7
    assert TrialCurve((), None, False).last_step is None


def test_accuracy_at_step_hand_computed():
    pts = ((10, 0.2), (20, 0.6), (30, 0.5))
    assert accuracy_at_step(pts, 10) == 0.2  # the first record itself
    assert accuracy_at_step(pts, 30) == 0.5  # the last record itself
    assert accuracy_at_step(pts, 20) == 0.6
    assert accuracy_at_step(pts, 12) == pytest.approx(0.28)  # 0.2 + 0.4 * 2/10
    assert accuracy_at_step(pts, 25) == pytest.approx(0.55)
    assert accuracy_at_step(pts, 9) is None and accuracy_at_step(pts, 31) is None
    assert accuracy_at_step((), 0) is None
    assert accuracy_at_step(((5, 1),), 5) == 1.0 and isinstance(accuracy_at_step(((5, 1),), 5), float)


def test_steps_are_the_union_and_others_are_interpolated():
    curves = [
        TrialCurve(((0, 0.0), (10, 1.0)), 1.0, True),
        TrialCurve(((5, 0.5),), 1.0, True),
    ]
    stats = compute_step_stats(curves, [None, None], min_pairs=2, n_bootstrap=0)
    assert stats.training_steps == [0, 5, 10]
    assert stats.median_accuracy == pytest.approx([0.0, 0.5, 1.0])  # only trial 0 at steps 0 and 10


def test_every_step_carries_both_methods_with_the_options():
    curves = [TrialCurve(((9, a), (19, a * 2)), 36.0, True) for a in (0.2, 0.1, 0.3, 0.4, 0.6, 0.5)]
    stats = compute_step_stats(curves, REF, min_pairs=6, min_valid_ratio=1.0, n_bootstrap=30, confidence=0.8, seed=5)
    want = both_correlations(
        [0.2, 0.1, 0.3, 0.4, 0.6, 0.5], REF, min_pairs=6, min_valid_ratio=1.0, n_bootstrap=30, confidence=0.8, seed=5
    )
    assert stats.correlations["spearman"][0] == want["spearman"]
    assert stats.correlations["kendall"][0] == want["kendall"]
    assert stats.correlations["spearman"][0].coefficient == pytest.approx(
        sps.spearmanr([0.2, 0.1, 0.3, 0.4, 0.6, 0.5], REF).statistic
    )
    assert len(stats) == 2
    assert stats.median_hours == pytest.approx([36.0 * 10 / 3600, 36.0 * 20 / 3600])


def test_options_reach_the_validity_rule():
    curves = [TrialCurve(((9, a),), 1.0, True) for a in REF[:5]] + [TrialCurve((), 1.0, True)]
    assert compute_step_stats(curves, REF, n_bootstrap=0).correlations["spearman"][0].valid  # 5 of 6 valid
    assert not compute_step_stats(curves, REF, min_pairs=6, n_bootstrap=0).correlations["spearman"][0].valid
    assert not compute_step_stats(curves, REF, min_valid_ratio=0.9, n_bootstrap=0).correlations["kendall"][0].valid


def test_lengths_must_match():
    with pytest.raises(ValueError, match="need one curve per reference model, but got 1 curves and 2 scores"):
        compute_step_stats([TrialCurve((), None, True)], [0.1, 0.2])


def test_settled_means_no_running_trial_is_short_of_the_step():
    curves = [
        TrialCurve(((9, 0.1), (19, 0.2)), 1.0, False),  # running, has reached 19
        TrialCurve(((9, 0.1),), 1.0, True),  # ended early: never holds a step back
        TrialCurve((), 1.0, False),  # running, nothing yet: holds every step back
    ]
    stats = compute_step_stats(curves, [0.1, 0.2, 0.3], min_pairs=2, n_bootstrap=0)
    assert stats.settled == [False, False]
    curves[2] = TrialCurve(((9, 0.3),), 1.0, False)
    stats = compute_step_stats(curves, [0.1, 0.2, 0.3], min_pairs=2, n_bootstrap=0)
    assert stats.settled == [True, False]


def _stats_by_hand():
    corr = both_correlations([0.1, 0.3, 0.2, 0.4, 0.5], [0.1, 0.2, 0.3, 0.4, 0.5], n_bootstrap=20)
    bad = both_correlations([None] * 5, [0.1, 0.2, 0.3, 0.4, 0.5])
    return StepStats(
        training_steps=[1, 2, 3],
        correlations={
            "spearman": [corr["spearman"], bad["spearman"], corr["spearman"]],
            "kendall": [corr["kendall"]] * 3,
        },
        median_accuracy=[0.1, None, 0.3],
        median_hours=[1.0, 2.0, None],
        settled=[True, True, False],
    )


def test_series_is_cut_before_the_first_unsettled_step():
    stats = _stats_by_hand()
    s = stats.series("spearman")
    assert list(s.training_steps) == [1, 2]
    assert list(s.correlation) == [stats.correlations["spearman"][0].coefficient, None]
    assert list(s.ci_low) == [stats.correlations["spearman"][0].ci_low, None]
    assert list(s.median_accuracy) == [0.1, None] and list(s.median_hours) == [1.0, 2.0]
    assert len(stats.series("kendall", settled_only=False)) == 3
    stats.settled[0] = False
    assert len(stats.series("spearman")) == 0
    stats.settled = [True, True, True]
    assert len(stats.series("spearman")) == 3


def test_best_correlation_skips_invalid_steps():
    stats = _stats_by_hand()
    assert stats.best_correlation("spearman") == stats.correlations["spearman"][0].coefficient
    assert StepStats().best_correlation("spearman") is None
    stats.correlations["kendall"] = [stats.correlations["spearman"][1]]
    assert stats.best_correlation("kendall") is None


def test_best_correlation_is_the_maximum():
    low = both_correlations([0.1, 0.3, 0.2, 0.4, 0.5], REF[:5], n_bootstrap=0)["spearman"]
    high = both_correlations(REF[:5], REF[:5], n_bootstrap=0)["spearman"]
    stats = StepStats(training_steps=[1, 2, 3], correlations={"spearman": [low, high, low], "kendall": []})
    assert stats.best_correlation("spearman") == high.coefficient > low.coefficient


def test_cache_is_filled_and_read():
    curves = [TrialCurve(((9, a),), 1.0, True) for a in (0.2, 0.1, 0.3, 0.4, 0.6, 0.5)]
    cache: dict = {}
    first = compute_step_stats(curves, REF, n_bootstrap=10, cache=cache)
    (key,) = cache
    assert key == ((0.2, 0.1, 0.3, 0.4, 0.6, 0.5), tuple(REF), 5, 0.7, 10, 0.95, 0)
    marker = {"spearman": first.correlations["kendall"][0], "kendall": first.correlations["spearman"][0]}
    cache[key] = marker  # a cached step is not recomputed
    again = compute_step_stats(curves, REF, n_bootstrap=10, cache=cache)
    assert again.correlations["spearman"][0] is marker["spearman"]
    other = compute_step_stats(curves, REF, n_bootstrap=10, seed=1, cache=cache)  # another key
    assert (
        other.correlations["spearman"][0]
        == both_correlations([0.2, 0.1, 0.3, 0.4, 0.6, 0.5], REF, n_bootstrap=10, seed=1)["spearman"]
    )
    assert len(cache) == 2


def test_default_options_are_the_correlations_defaults():
    proxy = [0.3, 0.1, 0.4, 0.15, 0.5, 0.9, 0.2, 0.6, 0.55, 0.35]
    ref = [0.2, 0.15, 0.5, 0.1, 0.45, 0.8, 0.3, 0.65, 0.4, 0.3]
    curves = [TrialCurve(((9, a),), 1.0, True) for a in proxy]
    got = compute_step_stats(curves, ref).correlations["spearman"][0]
    assert got == both_correlations(proxy, ref)["spearman"]
    assert got != both_correlations(proxy, ref, n_bootstrap=1001)["spearman"]  # the interval sees the count


def test_trial_seconds_at_uses_recorded_times_first():
    from controllers.search.step_stats import trial_seconds_at

    timed = TrialCurve(((9, 0.1), (19, 0.2)), 1.0, True, ((9, 10.0), (19, 40.0)))
    assert trial_seconds_at(timed, 9) == 10.0
    assert trial_seconds_at(timed, 14) == pytest.approx(25.0)  # between the anchors
    assert trial_seconds_at(timed, 4) == pytest.approx(5.0)  # from step -1 at 0 s
    assert trial_seconds_at(timed, 20) is None
    plain = TrialCurve(((9, 0.1), (19, 0.2)), 2.0, True)
    assert trial_seconds_at(plain, 19) == 40.0  # (step + 1) steps at 2 s
    assert trial_seconds_at(plain, 0) == 2.0
    assert trial_seconds_at(plain, 20) is None
    assert trial_seconds_at(TrialCurve(((9, 0.1),), None, True), 9) is None
    assert trial_seconds_at(TrialCurve((), 2.0, True), 0) is None


def test_mean_of_known_values():
    from controllers.search.step_stats import _mean

    assert _mean([1.0, None, 2.0]) == 1.5
    assert _mean([None, None]) is None
    assert _mean([]) is None
    assert _mean([0.0]) == 0.0


# -- the extrapolated score ---------------------------------------------------------------------

HORIZON = 2999
FINALS = [0.70 + 0.01 * i for i in range(8)]  # model i ends at FINALS[i] ...
RATES = [9.0 - 0.9 * i for i in range(8)]  # ... and the better it ends, the slower it learns


def _crossing_curves(evals: int, *, horizon: int | None = HORIZON) -> list[TrialCurve]:
    import math

    out = []
    for q, r in zip(FINALS, RATES):
        pts = tuple(
            ((k + 1) * 100 - 1, q * (1 - math.exp(-r * (k + 1) / 30)) / (1 - math.exp(-r))) for k in range(evals)
        )
        out.append(TrialCurve(pts, 1.0, False, horizon=horizon))
    return out


def test_extrapolated_score_ranks_slow_learners_that_end_higher():
    curves = _crossing_curves(9)
    raw = compute_step_stats(curves, FINALS, n_bootstrap=0)
    ext = compute_step_stats(curves, FINALS, n_bootstrap=0, score="extrapolated")
    assert (raw.score, ext.score) == ("raw", "extrapolated")
    assert raw.correlations["spearman"][-1].coefficient < 0  # the accuracy seen ranks them backwards
    assert ext.correlations["spearman"][-1].coefficient == pytest.approx(1.0)
    # with fewer points than a fit needs, the score is the accuracy seen
    first = [c.coefficient for c in raw.correlations["spearman"][:4]]
    assert [c.coefficient for c in ext.correlations["spearman"][:4]] == first
    assert ext.median_accuracy == raw.median_accuracy  # the medians stay the accuracy seen
    assert ext.training_steps == raw.training_steps and ext.settled == raw.settled


def test_extrapolated_score_without_a_horizon_is_the_accuracy_seen():
    curves = _crossing_curves(9, horizon=None)
    raw = compute_step_stats(curves, FINALS, n_bootstrap=0)
    ext = compute_step_stats(curves, FINALS, n_bootstrap=0, score="extrapolated")
    assert [c.coefficient for c in ext.correlations["spearman"]] == [
        c.coefficient for c in raw.correlations["spearman"]
    ]


def test_extrapolated_score_at_a_step_uses_only_the_points_up_to_it():
    """Between two records the score is the prediction from the earlier one (never a later point)."""
    curves = [
        TrialCurve(((9, 0.2), (19, 0.4)), 1.0, True, horizon=99),
        TrialCurve(((9, 0.1), (14, 0.3), (19, 0.5)), 1.0, True, horizon=99),
        TrialCurve(((9, 0.3), (14, 0.35), (19, 0.6)), 1.0, True, horizon=99),
    ]
    ext = compute_step_stats(curves, [0.1, 0.2, 0.3], min_pairs=2, n_bootstrap=0, score="extrapolated")
    raw = compute_step_stats(curves, [0.1, 0.2, 0.3], min_pairs=2, n_bootstrap=0)
    assert ext.training_steps == [9, 14, 19]
    # at step 14 trial 0 keeps 0.2 (raw interpolates 0.3): scores 0.2, 0.3, 0.35 -> perfectly ranked
    assert ext.correlations["spearman"][1].coefficient == pytest.approx(1.0)
    assert raw.correlations["spearman"][1].coefficient == pytest.approx(0.5)


def test_extrapolated_hold_noise_is_the_median_prediction_std():
    from controllers.search.step_stats import HoldSettings
    from controllers.stats import extrapolate_curves

    curves = _crossing_curves(10)
    ext = compute_step_stats(curves, FINALS, n_bootstrap=0, score="extrapolated", hold=HoldSettings(0.65))
    fits = extrapolate_curves([c.points for c in curves], [HORIZON] * len(curves))
    import statistics

    assert ext.noise_std[-1] == pytest.approx(statistics.median(f[-1].std for f in fits))
    assert ext.noise_source == "the predictions' std"
    seeded = compute_step_stats(
        curves, FINALS, n_bootstrap=0, score="extrapolated", hold=HoldSettings(0.65, seed_std=0.01)
    )
    assert seeded.noise_source == "seed_std 0.01 + the predictions' std"
    assert seeded.noise_std[-1] == pytest.approx((0.01**2 + ext.noise_std[-1] ** 2) ** 0.5)


def test_an_unknown_score_is_refused():
    with pytest.raises(ValueError, match="score must be one of"):
        compute_step_stats(_crossing_curves(3), FINALS, score="smoothed")
