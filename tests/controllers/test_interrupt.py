"""Ctrl-C through the CLI: one line, exit 130, the state saved as interrupted, resume finishes the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from controllers.testing import wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]
FAST = {"poll_interval_secs": 0.1, "no_metrics_timeout_secs": 30.0, "stop_grace_secs": 10.0, "cancel_grace_secs": 1.0,
        "heartbeat_interval_secs": 0.5}  # fmt: skip


def _config(tmp_path) -> tuple[str, object]:
    ctl = tmp_path / "ctl"
    data = {
        "controller_dir": str(ctl),
        "job_name": "ms",
        "seed": 1,
        "trainer": {"command": REPLAY, "args": {"train_steps": 40, "cycle_steps": 5, "sleep_per_cycle": 0.3}},
        "search_space": {"choices": {"quality": [round(0.3 + 0.05 * i, 2) for i in range(12)]}},
        "runner": {"max_parallel_trials": 2},
        "timeouts": FAST,
        "start_num_models": 5,
        "final_num_models": 3,
        "num_models_to_remove_per_iter": 2,
    }
    path = tmp_path / "ms.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path), ctl


def _start(cfg: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "controllers.cli", "select-models", cfg, "--no-progress", *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _running(ctl) -> bool:
    log = ctl / "logs" / "Model_Selection_ms_iter_0" / "1" / "trainer.log"
    return log.exists() and "replay trainer: start" in log.read_text()


def _state(ctl) -> dict:
    return json.loads((ctl / "MODEL_SELECTION_STATE.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("detach", [False, True])
def test_ctrl_c_saves_the_state_as_interrupted_and_resume_finishes(tmp_path, detach):
    cfg, ctl = _config(tmp_path)
    proc = _start(cfg, *(["--detach"] if detach else []))
    wait_until(lambda: _running(ctl), timeout=60)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: ") and f"resume with: proxy-task select-models {cfg} --no-progress" in last
    assert last.endswith("--resume")
    state = _state(ctl)
    assert state["status"] == "interrupted"
    trials = state["iterations"][0]["job"]["trials"]
    if detach:  # left running and recorded
        assert any(t["state"] == "running" and t["handle"] for t in trials)
    else:  # told to stop; nothing is taken as a result, they are launched again on resume
        assert all(t["state"] in ("pending", "succeeded") for t in trials)
        assert state["iterations"][0]["job"]["interrupted"]
    status = subprocess.run([sys.executable, "-m", "controllers.cli", "status", str(ctl)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "status: interrupted" in status.stdout

    resumed = _start(cfg, "--resume")
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, out + err
    state = _state(ctl)
    assert state["status"] == "done" and len(state["reference_trials"]) == 3
    for it in state["iterations"]:  # every trial trained to its round's target, none lost
        for t in it["job"]["trials"]:
            assert t["state"] == "succeeded"
            metrics = json.loads(
                (
                    ctl / it["search_job_name"] / "nas" / "search" / t["trial_id"] / "TRIAL_TRAINING_METRICS.json"
                ).read_text()
            )
            assert metrics["training_accuracy_over_steps"][-1]["training_step_pct"] >= min(
                it["desired_training_step_pct"], 100
            )


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once_with_a_consistent_state(tmp_path):
    cfg, ctl = _config(tmp_path)
    proc = _start(cfg)
    wait_until(lambda: _running(ctl), timeout=60)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # while the first one still waits for the trials to stop
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err
    _state(ctl)  # valid JSON
    resumed = _start(cfg, "--resume")
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, out + err
    assert len(_state(ctl)["reference_trials"]) == 3
