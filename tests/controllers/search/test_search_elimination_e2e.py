"""End-to-end early elimination with real replay trainers.

The first proxy ranks the 8 reference models perfectly from its first evaluation and becomes
the best. The second is ten times cheaper per cycle but ranks them stably wrong (a fixed
per-architecture offset, ``--offset``): its correlation settles well below the target and stays
flat. The not-best rule would let it run until the best proxy's time; early elimination stops it
at 70 % of that time (``elimination.min_fraction``), because its trend cannot reach the target by then.

Cost order: with declared seconds per step the cheapest candidate runs first; a dearer one that
could not beat the best even crossing at its first evaluation is skipped, never launched.
"""

from __future__ import annotations

import json

from _search_helpers import GOOD
from _search_helpers import search_config as _config
from _search_helpers import trial_metrics as _trial_metrics

from controllers.search.controller import SearchController
from controllers.search.report import search_status_text, write_report
from controllers.stats import (
    CANNOT_REACH_BEFORE_BEST,
    DEFAULT_MIN_FRACTION,
    EXCEEDED_BEST_TRAIN_TIME,
    MET_DESIRED_ACCURACY_CORRELATION,
    SKIPPED_CANNOT_BE_CHEAPER,
)

BEST = ("best", {**GOOD, "sleep_per_cycle": 0.4})
WRONG = ("stably_wrong", {**GOOD, "offset": 0.15, "noise_seed": 3, "sleep_per_cycle": 0.02})


def test_a_proxy_whose_trend_cannot_reach_the_target_in_time_is_eliminated_early(tmp_path):
    state = SearchController(_config(tmp_path, [BEST, WRONG], stop_rule="point")).run()
    best, wrong = state.proxy_tasks_map["best"], state.proxy_tasks_map["stably_wrong"]
    assert best.proxy_task_stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION
    assert state.best_proxy_task_name == "best"
    s = wrong.proxy_task_stats
    assert s.stopping_state == CANNOT_REACH_BEFORE_BEST
    assert s.final_training_time_in_hours is None and not wrong.succeeded
    assert "below desired 0.9" in wrong.stop_reason
    # logged with its inputs: the trend, the best's time it was measured against, the band
    log = [d for d in wrong.decision_log if d.get("stop")]
    assert len(log) == 1 and log[0]["state"] == CANNOT_REACH_BEFORE_BEST
    elim = log[0]["elimination"]
    best_hours = best.proxy_task_stats.final_training_time_in_hours
    assert elim["inputs"]["best_training_time_hrs"] == best_hours
    assert elim["inputs"]["upper_at_best"] < 0.9
    assert DEFAULT_MIN_FRACTION * best_hours <= elim["inputs"]["hours"] < best_hours  # it waited, but not all
    valid = [c for c in s.accuracy_correlation_over_step if c is not None]
    assert len(valid) >= 2 and max(valid) < 0.9
    # the stop really stopped the trials, early
    assert s.posted_stop_trials_message
    assert all(m.last_pct < 50.0 for m in _trial_metrics(wrong.search_job_link))
    json.dumps(wrong.decision_log)  # standard JSON

    # without elimination, the same proxy runs until the best proxy's time
    off = SearchController(
        _config(tmp_path / "off", [BEST, WRONG], stop_rule="point", elimination={"enabled": False})
    ).run()
    slow = off.proxy_tasks_map["stably_wrong"]
    assert slow.proxy_task_stats.stopping_state == EXCEEDED_BEST_TRAIN_TIME
    (cut,) = [d for d in slow.decision_log if d.get("stop")]
    # decided at an evaluation later than the elimination's: at the best proxy's time, not before it
    assert cut["reason"].startswith("median training time") and elim["inputs"]["hours"] < best_hours


def test_candidates_run_cheapest_first_and_one_that_cannot_be_cheaper_is_skipped(tmp_path):
    proxies = [
        ("costly", {**GOOD, "sleep_per_cycle": 0.3}),
        ("cheap", {**GOOD, "sleep_per_cycle": 0.05}),
    ]
    # declared seconds per step: the listed-first proxy is 60x dearer, so the cheap one runs first,
    # becomes the best at its first evaluation, and the costly one could not beat it at all
    costs = {"costly": 0.3 / 10, "cheap": 0.05 / 10}
    cfg = _config(tmp_path, proxies, stop_rule="point", proxy_costs=costs)
    state = SearchController(cfg).run()
    cheap, costly = state.proxy_tasks_map["cheap"], state.proxy_tasks_map["costly"]
    assert cheap.proxy_task_stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION
    assert state.best_proxy_task_name == "cheap"
    assert costly.proxy_task_stats.stopping_state == SKIPPED_CANNOT_BE_CHEAPER
    assert costly.job is None and not costly.search_job_link  # nothing launched
    assert costly.cost_trial_hours == 0
    assert "even a crossing at its first evaluation" in costly.stop_reason
    (skip,) = costly.decision_log
    first = cheap.proxy_task_stats.training_steps[0]
    assert skip["skip"]["first_eval_step"] == first
    assert skip["skip"]["cheapest_possible_hours"] == costs["costly"] * (first + 1) / 3600
    assert skip["skip"]["best_training_time_hrs"] == cheap.proxy_task_stats.final_training_time_in_hours
    assert [costly.order_index, cheap.order_index] == [0, 1]  # the listed order is kept as recorded
    # a resumed search keeps the skip as recorded and launches nothing
    again = SearchController(cfg, resume=True).run()
    assert again.proxy_tasks_map["costly"].decision_log == costly.decision_log
    assert again.proxy_tasks_map["costly"].job is None
    write_report(cfg.controller_dir)
    with open(tmp_path / "search" / "report.md") as f:
        assert SKIPPED_CANNOT_BE_CHEAPER in f.read()
    assert SKIPPED_CANNOT_BE_CHEAPER in search_status_text(cfg.controller_dir)
