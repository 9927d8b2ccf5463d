"""The noise-aware ``retrain`` stop rule, true time at a step, and ties within the cost spread.

Small literal cases: a spike, a stable crossing, a dip after a crossing, a noisy proxy that
crosses early. Each rule (point, lower_bound, retrain) is run on each.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from controllers.stats import (
    EXCEEDED_BEST_TRAIN_TIME,
    MET_DESIRED_ACCURACY_CORRELATION,
    StepSeries,
    best_proxy,
    combine_noise,
    decide_stop,
    hold_probability,
    median_accuracy_and_time,
    models_for_half_width,
    roughness_std,
    seconds_at_step,
)


def _series(corr, hold, ci_low=None, hours=None) -> StepSeries:
    n = len(corr)
    return StepSeries(
        training_steps=[10 * (i + 1) - 1 for i in range(n)],
        correlation=corr,
        ci_low=ci_low if ci_low is not None else [c - 0.5 for c in corr],
        median_accuracy=[0.5] * n,
        median_hours=hours if hours is not None else [0.1 * (i + 1) for i in range(n)],
        hold_prob=hold,
    )


def _decide(series: StepSeries, rule: str, **kw):
    return decide_stop(series, desired_correlation=0.65, stop_rule=rule, **kw)  # type: ignore[arg-type]


# -- the four literal cases ----------------------------------------------------------------


def test_a_spike_is_not_a_crossing():
    s = _series([0.2, 0.9, 0.1, 0.2], [0.0, 0.97, 0.0, 0.0], ci_low=[-0.5, 0.3, -0.6, -0.5])
    point = _decide(s, "point")
    assert point.stop and point.crossing is not None and point.crossing.index == 1  # the reference's rule is fooled
    assert not _decide(s, "lower_bound").stop
    assert not _decide(s, "retrain").stop  # one passing evaluation of two needed
    assert _decide(s, "retrain", confirm=1).stop  # without confirmation the spike would pass


def test_a_stable_crossing_is_found_at_its_first_confirmed_evaluation():
    s = _series([0.3, 0.5, 0.8, 0.85, 0.9], [0.0, 0.1, 0.96, 0.97, 0.99])
    d = _decide(s, "retrain")
    assert d.state == MET_DESIRED_ACCURACY_CORRELATION
    assert d.index == 3  # decided once confirmed ...
    assert d.crossing is not None and d.crossing.index == 2  # ... the proxy needs only the steps to index 2
    assert d.crossing.step == 29 and d.crossing.hours == pytest.approx(0.3) and not d.crossing.interpolated
    assert "96%, 97%" in d.reason
    point = _decide(s, "point")
    assert point.crossing is not None and point.crossing.index == 2 and point.crossing.interpolated


def test_a_dip_after_a_crossing_waits_for_the_stable_one():
    s = _series([0.3, 0.7, 0.5, 0.8, 0.85, 0.9], [0.0, 0.96, 0.3, 0.96, 0.97, 0.98])
    point = _decide(s, "point")
    assert point.crossing is not None and point.crossing.index == 1  # the unstable first crossing
    d = _decide(s, "retrain")
    assert d.crossing is not None and d.crossing.index == 3 and d.index == 4


def test_a_noisy_proxy_that_crosses_early_does_not_hold():
    reference = [0.60 + 0.02 * j for j in range(10)]
    rng = np.random.default_rng(3)
    truth = np.array(reference) * 0.5  # a proxy that ranks perfectly without noise
    noisy = truth + 0.02 * rng.standard_normal(10)  # one draw of 2x the spacing of the models
    point = sps.spearmanr(noisy, reference).statistic
    assert point >= 0.65  # the point correlation crosses ...
    rough = roughness_std([list(truth[j] + 0.02 * rng.standard_normal(6)) for j in range(10)])
    assert rough is not None and 0.01 < rough < 0.04  # the curves' own wobble shows the noise
    prob = hold_probability(noisy, reference, rough, target=0.65, seed=0)
    assert prob is not None and prob < 0.95  # ... but would not hold if retrained
    clean = truth + 0.001 * rng.standard_normal(10)
    prob_clean = hold_probability(clean, reference, 0.001, target=0.65, seed=0)
    assert prob_clean is not None and prob_clean >= 0.95
    # in a search: the noisy, cheaper proxy is not picked by the retrain rule; the point rule picks it
    noisy_s = _series([0.2, point, point], [0.0, prob, prob], hours=[0.05, 0.1, 0.15])
    clean_s = _series([0.3, 0.9, 0.95], [0.1, prob_clean, prob_clean], hours=[0.1, 0.2, 0.3])
    picks = {}
    for rule in ("point", "retrain"):
        outcomes = []
        for i, (name, s) in enumerate((("noisy", noisy_s), ("clean", clean_s))):
            d = _decide(s, rule)
            outcomes.append((name, d.succeeded, None if d.crossing is None else d.crossing.hours, i))
        picks[rule] = best_proxy(outcomes)
    assert picks == {"point": "noisy", "retrain": "clean"}


# -- the parts ------------------------------------------------------------------------------


def test_hold_probability_against_the_point_correlation_and_noise():
    x = [0.1, 0.3, 0.2, 0.5, 0.4, 0.6, 0.8, 0.7]
    y = list(range(8))
    rho = sps.spearmanr(x, y).statistic
    assert hold_probability(x, y, 0.0, target=rho) == 1.0  # no noise: the point estimate decides
    assert hold_probability(x, y, 0.0, target=rho + 1e-6) == 0.0
    probs = [hold_probability(x, y, s, target=0.8, seed=1) for s in (0.01, 0.05, 0.2)]
    assert probs[0] > probs[1] > probs[2]  # more noise, less sure
    assert hold_probability(x, y, 0.05, target=0.8, seed=1) == probs[1]  # seeded
    assert hold_probability([0.1, None, 0.2], [1, 2, None], 0.1, target=0.5) is None  # < 3 valid pairs
    assert hold_probability(x, y, 0.05, target=0.5, method="kendall") is not None
    with pytest.raises(ValueError, match="noise_std"):
        hold_probability(x, y, -1.0, target=0.5)
    with pytest.raises(ValueError, match="target"):
        hold_probability(x, y, 0.1, target=1.5)
    with pytest.raises(ValueError, match="same length"):
        hold_probability(x, y[:-1], 0.1, target=0.5)


def test_roughness_std_recovers_white_noise_and_ignores_a_line():
    rng = np.random.default_rng(0)
    curves = [list(0.01 * np.arange(30) + 0.03 * rng.standard_normal(30)) for _ in range(10)]
    est = roughness_std(curves)
    assert est is not None and est == pytest.approx(0.03, rel=0.15)
    assert roughness_std([[0.1, 0.2, 0.3, 0.4, 0.5]]) == pytest.approx(0.0, abs=1e-12)  # a straight line
    assert roughness_std([[0.1, 0.2], [0.3]]) is None  # no second difference
    assert combine_noise(0.03, 0.04) == pytest.approx(0.05)
    assert combine_noise(None, 0.04) == 0.04 and combine_noise(None, None) is None


def test_retrain_rule_options_are_checked():
    s = _series([0.9], [0.99])
    with pytest.raises(ValueError, match="false_pass_rate"):
        _decide(s, "retrain", false_pass_rate=0.0)
    with pytest.raises(ValueError, match="confirm"):
        _decide(s, "retrain", confirm=0)
    assert not _decide(_series([0.9], None), "retrain").stop  # no probability: never fires
    # the time rules still apply to the retrain rule
    d = decide_stop(
        _series([0.1, 0.1], [0.0, 0.0]),
        desired_correlation=0.65,
        best_training_time_hrs=0.2,
        early_stop_if_not_best=True,
        stop_rule="retrain",
    )
    assert d.state == EXCEEDED_BEST_TRAIN_TIME and d.index == 1


def test_seconds_at_step_follows_a_speed_change():
    # 10 steps in 1 s, then 10 steps in 10 s: the time at step 14 is 1 + 5 = 6 s, not 15 x 11/20
    anchors = [(9, 1.0), (19, 11.0)]
    assert seconds_at_step(anchors, 4) == pytest.approx(0.5)
    assert seconds_at_step(anchors, 14) == pytest.approx(6.0)
    assert seconds_at_step(anchors, 19) == pytest.approx(11.0)
    assert seconds_at_step(anchors, 20) is None and seconds_at_step([], 3) is None
    assert seconds_at_step([(19, 11.0), (9, 1.0), (9, 2.0)], 9) == pytest.approx(2.0)  # order-free, last wins
    acc, hrs = median_accuracy_and_time([0.5, None, 0.7], [3600.0, 7200.0, None])
    assert acc == pytest.approx(0.6) and hrs == pytest.approx(1.0)  # only trials with a valid accuracy and time
    assert median_accuracy_and_time([None], [1.0]) == (None, None)


def test_best_proxy_costs_inside_the_spread_tie_then_fewer_steps_then_name():
    a = ("a", True, 1.00, 0, 300, 0.10)
    b = ("b", True, 1.05, 1, 200, 0.10)
    assert best_proxy([a, b]) == "b"  # 5 % apart with 10 % spread: a tie, b needs fewer steps
    assert best_proxy([a[:4], b[:4]]) == "a"  # without spreads hours decide
    c = ("c", True, 1.50, 2, 100, 0.10)
    assert best_proxy([a, c]) == "a"  # outside the spread
    assert best_proxy([("z", True, 1.0, 0, 100, 0.1), ("y", True, 1.02, 1, 100, 0.1)]) == "y"  # then name
    with pytest.raises(ValueError, match="spread"):
        best_proxy([("a", True, 1.0, 0, 10, -0.1)])


def test_models_for_half_width_matches_the_fisher_interval():
    n = models_for_half_width(0.76, 0.15)
    assert n is not None and 30 < n < 120
    z, se = 1.959963984540054, 1.03 / math.sqrt(n - 3)
    low, high = math.tanh(math.atanh(0.76) - z * se), math.tanh(math.atanh(0.76) + z * se)
    assert (high - low) / 2 == pytest.approx(0.15, rel=0.2)
    assert models_for_half_width(1.0, 0.1) is None and models_for_half_width(0.5, 0.0) is None
