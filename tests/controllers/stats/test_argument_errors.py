"""Every refusal of the statistics names the argument, the value and the rule (exact messages)."""

from __future__ import annotations

import math

import pytest

from controllers import stats as S
from controllers.stats._common import as_float_array, check_real, optional_float
from controllers.stats._rowcorr import correlate_rows
from controllers.stats._variance import linear_spline_derivative

R5 = [0.1, 0.2, 0.3, 0.4, 0.5]
SERIES = S.StepSeries([1], [0.5], [0.4], [0.5], [1.0])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        # rank correlation
        (
            lambda: S.rank_correlation(R5, R5, method="pearson"),
            ValueError,
            "method must be 'spearman' or 'kendall', but got 'pearson'",
        ),
        (lambda: S.rank_correlation(R5, R5, min_pairs=1), ValueError, "min_pairs must be an integer >= 2, but got 1"),
        (
            lambda: S.rank_correlation(R5, R5, min_pairs=True),
            ValueError,
            "min_pairs must be an integer >= 2, but got True",
        ),
        (
            lambda: S.rank_correlation(R5, R5, min_pairs=2.0),
            ValueError,
            "min_pairs must be an integer >= 2, but got 2.0",
        ),
        (
            lambda: S.rank_correlation(R5, R5, min_valid_ratio=-0.1),
            ValueError,
            "min_valid_ratio must be in [0, 1], but got -0.1",
        ),
        (
            lambda: S.rank_correlation(R5, R5, min_valid_ratio=1.5),
            ValueError,
            "min_valid_ratio must be in [0, 1], but got 1.5",
        ),
        (
            lambda: S.rank_correlation(R5, R5, n_bootstrap=-1),
            ValueError,
            "n_bootstrap must be an integer >= 0, but got -1",
        ),
        (
            lambda: S.rank_correlation(R5, R5, n_bootstrap=False),
            ValueError,
            "n_bootstrap must be an integer >= 0, but got False",
        ),
        (
            lambda: S.rank_correlation(R5, R5, n_bootstrap=10.0),
            ValueError,
            "n_bootstrap must be an integer >= 0, but got 10.0",
        ),
        (lambda: S.rank_correlation(R5, R5, confidence=0.0), ValueError, "confidence must be in (0, 1), but got 0.0"),
        (lambda: S.rank_correlation(R5, R5, confidence=1.0), ValueError, "confidence must be in (0, 1), but got 1.0"),
        (
            lambda: S.rank_correlation(R5, R5[:4]),
            ValueError,
            "proxy and reference must have the same length, but got len(proxy)=5 and len(reference)=4",
        ),
        (
            lambda: S.rank_correlation(R5, [*R5[:4], "x"]),
            TypeError,
            "reference[4] must be a real number or None, but got 'x'",
        ),
        (
            lambda: S.rank_correlation([True, *R5[1:]], R5),
            TypeError,
            "proxy[0] must be a real number or None, but got True",
        ),
        (
            lambda: correlate_rows("pearson", None, None),
            ValueError,
            "method must be 'spearman' or 'kendall', but got 'pearson'",
        ),
        # noise ceiling
        (
            lambda: S.noise_ceiling(R5, 0.1, method="x"),
            ValueError,
            "method must be 'spearman' or 'kendall', but got 'x'",
        ),
        (lambda: S.noise_ceiling(R5, -0.1), ValueError, "seed_std must be >= 0, but got -0.1"),
        (lambda: S.noise_ceiling(R5, math.nan), ValueError, "seed_std must be finite, but got nan"),
        (lambda: S.noise_ceiling(R5, "0.1"), TypeError, "seed_std must be a real number, but got '0.1'"),
        (lambda: S.noise_ceiling(R5, 0.1, n_sim=0), ValueError, "n_sim must be an integer >= 1, but got 0"),
        (lambda: S.noise_ceiling(R5, 0.1, n_sim=True), ValueError, "n_sim must be an integer >= 1, but got True"),
        (lambda: S.noise_ceiling(R5, 0.1, n_sim=2.5), ValueError, "n_sim must be an integer >= 1, but got 2.5"),
        (lambda: S.noise_ceiling(R5, 0.1, quantile=1.5), ValueError, "quantile must be in [0, 1], but got 1.5"),
        (lambda: S.noise_ceiling(R5, 0.1, quantile=-0.5), ValueError, "quantile must be in [0, 1], but got -0.5"),
        (lambda: S.noise_ceiling(R5, 0.1, quantile=math.inf), ValueError, "quantile must be finite, but got inf"),
        (lambda: S.noise_ceiling([0.1, 0.2], 0.1), ValueError, "reference_scores needs at least 3 scores, but got 2"),
        (
            lambda: S.noise_ceiling([0.1, None, 0.3], 0.1),
            ValueError,
            "reference_scores must be finite numbers, but got [0.1, None, 0.3]",
        ),
        (
            lambda: S.noise_ceiling([0.1, "a", 0.3], 0.1),
            TypeError,
            "reference_scores[1] must be a real number or None, but got 'a'",
        ),
        (
            lambda: S.noise_ceiling([0.5, 0.5, 0.5], 0.0),
            ValueError,
            "the correlation is undefined: reference_scores are all equal and seed_std is 0",
        ),
        # crossing point
        (
            lambda: S.crossing_point([1], [0.5], [], 0.5),
            ValueError,
            "steps, values and hours must have the same length, but got 1, 1 and 0",
        ),
        (lambda: S.crossing_point([1], [0.5], [1.0], math.nan), ValueError, "target must be finite, but got nan"),
        (lambda: S.crossing_point([1], [0.5], [1.0], None), TypeError, "target must be a real number, but got None"),
        (
            lambda: S.crossing_point([None], [0.5], [1.0], 0.5),
            ValueError,
            "steps must be finite numbers, but got [None]",
        ),
        (
            lambda: S.crossing_point(["1"], [0.5], [1.0], 0.5),
            TypeError,
            "steps[0] must be a real number or None, but got '1'",
        ),
        (
            lambda: S.crossing_point([1], ["a"], [1.0], 0.5),
            TypeError,
            "values[0] must be a real number or None, but got 'a'",
        ),
        (
            lambda: S.crossing_point([1, 2], [0.5, 0.6], [1.0, -2.0], 0.5),
            ValueError,
            "hours must be finite and >= 0 (or None), but hours[1] is -2.0",
        ),
        (
            lambda: S.crossing_point([1], [0.5], [math.inf], 0.5),
            ValueError,
            "hours must be finite and >= 0 (or None), but hours[0] is inf",
        ),
        (
            lambda: S.crossing_point([1], [0.5], ["h"], 0.5),
            TypeError,
            "hours[0] must be a real number or None, but got 'h'",
        ),
        # stop decision
        (
            lambda: S.decide_stop(SERIES, stop_rule="ci"),
            ValueError,
            "stop_rule must be 'point', 'lower_bound' or 'retrain', but got 'ci'",
        ),
        (
            lambda: S.decide_stop(SERIES, desired_correlation=1.5),
            ValueError,
            "desired_correlation must be in [-1, 1], but got 1.5",
        ),
        (
            lambda: S.decide_stop(SERIES, desired_correlation=-1.01),
            ValueError,
            "desired_correlation must be in [-1, 1], but got -1.01",
        ),
        (
            lambda: S.decide_stop(SERIES, desired_correlation="high"),
            TypeError,
            "desired_correlation must be a real number, but got 'high'",
        ),
        (
            lambda: S.decide_stop(SERIES, desired_accuracy=math.inf),
            ValueError,
            "desired_accuracy must be finite, but got inf",
        ),
        (
            lambda: S.decide_stop(SERIES, training_time_hrs_limit=-1),
            ValueError,
            "training_time_hrs_limit must be >= 0, but got -1.0",
        ),
        (
            lambda: S.decide_stop(SERIES, training_time_hrs_limit=True),
            TypeError,
            "training_time_hrs_limit must be a real number, but got True",
        ),
        (
            lambda: S.decide_stop(SERIES, best_training_time_hrs=-0.5),
            ValueError,
            "best_training_time_hrs must be >= 0, but got -0.5",
        ),
        (
            lambda: S.decide_stop(SERIES, best_training_time_hrs=math.nan),
            ValueError,
            "best_training_time_hrs must be finite, but got nan",
        ),
        (
            lambda: S.decide_stop(S.StepSeries([1], ["x"], [None], [0.5], [1.0])),
            TypeError,
            "correlation[0] must be a real number or None, but got 'x'",
        ),
        (
            lambda: S.decide_stop(S.StepSeries([1], [0.5], [None], ["x"], [1.0])),
            TypeError,
            "median_accuracy[0] must be a real number or None, but got 'x'",
        ),
        (
            lambda: S.decide_stop(S.StepSeries([1], [0.5], [None], [0.5], [-1.0])),
            ValueError,
            "median_hours must be finite and >= 0 (or None), but median_hours[0] is -1.0",
        ),
        (
            lambda: S.StepSeries([1, 2], [0.5], [None], [0.5], [1.0]),
            ValueError,
            "StepSeries lists must have the same length, but got {'training_steps': 2, 'correlation': 1, 'ci_low': 1, 'median_accuracy': 1, 'median_hours': 1}",
        ),
        # medians
        (
            lambda: S.median_accuracy_and_hours([0.5], [], 0),
            ValueError,
            "accuracies and seconds_per_step must have the same length, but got len(accuracies)=1 and len(seconds_per_step)=0",
        ),
        (
            lambda: S.median_accuracy_and_hours([0.5], [1.0], -1),
            ValueError,
            "training_step must be an integer >= 0, but got -1",
        ),
        (
            lambda: S.median_accuracy_and_hours([0.5], [1.0], 1.5),
            ValueError,
            "training_step must be an integer >= 0, but got 1.5",
        ),
        (
            lambda: S.median_accuracy_and_hours([0.5], [1.0], True),
            ValueError,
            "training_step must be an integer >= 0, but got True",
        ),
        (
            lambda: S.median_accuracy_and_hours(["a"], [1.0], 0),
            TypeError,
            "accuracies[0] must be a real number or None, but got 'a'",
        ),
        (
            lambda: S.median_accuracy_and_hours([0.5], [-1.0], 0),
            ValueError,
            "seconds_per_step must be finite and >= 0 (or None), but seconds_per_step[0] is -1.0",
        ),
        # best proxy
        (
            lambda: S.best_proxy([("a", True, -1.0, 0)]),
            ValueError,
            "final_hours of proxy 'a' must be finite and >= 0, but got -1.0",
        ),
        (
            lambda: S.best_proxy([("a", True, math.inf, 0)]),
            ValueError,
            "final_hours of proxy 'a' must be finite and >= 0, but got inf",
        ),
        # schedule
        (lambda: S.next_desired_pct(0.0, 0, 10), ValueError, "current_num_trials must be an integer >= 1, but got 0"),
        (lambda: S.next_desired_pct(0.0, 5, 0), ValueError, "final_num_models must be an integer >= 1, but got 0"),
        (
            lambda: S.next_desired_pct(0.0, 5.5, 1),
            ValueError,
            "current_num_trials must be an integer >= 1, but got 5.5",
        ),
        (
            lambda: S.next_desired_pct(0.0, True, 1),
            ValueError,
            "current_num_trials must be an integer >= 1, but got True",
        ),
        (
            lambda: S.num_models_to_remove(-1, 10, 5),
            ValueError,
            "current_num_trials must be an integer >= 0, but got -1",
        ),
        (lambda: S.num_models_to_remove(10, 0, 5), ValueError, "final_num_models must be an integer >= 1, but got 0"),
        (
            lambda: S.num_models_to_remove(10, 5, 0),
            ValueError,
            "num_models_to_remove_per_iter must be an integer >= 1, but got 0",
        ),
        (lambda: S.desired_training_pcts(0, 10, 5), ValueError, "start_num_models must be an integer >= 1, but got 0"),
        (lambda: S.desired_training_pcts(30, 0, 5), ValueError, "final_num_models must be an integer >= 1, but got 0"),
        (
            lambda: S.desired_training_pcts(30, 10, 0),
            ValueError,
            "num_models_to_remove_per_iter must be an integer >= 1, but got 0",
        ),
        # filtering
        (lambda: S.filter_candidates([], -1), ValueError, "num_to_remove must be an integer >= 0, but got -1"),
        (lambda: S.filter_candidates([], 1.5), ValueError, "num_to_remove must be an integer >= 0, but got 1.5"),
        (lambda: S.filter_candidates([], True), ValueError, "num_to_remove must be an integer >= 0, but got True"),
        (lambda: S.filter_candidates([], 1, min_kept=0), ValueError, "min_kept must be an integer >= 1, but got 0"),
        (lambda: S.filter_candidates([], 1, min_kept=1.5), ValueError, "min_kept must be an integer >= 1, but got 1.5"),
        (
            lambda: S.filter_candidates([], 1, min_kept=True),
            ValueError,
            "min_kept must be an integer >= 1, but got True",
        ),
        # variance and smoothness
        (lambda: S.seed_std([]), ValueError, "seed_std needs at least 1 value, but got an empty sequence"),
        (lambda: S.seed_std([0.5, None]), ValueError, "values must be finite numbers, but values[1] is None"),
        (lambda: S.seed_std(["a"]), TypeError, "values[0] must be a real number or None, but got 'a'"),
        (
            lambda: S.coefficient_of_variation([]),
            ValueError,
            "coefficient_of_variation needs at least 1 value, but got an empty sequence",
        ),
        (
            lambda: S.coefficient_of_variation([1.0, math.nan]),
            ValueError,
            "values must be finite numbers, but values[1] is nan",
        ),
        (
            lambda: S.coefficient_of_variation([1.0], min_abs_mean=-1.0),
            ValueError,
            "min_abs_mean must be >= 0, but got -1.0",
        ),
        (
            lambda: S.coefficient_of_variation([1.0], min_abs_mean=math.nan),
            ValueError,
            "min_abs_mean must be finite, but got nan",
        ),
        (
            lambda: S.coefficient_of_variation([-1.0, 1.0]),
            ValueError,
            "coefficient of variation is undefined: |mean| = 0 is below min_abs_mean=1e-08 (values too close to zero)",
        ),
        (
            lambda: S.smoothness([1.0], []),
            ValueError,
            "pcts and accuracies must have the same length, but got len(pcts)=1 and len(accuracies)=0",
        ),
        (lambda: S.smoothness([1.0, None], [0.1, 0.2]), ValueError, "pcts must be finite numbers, but pcts[1] is None"),
        (
            lambda: S.smoothness([1.0, 2.0], [0.1, math.inf]),
            ValueError,
            "accuracies must be finite numbers, but accuracies[1] is inf",
        ),
        (
            lambda: S.smoothness([1.0, 1.0], [0.1, 0.2]),
            ValueError,
            "pcts must be strictly increasing, but got [1.0, 1.0]",
        ),
        (
            lambda: S.smoothness([2.0, 1.0], [0.1, 0.2]),
            ValueError,
            "pcts must be strictly increasing, but got [2.0, 1.0]",
        ),
        (
            lambda: S.Ceiling("spearman", 1, 1, 1, 1, 0.5, 1, (1.0,)).prob_at_least(math.nan),
            ValueError,
            "target must be finite, but got nan",
        ),
        (lambda: check_real(math.inf, "x"), ValueError, "x must be finite, but got inf"),
        (lambda: check_real(True, "x"), TypeError, "x must be a real number, but got True"),
    ],
)
def test_refusal_names_the_argument(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message


def test_duplicate_trial_ids_are_named():
    with pytest.raises(ValueError) as info:
        S.filter_candidates([S.Candidate("7", 0.1), S.Candidate("7", 0.2)], 1)
    assert str(info.value) == "trial ids must be unique, but '7' appears more than once"


def test_common_helpers():
    arr = as_float_array([1, None, 2.5], "v")
    assert arr.dtype == float and arr[0] == 1.0 and math.isnan(arr[1]) and arr[2] == 2.5
    assert optional_float(None) is None
    assert optional_float(math.nan) is None and optional_float(math.inf) is None
    assert optional_float(3) == 3.0 and type(optional_float(3)) is float
    assert check_real(2, "x") == 2.0 and type(check_real(2, "x")) is float


def test_boundaries_that_are_accepted():
    S.rank_correlation(R5, R5, min_pairs=2, min_valid_ratio=0.0, n_bootstrap=0, confidence=0.5)
    S.rank_correlation(R5, R5, min_valid_ratio=1.0, n_bootstrap=0)
    S.noise_ceiling(R5, 0.0, n_sim=1, quantile=0.0)
    S.noise_ceiling(R5, 0.0, n_sim=1, quantile=1.0)
    S.decide_stop(SERIES, desired_correlation=-1.0)
    S.decide_stop(SERIES, desired_correlation=1.0, training_time_hrs_limit=0.0, best_training_time_hrs=0.0)
    assert S.next_desired_pct(0.0, 1, 1) == S.FINAL_ROUND_PCT
    assert S.num_models_to_remove(0, 1, 1) == 0
    assert S.desired_training_pcts(1, 1, 1) == [S.FINAL_ROUND_PCT]
    assert S.filter_candidates([S.Candidate("1", 0.1), S.Candidate("2", 0.2)], 1, min_kept=1).kept == ["1"]
    assert S.coefficient_of_variation([1.0, 3.0], min_abs_mean=0.0) == 0.5
    assert S.coefficient_of_variation([1.0, 3.0], min_abs_mean=2.0) == 0.5  # |mean| == min_abs_mean is enough
    assert S.coefficient_of_variation([0.5, 1.5]) == 0.5  # a mean of exactly 1
    assert S.median_accuracy_and_hours([0.5], [1.0], 0) == (0.5, 1.0 / 3600)
    assert linear_spline_derivative([0.0, 1.0], [0.0, 2.0], [0.5]).tolist() == [2.0]
