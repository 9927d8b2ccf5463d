"""The cost probe's pure parts: what to probe, which cost wins, the probe's flags and its result."""

from __future__ import annotations

import json

import pytest
from _search_helpers import metrics_record

from controllers.config import parse_config
from controllers.engine.records import Failure, FailureKind
from controllers.search.config import SearchConfig
from controllers.search.probe import merge_costs, plan_probe, probe_flags, probe_result, probe_text
from controllers.search.report import cost_order_lines
from controllers.search.state import ProxyTaskEntry, SearchState
from controllers.stats import cost_order

# -- what to probe ----------------------------------------------------------------------------


def test_the_plan_probes_undeclared_unrecorded_candidates_in_their_listed_order():
    plan = plan_probe(["c", "a", "b", "d"], {"a": 0.1}, {"d"}, best_known=False)
    assert plan.names == ("c", "b") and "no declared cost: c, b" == plan.reason


@pytest.mark.parametrize(
    ("pending", "declared", "recorded", "best_known", "why"),
    [
        (["a", "b"], {"a": 1.0, "b": 2.0}, set(), False, "every candidate left has a declared cost"),
        (["a"], {}, set(), False, "one candidate left and no best yet"),
        (["a", "b"], {}, {"a", "b"}, False, "probed already"),
        ([], {}, set(), True, "every candidate left has a declared cost"),
    ],
)
def test_the_plan_probes_nothing_when_a_cost_could_change_nothing(pending, declared, recorded, best_known, why):
    plan = plan_probe(pending, declared, recorded, best_known=best_known)
    assert plan.names == () and why in plan.reason


def test_one_candidate_left_is_probed_when_a_best_could_skip_it():
    assert plan_probe(["a"], {}, set(), best_known=True).names == ("a",)


# -- which cost wins --------------------------------------------------------------------------


def _probe(secs, steps=20, trials=1):
    return {"secs_per_step": secs, "recorded_steps": steps, "trials": trials}


def test_a_declared_cost_wins_over_a_probed_one_and_says_what_the_probe_measured():
    costs = merge_costs(
        ["a", "b", "c", "d"],
        {"a": 0.5, "c": 0.0},
        {"a": _probe(0.25), "b": _probe(0.125, steps=12), "d": _probe(None)},
    )
    assert costs == {
        "a": {"secs_per_step": 0.5, "source": "declared", "text": "declared (the probe measured 0.25 s/step)"},
        "b": {"secs_per_step": 0.125, "source": "probed", "text": "probed: 12 steps, 0.125 s/step"},
        "c": {"secs_per_step": 0.0, "source": "declared", "text": "declared"},  # 0.0 is a cost, not "unset"
    }  # a probe that measured nothing gives no cost: d runs after the others
    assert cost_order(["a", "b", "c", "d"], {n: c["secs_per_step"] for n, c in costs.items()}) == ["c", "b", "a", "d"]


def test_probe_text_names_steps_trials_and_rate():
    assert probe_text(12, 0.8) == "probed: 12 steps, 0.8 s/step"
    assert probe_text(100, 0.012345, trials=3) == "probed: 3 trials x 100 steps, 0.0123 s/step"


# -- the probe's flags ------------------------------------------------------------------------


def test_probe_flags_set_the_length_in_the_flags_unit_and_keep_the_rest():
    args = {"lr": 0.1, "train_steps": 5000, "decay_steps": 5000}
    steps = {"flag": "train_steps", "unit": "steps", "steps_per_epoch": None}
    assert probe_flags(args, steps, 20) == (("lr", "0.1"), ("train_steps", "20"), ("decay_steps", "5000"))
    epochs = {"flag": "num_epochs", "unit": "epochs", "steps_per_epoch": 30}
    assert dict(probe_flags({"lr": 0.1}, epochs, 100))["num_epochs"] == "4"  # ceil(100 / 30)
    assert dict(probe_flags({}, epochs, 5))["num_epochs"] == "1"
    # a proxy that trains less than the probe keeps its own length
    assert dict(probe_flags({"train_steps": 15}, steps, 20))["train_steps"] == "15"
    assert dict(probe_flags({"num_epochs": 2}, epochs, 100))["num_epochs"] == "2"
    # no length flag: the flags stay as they are (the probe posts "stop now" instead)
    assert probe_flags(args, {"flag": None}, 20) == tuple((k, str(v)) for k, v in args.items())


# -- the probe's result -----------------------------------------------------------------------


def test_probe_result_reads_the_rate_from_the_recorded_times():
    m = metrics_record([(9, 0.5), (19, 0.6)], 2000, secs_per_step=0.25)  # 20 steps, 5 s
    anchors = [[[9.0, 2.0], [19.0, 5.0]]]  # 10 steps in 2 s, then 10 in 3 s
    out = probe_result([m], anchors, {})
    assert out["secs_per_step"] == pytest.approx(0.25) and out["rates"] == 2
    assert (out["low"], out["high"]) == (pytest.approx(0.225), pytest.approx(0.275))
    assert out["recorded_steps"] == 20 and out["cost_trial_hours"] == pytest.approx(5 / 3600) and not out["problem"]
    # without anchors (a probe resumed after its trial ended): the trial's total over its steps
    assert probe_result([m], [], {})["secs_per_step"] == pytest.approx(0.25)


def test_a_probe_that_recorded_nothing_gives_no_cost_and_says_why():
    failure = Failure(FailureKind.OOM, "exit 1", "use a smaller batch", "CUDA out of memory").to_dict()
    out = probe_result([None], [], {"1": failure})
    assert out["secs_per_step"] is None and out["cost_trial_hours"] == 0
    assert out["problem"].startswith("no training time recorded: 1 of 1 trials of the cost probe failed")
    assert "oom" in out["problem"]
    json.dumps(out)  # standard JSON


# -- state, report, config ----------------------------------------------------------------------


def test_the_state_keeps_expected_costs_and_the_probe_and_counts_its_cost():
    state = SearchState({"a": ProxyTaskEntry("a"), "b": ProxyTaskEntry("b", order_index=1)})
    state.expected_costs = {"a": {"secs_per_step": 0.0, "source": "declared", "text": "declared"}}
    state.cost_probe = {"proxies": {"b": {"status": "done", "job": {}, "cost_trial_hours": 0.5, "problem": "x"}}}
    again = SearchState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again.expected_costs == state.expected_costs and again.cost_probe == state.cost_probe
    assert again.cost_of("a") == 0.0 and again.cost_of("b") is None
    assert again.probe_cost_trial_hours() == 0.5
    assert SearchState().probe_cost_trial_hours() == 0.0 and SearchState.from_dict({}).cost_probe is None
    lines = cost_order_lines(again)
    assert lines[0] == "a: 0 s/step (declared)"
    assert "no cost declared or probed" in lines[1] and lines[1].endswith(": b")
    assert lines[2] == "cost probe: 1 job(s), 30.0 min of trial time; b: x"


def _cfg(**overrides):
    data = {
        "controller_dir": "/tmp/x",
        "trainer": {"command": ["python", "t.py"]},
        "reference": {"job_dir": "/tmp/ref"},
        "proxy_tasks": {"configs": [{"name": "a"}]},
        **overrides,
    }
    return parse_config(data, SearchConfig)


def test_the_probe_is_off_by_default_and_its_settings_are_checked():
    probe = _cfg().cost_probe
    assert (probe.enabled, probe.steps, probe.trials) == (False, 100, 1)
    assert _cfg(cost_probe={"enabled": True, "steps": 12}).cost_probe.steps == 12
    with pytest.raises(Exception, match="cost_probe.steps"):
        _cfg(cost_probe={"enabled": True, "steps": 0})
    with pytest.raises(Exception, match="cost_probe.sample"):
        _cfg(cost_probe={"sample": 3})
