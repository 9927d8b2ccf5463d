"""Model selection end to end with real replay-trainer subprocesses (8 -> 4 models, 2 removed per round)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml
from _tool_helpers import selection_data

from controllers.config import parse_config
from controllers.engine.records import TrialState
from controllers.errors import LeaseHeldError
from controllers.selection.config import ModelSelectionConfig
from controllers.selection.controller import (
    MODEL_SELECTION_STATE_FILE,
    REFERENCE_KEYS,
    ModelSelectionAborted,
    run_model_selection,
)
from controllers.testing import CRASH_ENV, wait_until

_data = selection_data


def _state(ctl):
    return json.loads((ctl / MODEL_SELECTION_STATE_FILE).read_text())


def _selection(state):
    return (
        [it["trials_to_retrain"] for it in state["iterations"]],
        state["reference_trials"],
        [it["source_trials"] for it in state["iterations"]],
    )


def _start_lines(ctl):
    """Number of trainer starts per (round, trial), from the trial logs (appended on every launch)."""
    counts = {}
    for root, _, files in os.walk(ctl / "logs"):
        if "trainer.log" in files:
            with open(os.path.join(root, "trainer.log")) as f:
                counts[os.path.relpath(root, ctl / "logs")] = f.read().count("replay trainer: start")
    return counts


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """An uninterrupted run (in-process) to compare resumed runs with."""
    ctl = tmp_path_factory.mktemp("baseline") / "ctl"
    cmd = [sys.executable, "-m", "controllers.testing.replay_trainer"]
    result = run_model_selection(parse_config(_data(ctl, cmd), ModelSelectionConfig))
    return ctl, result


def test_complete_run_follows_the_reference_layout(baseline):
    ctl, result = baseline
    state = _state(ctl)
    assert REFERENCE_KEYS[MODEL_SELECTION_STATE_FILE] <= set(state)
    for it in state["iterations"]:
        assert REFERENCE_KEYS[MODEL_SELECTION_STATE_FILE + "#iteration"] <= set(it)
    assert [it["num_trials"] for it in state["iterations"]] == [8, 6, 4]
    assert [it["desired_training_step_pct"] for it in state["iterations"]] == [12.5, 12.5 + (1.0 / 6) * 100.0, 101.0]
    assert [len(it["trials_to_retrain"]) for it in state["iterations"]] == [6, 4, 0]
    assert state["status"] == "done" and result.reference_trials == ["1", "2", "3", "4"]
    assert result.final_job_dir == str(ctl / "Model_Selection_ms_iter_2/nas/search")
    assert state["accuracy_metric_id"] == "accuracy" and state["schema_version"] == 1
    for it in state["iterations"][:2]:
        assert it["trials_to_retrain"] == sorted(it["trials_to_retrain"], key=int)
        assert (ctl / f"Model_Selection_ms_iter_{it['iteration']}/nas/search/filtered_trial_scores.png").exists()
    # a final model: architecture from the chain of source trials, history carried, resumed from checkpoints
    it1, it2 = state["iterations"][1], state["iterations"][2]
    src1 = it2["source_trials"][0]
    src0 = it1["source_trials"][int(src1) - 1]
    final = ctl / "Model_Selection_ms_iter_2/nas/search/1"
    assert json.loads((final / "nas_params_str.json").read_text()) == state["architectures"][src0]
    entries = json.loads((final / "TRIAL_TRAINING_METRICS.json").read_text())["training_accuracy_over_steps"]
    assert [e["training_step_pct"] for e in entries] == [10.0 * i for i in range(1, 11)]
    first = json.loads(
        (ctl / "Model_Selection_ms_iter_0/nas/search" / src0 / "TRIAL_TRAINING_METRICS.json").read_text()
    )
    assert entries[:2] == first["training_accuracy_over_steps"]  # round-0 history (stopped at 20 % >= 12.5 %)
    assert all(n == 1 for n in _start_lines(ctl).values()) and len(_start_lines(ctl)) == 18


def test_failed_trials_are_invalid_and_do_not_stop_the_run(tmp_path, replay_command):
    data = _data(tmp_path / "ctl", replay_command, max_failure_ratio=0.5,
                 trainer={"args": {"train_steps": 60, "cycle_steps": 6, "failure_plan": "2:crash,4:hang,6:nan",
                                   "fail_at_cycle": 0}})  # fmt: skip
    data["trainer"]["command"] = replay_command
    result = run_model_selection(parse_config(data, ModelSelectionConfig))
    state = _state(tmp_path / "ctl")
    it0 = state["iterations"][0]
    assert {t: f["kind"] for t, f in it0["failures"].items()} == {"2": "crash", "4": "no_metrics", "6": "nan"}
    assert it0["filter"]["invalid"] == ["2", "4", "6"] and it0["trials_to_retrain"] == ["1", "3", "5", "7", "8"]
    assert [it["num_trials"] for it in state["iterations"]] == [8, 5, 4]
    assert result.reference_trials == ["1", "2", "3", "4"]


def test_more_than_20_percent_failures_abort_with_a_diagnosis(tmp_path, replay_command):
    data = _data(tmp_path / "ctl", replay_command,
                 trainer={"args": {"train_steps": 60, "cycle_steps": 6, "failure_plan": "2:crash,5:oom"}})  # fmt: skip
    data["trainer"]["command"] = replay_command
    with pytest.raises(ModelSelectionAborted, match=r"2 of 8 trials of the first round failed(.|\n)*batch size"):
        run_model_selection(parse_config(data, ModelSelectionConfig))
    state = _state(tmp_path / "ctl")
    assert state["status"] == "aborted" and len(state["iterations"]) == 1
    with pytest.raises(ModelSelectionAborted):  # a resume repeats the diagnosis, launches nothing
        run_model_selection(parse_config(data, ModelSelectionConfig), resume=True)


def _cli(config_path, *, resume=False, crash_at=None, wait=True):
    env = dict(os.environ)
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    argv = [sys.executable, "-m", "controllers.cli", "select-models", str(config_path)] + (
        ["--resume"] if resume else []
    )
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if wait:
        out, _ = proc.communicate(timeout=120)
        return proc.returncode, out.decode()
    return proc


def _write_config(tmp_path, data):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash_at",
    ["before_launch:3", "launched_unrecorded:2", "after_launch:5", "after_poll:12", "after_round:1"],
)
def test_resume_after_sigkill(tmp_path, replay_command, baseline, crash_at):
    ctl = tmp_path / "ctl"
    config = _write_config(tmp_path, _data(ctl, replay_command))
    code, out = _cli(config, crash_at=crash_at)
    assert code == -signal.SIGKILL, out
    code, out = _cli(config, resume=True)
    assert code == 0, out
    state = _state(ctl)
    assert _selection(state) == _selection(_state(baseline[0]))  # same selection as uninterrupted
    starts = _start_lines(ctl)
    assert len(starts) == 18 and all(n == 1 for n in starts.values()), starts  # none twice, none lost
    for it in state["iterations"]:
        assert all(t["state"] == TrialState.SUCCEEDED.value for t in it["job"]["trials"])


@pytest.mark.slow
def test_second_controller_is_refused_and_a_dead_ones_lease_is_taken_over(tmp_path, replay_command, baseline):
    ctl = tmp_path / "ctl"
    data = _data(ctl, replay_command)
    config = _write_config(tmp_path, data)
    first = _cli(config, wait=False)
    try:
        wait_until(lambda: (ctl / MODEL_SELECTION_STATE_FILE).exists())
        code, out = _cli(config, resume=True)
        assert code == 3 and "held by another controller" in out and f"pid {first.pid}" in out
        with pytest.raises(LeaseHeldError):
            run_model_selection(parse_config(data, ModelSelectionConfig), resume=True)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    code, out = _cli(config, resume=True)  # the holder is dead: its lease is taken over
    assert code == 0, out
    assert _selection(_state(ctl)) == _selection(_state(baseline[0]))
