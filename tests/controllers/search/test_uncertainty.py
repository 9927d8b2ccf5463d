"""Both uncertainties in words and numbers, and no "good" against a target out of reach."""

from __future__ import annotations

import pytest

from controllers.search.state import DONE, ProxyTaskEntry, SearchState
from controllers.search.uncertainty import generalise_line, hold_line, verdict_lines
from controllers.stats import MET_DESIRED_ACCURACY_CORRELATION


def _entry() -> ProxyTaskEntry:
    e = ProxyTaskEntry("p", status=DONE)
    e.proxy_task_stats.stopping_state = MET_DESIRED_ACCURACY_CORRELATION
    e.crossing = {"index": 1, "step": 19.0}
    e.hold_prob_over_step = [0.2, 0.97, 0.99]
    e.noise_std_over_step = [0.02, 0.012, 0.011]
    e.noise_source = "the curves' roughness"
    row = {"coefficient": 0.76, "ci_low": 0.26, "ci_high": 0.96, "n": 10}
    e.correlation_over_step = {"spearman": [row, row, row]}
    return e


def test_both_uncertainties_in_words_and_numbers():
    e = _entry()
    assert hold_line(e) == (
        "holds under retraining noise: yes (97 % at the decision; noise of one score 0.012, from the curves' roughness)"
    )
    line = generalise_line(e, "spearman")
    assert line is not None and line.startswith(
        "generalises to the search space: spearman 0.76, 95 % CI [0.26, 0.96] over 10 models; about "
    )
    assert line.endswith("models would narrow it to +-0.15")
    e.hold_prob_over_step[1] = 0.5
    assert hold_line(e).startswith("holds under retraining noise: no (50 %")  # type: ignore[union-attr]


def test_a_target_out_of_reach_never_makes_a_proxy_good():
    state = SearchState(proxy_tasks_map={"p": _entry()}, best_proxy_task_name="p")
    assert not any("not a good proxy" in x for x in verdict_lines(state, state.proxy_tasks_map["p"]))
    state.noise_ceiling = {"target": 0.9, "reachable": False, "message": "target spearman 0.900 is likely out of reach"}
    lines = verdict_lines(state, state.proxy_tasks_map["p"])
    assert any(x.startswith("not a good proxy against this target") and "out of reach" in x for x in lines)
    from controllers.search.report import build_report

    text = build_report(state, controller_uri="x").markdown()
    assert "Best proxy task" not in text and "Cheapest proxy that passed: **p**" in text


def test_step_stats_use_recorded_times_and_say_where_the_noise_came_from():
    from controllers.search.step_stats import HoldSettings, TrialCurve, compute_step_stats

    ref = [0.1 * k for k in range(1, 7)]
    # 6 trials, 3 evaluations; each trial took 1 s for the first 10 steps and 10 s for the next 20
    curves = [
        TrialCurve(((9, 0.1 * k), (19, 0.1 * k + 0.01), (29, 0.1 * k + 0.02)), 11.0 / 30, True, ((9, 1.0), (29, 11.0)))
        for k in range(1, 7)
    ]
    hold = HoldSettings(0.65, 0.001, n_sim=50, seed_source="noise.seed_std in the config")
    stats = compute_step_stats(curves, ref, n_bootstrap=0, hold=hold)
    assert stats.median_hours[0] * 3600 == pytest.approx(1.0)  # not 10 x 11/30 s
    assert stats.median_hours[1] * 3600 == pytest.approx(6.0)
    assert stats.noise_source == "seed_std 0.001 (noise.seed_std in the config) + the curves' roughness"
    assert stats.hold_prob["spearman"] == [1.0, 1.0, 1.0] and len(stats.noise_std) == 3
    series = stats.series("spearman")
    assert series.hold_prob == [1.0, 1.0, 1.0]
    assert compute_step_stats(curves, ref, n_bootstrap=0).series("spearman").hold_prob is None
