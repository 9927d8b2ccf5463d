"""What a user sees when trials fail, through the CLI: exit codes, the recorded cause, retries.

Every tool applies the failure ratio to every round (the final one too), shows the classified
cause with the last log lines of one failed trial and the path of its log (on stderr and in
``proxy-task status``), and ``--resume --retry-failed`` relaunches the failed trials as new
attempts while keeping the failed attempts' files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

from controllers.engine.records import Failure, FailureKind, failure_summary, trial_ranges

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]
FAST = {"poll_interval_secs": 0.05, "no_metrics_timeout_secs": 5.0, "stop_grace_secs": 5.0, "cancel_grace_secs": 1.0,
        "heartbeat_interval_secs": 0.5, "nan_grace_secs": 1.0}  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PROXY_TASK_CRASH_AT"}
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip


def _write(path, data) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


# -- the diagnosis itself (pure) ---------------------------------------------------------


def test_trial_ranges():
    assert trial_ranges(["1", "2", "3", "7", "9", "10"]) == "1-3, 7, 9-10"
    assert trial_ranges([]) == ""


def test_failure_summary_names_cause_tail_and_log_path():
    tail = "\n".join(f"line {i}" for i in range(30)) + "\nModuleNotFoundError: No module named 'myproj.nope'"
    failures = {
        str(i): Failure(
            FailureKind.CRASH,
            "exit code 1: ModuleNotFoundError: No module named 'myproj.nope'",
            "the trainer exited with an error",
            tail,
            f"/logs/{i}/trainer.log",
        )  # fmt: skip
        for i in range(1, 11)
    }
    text = failure_summary(failures, total=10, what="round 2", allowed=0.2)
    assert text.startswith("10 of 10 trials of round 2 failed (more than the 20% allowed):")
    assert "crash: trials 1-10: exit code 1: ModuleNotFoundError: No module named 'myproj.nope'" in text
    assert "last log lines of trial 1 (/logs/1/trainer.log):" in text
    assert "    | ModuleNotFoundError: No module named 'myproj.nope'" in text
    assert "line 0" not in text  # only the last lines


# -- model selection: the final round fails -----------------------------------------------


def _selection(ctl, plan: str) -> dict:
    return {
        "controller_dir": str(ctl),
        "job_name": "ms",
        "seed": 3,
        "trainer": {"command": REPLAY, "args": {"train_steps": 30, "cycle_steps": 6, "retrain_failure_plan": plan}},
        "search_space": {"choices": {"quality": [round(0.3 + 0.05 * i, 2) for i in range(12)]}},
        "runner": {"max_parallel_trials": 4},
        "timeouts": FAST,
        "start_num_models": 6,
        "final_num_models": 4,
        "num_models_to_remove_per_iter": 2,
    }


def test_a_failed_final_round_exits_1_with_the_cause_and_retry_failed_recovers(tmp_path):
    ctl = tmp_path / "ctl"
    cfg = _write(tmp_path / "ms.yaml", _selection(ctl, "1:crash,2:crash,3:crash,4:crash"))
    done = _cli("select-models", cfg, "--no-progress")
    assert done.returncode == 1 and "aborted: " in done.stderr, done.stdout + done.stderr
    assert (
        "Traceback (most recent call last):\n  File" not in done.stderr
    )  # the log line is quoted, no traceback of ours
    log = ctl / "logs" / "Model_Selection_ms_iter_1" / "1" / "trainer.log"
    for text in (done.stderr, _cli("status", str(ctl)).stdout):
        assert "trials of round 1 failed" in text
        assert "crash: trial" in text and "exit code 3" in text
        assert "RuntimeError: replay trainer crash requested" in text  # a log line, not just "see the log"
        assert str(log) in text.replace("\n", "")
    state = json.loads((ctl / "MODEL_SELECTION_STATE.json").read_text())
    assert state["status"] == "aborted" and state["reference_trials"] is None
    again = _cli("select-models", cfg, "--no-progress", "--resume")  # resume repeats the diagnosis
    assert again.returncode == 1 and "--retry-failed" in again.stderr
    assert _cli("select-models", cfg, "--retry-failed").returncode == 2  # needs --resume

    cfg = _write(tmp_path / "ms.yaml", _selection(ctl, ""))  # the cause is fixed
    retried = _cli("select-models", cfg, "--no-progress", "--resume", "--retry-failed")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    state = json.loads((ctl / "MODEL_SELECTION_STATE.json").read_text())
    final = state["iterations"][-1]
    assert state["status"] == "done" and len(state["reference_trials"]) == 4
    assert all(t["state"] == "succeeded" for t in final["job"]["trials"])
    # nothing recorded is lost: the failed attempt's record, files and log are kept
    t1 = final["job"]["trials"][0]
    assert t1["attempts"][0]["failure"]["kind"] == "crash"
    kept = ctl / "Model_Selection_ms_iter_1" / "nas" / "search" / "failed_attempts" / "1_attempt_1"
    assert (kept / "nas_params_str.json").exists() and (kept / "TRIAL_TRAINING_METRICS.json").exists()
    assert "replay trainer crash requested" in (log.parent / "trainer.attempt_1.log").read_text()
    assert "crash requested" not in log.read_text()
    metrics = json.loads((kept.parent.parent / "1" / "TRIAL_TRAINING_METRICS.json").read_text())
    assert metrics["training_accuracy_over_steps"][-1]["training_step_pct"] >= 100


# -- variance: the copies ---------------------------------------------------------------------


def test_variance_copies_apply_the_failure_ratio_and_show_the_cause(tmp_path):
    ctl = tmp_path / "v"
    data = {
        "controller_dir": str(ctl),
        "job_name": "v",
        "trainer": {"command": REPLAY, "args": {"train_steps": 20, "cycle_steps": 10, "retrain_failure_plan": "2:oom"}},
        "search_space": {"choices": {"quality": [0.6, 0.7]}},
        "runner": {"max_parallel_trials": 5},
        "timeouts": FAST,
        "num_copies": 4,
        "min_successful_copies": 2,
    }
    done = _cli("measure-variance", _write(tmp_path / "v.yaml", data), "--no-progress")
    assert done.returncode == 1 and "aborted: " in done.stderr, (
        done.stdout + done.stderr
    )  # 1 of 4 = 25 % > the 20 % allowed
    assert "oom: trial 2: out of memory" in done.stderr and "CUDA out of memory" in done.stderr
    assert str(ctl / "logs" / "Variance_copies_v" / "2" / "trainer.log") in done.stderr
    status = _cli("status", str(ctl)).stdout
    assert "status: aborted" in status and "CUDA out of memory" in status
    data["trainer"]["args"]["retrain_failure_plan"] = ""
    retried = _cli("measure-variance", _write(tmp_path / "v.yaml", data), "--no-progress", "--resume",
                   "--retry-failed")  # fmt: skip
    assert retried.returncode == 0, retried.stdout + retried.stderr
    result = json.loads((ctl / "variance_and_smoothness.json").read_text())
    assert result["n_succeeded"] == 4
    assert (ctl / "Variance_copies_v" / "nas" / "search" / "failed_attempts" / "2_attempt_1").is_dir()


# -- search: a proxy whose every trial fails for one cause stops the search ----------------------


def _search_reference(tmp_path) -> str:
    table = tmp_path / "ref.csv"
    rows = ["trial_id,accuracy,quality"] + [f"{k},{0.3 + 0.05 * k:.2f},{0.3 + 0.05 * k:.2f}" for k in range(1, 7)]
    table.write_text("\n".join(rows) + "\n")
    return str(table)


def test_search_aborts_when_every_trial_of_a_proxy_fails_for_one_cause(tmp_path):
    ctl = tmp_path / "s"
    data = {
        "controller_dir": str(ctl),
        "job_name": "s",
        "trainer": {"command": REPLAY, "args": {"train_steps": 20, "cycle_steps": 5}},
        "runner": {"max_parallel_trials": 3},
        "timeouts": FAST,
        "reference": {"table": _search_reference(tmp_path)},
        "proxy_tasks": {
            "configs": [
                {"name": "broken", "args": {"retrain_failure_plan": ",".join(f"{k}:crash" for k in range(1, 7))}},
                {"name": "fine", "args": {"train_steps": 10}},
            ]
        },  # fmt: skip
        "desired_accuracy_correlation": 0.5,
        "desired_latency_correlation": None,
        "bootstrap_resamples": 50,
        "plot_interval_secs": 0,
    }
    cfg = _write(tmp_path / "s.yaml", data)
    done = _cli("search", cfg, "--no-progress")
    assert done.returncode == 1 and "aborted: " in done.stderr, done.stdout + done.stderr
    assert "proxy task broken failed" in done.stderr and "replay trainer crash requested" in done.stderr
    assert "the remaining proxies (fine) were not launched" in done.stderr
    assert not (ctl / "ProxyTask_s_fine").exists()
    state = json.loads((ctl / "SEARCH_CONTROLLER_STATE.json").read_text())
    assert state["status"] == "aborted" and state["proxy_tasks_map"]["fine"]["status"] == "pending"
    status = _cli("status", str(ctl)).stdout
    assert "status: aborted" in status and "replay trainer crash requested" in status

    data["continue_after_failed_proxy"] = True  # the setting: go on with the next proxy
    data["stop_rule"] = "point"  # two evaluations of "fine" are enough for the point rule
    data["controller_dir"] = str(tmp_path / "s2")
    going = _cli("search", _write(tmp_path / "s2.yaml", data), "--no-progress")
    assert going.returncode == 0, going.stdout + going.stderr
    state = json.loads((tmp_path / "s2" / "SEARCH_CONTROLLER_STATE.json").read_text())
    assert state["best_proxy_task_name"] == "fine"
    assert state["proxy_tasks_map"]["broken"]["proxy_task_stats"]["stopping_state"] == "Proxy task job failed"
