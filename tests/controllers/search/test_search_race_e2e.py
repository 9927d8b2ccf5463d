"""End-to-end racing with real replay trainers: two proxies at once on a runner with 16 slots.

The 8 reference models fit twice in 16 slots, so the second proxy in cost order starts with the
first. It is the stably wrong proxy of the elimination tests (cheap per cycle, its correlation
flat below the target): run after the best proxy, early elimination cuts it before the best's
time. Racing, it starts before the best's time is known, so its rules that need that time wait;
once the best is decided they judge all its evaluations from the first, and it gets the verdict
the search one proxy after another gives it. A kill in the middle of the race resumes to the
same verdict, without a trial launched twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from _search_helpers import GOOD
from _search_helpers import search_config as _config

from controllers.search.controller import SearchController
from controllers.search.report import write_report
from controllers.stats import CANNOT_REACH_BEFORE_BEST, MET_DESIRED_ACCURACY_CORRELATION

BEST = ("best", {**GOOD, "sleep_per_cycle": 0.4})
WRONG = ("stably_wrong", {**GOOD, "offset": 0.15, "noise_seed": 3, "sleep_per_cycle": 0.02})
SLOTS = {"max_parallel_trials": 16}


def _verdict(state: dict) -> tuple:
    entries = state["proxy_tasks_map"]
    return state["best_proxy_task_name"], {n: e["proxy_task_stats"]["stopping_state"] for n, e in entries.items()}


def test_two_proxies_race_and_get_the_verdict_they_get_one_after_another(tmp_path):
    raced = SearchController(_config(tmp_path / "race", [BEST, WRONG], stop_rule="point", runner=SLOTS)).run()
    one_by_one = SearchController(
        _config(tmp_path / "seq", [BEST, WRONG], stop_rule="point", runner=SLOTS, race={"enabled": False})
    ).run()
    assert _verdict(raced.to_dict()) == _verdict(one_by_one.to_dict())
    assert raced.best_proxy_task_name == "best"
    wrong = raced.proxy_tasks_map["stably_wrong"]
    assert wrong.proxy_task_stats.stopping_state == CANNOT_REACH_BEFORE_BEST
    assert raced.proxy_tasks_map["best"].proxy_task_stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION
    # it really raced: launched while the best was undecided, and its first decisions waited for it
    assert wrong.raced_with == ["best"] and raced.proxy_tasks_map["best"].raced_with == []
    assert one_by_one.proxy_tasks_map["stably_wrong"].raced_with == []
    waited = [d for d in wrong.decision_log if d.get("waiting_for")]
    assert waited and all(d["waiting_for"] == ["best"] and not d["stop"] for d in waited)
    assert all(d["best_training_time_hrs"] is None for d in waited)  # no guess of the best's time
    # the stop came from a decision that knew the best's time, as in the search one after another
    (stop,) = [d for d in wrong.decision_log if d.get("stop")]
    best_hours = raced.proxy_tasks_map["best"].proxy_task_stats.final_training_time_in_hours
    assert stop["best_known"] is True and stop["elimination"]["inputs"]["best_training_time_hrs"] == best_hours
    assert stop["elimination"]["inputs"]["hours"] < best_hours
    # every trial ran once; the report says who raced whom
    for entry in raced.proxy_tasks_map.values():
        assert [t["launches"] for t in entry.job["trials"]] == [1] * 8
    write_report(str(tmp_path / "race" / "search"))
    report = (tmp_path / "race" / "search" / "report.md").read_text()
    assert "raced with best" in report


def test_a_race_killed_mid_race_resumes_to_the_same_verdict_without_duplicate_trials(tmp_path):
    import yaml

    cfg = _config(tmp_path, [BEST, WRONG], stop_rule="point", runner=SLOTS)
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    cmd = [sys.executable, "-m", "controllers.cli", "search", str(path), "--no-progress"]
    env = {**os.environ, "PROXY_TASK_TEST_CRASH_AT": "search_raced_poll:2"}
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == -9, first.stderr[-2000:]
    state_file = tmp_path / "search" / "SEARCH_CONTROLLER_STATE.json"
    mid = json.loads(state_file.read_text())["proxy_tasks_map"]
    assert mid["best"]["status"] == mid["stably_wrong"]["status"] == "running"  # both jobs in flight
    assert mid["stably_wrong"]["raced_with"] == ["best"]
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = json.loads(state_file.read_text())
    assert final["finished"] is True
    assert _verdict(final) == (
        "best",
        {"best": MET_DESIRED_ACCURACY_CORRELATION, "stably_wrong": CANNOT_REACH_BEFORE_BEST},
    )
    for name in ("best", "stably_wrong"):
        trials = final["proxy_tasks_map"][name]["job"]["trials"]
        assert [t["launches"] for t in trials] == [1] * 8, name  # re-attached, none launched twice
        assert [t["relaunches"] for t in trials] == [0] * 8, name


def test_a_success_while_racing_is_judged_again_once_the_cheaper_proxy_is_decided(tmp_path):
    """The raced proxy crosses the target while the cheaper one (already crossed, still stopping) is
    undecided. Judged again with the cheaper one's time, it had run past that time before its crossing:
    not the best, as the search one after another says (where it is cut at that time)."""
    # crosses at its first evaluation (0.4 s of training); its trials take 3 s more to stop
    first = ("first", {**GOOD, "sleep_per_cycle": 0.4, "sleep_schedule": "1:3"})
    # ranks the models only once the signal outgrows the noise: crosses several evaluations in
    late = ("late", {**GOOD, "noise": 0.01, "tau": 0.5, "sleep_per_cycle": 0.08})
    costs = {"first": 0.001, "late": 0.002}  # the cost order: first, then late
    raced = SearchController(
        _config(tmp_path / "race", [late, first], stop_rule="point", runner=SLOTS, proxy_costs=costs)
    ).run()
    one_by_one = SearchController(
        _config(
            tmp_path / "seq", [late, first], stop_rule="point", runner=SLOTS, proxy_costs=costs, race={"enabled": False}
        )
    ).run()
    assert raced.best_proxy_task_name == one_by_one.best_proxy_task_name == "first"
    entry = raced.proxy_tasks_map["late"]
    assert entry.raced_with == ["first"]
    live = [d for d in entry.decision_log if d.get("stop") and d.get("best_known") is False]
    assert live and live[0]["state"] == MET_DESIRED_ACCURACY_CORRELATION  # crossed while waiting
    (again,) = [d for d in entry.decision_log if "redecided" in d]
    assert again["redecided"]["previous_state"] == MET_DESIRED_ACCURACY_CORRELATION
    first_hours = raced.proxy_tasks_map["first"].proxy_task_stats.final_training_time_in_hours
    assert again["best_training_time_hrs"] == first_hours
    assert not entry.succeeded and entry.proxy_task_stats.final_training_time_in_hours is None
    assert entry.proxy_task_stats.stopping_state == one_by_one.proxy_tasks_map["late"].proxy_task_stats.stopping_state
