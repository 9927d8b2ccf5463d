"""latency.mode: config checks, the worker lifecycle of a controller run, and worker-mode runs end to end.

The end-to-end runs use real parts only: replay-trainer subprocesses that export a real
torch MLP (``--latency_mode=worker``) and latency-worker processes started by the controller.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from _search_helpers import LATENCIES, QUALITIES, write_reference_job

from controllers.config import LatencyConfig, parse_config
from controllers.errors import ConfigError
from controllers.latency.mode import latency_workers, stop_workers, trial_latency
from controllers.latency.worker import CONTROLLER_FINISHED_FILE
from controllers.search.config import SearchConfig
from controllers.search.controller import SearchController
from controllers.search.reference import reference_from_job_dir
from controllers.selection.config import ModelSelectionConfig
from controllers.selection.controller import MODEL_SELECTION_STATE_FILE, run_model_selection
from controllers.stats import Candidate, filter_candidates
from proxy_task_utils import protocol as p
from proxy_task_utils.storage import open_storage

pytest.importorskip("torch")

REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]
WORKER_ARGS = ["--poll-secs", "0.1", "--repeats", "10", "--warmup", "2", "--threads", "1"]
TIMEOUTS = {
    "poll_interval_secs": 0.1,
    "no_metrics_timeout_secs": 90.0,
    "stop_grace_secs": 60.0,
    "cancel_grace_secs": 1.0,
    "heartbeat_interval_secs": 0.5,
    "nan_grace_secs": 1.0,
}
WORKER_TRAINER_ARGS = {"latency_mode": "worker", "latency_timeout_secs": 60, "latency_poll_secs": 0.1}
LATENCY = {"mode": "worker", "num_workers": 2, "worker_args": WORKER_ARGS, "timeout_secs": 60, "exit_timeout_secs": 30}


def _ms_data(ctl, **over):
    data = {
        "controller_dir": str(ctl),
        "job_name": "lat",
        "seed": 1,
        "trainer": {"command": REPLAY, "args": {"train_steps": 24, "cycle_steps": 6, **WORKER_TRAINER_ARGS}},
        "search_space": {"choices": {"quality": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "latency_ms": [2, 5, 10]}},
        "runner": {"max_parallel_trials": 3},
        "timeouts": TIMEOUTS,
        "latency": LATENCY,
        "start_num_models": 6,
        "final_num_models": 4,
        "num_models_to_remove_per_iter": 2,
        "require_latency": True,
    }
    data.update(over)
    return data


def _summaries(log_dir, n: int = 2) -> list[dict]:
    """The worker processes' exit summaries (one JSON line each, printed only when they return)."""
    out = []
    for k in range(n):
        with open(os.path.join(log_dir, f"latency_worker_{k}.log")) as f:
            out += [json.loads(line) for line in f if line.startswith("{")]
    return out


# -- config -------------------------------------------------------------------------------------


def test_latency_config_defaults_and_errors_name_the_field(tmp_path):
    cfg = parse_config(_ms_data(tmp_path, latency={}, require_latency=False), ModelSelectionConfig)
    assert cfg.latency.mode == "trainer" and cfg.latency.num_workers == 1
    for bad, words in [
        ({"mod": "worker"}, ["latency.mod", "unknown key"]),
        ({"mode": "gpu"}, ["latency.mode", "'none', 'trainer' or 'worker'"]),
        ({"mode": "worker", "num_workers": 0}, ["latency.num_workers"]),
        ({"mode": "worker", "device": "tpu"}, ["latency.device"]),
        ({"mode": "worker", "worker_args": ["--watch=/x"]}, ["latency.worker_args", "--watch"]),
        ({"mode": "worker", "timeout_secs": 100}, ["latency.timeout_secs", "no_metrics_timeout_secs"]),
        ({"mode": "worker", "timeout_secs": 80}, ["latency.timeout_secs", "stop_grace_secs"]),
        ({"mode": "none"}, ["require_latency", "latency.mode"]),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_config(_ms_data(tmp_path, latency=bad), ModelSelectionConfig)
        assert all(w in str(info.value) for w in words), (bad, str(info.value))


def test_local_workers_start_by_default_only_for_local_folders():
    worker = LatencyConfig(mode="worker")
    assert worker.starts_local_workers("/runs/ctl") and not worker.starts_local_workers("gs://b/ctl")
    assert LatencyConfig(mode="worker", start_local_workers=True).starts_local_workers("gs://b/ctl")
    assert not LatencyConfig(mode="trainer").starts_local_workers("/runs/ctl")


# -- reading ------------------------------------------------------------------------------------


def test_trial_latency_reads_the_named_source_and_records_a_malformed_file(tmp_path):
    trial = open_storage(str(tmp_path))
    m = p.TrialTrainingMetrics()
    m.latency = 5.0
    trial.write(p.TRIAL_TRAINING_METRICS_FILE, m.to_json())
    assert trial_latency(trial, "worker") == (None, None)  # no answer yet
    trial.write(p.MODEL_LATENCY_FILE, p.encode_model_latency(p.ModelLatency(7.0, "CPU", 0.0)))
    assert trial_latency(trial, "trainer") == (5.0, None)
    assert trial_latency(trial, "worker") == (7.0, None)
    assert trial_latency(trial, "none") == (None, None)
    trial.write(p.MODEL_LATENCY_FILE, b"{not json")
    value, problem = trial_latency(trial, "worker")
    assert value is None and "model_latency.json" in problem


def test_reference_latencies_follow_the_mode(tmp_path):
    job = write_reference_job(str(tmp_path / "ref"), QUALITIES[:3], LATENCIES[:3])
    for k, ms in enumerate((30.0, 20.0, 10.0), start=1):  # the worker's answers differ from the metrics files
        open_storage(job).write(f"{k}/{p.MODEL_LATENCY_FILE}", p.encode_model_latency(p.ModelLatency(ms, "CPU", 0.0)))
    assert reference_from_job_dir(job).latencies == list(LATENCIES[:3])
    assert reference_from_job_dir(job, latency_mode="worker").latencies == [30.0, 20.0, 10.0]
    assert reference_from_job_dir(job, latency_mode="none").latencies == [None, None, None]


# -- lifecycle ----------------------------------------------------------------------------------


def test_lifecycle_clears_a_stale_marker_starts_workers_and_tells_them_to_exit(tmp_path):
    cfg = parse_config(_ms_data(tmp_path / "ctl"), ModelSelectionConfig)
    ctl = open_storage(cfg.controller_dir)
    ctl.write(CONTROLLER_FINISHED_FILE, b'{"controller_finished": true, "reason": "previous run"}')  # a resume
    with pytest.raises(RuntimeError, match="boom"), latency_workers(cfg) as procs:
        assert len(procs) == 2 and not ctl.exists(CONTROLLER_FINISHED_FILE)
        raise RuntimeError("boom")
    assert [proc.returncode for proc in procs] == [0, 0]
    marker = json.loads(ctl.read(CONTROLLER_FINISHED_FILE)[0])
    assert marker["reason"].startswith("failed: RuntimeError: boom")
    assert [s["exit_reason"] for s in _summaries(tmp_path / "ctl" / "logs")] == ["controller finished"] * 2


def test_lifecycle_does_nothing_outside_worker_mode(tmp_path):
    cfg = parse_config(_ms_data(tmp_path / "ctl", latency={"mode": "trainer"}), ModelSelectionConfig)
    with latency_workers(cfg) as procs:
        assert procs == []
    assert not (tmp_path / "ctl").exists()


def test_workers_that_do_not_exit_are_stopped():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_workers([proc], timeout_secs=0.1) == [-15]


# -- end to end ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_model_selection_in_worker_mode_end_to_end(tmp_path):
    ctl = tmp_path / "ctl"
    result = run_model_selection(parse_config(_ms_data(ctl), ModelSelectionConfig))
    state = json.loads((ctl / MODEL_SELECTION_STATE_FILE).read_text())
    assert state["status"] == "done" and state["latency_mode"] == "worker" and len(result.reference_trials) == 4
    it0 = state["iterations"][0]
    answers = {}
    for it in state["iterations"]:  # every trial of every round was measured by a worker
        for tid in (t["trial_id"] for t in it["job"]["trials"]):
            trial = os.path.join(it["job_dir"], tid)
            with open(os.path.join(trial, p.MODEL_LATENCY_FILE), "rb") as f:
                answer = p.decode_model_latency(f.read())
            assert answer.extra["worker_id"] in (0, 1) and answer.device_type == "CPU"
            answers[trial] = answer.latency_in_milliseconds
    # the round's scores are the workers' answers, and the (accuracy, latency) spread used them
    job0 = it0["job_dir"]
    assert {t: s["latency"] for t, s in it0["scores"].items()} == {
        t: answers[os.path.join(job0, t)] for t in it0["scores"]
    }
    assert it0["latency_problems"] == {} and it0["filter"]["invalid"] == []
    again = filter_candidates([Candidate(t, s["accuracy"], s["latency"]) for t, s in it0["scores"].items()], 2,
                              min_kept=2, require_latency=True)  # fmt: skip
    assert again.kept == it0["trials_to_retrain"] and len(again.kept) == 4
    # the workers measured every model once and exited on the controller's marker
    summaries = _summaries(ctl / "logs")
    assert [s["exit_reason"] for s in summaries] == ["controller finished"] * 2
    assert sorted(u for s in summaries for u in s["measured"]) == sorted(answers) and len(answers) == 10
    assert json.loads((ctl / CONTROLLER_FINISHED_FILE).read_text())["reason"] == "finished"


@pytest.mark.slow
def test_search_reads_reference_and_proxy_latencies_from_the_workers(tmp_path):
    n = 3
    job = write_reference_job(str(tmp_path / "reference" / "nas" / "search"), QUALITIES[:n], LATENCIES[:n])
    worker_answers = [100.0 - k for k in range(n)]  # unlike the metrics files' LATENCIES
    for k, ms in enumerate(worker_answers, start=1):
        open_storage(job).write(f"{k}/{p.MODEL_LATENCY_FILE}", p.encode_model_latency(p.ModelLatency(ms, "CPU", 0.0)))
    data = {
        "controller_dir": str(tmp_path / "search"),
        "job_name": "s",
        "trainer": {"command": REPLAY, "args": {"cycle_steps": 10, **WORKER_TRAINER_ARGS}},
        "runner": {"max_parallel_trials": 3},
        "timeouts": TIMEOUTS,
        "latency": {**LATENCY, "num_workers": 1},
        "reference": {"job_dir": job, "min_valid": n},
        "min_pairs": n,
        "proxy_tasks": {"configs": [{"name": "good", "args": {"noise": 0.002, "tau": 0.01, "train_steps": 40}}]},
        "desired_accuracy_correlation": 0.9,
        "desired_latency_correlation": -1.0,  # the measured order is not asserted (no timing in tests)
        "bootstrap_resamples": 0,
        "plots": False,
    }
    state = SearchController(parse_config(data, SearchConfig)).run()
    assert state.reference["latencies"] == worker_answers and state.settings["latency_mode"] == "worker"
    entry = state.proxy_tasks_map["good"]
    assert entry.latency_correlations["spearman"]["n"] == n  # every proxy trial had a worker's answer
    for k in range(1, n + 1):
        assert os.path.exists(os.path.join(entry.search_job_link, str(k), p.MODEL_LATENCY_FILE))
    (summary,) = _summaries(tmp_path / "search" / "logs", 1)
    assert summary["exit_reason"] == "controller finished" and len(summary["measured"]) == n
