"""Stop rules with their exact reasons, the selection schedule, candidate spacing and smoothness edges.

Hand-computed expectations on tiny literal inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from controllers import stats as S

SERIES = S.StepSeries(
    training_steps=[9, 19, 29],
    correlation=[0.2, 0.6, 0.9],
    ci_low=[0.0, 0.3, 0.7],
    median_accuracy=[0.3, 0.5, 0.7],
    median_hours=[1.0, 2.0, 3.0],
)


def test_correlation_rule_reason_and_interpolated_crossing():
    d = S.decide_stop(SERIES, desired_correlation=0.8)
    assert d.stop is True and d.succeeded
    assert d.state == S.MET_DESIRED_ACCURACY_CORRELATION
    assert d.reason == "correlation 0.9 >= desired 0.8 at step 29 (index 2)"
    c = d.crossing
    assert c.index == 2 and c.interpolated
    assert c.step == pytest.approx(19 + 10 * (0.2 / 0.3)) and c.step_int == 25
    assert c.hours == pytest.approx(2.0 + 0.2 / 0.3)


def test_lower_bound_rule_reads_the_interval_and_says_so():
    d = S.decide_stop(SERIES, desired_correlation=0.5, stop_rule="lower_bound")
    assert d.reason == "correlation CI lower bound 0.7 >= desired 0.5 at step 29 (index 2)"
    assert d.crossing.index == 2
    assert d.crossing.step == pytest.approx(19 + 10 * (0.2 / 0.4))
    point = S.decide_stop(SERIES, desired_correlation=0.5)
    assert point.reason == "correlation 0.6 >= desired 0.5 at step 19 (index 1)"


def test_accuracy_rule_reason_and_crossing_past_the_first_step():
    d = S.decide_stop(SERIES, desired_accuracy=0.6)
    assert d.stop is True and d.state == S.MET_DESIRED_ACCURACY
    assert d.reason == "median accuracy 0.7 >= desired 0.6 at step 29 (index 2)"
    assert d.crossing == S.Crossing(24.0, 24, 2.5, 2, True)


def test_time_limit_rule_reason():
    d = S.decide_stop(SERIES, training_time_hrs_limit=2.0)
    assert d == S.StopDecision(
        True, S.EXCEEDED_TRAIN_TIME_LIMIT, "median training time 2 h >= limit 2 h at step 19 (index 1)", None, 1
    )
    assert d.stop is True and not d.succeeded


def test_best_time_rule_is_off_by_default_and_holds_at_equality():
    assert not S.decide_stop(SERIES, best_training_time_hrs=1.0).stop
    d = S.decide_stop(SERIES, best_training_time_hrs=2.0, early_stop_if_not_best=True)
    assert d == S.StopDecision(
        True,
        S.EXCEEDED_BEST_TRAIN_TIME,
        "median training time 2 h >= best proxy's final time 2 h at step 19 (index 1)",
        None,
        1,
    )
    assert d.stop is True


def test_no_rule_met():
    d = S.decide_stop(SERIES, desired_correlation=0.95, desired_accuracy=0.9, training_time_hrs_limit=5.0)
    assert d == S.StopDecision(False, S.NOT_STOPPED, "no stopping rule met over 3 steps", None)
    assert d.stop is False and not d.succeeded


def test_steps_without_hours_do_not_count():
    s = S.StepSeries([1, 2], [0.9, 0.9], [None, None], [0.9, 0.9], [None, 1.5])
    d = S.decide_stop(s, desired_correlation=0.5)
    assert d.reason.endswith("at step 2 (index 1)")
    assert d.crossing == S.Crossing(2.0, 2, 1.5, 1, False)


def test_median_accuracy_and_hours_hand_computed():
    acc, hrs = S.median_accuracy_and_hours([0.2, None, 0.6, 0.4, float("nan")], [36.0, 1.0, 72.0, None, 5.0], 99)
    assert acc == pytest.approx(0.4)
    assert hrs == pytest.approx(np.median([36.0 * 100 / 3600, 72.0 * 100 / 3600]))
    assert S.median_accuracy_and_hours([0.2, 0.4], [None, None], 0) == (pytest.approx(0.3), None)
    assert S.median_accuracy_and_hours([None], [1.0], 0) == (None, None)


def test_best_proxy_skips_failures_wherever_they_are():
    cands = [("slow", True, 3.0, 0), ("failed", False, 0.1, 1), ("fast", True, 1.0, 2), ("nan", True, float("nan"), 3)]
    assert S.best_proxy(cands) == "fast"
    assert S.best_proxy([("a", True, None, 0), ("b", True, 2.0, 1)]) == "b"
    assert S.best_proxy([("b", True, 1.0, 1), ("a", True, 1.0, 0)]) == "a"  # tie: earlier evaluated
    assert S.best_proxy([("b", True, 1.0, 0), ("a", True, 1.0, 0)]) == "a"  # then the name
    assert S.best_proxy([("a", True, 0.0, 5)]) == "a"
    assert S.best_proxy([]) is None


# -- schedule -----------------------------------------------------------------------------------


def test_schedule_defaults_and_counts():
    assert S.desired_training_pcts() == S.desired_training_pcts(30, 10, 5)
    assert S.desired_training_pcts()[-2:] == [pytest.approx(19.0), S.FINAL_ROUND_PCT]
    assert len(S.desired_training_pcts()) == 5
    assert S.num_models_to_remove(12, 10, 5) == 2
    assert S.num_models_to_remove(10, 10, 5) == 0
    assert S.num_models_to_remove(8, 10, 5) == 0
    assert S.num_models_to_remove(30, 10, 5) == 5
    assert S.next_desired_pct(3.0, 20, 10) == pytest.approx(8.0)
    assert S.next_desired_pct(3.0, 10, 10) == S.FINAL_ROUND_PCT
    assert S.desired_training_pcts(3, 1, 1) == [pytest.approx(100 / 3), pytest.approx(100 / 3 + 50), 101.0]


# -- candidate spacing --------------------------------------------------------------------------


def test_invalid_reasons_and_nothing_to_remove():
    cands = [
        S.Candidate("3", None),
        S.Candidate("1", 0.5, None),
        S.Candidate("2", float("nan")),
        S.Candidate("4", 0.4, -1.0),
    ]
    r = S.filter_candidates(cands, 0, require_latency=True)
    assert r.kept == [] and r.removed == [] and r.invalid == ["1", "2", "3", "4"]
    assert r.reasons == {
        "1": "invalid: latency is missing",
        "2": "invalid: accuracy is not finite (nan)",
        "3": "invalid: accuracy is missing",
        "4": "invalid: latency is invalid (-1.0); it must be finite and >= 0",
    }
    plain = S.filter_candidates([S.Candidate("1", 0.5, None), S.Candidate("2", 0.4)], 0)
    assert plain.kept == ["1", "2"] and plain.removed == [] and plain.reasons == {}


def test_three_points_remove_the_one_in_the_denser_neighbourhood():
    # accuracies 0, 0.45, 1: closest pair (0, 0.45); 0's second neighbour is 1 away, 0.45's is 0.55
    r = S.filter_candidates([S.Candidate("a", 0.0), S.Candidate("b", 0.45), S.Candidate("c", 1.0)], 1)
    assert r.removed == ["b"]
    r = S.filter_candidates([S.Candidate("a", 0.0), S.Candidate("b", 0.55), S.Candidate("c", 1.0)], 1)
    assert r.removed == ["b"]  # closest pair (b, c): b is nearer its other neighbour
    assert r.reasons["b"].startswith("removed for spacing: closest pair with trial c (normalised distance 0.45")


def test_latency_is_normalised_by_its_own_range():
    # latency spans 100..110: normalised it weighs as much as accuracy
    cands = [
        S.Candidate("1", 0.0, 100.0),
        S.Candidate("2", 0.5, 110.0),
        S.Candidate("3", 0.6, 100.0),
        S.Candidate("4", 1.0, 105.0),
    ]
    r = S.filter_candidates(cands, 1, require_latency=True)
    pts = {"1": (0.0, 0.0), "2": (0.5, 1.0), "3": (0.6, 0.0), "4": (1.0, 0.5)}
    d = {(a, b): float(np.hypot(pts[a][0] - pts[b][0], pts[a][1] - pts[b][1])) for a in pts for b in pts if a < b}
    closest = min(d, key=d.get)
    assert closest == ("1", "3")  # in accuracy alone it would be ("2", "3")
    assert r.removed[0] in closest
    assert f"normalised distance {d[closest]:.4g}" in r.reasons[r.removed[0]]


# -- smoothness ---------------------------------------------------------------------------------


def test_smoothness_at_a_knot_uses_the_right_hand_segment():
    # knots at 0, 0.7, 1 after normalisation; sample 0.7 lies on the middle knot
    value = S.smoothness([0.0, 70.0, 100.0], [0.0, 1.0, 0.5])
    assert value == pytest.approx(20 * (0.5 / 0.3))  # the 20 samples in [0.7, 1.0) see slope -5/3


def test_smoothness_does_not_depend_on_the_accuracy_offset():
    a = S.smoothness([1, 2, 3, 4], [0.5, 0.4, 0.6, 0.55])
    assert S.smoothness([1, 2, 3, 4], [10.5, 10.4, 10.6, 10.55]) == pytest.approx(a)
    assert a > 0
    assert S.smoothness([1, 2, 3], [0.1, 0.2, 0.3]) == 0.0
    assert S.smoothness([1], [0.5]) == 0.0
    assert S.smoothness([1, 2], [0.5, 0.5]) == 0.0
    assert S.mean_smoothness([]) == 0.0
    assert S.mean_smoothness([([1, 2, 3, 4], [0.5, 0.4, 0.6, 0.55]), ([1, 2], [0.1, 0.2])]) == pytest.approx(a / 2)


def test_seed_std_and_cv_hand_computed():
    assert S.seed_std([1.0, 3.0]) == 1.0
    assert S.seed_std([0.7]) == 0.0
    assert S.coefficient_of_variation([-1.0, -3.0]) == 0.5  # |mean|
    assert S.coefficient_of_variation([2.0]) == 0.0
