"""End-to-end early elimination with real replay trainers.

The first proxy ranks the 8 reference models perfectly from its first evaluation and becomes
the best. The second is ten times cheaper per cycle but ranks them stably wrong (a fixed
per-architecture offset, ``--offset``): its correlation settles well below the target and stays
flat. The not-best rule would let it run until the best proxy's time; early elimination stops it
at half that time, because its trend cannot reach the target by then.
"""

from __future__ import annotations

import json

from _search_helpers import GOOD
from _search_helpers import search_config as _config
from _search_helpers import trial_metrics as _trial_metrics

from controllers.search.controller import SearchController
from controllers.stats import CANNOT_REACH_BEFORE_BEST, EXCEEDED_BEST_TRAIN_TIME, MET_DESIRED_ACCURACY_CORRELATION

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
    assert elim["inputs"]["hours"] >= 0.5 * best_hours  # it waited half the best's time
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
    assert slow.cost_trial_hours > wrong.cost_trial_hours
