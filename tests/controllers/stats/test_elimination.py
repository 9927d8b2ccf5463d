"""Early elimination: the trend line against scipy, literal trajectories for both rules, cost order."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from controllers.stats import (
    CANNOT_REACH_BEFORE_BEST,
    PLATEAUED_BELOW_DESIRED,
    SKIPPED_CANNOT_BE_CHEAPER,
    correlation_trend,
    cost_order,
    decide_elimination,
    decide_skip,
)


def test_trend_matches_scipy_linregress_and_the_prediction_interval_by_hand():
    hours = [0.1, 0.2, 0.3, 0.4]
    corr = [0.10, 0.22, 0.28, 0.41]
    t = correlation_trend(hours, corr, window=4, noise_floor=0.0)
    assert t is not None
    ref = sps.linregress(hours, corr)
    assert t.slope == pytest.approx(ref.slope)
    assert t.slope_se == pytest.approx(ref.stderr)
    assert t.level == pytest.approx(ref.intercept + ref.slope * 0.4)
    resid = math.sqrt(sum((c - (ref.intercept + ref.slope * h)) ** 2 for h, c in zip(hours, corr)) / 2)
    assert t.sigma == pytest.approx(resid)
    # prediction interval at 1.0 h: mean 0.25, Sxx 0.05
    half = 1.645 * resid * math.sqrt(1 / 4 + (1.0 - 0.25) ** 2 / 0.05)
    assert t.upper(1.0, 1.645) == pytest.approx(ref.intercept + ref.slope * 1.0 + half)


def test_trend_uses_the_last_window_skips_unknowns_and_floors_the_scatter():
    t = correlation_trend([0.1, None, 0.2, 0.3], [0.9, 0.5, 0.1, 0.2], window=2, noise_floor=0.02)
    assert t is not None and t.points == 2 and t.slope == pytest.approx(1.0) and t.sigma == 0.02
    assert correlation_trend([0.1, 0.1], [0.0, 0.1], window=4, noise_floor=0.0) is None  # no spread in hours
    assert correlation_trend([0.1], [0.0], window=4, noise_floor=0.0) is None


def test_a_slow_riser_is_cut_once_it_cannot_reach_the_target_before_the_best():
    hours = [0.05 * (k + 1) for k in range(8)]
    corr = [0.02 * k for k in range(8)]  # 0.4 per hour from 0: 0.2 by 0.5 h
    d = decide_elimination(hours, corr, target=0.6, best_hours=0.5, z=1.645, noise_floor=0.01, min_fraction=0.5)
    assert d.stop and d.state == CANNOT_REACH_BEFORE_BEST
    assert d.index == 4  # 0.25 h, the first evaluation at half the best's time
    assert d.inputs["upper_at_best"] < 0.6 and d.inputs["trend"]["points"] == 4
    assert "best proxy's 0.5 h" in d.reason
    # no wait: the second evaluation already says so
    assert decide_elimination(hours, corr, target=0.6, best_hours=0.5, min_fraction=0.0).index == 1
    # without a best, nothing to be cut against (and no time limit: no plateau rule)
    assert not decide_elimination(hours, corr, target=0.6).stop


def test_a_fast_riser_and_a_proxy_past_the_best_time_are_not_eliminated():
    hours = [0.05 * (k + 1) for k in range(6)]
    fast = [0.1 * k for k in range(6)]  # 2 per hour: 0.6 by 0.35 h
    assert not decide_elimination(hours, fast, target=0.6, best_hours=0.5, min_fraction=0.0).stop
    slow = [0.02 * k for k in range(6)]
    # at and past the best's time the not-best rule decides, not this one
    assert not decide_elimination(hours, slow, target=0.6, best_hours=0.04, min_fraction=0.0).stop
    # an evaluation at or above the target never eliminates
    assert not decide_elimination([0.1, 0.2], [0.7, 0.65], target=0.6, best_hours=1.0, min_fraction=0.0).stop


def test_a_plateau_below_the_target_is_cut_with_no_best_but_a_rising_noisy_one_is_not():
    hours = [0.1 * (k + 1) for k in range(10)]
    flat = [0.2, 0.3, 0.35, 0.38, 0.40, 0.40, 0.40, 0.40, 0.41, 0.40]
    d = decide_elimination(hours, flat, target=0.6, horizon_hours=1.0, min_fraction=0.5)
    # at 0.6 h its last four points still rise significantly (0.35 -> 0.40); at 0.7 h they do not
    assert d.stop and d.state == PLATEAUED_BELOW_DESIRED and d.index == 6
    assert d.inputs["upper_plateau"] < 0.6 and d.inputs["best_training_time_hrs"] is None
    # before half the time limit it waits; with no time limit the plateau rule is off
    assert not decide_elimination(hours[:4], flat[:4], target=0.6, horizon_hours=1.0).stop
    assert not decide_elimination(hours, flat, target=0.6).stop
    rising = [0.1, 0.2, 0.18, 0.3, 0.36, 0.33, 0.45, 0.5, 0.48, 0.55]
    assert not decide_elimination(hours, rising, target=0.6, horizon_hours=1.0).stop


def test_bad_options_are_one_line_errors_naming_the_field():
    with pytest.raises(ValueError, match="same length"):
        decide_elimination([0.1], [0.1, 0.2], target=0.6)
    with pytest.raises(ValueError, match="window must be an integer >= 2"):
        decide_elimination([0.1], [0.1], target=0.6, window=1)
    with pytest.raises(ValueError, match="min_fraction must be in"):
        decide_elimination([0.1], [0.1], target=0.6, min_fraction=1.5)
    with pytest.raises(ValueError, match="z and noise_floor"):
        decide_elimination([0.1], [0.1], target=0.6, z=-1)


def test_cost_order_is_cheapest_first_and_stable_with_undeclared_last():
    names = ["a", "b", "c", "d", "e"]
    assert cost_order(names, {"c": 0.5, "b": 1.0, "e": 0.5}) == ["c", "e", "b", "a", "d"]
    assert cost_order(names, {}) == names


def test_skip_when_even_the_first_evaluation_is_not_cheaper_than_the_best():
    # 2 s per step, first evaluation at 0-based step 99: 200 s = 0.0556 h at the earliest
    d = decide_skip(2.0, 99, 0.05)
    assert d.stop and d.state == SKIPPED_CANNOT_BE_CHEAPER
    assert d.inputs["cheapest_possible_hours"] == pytest.approx(200 / 3600)
    assert not decide_skip(2.0, 99, 0.06).stop
    assert decide_skip(2.0, 99, 200 / 3600).stop  # a tie cannot be cheaper
    for args in ((None, 99, 0.05), (2.0, None, 0.05), (2.0, 99, None)):
        assert not decide_skip(*args).stop  # anything unknown: it runs
    with pytest.raises(ValueError, match="secs_per_step and first_eval_step must be >= 0"):
        decide_skip(-1.0, 99, 0.05)
