"""End-to-end: the zero-compute candidate (the full setup, stopped early) with real replay trainers.

The hand-written reference models train 1000 steps and are evaluated every 100; their curves
rank the models perfectly from the first evaluation. So "train as in the search, stop at 10 %
(after 100 steps)" passes, at the reference's own time per step and no new trial.

* wins: the reference trained fast (0.1 ms per step): 100 steps take 0.01 s, cheaper than the
  proxy's first evaluation (0.5 s a cycle);
* loses: the reference trained slowly (10 ms per step: 1 s for 100 steps); the proxy crosses at
  its first evaluation (0.03 s) and is the best.
"""

from __future__ import annotations

import yaml
from _search_helpers import GOOD, write_reference_job
from _search_helpers import search_config as _config

from controllers.search.controller import SearchController
from controllers.search.full_setup import FULL_SETUP_NAME
from controllers.search.report import search_status_text, write_report
from controllers.stats import MET_DESIRED_ACCURACY_CORRELATION


def _run(tmp_path, secs_per_step: float, sleep: float):
    write_reference_job(str(tmp_path / "reference" / "nas" / "search"), secs_per_step=secs_per_step)
    cfg = _config(
        tmp_path, [("proxy", {**GOOD, "sleep_per_cycle": sleep})], stop_rule="point", full_setup_candidate=True
    )
    state = SearchController(cfg).run()
    write_report(cfg.controller_dir)
    with open(tmp_path / "search" / "report.md") as f:
        report = f.read()
    return cfg, state, report


def test_the_full_setup_stopped_early_wins_when_no_proxy_is_cheaper(tmp_path):
    cfg, state, report = _run(tmp_path, secs_per_step=1e-4, sleep=0.5)
    full, proxy = state.proxy_tasks_map[FULL_SETUP_NAME], state.proxy_tasks_map["proxy"]
    assert full.proxy_task_stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION
    assert full.proxy_task_stats.final_training_steps == 99  # the first evaluation, 0-based
    assert full.proxy_task_stats.final_training_time_in_hours == 100 * 1e-4 / 3600
    assert full.cost_trial_hours == 0 and full.job is None  # nothing trained
    assert state.best_proxy_task_name == FULL_SETUP_NAME
    # the proxy ran second, with the candidate's time as the best to beat; it passes, but later
    assert proxy.decision_log[0]["best_training_time_hrs"] == full.proxy_task_stats.final_training_time_in_hours
    assert proxy.proxy_task_stats.final_training_time_in_hours > full.proxy_task_stats.final_training_time_in_hours
    assert "no proxy beat it, so it is the best" in report
    assert "stopped at 10 % of its steps" in report
    with open(tmp_path / "search" / "best_proxy_task.yaml") as f:
        best = yaml.safe_load(f)
    assert best["proxy_task_name"] == FULL_SETUP_NAME
    assert best["args"] == dict(cfg.trainer.args)  # the full settings, length unchanged
    assert best["stop_at_step"] == 100 and best["stop_at_pct"] == 10.0
    # a resumed search keeps it as decided
    again = SearchController(cfg, resume=True).run()
    assert again.proxy_tasks_map[FULL_SETUP_NAME].decision_log == full.decision_log


def test_the_full_setup_stopped_early_loses_to_a_cheaper_proxy(tmp_path):
    _, state, report = _run(tmp_path, secs_per_step=0.01, sleep=0.03)
    full, proxy = state.proxy_tasks_map[FULL_SETUP_NAME], state.proxy_tasks_map["proxy"]
    assert full.proxy_task_stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION
    assert full.proxy_task_stats.final_training_time_in_hours == 100 * 0.01 / 3600
    assert proxy.proxy_task_stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION
    assert proxy.proxy_task_stats.final_training_time_in_hours < full.proxy_task_stats.final_training_time_in_hours
    assert state.best_proxy_task_name == "proxy"
    assert "the best proxy, proxy, is cheaper" in report
    assert FULL_SETUP_NAME in search_status_text(str(tmp_path / "search"))
