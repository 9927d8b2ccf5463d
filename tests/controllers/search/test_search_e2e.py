"""End-to-end: the search controller with real subprocess replay trainers whose truth is known.

The reference models (8 architectures with known plateau qualities) are written by hand. A
proxy with little noise and a fast-learning curve ranks them perfectly from its first cycle;
a proxy with huge noise ranks them at random. Cost differences come from the trainer's
``--sleep_per_cycle`` (wall time per cycle, which the trainer records as training time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _search_helpers import GOOD, LATENCIES, NOISY, QUALITIES, write_reference_table
from _search_helpers import search_config as _config
from _search_helpers import trial_metrics as _trial_metrics

from controllers.search.controller import SearchAborted, SearchController
from controllers.search.report import write_report
from controllers.search.state import FAILED_DESIRED_LATENCY_CORRELATION, JOB_FAILED, RAN_TILL_COMPLETION
from controllers.stats import (
    EXCEEDED_BEST_TRAIN_TIME,
    EXCEEDED_TRAIN_TIME_LIMIT,
    MET_DESIRED_ACCURACY_CORRELATION,
)
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError


def _state(tmp_path) -> dict:
    with open(tmp_path / "search" / "SEARCH_CONTROLLER_STATE.json") as f:
        return json.load(f)


def test_picks_cheapest_true_proxy_rejects_noisy_and_stop_now_stops(tmp_path):
    proxies = [
        ("noisy", {**NOISY, "train_steps": 300, "sleep_per_cycle": 0.01}),
        ("good_slow", {**GOOD, "sleep_per_cycle": 0.12}),
        ("good_fast", {**GOOD, "sleep_per_cycle": 0.03}),
        ("noisy_after_best", {**NOISY, "train_steps": 2000, "sleep_per_cycle": 0.1}),
    ]
    cfg = _config(tmp_path, proxies)
    cfg.trainer.length_flag, cfg.trainer.decay_flag = "train_steps", "decay_steps"  # what the yaml may set
    state = SearchController(cfg).run()
    m = state.proxy_tasks_map
    states = {n: m[n].proxy_task_stats.stopping_state for n in m}
    assert states == {
        "noisy": RAN_TILL_COMPLETION,
        "good_slow": MET_DESIRED_ACCURACY_CORRELATION,
        "good_fast": MET_DESIRED_ACCURACY_CORRELATION,
        "noisy_after_best": EXCEEDED_BEST_TRAIN_TIME,
    }
    assert state.best_proxy_task_name == "good_fast"
    fast, slow = m["good_fast"].proxy_task_stats, m["good_slow"].proxy_task_stats
    assert fast.final_training_time_in_hours < slow.final_training_time_in_hours
    # stop now really stopped the trials: they exited gracefully long before their 2000 steps
    for name in ("good_slow", "good_fast", "noisy_after_best"):
        entry = m[name]
        assert entry.proxy_task_stats.posted_stop_trials_message
        for metrics in _trial_metrics(entry.search_job_link):
            assert metrics.last_pct is not None and metrics.last_pct < 50.0
        for trial in entry.job["trials"]:
            assert trial["state"] == "succeeded" and trial["launches"] == 1
        with open(os.path.join(entry.search_job_link, "1", p.DESIRED_TRAINING_PCT_FILE)) as f:
            assert json.load(f) == {"desired_training_pct": 0.0}
    # the noisy proxy ran to the end (nothing fired) and was never a success
    assert all(mt.last_pct == 100.0 for mt in _trial_metrics(m["noisy"].search_job_link))
    assert m["noisy"].proxy_task_stats.posted_stop_trials_message is False
    # MAX_TRAINING_TIME.json posted at launch
    with open(os.path.join(m["noisy"].search_job_link, "3", p.MAX_TRAINING_TIME_FILE)) as f:
        assert json.load(f)["max_training_time_in_hrs"] == pytest.approx(30 / 3600)
    # every decision is logged with its inputs; the state is standard JSON with both coefficients
    raw = _state(tmp_path)
    fast_raw = raw["proxy_tasks_map"]["good_fast"]
    stop_logs = [d for d in fast_raw["decision_log"] if d.get("stop")]
    assert stop_logs and stop_logs[0]["targets"]["desired_accuracy_correlation"] == 0.9
    assert stop_logs[0]["at_crossing"]["correlation"]["coefficient"] >= 0.9
    assert set(fast_raw["correlation_over_step"]) == {"spearman", "kendall"}
    assert raw["correlation_method"] == "spearman" and raw["schema_version"] == 1
    assert fast_raw["proxy_task_stats"]["latency_correlation"] == pytest.approx(1.0)
    assert fast_raw["cost_trial_hours"] > 0
    # report and the ready-to-use config
    out = write_report(cfg.controller_dir)
    text = open(out["markdown"].replace("file://", "")).read()
    assert "Best proxy task: **good_fast**" in text and EXCEEDED_BEST_TRAIN_TIME in text
    import yaml

    best = yaml.safe_load(open(out["best_proxy_task"]))
    steps = fast.final_training_steps + 1
    assert best["args"]["train_steps"] == best["args"]["decay_steps"] >= steps
    assert best["args"]["sleep_per_cycle"] == 0.03


def _variance_dir(tmp_path, seed_std: float) -> str:
    folder = tmp_path / "variance"
    folder.mkdir(exist_ok=True)
    (folder / "variance_and_smoothness.json").write_text(
        json.dumps(
            {
                "variance_value": seed_std / 0.6,
                "variance_info": "",
                "smoothness_value": 0.0,
                "smoothness_info": "",
                "seed_std": seed_std,
                "mean_final_accuracy": 0.6,
            }
        )
    )
    return str(folder)


def test_time_limit_rule_fires_then_a_grown_config_list_resumes(tmp_path):
    noise = {"variance_dir": _variance_dir(tmp_path, 0.005), "n_sim": 200}
    limited = ("noisy_long", {**NOISY, "train_steps": 4000, "sleep_per_cycle": 0.05})
    cfg = _config(tmp_path, [limited], training_time_hrs_limit=0.6 / 3600, noise=noise)
    state = SearchController(cfg).run()
    entry = state.proxy_tasks_map["noisy_long"]
    assert entry.proxy_task_stats.stopping_state == EXCEEDED_TRAIN_TIME_LIMIT
    assert entry.proxy_task_stats.final_training_time_in_hours is None
    assert state.best_proxy_task_name == ""
    for metrics in _trial_metrics(entry.search_job_link):
        assert metrics.last_pct < 25.0  # 4000 steps would take 20 s per trial
    assert state.noise_ceiling["reachable"] and state.noise_ceiling["ceiling"]["median"] > 0.9
    assert entry.ceiling_fraction is not None and entry.ceiling_fraction < 0.9  # random ranking: far below
    # the config list grows: the finished proxy is kept as recorded, only the new one runs
    launched_before = [t["launches"] for t in entry.job["trials"]]
    grown = _config(
        tmp_path,
        [limited, ("good", {**GOOD, "sleep_per_cycle": 0.02})],
        training_time_hrs_limit=0.6 / 3600,
        noise=noise,
    )
    state2 = SearchController(grown, resume=True).run()
    assert [t["launches"] for t in state2.proxy_tasks_map["noisy_long"].job["trials"]] == launched_before
    assert state2.proxy_tasks_map["noisy_long"].decision_log == entry.decision_log
    assert state2.best_proxy_task_name == "good"
    assert state2.proxy_tasks_map["good"].ceiling_fraction == pytest.approx(
        1.0 / state2.noise_ceiling["ceiling"]["median"]
    )


def test_out_of_reach_target_warns_and_can_abort_before_launching(tmp_path):
    noise = {"variance_dir": _variance_dir(tmp_path, 0.5), "n_sim": 200, "abort_if_unreachable": True}
    cfg = _config(tmp_path, [("good", GOOD)], noise=noise)
    with pytest.raises(SearchAborted, match="out of reach"):
        SearchController(cfg).run()
    raw = _state(tmp_path)
    assert raw["noise_ceiling"]["reachable"] is False and "out of reach" in raw["warnings"][-1]
    assert not any(f.startswith("ProxyTask_") for f in os.listdir(tmp_path / "search"))  # nothing launched


def test_too_many_failed_trials_fail_the_proxy_not_the_controller(tmp_path):
    crashing = {**GOOD, "sleep_per_cycle": 0.05, "retrain_failure_plan": "1:crash,2:oom,3:crash"}
    cfg = _config(tmp_path, [("broken", crashing), ("good", {**GOOD, "sleep_per_cycle": 0.02})])
    state = SearchController(cfg).run()
    broken = state.proxy_tasks_map["broken"]
    assert broken.proxy_task_stats.stopping_state == JOB_FAILED
    assert broken.num_failed_trials == 3 and broken.failures["2"]["kind"] == "oom"
    assert (
        "3 of 8 trials of proxy task broken failed" in broken.stop_reason
        and "latency correlation invalid" in broken.stop_reason
    )
    assert state.best_proxy_task_name == "good"


def test_latency_failure_with_a_reference_table(tmp_path):
    table = write_reference_table(str(tmp_path / "ref.csv"), table_latencies=list(reversed(LATENCIES)))
    cfg = _config(tmp_path, [("good", {**GOOD, "sleep_per_cycle": 0.02})], reference={"table": table}, plots=True)
    state = SearchController(cfg).run()
    entry = state.proxy_tasks_map["good"]
    s = entry.proxy_task_stats
    assert s.stopping_state == FAILED_DESIRED_LATENCY_CORRELATION
    assert s.latency_correlation == pytest.approx(-1.0)
    assert MET_DESIRED_ACCURACY_CORRELATION in entry.stop_reason  # what it was before the latency check
    assert state.best_proxy_task_name == ""
    assert state.reference["accuracies"] == list(QUALITIES)
    # the proxy trials re-trained the table's architectures (materialised as a job folder)
    with open(os.path.join(entry.search_job_link, "4", p.NAS_PARAMS_STR_FILE)) as f:
        assert json.load(f)["quality"] == QUALITIES[3]
    # plots: one file per kind (not one per step), named as the reference does
    pngs = sorted(f for f in os.listdir(tmp_path / "search") if f.endswith(".png"))
    assert pngs == sorted(
        [
            "proxy_task_good_accuracy_correlation_vs_training_steps.png",
            "proxy_task_good_accuracy_correlation_vs_training_time.png",
            "proxy_task_good_accuracy_vs_training_steps.png",
            "proxy_task_good_accuracy_vs_training_time.png",
            "proxy_task_good_accuracy_correlation_at_decision.png",
            "proxy_task_good_latency_correlation.png",
        ]
    )


@pytest.mark.parametrize("crash_at", ["search_after_poll:3", "search_after_decision:1"])
def test_resume_after_sigkill_mid_proxy(tmp_path, crash_at):
    """Killed mid-proxy (before any decision, or after saving a decision but before posting it)."""
    import yaml

    cfg = _config(
        tmp_path,
        [
            ("good_slow", {**GOOD, "train_steps": 6000, "sleep_per_cycle": 0.1}),
            ("good_fast", {**GOOD, "sleep_per_cycle": 0.03}),
        ],
    )
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = {**os.environ, "PROXY_TASK_TEST_CRASH_AT": crash_at}
    cmd = [sys.executable, "-m", "controllers.cli", "search", str(path), "--no-progress"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == -9, first.stderr[-2000:]
    mid = _state(tmp_path)["proxy_tasks_map"]["good_slow"]
    assert mid["status"] == "running"
    if crash_at.startswith("search_after_decision"):
        assert mid["proxy_task_stats"]["posted_stop_trials_message"] and mid["job"]["stop_reason"] is None
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = _state(tmp_path)
    assert final["best_proxy_task_name"] == "good_fast"
    assert final["finished"] is True
    for name in ("good_slow", "good_fast"):
        entry = final["proxy_tasks_map"][name]
        assert entry["proxy_task_stats"]["stopping_state"] == MET_DESIRED_ACCURACY_CORRELATION
        assert [t["launches"] for t in entry["job"]["trials"]] == [1] * 8  # no duplicate trials
        assert entry["job"]["stop_reason"].startswith(MET_DESIRED_ACCURACY_CORRELATION)
        for metrics in _trial_metrics(entry["search_job_link"]):
            assert metrics.last_pct < 100.0  # stopped by "stop now", also after the resume
    with pytest.raises(ConfigurationError, match="--resume"):  # never a silent fresh start over a state
        SearchController(cfg).run()
