"""Model selection through real faults: a machine crash (SIGKILL of the controller with its trials'
process groups), a frozen controller taken over (SIGSTOP/SIGCONT), a garbled lease, a `{}` state file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest
import yaml

from controllers.config import parse_config
from controllers.engine.lease import LEASE_FILE
from controllers.errors import StateError
from controllers.selection.config import ModelSelectionConfig
from controllers.selection.controller import MODEL_SELECTION_STATE_FILE, run_model_selection
from controllers.testing import CRASH_ENV, crash_with_trials, wait_until

TIMEOUTS = {
    "poll_interval_secs": 0.05,
    "no_metrics_timeout_secs": 10.0,
    "stop_grace_secs": 5.0,
    "cancel_grace_secs": 1.0,
    "heartbeat_interval_secs": 0.5,
    "nan_grace_secs": 1.0,
    "lease_timeout_secs": 1.0,
}


def _data(ctl):
    return {
        "controller_dir": str(ctl),
        "job_name": "ms",
        "seed": 5,
        "trainer": {
            "command": [sys.executable, "-m", "controllers.testing.replay_trainer"],
            "args": {"train_steps": 40, "cycle_steps": 4, "noise": 0.01, "sleep_per_cycle": 0.1},
        },
        "search_space": {"choices": {"quality": [round(0.3 + 0.05 * i, 2) for i in range(12)], "latency_ms": [5, 20]}},
        "runner": {"max_parallel_trials": 3},
        "timeouts": TIMEOUTS,
        "start_num_models": 6,
        "final_num_models": 3,
        "num_models_to_remove_per_iter": 3,
    }


def _state(ctl):
    return json.loads((ctl / MODEL_SELECTION_STATE_FILE).read_text())


def _selection(state):
    return [it["trials_to_retrain"] for it in state["iterations"]], state["reference_trials"]


def _cli(config_path, *, resume=False):
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    argv = [sys.executable, "-m", "controllers.cli", "select-models", str(config_path), "--no-progress"]
    argv += ["--resume"] if resume else []
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _finish(proc, timeout=120):
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode()


def _config(tmp_path):
    ctl = tmp_path / "ctl"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_data(ctl)))
    return ctl, path


def _running_trials(ctl):
    try:
        state = _state(ctl)
    except (OSError, ValueError):
        return 0
    its = state.get("iterations") or []
    return sum(t["state"] in ("launching", "running") for it in its for t in it["job"]["trials"])


def _trials(state):
    return [t for it in state["iterations"] for t in it["job"]["trials"]]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    ctl = tmp_path_factory.mktemp("baseline") / "ctl"
    run_model_selection(parse_config(_data(ctl), ModelSelectionConfig))
    return _state(ctl)


@pytest.mark.slow
def test_a_machine_crash_resumes_to_the_uninterrupted_result(tmp_path, baseline):
    ctl, config = _config(tmp_path)
    proc = _cli(config)
    controller = psutil.Process(proc.pid)
    wait_until(lambda: len(controller.children(recursive=True)) >= 6, timeout=60)  # 3 wrappers, 3 trainers
    killed = crash_with_trials(proc.pid)  # the controller and every trial process: no exit record anywhere
    proc.communicate()
    assert len(killed) >= 1 + 2 * 3  # the controller, and a wrapper and a trainer per running trial
    code, out = _finish(_cli(config, resume=True))
    assert code == 0, out
    state = _state(ctl)
    assert _selection(state) == _selection(baseline)
    trials = _trials(state)
    assert all(t["state"] == "succeeded" and t["failure"] is None for t in trials)
    assert sum(t["relaunches"] for t in trials) >= 3  # the ones that died were launched again...
    assert all(t["launches"] == 1 + t["relaunches"] for t in trials)  # ...and nothing else twice


@pytest.mark.slow
def test_a_frozen_controller_taken_over_stops_without_writing(tmp_path, baseline):
    ctl, config = _config(tmp_path)
    first = _cli(config)
    second = None
    try:
        wait_until(lambda: _running_trials(ctl) >= 1, timeout=60)
        first.send_signal(signal.SIGSTOP)
        second = _cli(config, resume=True)  # waits out the lease timeout of the frozen holder, then takes over
        token = json.loads((ctl / LEASE_FILE).read_text())["token"]
        wait_until(lambda: json.loads((ctl / LEASE_FILE).read_text() or "{}").get("token") != token, timeout=30)
    finally:
        first.send_signal(signal.SIGCONT)
    code, out = _finish(first)
    assert code == 3 and "taken over" in out, out
    code, out = _finish(second)
    assert code == 0, out
    state = _state(ctl)
    assert _selection(state) == _selection(baseline)
    assert all(t["launches"] == 1 for t in _trials(state))  # no trial launched twice


@pytest.mark.slow
def test_a_garbled_lease_does_not_stop_the_live_controller(tmp_path, baseline):
    ctl, config = _config(tmp_path)
    proc = _cli(config)
    wait_until(lambda: _running_trials(ctl) >= 1, timeout=60)
    (ctl / LEASE_FILE).write_bytes(b'{"host": "lapto')  # truncated
    code, out = _finish(proc)
    assert code == 0, out
    assert _selection(_state(ctl)) == _selection(baseline)


@pytest.mark.parametrize("content", [{}, {"schema_version": 1, "tool": "model_selection", "status": "running"}])
def test_a_state_file_without_its_keys_is_a_state_error_and_stays(tmp_path, content):
    ctl, config = _config(tmp_path)
    ctl.mkdir()
    path = ctl / MODEL_SELECTION_STATE_FILE
    path.write_text(json.dumps(content))
    with pytest.raises(StateError, match=r"MODEL_SELECTION_STATE.json.*key '\w+' is missing"):
        run_model_selection(parse_config(_data(ctl), ModelSelectionConfig), resume=True)
    code, out = _finish(_cli(config, resume=True))
    assert code == 2 and "is missing" in out, out
    assert json.loads(path.read_text()) == content  # untouched, nothing launched
    assert not (ctl / "logs").exists()
