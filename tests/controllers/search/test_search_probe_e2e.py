"""End-to-end cost probe with real replay trainers: no cost is declared, the probe measures them.

The proxy listed first is six times dearer per step (``--sleep_per_cycle``) than the second.
Without declared costs the search would run it first; with ``cost_probe`` one short job per
proxy (one reference architecture, 20 steps) measures both, the cheap one runs first and becomes
the best at its first evaluation, and the dear one, which could not beat it even crossing at its
first evaluation, is skipped without a launch. A search killed during or after the probe resumes
without probing again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _search_helpers import GOOD, QUALITIES
from _search_helpers import search_config as _config

from controllers.search.controller import SearchController
from controllers.search.probe import PROBE_JOB_PREFIX
from controllers.search.report import search_status_text, write_report
from controllers.stats import MET_DESIRED_ACCURACY_CORRELATION, SKIPPED_CANNOT_BE_CHEAPER
from proxy_task_utils import protocol as p

PROXIES = [
    ("costly", {**GOOD, "sleep_per_cycle": 0.3}),
    ("cheap", {**GOOD, "sleep_per_cycle": 0.05}),
]


def _state(tmp_path) -> dict:
    with open(tmp_path / "search" / "SEARCH_CONTROLLER_STATE.json") as f:
        return json.load(f)


def _probe_trial(tmp_path, proxy: str) -> str:
    return str(tmp_path / "search" / f"{PROBE_JOB_PREFIX}_t_{proxy}" / "nas" / "search" / "1")


def test_the_probe_orders_an_undeclared_dear_proxy_after_a_cheap_one_which_then_skips_it(tmp_path):
    cfg = _config(tmp_path, PROXIES, stop_rule="point", cost_probe={"enabled": True, "steps": 20})
    cfg.trainer.length_flag = "train_steps"  # the probe trains 20 steps through the length flag
    state = SearchController(cfg).run()
    cheap, costly = state.proxy_tasks_map["cheap"], state.proxy_tasks_map["costly"]
    probes = state.cost_probe["proxies"]
    assert probes["costly"]["secs_per_step"] > 3 * probes["cheap"]["secs_per_step"] > 0
    for name in ("cheap", "costly"):
        assert probes[name]["status"] == "done" and probes[name]["recorded_steps"] == 20
        assert state.expected_costs[name]["source"] == "probed"
        assert state.expected_costs[name]["secs_per_step"] == probes[name]["secs_per_step"]
        assert state.expected_costs[name]["text"].startswith("probed: 20 steps, ")
        # the probe trained reference architecture 1 for 20 steps, in a folder of its own
        with open(os.path.join(_probe_trial(tmp_path, name), p.NAS_PARAMS_STR_FILE)) as f:
            assert json.load(f)["quality"] == QUALITIES[0]
        with open(os.path.join(_probe_trial(tmp_path, name), p.TRIAL_TRAINING_METRICS_FILE), "rb") as f:
            assert p.TrialTrainingMetrics.from_json(f.read()).training_accuracy_over_steps[-1].training_step == 19
    # cheapest first: the cheap proxy passes at its first evaluation and is the best ...
    assert cheap.proxy_task_stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION
    assert state.best_proxy_task_name == "cheap"
    assert sorted(os.listdir(cheap.search_job_link)) == [str(k) for k in range(1, 9)]  # no probe trial mixed in
    # ... and the dear one, listed first, is skipped on its probed cost, never launched
    assert costly.proxy_task_stats.stopping_state == SKIPPED_CANNOT_BE_CHEAPER
    assert costly.job is None and not costly.search_job_link and costly.cost_trial_hours == 0
    probe_log, skip = costly.decision_log
    assert probe_log["reason"] == state.expected_costs["costly"]["text"]
    assert probe_log["cost_probe"]["job"] == f"{PROBE_JOB_PREFIX}_t_costly"
    assert skip["state"] == SKIPPED_CANNOT_BE_CHEAPER
    assert skip["skip"]["secs_per_step"] == probes["costly"]["secs_per_step"]
    # the probe's trial time counts in the search's cost, and the report says where costs came from
    probe_hours = state.probe_cost_trial_hours()
    assert probe_hours == pytest.approx(sum(pr["cost_trial_hours"] for pr in probes.values())) and probe_hours > 0
    write_report(cfg.controller_dir)
    with open(tmp_path / "search" / "report.md") as f:
        report = f.read()
    assert "## Cost order" in report and state.expected_costs["costly"]["text"] in report
    assert "of which the cost probe" in report
    status = search_status_text(cfg.controller_dir)
    assert state.expected_costs["cheap"]["text"] in status and "cost probe:" in status


def test_a_declared_cost_wins_over_a_probed_one_and_a_probe_is_kept_as_recorded(tmp_path):
    # the first run probes both; the user then declares the cheap one dear, and resumes: the
    # declared cost orders and skips, the recorded probe is kept and nothing is probed again
    cfg = _config(tmp_path, PROXIES, stop_rule="point", cost_probe={"enabled": True, "steps": 10})
    cfg.trainer.length_flag = "train_steps"
    first = SearchController(cfg).run()
    recorded = first.cost_probe
    again = SearchController(cfg.model_copy(update={"proxy_costs": {"cheap": 9.0}}), resume=True).run()
    assert again.cost_probe == recorded
    assert again.expected_costs["cheap"]["source"] == "declared"
    assert again.expected_costs["cheap"]["secs_per_step"] == 9.0
    assert again.expected_costs["cheap"]["text"].startswith("declared (the probe measured ")
    assert again.expected_costs["costly"]["source"] == "probed"


@pytest.mark.parametrize("crash_at", ["after_launch:1", "search_after_probe:1"])
def test_a_search_killed_during_or_after_the_probe_resumes_without_probing_again(tmp_path, crash_at):
    """Killed with the first probe trial just launched, or once both probes are recorded."""
    import yaml

    # no length flag: the probe trials are stopped by "stop now" once they recorded 20 steps
    cfg = _config(tmp_path, PROXIES, stop_rule="point", cost_probe={"enabled": True, "steps": 20})
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = {**os.environ, "PROXY_TASK_TEST_CRASH_AT": crash_at}
    cmd = [sys.executable, "-m", "controllers.cli", "search", str(path), "--no-progress"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == -9, first.stderr[-2000:]
    mid = _state(tmp_path)
    assert all(e["job"] is None for e in mid["proxy_tasks_map"].values())  # no proxy launched yet
    if crash_at.startswith("search_after_probe"):
        assert {n: pr["status"] for n, pr in mid["cost_probe"]["proxies"].items()} == {
            "costly": "done",
            "cheap": "done",
        }
        assert mid["expected_costs"]["costly"]["source"] == "probed"
    else:
        assert list(mid["cost_probe"]["proxies"]) == ["costly"]
        assert mid["cost_probe"]["proxies"]["costly"]["status"] == "running"
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = _state(tmp_path)
    probes = final["cost_probe"]["proxies"]
    if crash_at.startswith("search_after_probe"):
        assert probes == mid["cost_probe"]["proxies"]  # reused as recorded
    for name in ("costly", "cheap"):
        assert [t["launches"] for t in probes[name]["job"]["trials"]] == [1]  # one probe trial, launched once
        assert probes[name]["job"]["stop_reason"].startswith("cost probe: 20 steps")
        assert sum("cost_probe" in d for d in final["proxy_tasks_map"][name]["decision_log"]) == 1
        with open(tmp_path / "search" / "logs" / f"{PROBE_JOB_PREFIX}_t_{name}" / "1" / "trainer.log") as f:
            assert f.read().count("replay trainer: start trial") == 1  # re-attached, never started twice
        with open(os.path.join(_probe_trial(tmp_path, name), p.TRIAL_TRAINING_METRICS_FILE), "rb") as f:
            assert p.TrialTrainingMetrics.from_json(f.read()).last_pct < 100.0  # "stop now" stopped it
    assert probes["costly"]["secs_per_step"] > 3 * probes["cheap"]["secs_per_step"]
    m = final["proxy_tasks_map"]
    assert final["best_proxy_task_name"] == "cheap" and final["finished"] is True
    assert m["costly"]["proxy_task_stats"]["stopping_state"] == SKIPPED_CANNOT_BE_CHEAPER
    assert m["costly"]["job"] is None
