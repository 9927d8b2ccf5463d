"""The retrain stop rule's confirmation, its reason, and the true-time medians (hand-computed)."""

from __future__ import annotations

import math

import pytest

from controllers import stats as S
from controllers.stats._stopping import median_accuracy_and_time, seconds_at_step


def _series(hold):
    return S.StepSeries(
        training_steps=[9, 19, 29, 39],
        correlation=[0.5, 0.7, 0.8, 0.85],
        ci_low=[0.1, 0.2, 0.3, 0.4],
        median_accuracy=[0.3, 0.4, 0.5, 0.6],
        median_hours=[1.0, 2.0, 3.0, 4.0],
        hold_prob=hold,
    )


def test_retrain_rule_confirms_on_consecutive_evaluations():
    d = S.decide_stop(
        _series([0.5, 0.96, 0.97, 0.99]), desired_correlation=0.6, stop_rule="retrain", false_pass_rate=0.05, confirm=2
    )
    assert d.stop and d.state == S.MET_DESIRED_ACCURACY_CORRELATION and d.index == 2
    assert d.crossing == S.Crossing(19.0, 19, 2.0, 1, False)
    assert d.reason == (
        "holds under retraining noise: P(correlation >= 0.6) = 96%, 97% >= 95% on 2 consecutive evaluation(s) "
        "from step 19 (correlation 0.7) to step 29 (index 2)"
    )


def test_retrain_rule_needs_an_unbroken_run():
    series = _series([0.96, 0.5, 0.96, 0.5])
    assert not S.decide_stop(series, desired_correlation=0.6, stop_rule="retrain", confirm=2).stop
    one = S.decide_stop(series, desired_correlation=0.6, stop_rule="retrain", confirm=1)
    assert one.index == 0 and one.crossing.index == 0


def test_retrain_rule_threshold_is_inclusive():
    at = S.decide_stop(_series([0.95, None, None, None]), desired_correlation=0.6, stop_rule="retrain",
                       false_pass_rate=0.05, confirm=1)  # fmt: skip
    assert at.stop and at.index == 0
    below = S.decide_stop(_series([0.9499, None, None, None]), desired_correlation=0.6, stop_rule="retrain",
                          false_pass_rate=0.05, confirm=1)  # fmt: skip
    assert not below.stop


def test_retrain_rule_without_probabilities_never_passes():
    d = S.decide_stop(_series(None), desired_correlation=0.0, stop_rule="retrain", confirm=1)
    assert not d.stop and d.reason == "no stopping rule met over 4 steps"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"false_pass_rate": 1.0}, "false_pass_rate must be in (0, 1), but got 1.0"),
        ({"false_pass_rate": 0.0}, "false_pass_rate must be in (0, 1), but got 0.0"),
        ({"false_pass_rate": math.nan}, "false_pass_rate must be finite, but got nan"),
        ({"confirm": 0}, "confirm must be an integer >= 1, but got 0"),
        ({"confirm": True}, "confirm must be an integer >= 1, but got True"),
        ({"confirm": 1.5}, "confirm must be an integer >= 1, but got 1.5"),
    ],
)
def test_retrain_options_are_checked(kw, message):
    with pytest.raises(ValueError) as info:
        S.decide_stop(_series(None), **kw)
    assert str(info.value) == message


def test_hold_prob_must_be_numbers():
    with pytest.raises(TypeError) as info:
        S.decide_stop(_series(["x", None, None, None]), desired_correlation=0.5, stop_rule="retrain")
    assert str(info.value) == "hold_prob[0] must be a real number or None, but got 'x'"


def test_median_accuracy_and_time():
    assert median_accuracy_and_time([0.2, 0.6, None, 0.4], [3600.0, None, 7200.0, 10800.0]) == (
        pytest.approx(0.4),
        pytest.approx(2.0),  # the median of 1 h and 3 h, over the trials with an accuracy and a time
    )
    assert median_accuracy_and_time([0.2], [None]) == (0.2, None)
    assert median_accuracy_and_time([None], [5.0]) == (None, None)
    with pytest.raises(ValueError) as info:
        median_accuracy_and_time([0.2], [])
    assert str(info.value) == "accuracies and seconds_done must have the same length, but got 1 and 0"
    with pytest.raises(ValueError) as info:
        median_accuracy_and_time([0.2], [-1.0])
    assert str(info.value) == "seconds_done must be finite and >= 0 (or None), but seconds_done[0] is -1.0"
    with pytest.raises(TypeError) as info:
        median_accuracy_and_time(["a"], [1.0])
    assert str(info.value) == "accuracies[0] must be a real number or None, but got 'a'"


def test_seconds_at_step_from_the_start():
    assert seconds_at_step([(9, 10.0)], -1) == 0.0  # step -1 is the start, at 0 s
    assert seconds_at_step([(9, 10.0)], -1.5) is None
    assert seconds_at_step([(9, 10.0)], 4) == pytest.approx(5.0)
