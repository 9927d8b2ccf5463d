"""What the search writes for a proxy task: per-step lists, the decision log line, the latency check.

Tiny literal curves; the expected values are scipy's (same calls as the statistics module) or
hand-computed.
"""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats as sps

from controllers.search import evaluate as ev
from controllers.search.state import FAILED_DESIRED_LATENCY_CORRELATION, ProxyTaskEntry
from controllers.search.step_stats import StepStats, TrialCurve, compute_step_stats
from controllers.stats import (
    EXCEEDED_BEST_TRAIN_TIME,
    EXCEEDED_TRAIN_TIME_LIMIT,
    MET_DESIRED_ACCURACY,
    MET_DESIRED_ACCURACY_CORRELATION,
    Crossing,
    StopDecision,
    rank_correlation,
)
from proxy_task_utils import protocol

REF = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
# accuracy of trial k at steps 9 and 19: step 9 ranks two pairs the wrong way round, step 19 is perfect
STEP9 = [0.2, 0.1, 0.3, 0.4, 0.6, 0.5]
STEP19 = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def _targets(**kw):
    base = dict(
        desired_correlation=None,
        desired_accuracy=None,
        training_time_hrs_limit=None,
        desired_latency_correlation=None,
        early_stop_if_not_best=False,
        stop_rule="point",
        method="spearman",
    )
    base.update(kw)
    return ev.Targets(**base)


def _stats(n_bootstrap=0, secs=360.0):
    curves = [TrialCurve(((9, a), (19, b)), secs, True) for a, b in zip(STEP9, STEP19)]
    return compute_step_stats(curves, REF, n_bootstrap=n_bootstrap)


def test_targets_to_dict_uses_the_reference_key_names():
    t = ev.Targets(0.9, 0.5, 2.0, 0.6, True, "lower_bound", "kendall")
    assert t.to_dict() == {
        "false_pass_rate": ev.DEFAULT_FALSE_PASS_RATE,
        "confirm_evaluations": ev.DEFAULT_CONFIRM,
        "desired_accuracy_correlation": 0.9,
        "desired_accuracy": 0.5,
        "training_time_hrs_limit": 2.0,
        "desired_latency_correlation": 0.6,
        "early_stop_proxy_task_if_not_best": True,
        "stop_rule": "lower_bound",
        "correlation": "kendall",
    }


def test_curves_from_metrics():
    m = protocol.TrialTrainingMetrics(
        protocol.TrainingTime(20, 72.0),
        training_accuracy_over_steps=[
            protocol.AccuracyAtStep(50.0, 9, 0.25),
            protocol.AccuracyAtStep(100.0, 19, 0.5),
        ],
    )
    empty = protocol.TrialTrainingMetrics()
    curves = ev.curves_from_metrics([m, None, empty], [True, False, True])
    assert curves[0] == TrialCurve(((9, 0.25), (19, 0.5)), 3.6, True, horizon=19)  # 100 % at step 19
    assert curves[1] == TrialCurve((), None, False)
    assert curves[2] == TrialCurve((), None, True)
    assert len(curves) == 3


def test_planned_last_step_comes_from_the_last_entry_percentage():
    def metrics(*entries):
        return protocol.TrialTrainingMetrics(
            training_accuracy_over_steps=[protocol.AccuracyAtStep(p, s, 0.5) for p, s in entries]
        )

    assert ev.planned_last_step(metrics((10.0, 99))) == 999  # 100 steps are 10 % of 1000
    assert ev.planned_last_step(metrics((5.0, 49), (33.3, 332))) == 999  # 333 steps of 1000 (rounded)
    assert ev.planned_last_step(metrics((0.0, 0))) is None
    assert ev.planned_last_step(metrics((120.0, 19))) == 19  # never before the last recorded step
    assert ev.planned_last_step(protocol.TrialTrainingMetrics()) is None
    assert ev.planned_last_step(None) is None


def test_the_score_is_recorded_in_the_entry_and_the_decision_log():
    curves = [TrialCurve(((9, a), (19, b)), 360.0, True, horizon=99) for a, b in zip(STEP9, STEP19)]
    stats = compute_step_stats(curves, REF, n_bootstrap=0, score="extrapolated")
    entry = ProxyTaskEntry("p")
    ev.fill_step_stats(entry, stats, "spearman")
    assert entry.score == "extrapolated" and entry.to_dict()["score"] == "extrapolated"
    assert ProxyTaskEntry.from_dict("p", entry.to_dict()).score == "extrapolated"
    d = ev.decide(stats, _targets(desired_correlation=0.5), None)
    assert ev.decision_record(stats, _targets(), None, d, poll=1)["score"] == "extrapolated"
    assert ev.decision_record(_stats(), _targets(), None, d, poll=1)["score"] == "raw"
    assert ProxyTaskEntry.from_dict("q", {}).score == "raw"  # states written before the setting


def test_cost_trial_hours_sums_seconds_into_hours():
    a = protocol.TrialTrainingMetrics(protocol.TrainingTime(10, 1800.0))
    b = protocol.TrialTrainingMetrics(protocol.TrainingTime(10, 5400.0))
    assert ev.cost_trial_hours([a, None, b]) == 2.0
    assert ev.cost_trial_hours([None]) == 0.0


@pytest.mark.parametrize("method", ["spearman", "kendall"])
def test_fill_step_stats_writes_coefficients_and_p_values_where_they_belong(method):
    stats = _stats()
    entry = ProxyTaskEntry("p")
    ev.fill_step_stats(entry, stats, method)
    s = entry.proxy_task_stats
    scipy_fn = sps.spearmanr if method == "spearman" else sps.kendalltau
    expected = [scipy_fn(STEP9, REF), scipy_fn(STEP19, REF)]
    assert s.training_steps == [9, 19]
    assert s.accuracy_correlation_over_step == pytest.approx([e.statistic for e in expected])
    assert s.accuracy_correlation_p_value_over_step == pytest.approx([e.pvalue for e in expected])
    assert s.accuracy_correlation_over_step[1] == pytest.approx(1.0)
    assert s.accuracy_correlation_p_value_over_step[1] < 0.05  # a p-value, not the coefficient
    assert s.median_accuracy_over_step == pytest.approx([0.35, 0.55])
    assert s.median_training_time_hrs_over_step == pytest.approx([1.0, 2.0])  # 360 s x 10 and x 20 steps
    assert set(entry.correlation_over_step) == {"spearman", "kendall"}
    for m, rows in entry.correlation_over_step.items():
        assert rows == [c.to_dict() for c in stats.correlations[m]]
    assert entry.settled_over_step == [True, True]
    assert entry.best_correlation == pytest.approx(1.0)


def test_fill_step_stats_best_correlation_is_of_the_chosen_method():
    stats = _stats()
    entry = ProxyTaskEntry("p")
    stats.correlations["kendall"][1] = stats.correlations["kendall"][0]  # kendall never reaches 1
    ev.fill_step_stats(entry, stats, "kendall")
    assert entry.best_correlation == pytest.approx(sps.kendalltau(STEP9, REF).statistic)


def test_decide_passes_every_target():
    stats = _stats()
    rho9 = sps.spearmanr(STEP9, REF).statistic
    d = ev.decide(stats, _targets(desired_correlation=1.0), None)
    assert d.state == MET_DESIRED_ACCURACY_CORRELATION and d.crossing.index == 1
    d = ev.decide(stats, _targets(desired_correlation=rho9, method="kendall"), None)
    assert d.crossing.index == 1  # kendall at step 9 is below spearman's value
    d = ev.decide(stats, _targets(desired_accuracy=0.5), None)
    assert d.state == MET_DESIRED_ACCURACY and d.crossing.index == 1
    d = ev.decide(stats, _targets(training_time_hrs_limit=1.5), None)
    assert d.state == EXCEEDED_TRAIN_TIME_LIMIT and "index 1" in d.reason
    assert not ev.decide(stats, _targets(), 1.5).stop  # best time given, rule not enabled
    d = ev.decide(stats, _targets(early_stop_if_not_best=True), 1.5)
    assert d.state == EXCEEDED_BEST_TRAIN_TIME
    assert not ev.decide(stats, _targets(early_stop_if_not_best=True), None).stop


def test_decide_lower_bound_reads_the_interval():
    stats = _stats(n_bootstrap=200)
    lows = [c.ci_low for c in stats.correlations["spearman"]]
    target = (lows[1] + 1.0) / 2 if lows[1] < 1.0 else 1.0
    point = ev.decide(stats, _targets(desired_correlation=target), None)
    bound = ev.decide(stats, _targets(desired_correlation=target, stop_rule="lower_bound"), None)
    assert point.stop
    assert bound.stop == (lows[1] >= target)
    assert "lower bound" in bound.reason or not bound.stop


def test_decide_waits_for_unsettled_steps():
    stats = _stats()
    stats.settled[1] = False
    assert not ev.decide(stats, _targets(desired_correlation=1.0), None).stop


def test_decision_record_holds_inputs_and_outcome():
    stats = _stats(n_bootstrap=50)
    targets = _targets(desired_correlation=1.0)
    decision = ev.decide(stats, targets, 4.0)
    record = ev.decision_record(stats, targets, 4.0, decision, poll=7)
    last = stats.correlations["spearman"][1]
    assert record["poll"] == 7
    assert record["settled_steps"] == 2 and record["recorded_steps"] == 2
    assert record["last_settled"] == {
        "training_step": 19,
        "correlation": 1.0,
        "ci_low": last.ci_low,
        "median_accuracy": pytest.approx(0.55),
        "median_hours": pytest.approx(2.0),
        "hold_prob": None,
        "noise_std": None,
    }
    assert record["targets"] == targets.to_dict()
    assert record["best_training_time_hrs"] == 4.0
    assert record["stop"] is True and record["state"] == MET_DESIRED_ACCURACY_CORRELATION
    assert record["reason"] == decision.reason
    assert record["crossing"] == decision.crossing.to_dict()
    assert record["at_crossing"] == {
        "training_step": 19,
        "correlation": last.to_dict(),
        "median_accuracy": stats.median_accuracy[1],
        "median_hours": stats.median_hours[1],
        "hold_prob": None,
    }
    json.dumps(record, allow_nan=False)


def test_decision_record_at_crossing_uses_the_crossing_index_and_method():
    stats = _stats()
    stats.settled[1] = False  # only step 9 is decision input
    targets = _targets(desired_correlation=0.0, method="kendall")
    decision = ev.decide(stats, targets, None)
    record = ev.decision_record(stats, targets, None, decision, poll=None)
    assert record["poll"] is None and record["settled_steps"] == 1 and record["recorded_steps"] == 2
    assert record["last_settled"]["training_step"] == 9
    assert record["last_settled"]["correlation"] == pytest.approx(sps.kendalltau(STEP9, REF).statistic)
    assert record["at_crossing"]["training_step"] == 9
    assert record["at_crossing"]["correlation"] == stats.correlations["kendall"][0].to_dict()


def test_decision_record_without_steps_or_crossing():
    stats = StepStats()
    targets = _targets()
    decision = StopDecision(False, "", "nothing yet", None)
    record = ev.decision_record(stats, targets, None, decision, poll=1)
    assert record["last_settled"] == {}
    assert record["settled_steps"] == 0 and record["recorded_steps"] == 0
    assert record["crossing"] is None and "at_crossing" not in record
    assert record["stop"] is False and record["state"] == "" and record["reason"] == "nothing yet"


def test_decision_record_turns_nan_into_null():
    stats = _stats()
    stats.median_accuracy[1] = math.nan
    stats.median_hours[1] = math.nan
    crossing = Crossing(9.0, 9, 1.0, 0, False)
    record = ev.decision_record(stats, _targets(), None, StopDecision(True, "x", "y", crossing), poll=0)
    assert record["last_settled"]["median_accuracy"] is None
    assert record["last_settled"]["median_hours"] is None
    assert record["last_settled"]["ci_low"] is None
    assert record["last_settled"]["correlation"] == 1.0
    assert record["at_crossing"]["training_step"] == 9


_KW = dict(min_pairs=5, min_valid_ratio=0.7, n_bootstrap=0, confidence=0.95)


def test_latency_check_without_target_always_passes():
    check = ev.latency_check(REF, [None] * 6, _targets(), **_KW)
    assert check.passed and check.reason == "no desired latency correlation set"
    assert set(check.correlations) == {"spearman", "kendall"}


def test_latency_check_passes_at_the_target_and_fails_just_below():
    proxy = STEP9  # spearman 0.8857
    rho = sps.spearmanr(proxy, REF).statistic
    at = ev.latency_check(REF, proxy, _targets(desired_latency_correlation=rho), **_KW)
    assert at.passed and at.reason == f"latency spearman {rho:.3f} >= desired {rho:.3f}"
    below = ev.latency_check(REF, proxy, _targets(desired_latency_correlation=rho + 0.001), **_KW)
    assert not below.passed
    assert below.reason == f"{FAILED_DESIRED_LATENCY_CORRELATION}: spearman {rho:.3f} < desired {rho + 0.001:.3f}"


def test_latency_check_uses_the_chosen_method_and_options():
    proxy = STEP9
    tau = sps.kendalltau(proxy, REF).statistic
    rho = sps.spearmanr(proxy, REF).statistic
    want = (tau + rho) / 2  # spearman passes, kendall does not
    check = ev.latency_check(REF, proxy, _targets(desired_latency_correlation=want, method="kendall"), **_KW)
    assert not check.passed and "kendall" in check.reason
    assert check.correlations["kendall"].coefficient == pytest.approx(tau)
    assert check.correlations["spearman"].coefficient == pytest.approx(rho)
    # the options reach the correlation: 5 valid of 6 is below a 0.9 ratio
    strict = dict(_KW, min_valid_ratio=0.9)
    short = ev.latency_check(REF, [*proxy[:5], None], _targets(desired_latency_correlation=0.0), **strict)
    assert not short.passed and short.reason.startswith(f"{FAILED_DESIRED_LATENCY_CORRELATION}: latency correlation")
    assert "83% < 90%" in short.reason
    few = dict(_KW, min_pairs=7)
    assert not ev.latency_check(REF, proxy, _targets(desired_latency_correlation=0.0), **few).passed


def test_latency_check_bootstrap_options_reach_the_interval():
    proxy = STEP9
    kw = dict(min_pairs=5, min_valid_ratio=0.7, n_bootstrap=40, confidence=0.5, seed=3)
    check = ev.latency_check(REF, proxy, _targets(desired_latency_correlation=0.0), **kw)
    same = rank_correlation(proxy, REF, n_bootstrap=40, confidence=0.5, seed=3)
    assert check.correlations["spearman"] == same
    assert check.correlations["spearman"].ci_low is not None
    assert check.passed


def test_latency_check_default_seed_is_zero_and_failures_are_false():
    kw = dict(min_pairs=5, min_valid_ratio=0.7, n_bootstrap=30, confidence=0.9)
    t = _targets(desired_latency_correlation=0.0)
    assert ev.latency_check(REF, STEP9, t, **kw) == ev.latency_check(REF, STEP9, t, seed=0, **kw)
    assert ev.latency_check(REF, STEP9, t, **kw) != ev.latency_check(REF, STEP9, t, seed=1, **kw)
    invalid = ev.latency_check(REF, [None] * 6, t, **kw)
    assert invalid.passed is False and invalid.correlations["spearman"].n == 0
    low = ev.latency_check(REF, STEP9, _targets(desired_latency_correlation=0.99), **kw)
    assert low.passed is False and set(low.correlations) == {"spearman", "kendall"}


def _record(steps_and_secs):
    """A metrics record whose last entry is at ``steps_and_secs[0]`` after ``[1]`` seconds."""
    step, secs = steps_and_secs
    return protocol.TrialTrainingMetrics(
        protocol.TrainingTime(step + 1, secs),
        training_accuracy_over_steps=[protocol.AccuracyAtStep(100.0 * (step + 1) / 100, step, 0.5)],
    )


def test_record_time_anchors_adds_one_point_per_change():
    anchors: list = []
    assert ev.record_time_anchors(anchors, [_record((9, 10.0)), None, protocol.TrialTrainingMetrics()])
    assert anchors == [[[9.0, 10.0]], [], []]
    assert not ev.record_time_anchors(anchors, [_record((9, 10.0)), None, None])  # nothing new
    assert ev.record_time_anchors(anchors, [_record((9, 12.0)), None, None])  # same step, new total
    assert anchors[0] == [[9.0, 12.0]]
    assert ev.record_time_anchors(anchors, [_record((19, 20.0)), _record((4, 3.0)), None])
    assert anchors[:2] == [[[9.0, 12.0], [19.0, 20.0]], [[4.0, 3.0]]]
    # a restarted trial reports step 9 again: its latest total replaces the old one, in step order
    assert ev.record_time_anchors(anchors, [_record((9, 30.0)), None, None])
    assert anchors[0] == [[9.0, 30.0], [19.0, 20.0]]
    assert isinstance(anchors[0][0][0], float)


def test_proxy_outcome_carries_hours_steps_and_cost_spread():
    from controllers.search.state import DONE

    entry = ProxyTaskEntry("p", order_index=3, status=DONE)
    entry.proxy_task_stats.stopping_state = MET_DESIRED_ACCURACY_CORRELATION
    entry.proxy_task_stats.final_training_time_in_hours = 1.5
    entry.proxy_task_stats.final_training_steps = 40
    entry.cost_per_step = {"median": 2.0, "low": 1.0, "high": 2.2}
    out = ev.proxy_outcome(entry)
    assert out == ("p", True, 1.5, 3, 40, pytest.approx(0.3))
    entry.cost_per_step = {"median": 0.0, "low": 1.0, "high": 2.0}
    assert ev.proxy_outcome(entry).spread == 0.0
    entry.cost_per_step = {"median": 2.0, "low": 3.0, "high": 2.0}  # an odd record: never negative
    assert ev.proxy_outcome(entry).spread == 0.0
    entry.cost_per_step = None
    entry.status = "running"
    assert ev.proxy_outcome(entry) == ("p", False, 1.5, 3, 40, 0.0)


def test_cost_per_step_from_recorded_times():
    anchors = [[[9.0, 10.0], [19.0, 30.0]], [[9.0, 20.0]]]
    cost = ev.cost_per_step([_record((19, 30.0)), _record((9, 20.0))], anchors)
    rates = [10.0 / 10, 20.0 / 10, 20.0 / 10]  # steps -1..9 and 9..19 of trial 0, -1..9 of trial 1
    assert cost == ev.CostPerStep(2.0, 1.5, 2.0, 3)
    assert cost.median == float(sorted(rates)[1])
    assert cost.to_dict() == {"median": 2.0, "low": 1.5, "high": 2.0, "rates": 3}
    assert cost.relative_spread == pytest.approx(0.125)


def test_cost_per_step_falls_back_to_the_average_and_skips_backward_steps():
    m = _record((9, 20.0))  # 10 steps in 20 s
    assert ev.cost_per_step([m, None]) == ev.CostPerStep(2.0, 2.0, 2.0, 1)
    assert ev.cost_per_step([None]) is None
    assert ev.cost_per_step([protocol.TrialTrainingMetrics()]) is None
    # anchors that go backwards in time are not rates; the trial's average stands in
    assert ev.cost_per_step([m], [[[9.0, -5.0]]]) == ev.CostPerStep(2.0, 2.0, 2.0, 1)
    assert ev.cost_per_step([m], [[[4.0, 5.0], [9.0, 20.0]]]) == ev.CostPerStep(2.0, 1.5, 2.5, 2)
    assert ev.CostPerStep(0.0, 0.0, 1.0, 2).relative_spread == 0.0
