"""Unit tests of controllers.stats: tiny literal inputs, scipy cross-checks, property tests."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.interpolate import splev, splrep

import controllers.stats as S
from controllers.stats import (
    Candidate,
    StepSeries,
    best_proxy,
    both_correlations,
    coefficient_of_variation,
    crossing_point,
    decide_stop,
    desired_training_pcts,
    filter_candidates,
    mean_smoothness,
    median_accuracy_and_hours,
    next_desired_pct,
    noise_ceiling,
    num_models_to_remove,
    prob_target_reachable,
    rank_correlation,
    seed_std,
    smoothness,
    smoothness_sample_points,
)
from controllers.stats._filtering import _pick_removal
from controllers.stats._rowcorr import kendall_rows, spearman_rows

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values drawn from a small grid so that ties happen often.
tied_floats = st.integers(min_value=0, max_value=6).map(lambda v: v / 4)
pairs = st.integers(min_value=5, max_value=12).flatmap(
    lambda n: st.tuples(st.lists(tied_floats, min_size=n, max_size=n), st.lists(tied_floats, min_size=n, max_size=n))
)


def test_public_api_is_curated():
    expected = {
        "EXCEEDED_BEST_TRAIN_TIME", "EXCEEDED_TRAIN_TIME_LIMIT", "FINAL_ROUND_PCT", "MET_DESIRED_ACCURACY",
        "MET_DESIRED_ACCURACY_CORRELATION", "NOT_STOPPED", "SMOOTHNESS_POINTS_PER_SECTION",
        "SMOOTHNESS_SAMPLE_SECTIONS", "SUCCESSFUL_STATES", "Candidate", "Ceiling", "Correlation", "Crossing",
        "FilterResult", "ProxyOutcome", "StepSeries", "StopDecision", "best_proxy", "both_correlations",
        "bootstrap_interval", "coefficient_of_variation", "crossing_point", "decide_stop", "desired_training_pcts",
        "filter_candidates", "mean_smoothness", "median_accuracy_and_hours", "next_desired_pct", "noise_ceiling",
        "num_models_to_remove", "prob_target_reachable", "rank_correlation", "seed_std", "smoothness",
        "smoothness_sample_points", "trial_id_sort_key",
        "DEFAULT_CONFIRM", "DEFAULT_FALSE_PASS_RATE", "DEFAULT_SMOOTH", "STOP_RULES", "combine_noise", "hold_probability",
        "median_accuracy_and_time", "models_for_half_width", "roughness_std", "seconds_at_step",
        "CANNOT_REACH_BEFORE_BEST", "PLATEAUED_BELOW_DESIRED", "ELIMINATION_STATES", "DEFAULT_ELIMINATION_WINDOW",
        "DEFAULT_PLATEAU_POINTS", "DEFAULT_ELIMINATION_Z", "DEFAULT_NOISE_FLOOR", "DEFAULT_MIN_FRACTION",
        "EliminationDecision", "Trend", "correlation_trend", "decide_elimination",
        "SKIPPED_CANNOT_BE_CHEAPER", "cost_order", "decide_skip",
        "ScoreCheck", "check_same_scale", "degenerate_scores", "score_scale",
        "CURVE_MODELS", "DEFAULT_MAX_EXTRAPOLATION", "DEFAULT_MIN_FIT_POINTS", "Extrapolation", "extrapolate_curve",
        "extrapolate_curves",
    }  # fmt: skip
    assert set(S.__all__) == expected
    for name in S.__all__:
        assert hasattr(S, name)
    assert S.MET_DESIRED_ACCURACY_CORRELATION == "Met desired correlation"
    assert S.MET_DESIRED_ACCURACY == "Met desired accuracy"
    assert S.EXCEEDED_TRAIN_TIME_LIMIT == "Exceeded training time limit"
    assert S.EXCEEDED_BEST_TRAIN_TIME == "Exceeded best training time"


# --------------------------------------------------------------------------- correlation


def test_rank_correlation_hand_computed():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    # d = [-1, 1, -1, 1, 0]: rho = 1 - 6*4 / (5*24) = 0.8; 2 discordant of 10 pairs: tau = 0.6.
    assert rank_correlation(x, y, method="spearman").coefficient == pytest.approx(0.8)
    assert rank_correlation(x, y, method="kendall").coefficient == pytest.approx(0.6)
    assert rank_correlation(x, [5, 4, 3, 2, 1]).coefficient == pytest.approx(-1.0)
    c = rank_correlation(x, [10, 20, 30, 40, 50], method="kendall")
    assert c.valid and c.reason == "" and c.n == c.n_total == 5 and c.coefficient == pytest.approx(1.0)


def test_none_and_nan_drop_pairs_and_validity_rule():
    c = rank_correlation([1, 2, None, 4, 5, 6, 7], [1, 2, 3, 4, math.nan, 6, 7])
    assert (c.n, c.n_total, c.valid) == (5, 7, True)
    # 7 of 10 valid is exactly the 0.7 threshold -> valid.
    c = rank_correlation([1, 2, 3, 4, 5, 6, 7, None, None, None], list(range(10)))
    assert c.valid and c.n == 7
    c = rank_correlation([1, 2, 3, 4, 5, 6, None, None, None, None], list(range(10)))
    assert not c.valid and c.coefficient is None and "6 of 10" in c.reason
    c = rank_correlation([1, 2, 3, 4, None], [1, 2, 3, 4, 5])
    assert not c.valid and c.reason == "only 4 valid pairs (< 5)"
    assert c.p_value is None and c.ci_low is None and c.ci_high is None
    c = rank_correlation([], [])
    assert not c.valid and c.n == 0 and c.n_total == 0


def test_constant_input_is_invalid_never_nan():
    for method in ("spearman", "kendall"):
        c = rank_correlation([0.5] * 6, [1, 2, 3, 4, 5, 6], method=method)
        assert not c.valid and "constant" in c.reason and c.coefficient is None
        c = rank_correlation([1, 2, 3, 4, 5, 6], [0.0] * 6, method=method)
        assert not c.valid and "reference" in c.reason
        json.dumps(c.to_dict(), allow_nan=False)


def test_rank_correlation_errors():
    with pytest.raises(ValueError, match=r"len\(proxy\)=3 and len\(reference\)=2"):
        rank_correlation([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="method"):
        rank_correlation([1, 2], [1, 2], method="pearson")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"proxy\[1\]"):
        rank_correlation([1, "a"], [1, 2])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="confidence"):
        rank_correlation([1, 2], [1, 2], confidence=1.0)


def test_to_dict_is_standard_json_and_deterministic():
    rng = np.random.default_rng(3)
    x = rng.random(10)
    y = x + rng.normal(0, 0.2, 10)
    a = rank_correlation(x, y)
    b = rank_correlation(list(x), list(y))
    assert a == b
    d = a.to_dict()
    assert set(d) == {"method", "coefficient", "n", "n_total", "p_value", "ci_low", "ci_high", "valid", "reason"}
    json.dumps(d, allow_nan=False)
    both = both_correlations(x, y, n_bootstrap=0)
    assert set(both) == {"spearman", "kendall"}
    assert both["kendall"].method == "kendall" and both["spearman"].ci_low is None


@FAST
@given(pairs)
def test_agrees_with_scipy(xy):
    x, y = xy
    for method, fn in (("spearman", sps.spearmanr), ("kendall", sps.kendalltau)):
        c = rank_correlation(x, y, method=method, n_bootstrap=50)
        if len(set(x)) == 1 or len(set(y)) == 1:
            assert not c.valid
            continue
        ref = fn(x, y)
        assert c.valid
        assert c.coefficient == pytest.approx(float(ref.statistic), abs=1e-12)
        assert c.p_value == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-12)
        assert -1.0 <= c.coefficient <= 1.0
        if c.ci_low is not None:
            assert -1.0 <= c.ci_low <= c.ci_high <= 1.0


@FAST
@given(pairs)
def test_symmetry_and_monotone_invariance(xy):
    x, y = xy
    for method in ("spearman", "kendall"):
        c = rank_correlation(x, y, method=method, n_bootstrap=100)
        swapped = rank_correlation(y, x, method=method, n_bootstrap=100)
        transformed = rank_correlation([math.exp(v) * 3 + 1 for v in x], y, method=method, n_bootstrap=100)
        for other in (swapped, transformed):
            assert other.valid == c.valid
            if c.valid:
                assert other.coefficient == pytest.approx(c.coefficient, abs=1e-12)
                assert other.ci_low == pytest.approx(c.ci_low, abs=1e-12)
                assert other.ci_high == pytest.approx(c.ci_high, abs=1e-12)


def test_ci_contains_point_estimate_in_most_cases():
    rng = np.random.default_rng(11)
    hits = 0
    for trial in range(40):
        x = rng.random(10)
        y = x + rng.normal(0, 0.3, 10)
        c = rank_correlation(x, y, method="spearman" if trial % 2 else "kendall", seed=trial)
        hits += c.ci_low <= c.coefficient <= c.ci_high
    assert hits >= 36


def test_row_kernels_match_scipy_with_ties():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=(60, 9)).astype(float)
    y = rng.integers(0, 4, size=(60, 9)).astype(float)
    x[0] = 1.0  # a constant row -> NaN
    rho, tau = spearman_rows(x, y), kendall_rows(x, y)
    assert math.isnan(rho[0]) and math.isnan(tau[0])
    for r in range(1, 60):
        if len(set(y[r])) == 1:
            continue
        assert rho[r] == pytest.approx(sps.spearmanr(x[r], y[r]).statistic, abs=1e-12)
        assert tau[r] == pytest.approx(sps.kendalltau(x[r], y[r]).statistic, abs=1e-12)


# --------------------------------------------------------------------------- variance, smoothness


def test_coefficient_of_variation_and_seed_std():
    assert coefficient_of_variation([1.0, 3.0]) == pytest.approx(0.5)  # std 1, mean 2
    assert coefficient_of_variation([0.7, 0.7, 0.7]) == pytest.approx(0.0, abs=1e-12)
    assert coefficient_of_variation([0.42]) == 0.0  # reference: 0.0 for fewer than 2 runs
    assert coefficient_of_variation([-1.0, -3.0]) == pytest.approx(0.5)
    assert seed_std([1.0, 3.0]) == pytest.approx(1.0)
    assert seed_std([2.0]) == 0.0
    with pytest.raises(ValueError, match="min_abs_mean"):
        coefficient_of_variation([1e-9, -1e-9, 2e-9])
    with pytest.raises(ValueError, match="min_abs_mean"):
        coefficient_of_variation([0.0, 0.0])
    with pytest.raises(ValueError, match="empty"):
        coefficient_of_variation([])
    with pytest.raises(ValueError, match="empty"):
        seed_std([])
    with pytest.raises(ValueError, match="finite"):
        coefficient_of_variation([0.5, math.nan])


def _reference_smoothness(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    x = (x - x.min()) / (x.max() - x.min())
    y = (y - y.min()) / (y.max() - y.min())
    tck = splrep(x, y, k=1, s=0)
    d = splev(smoothness_sample_points(), tck, der=1)
    return abs(np.sum(d[d < 0]))


def test_sample_points_are_the_references():
    pts = smoothness_sample_points()
    assert pts.shape == (30,)
    assert pts[:3] == pytest.approx([0.0, 0.07, 0.14])
    assert pts[10:12] == pytest.approx([0.7, 0.72])
    assert pts[-1] == pytest.approx(0.99)


def test_smoothness_hand_computed_and_edge_cases():
    # Up then down: slope -2 on [0.5, 1]; sample points there: 0.56, 0.63 + 10 + 10 = 22.
    assert smoothness([0, 50, 100], [0.0, 1.0, 0.0]) == pytest.approx(44.0)
    assert smoothness([10, 20, 30], [0.1, 0.2, 0.3]) == 0.0
    assert smoothness([10, 20, 30], [0.5, 0.5, 0.5]) == 0.0
    assert smoothness([10], [0.5]) == 0.0
    assert smoothness([], []) == 0.0
    # Knots exactly at sample points (0.7, 0.9): splev takes the right-hand segment.
    x, y = [0, 70, 90, 100], [0.0, 1.0, 0.2, 0.6]
    assert smoothness(x, y) == pytest.approx(_reference_smoothness(x, y))
    assert mean_smoothness([([0, 50, 100], [0.0, 1.0, 0.0]), ([0, 1], [0, 1])]) == pytest.approx(22.0)
    assert mean_smoothness([]) == 0.0
    with pytest.raises(ValueError, match="strictly increasing"):
        smoothness([0, 50, 50], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        smoothness([0, 50], [0.1])


@FAST
@given(st.integers(min_value=2, max_value=40), st.integers(min_value=0, max_value=2**31))
def test_smoothness_matches_splrep_splev(m, seed):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.uniform(0.1, 5.0, m))
    y = rng.random(m)
    assert smoothness(list(x), list(y)) == pytest.approx(_reference_smoothness(x, y), rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------- filtering, schedule

FIVE = [Candidate("1", 0.10), Candidate("2", 0.50), Candidate("3", 0.52), Candidate("4", 0.60), Candidate("5", 0.90)]


def test_filter_hand_computed_five_points():
    # Normalised: 0, .5, .525, .625, 1. Closest pair 2-3; d2(2)=.125 (to 4) > d2(3)=.1 -> drop 3.
    # Then 0, .5, .625, 1: closest 2-4; d2(2)=.5 > d2(4)=.375 -> drop 4.
    r = filter_candidates(FIVE, 2)
    assert r.removed == ["3", "4"]
    assert r.kept == ["1", "2", "5"]
    assert r.invalid == []
    assert "trial 2" in r.reasons["3"]


def test_filter_two_dimensional():
    trials = [
        Candidate("1", 0.0, 10.0),
        Candidate("2", 1.0, 10.0),
        Candidate("3", 0.0, 20.0),
        Candidate("4", 0.95, 19.0),
        Candidate("5", 1.0, 20.0),
    ]
    r = filter_candidates(trials, 1, require_latency=True)
    assert r.removed == ["4"]  # closest pair 4-5; 4 is nearer to everything else
    assert filter_candidates(trials, 1).removed != ["4"]  # 1-D accuracy spacing ignores latency


def test_filter_tie_rules():
    # Exact binary fractions: closest pair (1, 2) at .125; d2 of both is .25 -> tie removes j = nn(i).
    pts = np.array([[0.0, 0.0], [0.25, 0.0], [0.375, 0.0], [0.625, 0.0]])
    removed, partner, d1, d2r, d2p = _pick_removal(pts)
    assert (removed, partner, d1, d2r, d2p) == (2, 1, 0.125, 0.25, 0.25)
    # Two points: no second neighbour for either -> tie -> j is removed.
    assert _pick_removal(np.array([[0.0, 0.0], [1.0, 0.0]]))[0] == 1
    # Equal nearest distances: i = the first point attaining the minimum.
    removed, partner, *_ = _pick_removal(np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]))
    assert (removed, partner) == (1, 0)  # d2(0)=2 is not < d2(1)=1 -> drop j=1


def test_invalid_trials_count_against_quota_and_zero_is_a_value():
    trials = [*FIVE, Candidate("6", None), Candidate("7", math.nan)]
    r = filter_candidates(trials, 3)
    assert r.invalid == ["6", "7"]
    assert r.removed == ["3"]  # 3 - 2 invalid = 1 removal
    assert r.reasons["6"].startswith("invalid")
    r = filter_candidates([Candidate("1", 0.0), Candidate("2", 0.5), Candidate("3", 0.51)], 0)
    assert r.kept == ["1", "2", "3"] and r.invalid == []
    r = filter_candidates([Candidate("1", 0.5, None), Candidate("2", 0.5, -1.0), Candidate("3", 0.5, 0.0)], 0,
                          require_latency=True)  # fmt: skip
    assert r.invalid == ["1", "2"] and r.kept == ["3"]


def test_min_kept_floor():
    r = filter_candidates(FIVE[:3], 5)
    assert len(r.kept) == 2 and len(r.removed) == 1
    r = filter_candidates(FIVE, 10, min_kept=4)
    assert len(r.kept) == 4
    assert filter_candidates([], 3).kept == []


def test_filter_errors_and_id_order():
    with pytest.raises(ValueError, match="unique"):
        filter_candidates([Candidate("1", 0.1), Candidate("1", 0.2)], 0)
    with pytest.raises(ValueError, match="num_to_remove"):
        filter_candidates(FIVE, -1)
    r = filter_candidates([Candidate("10", 0.1), Candidate("2", 0.2), Candidate("b", 0.3), Candidate("a", 0.4)], 0)
    assert r.kept == ["2", "10", "a", "b"]


@FAST
@given(st.permutations(list(range(9))), st.integers(min_value=0, max_value=6))
def test_filter_is_deterministic_under_permutation(perm, k):
    accs = [0.1, 0.5, 0.52, 0.6, 0.9, 0.5, 0.3, None, 0.31]
    trials = [Candidate(str(i + 1), a) for i, a in enumerate(accs)]
    base = filter_candidates(trials, k)
    shuffled = filter_candidates([trials[i] for i in perm], k)
    assert shuffled == base


def test_schedule_reproduces_reference():
    pcts = desired_training_pcts()
    assert pcts == pytest.approx([3.333333, 7.333333, 12.333333, 19.0, 101.0], abs=1e-5)
    assert pcts[0] == 3.3333333333333335  # the float the reference writes in its state file
    assert next_desired_pct(0.0, 30, 10) == 100.0 / 30
    assert next_desired_pct(19.0, 10, 10) == 101.0
    assert next_desired_pct(19.0, 7, 10) == 101.0
    assert num_models_to_remove(12, 10, 5) == 2
    assert desired_training_pcts(10, 10, 5) == [101.0]


# --------------------------------------------------------------------------- crossing, stopping


def test_crossing_interpolates_between_valid_steps():
    c = crossing_point([100, 200, 300], [0.2, 0.6, 1.0], [1.0, 2.0, 3.0], 0.8)
    assert c is not None and c.interpolated and c.index == 2
    assert c.step == pytest.approx(250.0) and c.step_int == 250 and c.hours == pytest.approx(2.5)
    c = crossing_point([100, 200], [0.9, 1.0], [1.0, 2.0], 0.5)
    assert c.index == 0 and not c.interpolated and c.step == 100.0
    assert crossing_point([100, 200], [0.1, 0.2], [1.0, 2.0], 0.5) is None
    assert crossing_point([], [], [], 0.5) is None
    c = crossing_point([1, 2], [-0.5, 0.0], [1.0, 2.0], 0.0)  # 0.0 is a real target
    assert c.index == 1 and c.step == pytest.approx(2.0)


def test_crossing_after_invalid_step_is_not_interpolated():
    c = crossing_point([100, 200, 300], [0.3, None, 0.8], [0.5, None, 1.5], 0.7)
    assert c is not None and c.index == 2 and not c.interpolated
    assert (c.step, c.step_int, c.hours) == (300.0, 300, 1.5)
    # A step with a value but unknown hours does not count either.
    c = crossing_point([100, 200, 300], [0.1, 0.9, 0.95], [0.5, None, 1.5], 0.7)
    assert c.index == 2 and not c.interpolated
    with pytest.raises(ValueError, match="hours"):
        crossing_point([1], [0.1], [-1.0], 0.0)
    with pytest.raises(ValueError, match="same length"):
        crossing_point([1, 2], [0.1], [1.0], 0.0)


@FAST
@given(
    st.lists(st.one_of(st.none(), st.floats(-1, 1)), min_size=1, max_size=8),
    st.floats(-1, 1),
    st.randoms(use_true_random=False),
)
def test_crossing_hours_never_negative(values, target, rnd):
    hours = [rnd.uniform(0, 5) for _ in values]
    steps = list(range(len(values)))
    c = crossing_point(steps, values, hours, target)
    if c is not None:
        assert c.hours >= 0
        lo = c.index - 1 if c.interpolated else c.index
        assert min(hours[lo : c.index + 1]) - 1e-12 <= c.hours <= max(hours[lo : c.index + 1]) + 1e-12
        assert lo <= c.step <= c.index


def _series(corr, acc, hrs, ci=None):
    n = len(corr)
    return StepSeries(list(range(100, 100 * (n + 1), 100)), corr, ci or [None] * n, acc, hrs)


def test_decide_stop_rule_order_and_first_index():
    s = _series([0.5, 0.9], [0.8, 0.9], [1.0, 2.0])
    d = decide_stop(s, desired_correlation=0.8, desired_accuracy=0.8)
    assert d.stop and d.state == "Met desired accuracy" and d.crossing.index == 0  # index 0 wins
    d = decide_stop(s, desired_correlation=0.9, desired_accuracy=0.9)
    assert d.state == "Met desired correlation" and d.succeeded  # same index: correlation first
    d = decide_stop(s, desired_correlation=0.8, training_time_hrs_limit=1.0)
    assert d.state == "Exceeded training time limit" and d.crossing is None and not d.succeeded
    d = decide_stop(s, desired_correlation=0.8, training_time_hrs_limit=5.0)
    assert d.state == "Met desired correlation"
    assert (
        d.crossing.interpolated and d.crossing.step == pytest.approx(175.0) and d.crossing.hours == pytest.approx(1.75)
    )
    assert "0.9 >= desired 0.8" in d.reason


def test_decide_stop_none_disables_and_zero_is_real():
    s = _series([None, 0.0], [0.0, 0.1], [0.0, 0.5])
    d = decide_stop(s)
    assert not d.stop and d.state == "" and d.crossing is None
    assert decide_stop(s, desired_accuracy=0.0).state == "Met desired accuracy"
    assert decide_stop(s, desired_correlation=0.0).crossing.index == 1
    assert decide_stop(s, training_time_hrs_limit=0.0).state == "Exceeded training time limit"
    d = decide_stop(s, best_training_time_hrs=0.0, early_stop_if_not_best=True)
    assert d.state == "Exceeded best training time"
    assert not decide_stop(s, best_training_time_hrs=0.0, early_stop_if_not_best=False).stop
    assert not decide_stop(s, early_stop_if_not_best=True).stop


def test_decide_stop_lower_bound_and_validation():
    s = _series([0.85, 0.9], [0.5, 0.6], [1.0, 2.0], ci=[0.4, 0.82])
    assert decide_stop(s, desired_correlation=0.8).crossing.index == 0
    d = decide_stop(s, desired_correlation=0.8, stop_rule="lower_bound")
    assert d.crossing.index == 1 and "lower bound" in d.reason
    with pytest.raises(ValueError, match="stop_rule"):
        decide_stop(s, stop_rule="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="desired_correlation must be in"):
        decide_stop(s, desired_correlation=1.3)
    with pytest.raises(ValueError, match="same length"):
        StepSeries([1, 2], [0.1], [None], [0.1], [0.1])


def test_median_accuracy_and_hours():
    acc, hrs = median_accuracy_and_hours([0.1, 0.4, 0.2, 0.3], [1.8, 3.6, None, 7.2], 999)
    assert acc == pytest.approx(0.25)  # true median, not the upper one
    assert hrs == pytest.approx(1.0)  # 1000 steps: 0.5 h, 1.0 h, 2.0 h -> 1.0
    acc, hrs = median_accuracy_and_hours([None, 0.5, math.nan], [3600.0, 7.2, 3600.0], 0)
    assert acc == 0.5 and hrs == pytest.approx(0.002)  # one trial: its own timing, step 0 = 1 step
    assert median_accuracy_and_hours([None, None], [1.0, 1.0], 5) == (None, None)
    assert median_accuracy_and_hours([0.0], [None], 5) == (0.0, None)
    with pytest.raises(ValueError, match="training_step"):
        median_accuracy_and_hours([0.1], [1.0], -1)


def test_best_proxy():
    assert best_proxy([]) is None
    assert best_proxy([("a", False, 0.1, 0), ("b", True, None, 1)]) is None
    assert best_proxy([("a", True, 2.0, 0), ("b", True, 0.0, 1), ("c", True, 1.0, 2)]) == "b"  # 0.0 is a time
    assert best_proxy([("b", True, 1.0, 1), ("a", True, 1.0, 2)]) == "a"  # tie -> fewer steps (unknown), then name
    assert best_proxy([("b", True, 1.0, 1), ("a", True, 1.0, 1)]) == "a"
    assert best_proxy([S.ProxyOutcome("x", True, 3.0, 0)]) == "x"
    with pytest.raises(ValueError, match="final_hours"):
        best_proxy([("a", True, -1.0, 0)])


# --------------------------------------------------------------------------- noise ceiling


@pytest.mark.parametrize("method", ["spearman", "kendall"])
def test_noise_ceiling_without_noise_is_one(method):
    ref = [0.70 + 0.01 * i for i in range(10)]
    c = noise_ceiling(ref, 0.0, method=method, n_sim=200)
    assert c.median == c.p10 == c.p90 == 1.0
    assert c.prob_at_least(1.0) == 1.0 and prob_target_reachable(c, 0.99) == 1.0
    json.dumps(c.to_dict(), allow_nan=False)


def test_noise_ceiling_with_overwhelming_noise_is_near_zero():
    ref = [0.70 + 0.001 * i for i in range(10)]
    c = noise_ceiling(ref, 10.0, n_sim=2000)
    assert abs(c.median) < 0.05
    assert c.p10 < -0.3 and c.p90 > 0.3  # spread of rho for 10 independent pairs
    assert prob_target_reachable(c, 0.8) < 0.02


def test_noise_ceiling_matches_brute_force():
    d, sigma, n, n_sim, seed = 0.01, 0.01, 10, 300, 7
    ref = np.arange(n) * d
    c = noise_ceiling(list(ref), sigma, n_sim=n_sim, seed=seed, quantile=0.25)
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=(2, n_sim, n))
    brute = np.array([sps.spearmanr(ref + noise[0, s], ref + noise[1, s]).statistic for s in range(n_sim)])
    assert c.median == pytest.approx(float(np.median(brute)), abs=1e-12)
    assert c.value == pytest.approx(float(np.quantile(brute, 0.25)), abs=1e-12)
    assert c.prob_at_least(0.8) == pytest.approx(float(np.mean(brute >= 0.8)))
    # Independent draws (another seed, plain loop) agree statistically; the ceiling is well inside (0, 1).
    rng = np.random.default_rng(12345)
    loop = [sps.spearmanr(ref + rng.normal(0, sigma, n), ref + rng.normal(0, sigma, n)).statistic for _ in range(600)]
    assert c.median == pytest.approx(float(np.median(loop)), abs=0.05)
    assert 0.5 < c.median < 0.95
    # More noise, lower ceiling.
    assert noise_ceiling(list(ref), 3 * sigma, n_sim=n_sim).median < c.median


def test_noise_ceiling_errors():
    with pytest.raises(ValueError, match="all equal"):
        noise_ceiling([0.5, 0.5, 0.5], 0.0)
    with pytest.raises(ValueError, match="at least 3"):
        noise_ceiling([0.5, 0.6], 0.1)
    with pytest.raises(ValueError, match="seed_std"):
        noise_ceiling([0.5, 0.6, 0.7], -0.1)
