"""Variance measurement end to end with real replay-trainer subprocesses."""

from __future__ import annotations

import json

import pytest
from _tool_helpers import FAST_TIMEOUTS

from controllers.config import parse_config
from controllers.engine.search_space import load_search_space, sample_architectures
from controllers.variance.config import VarianceConfig
from controllers.variance.controller import (
    MEASUREMENT_STATE_FILE,
    REFERENCE_KEYS,
    VARIANCE_RESULT_FILE,
    VarianceError,
    run_variance_measurement,
)


def _config(tmp_path, replay_command, **over) -> VarianceConfig:
    data = {
        "controller_dir": str(tmp_path / "ctl"),
        "job_name": "t",
        "seed": 0,
        "trainer": {"command": replay_command, "args": {"train_steps": 50, "cycle_steps": 10, "noise": 0.02}},
        "search_space": {"choices": {"quality": [0.6, 0.7, 0.8]}},
        "runner": {"max_parallel_trials": 5},
        "timeouts": FAST_TIMEOUTS,
        "num_copies": 4,
    }
    data.update(over)
    return parse_config(data, VarianceConfig)


def _read(path):
    return json.loads(path.read_text())


def test_complete_run_writes_reference_files(tmp_path, replay_command):
    report = run_variance_measurement(_config(tmp_path, replay_command))
    ctl = tmp_path / "ctl"
    result = _read(ctl / VARIANCE_RESULT_FILE)
    state = _read(ctl / MEASUREMENT_STATE_FILE)
    assert REFERENCE_KEYS[VARIANCE_RESULT_FILE] <= set(result)
    assert REFERENCE_KEYS[MEASUREMENT_STATE_FILE] <= set(state)
    assert result == report.result
    assert result["n_succeeded"] == 4 and result["failed_copies"] == []
    assert 0 < result["variance_value"] < 0.2 and result["variance_info"] == "Model variance is good."
    assert result["smoothness_value"] >= 0 and result["seed_std"] > 0
    # reference meaning: the workable model's job dir (trial 1 inside), copies job name, finished trial dirs
    assert state["workable_model_dir"].endswith("Find_workable_model_1_t/nas/search")
    assert state["training_job_name"] == "Variance_copies_t"
    assert state["finished_model_dirs"] == [str(ctl / "Variance_copies_t/nas/search" / t) for t in ("1", "2", "3", "4")]
    for t in ("1", "2", "3", "4"):  # every copy re-built the workable architecture
        assert _read(ctl / "Variance_copies_t/nas/search" / t / "nas_params_str.json") == state["workable_architecture"]
    assert (ctl / "variance_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert state["schema_version"] == 1 and not (ctl / "controller.lease").exists()


def test_failed_copy_does_not_abort_when_enough_finish(tmp_path, replay_command):
    cfg = _config(tmp_path, replay_command, num_copies=5)  # 1 of 5 is within the 20 % allowed
    cfg.trainer.args["retrain_failure_plan"] = "2:crash"
    result = run_variance_measurement(cfg).result
    assert result["n_succeeded"] == 4 and [f["trial_id"] for f in result["failed_copies"]] == ["2"]
    assert result["failed_copies"][0]["kind"] == "crash"
    assert "1 of 5 copies failed" in result["note"]
    assert set(result["final_accuracies"]) == {"1", "3", "4", "5"}


def test_hanging_copy_is_cancelled_and_reported(tmp_path, replay_command):
    cfg = _config(tmp_path, replay_command, num_copies=5)
    cfg.trainer.args["retrain_failure_plan"] = "3:hang"
    result = run_variance_measurement(cfg).result
    assert [(f["trial_id"], f["kind"]) for f in result["failed_copies"]] == [("3", "no_metrics")]
    assert result["n_succeeded"] == 4


@pytest.mark.slow
def test_resume_after_sigkill_during_the_copies(tmp_path, replay_command):
    import os
    import signal
    import subprocess
    import sys

    import yaml

    from controllers.testing import CRASH_ENV

    cfg = _config(tmp_path, replay_command)
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(exclude_none=True), sort_keys=False))
    argv = [sys.executable, "-m", "controllers.cli", "measure-variance", str(path)]
    crashed = subprocess.run(argv, env={**os.environ, CRASH_ENV: "after_launch:3"}, capture_output=True, timeout=120)
    assert crashed.returncode == -signal.SIGKILL
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    resumed = subprocess.run(argv + ["--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    state = _read(tmp_path / "ctl" / MEASUREMENT_STATE_FILE)
    assert len(state["attempts"]) == 1 and len(state["finished_model_dirs"]) == 4
    launches = [t["launches"] for t in state["copies_job"]["trials"]]
    assert launches == [1, 1, 1, 1]
    logs = tmp_path / "ctl" / "logs" / "Variance_copies_t"
    assert [(logs / t / "trainer.log").read_text().count("replay trainer: start") for t in "1234"] == [1, 1, 1, 1]


def test_too_many_failed_copies_is_a_diagnosis(tmp_path, replay_command):
    cfg = _config(tmp_path, replay_command)
    cfg.trainer.args["retrain_failure_plan"] = "1:crash,2:oom"
    # copy 2 either fails with its OOM or is stopped first: the copies stop once too many failed
    with pytest.raises(VarianceError, match=r"only \d of 4 copies finished(.|\n)*replay trainer crash requested"):
        run_variance_measurement(cfg)


def test_unworkable_models_are_skipped(tmp_path, replay_command):
    space = {"quality": [0.7], "fail": ["crash", "nan", "none"]}
    cfg = _config(tmp_path, replay_command, search_space={"choices": space}, seed=0)
    archs = sample_architectures(load_search_space(cfg.search_space), cfg.max_workable_attempts, seed=cfg.seed)
    first_ok = next(i for i, a in enumerate(archs) if a["fail"] == "none")
    assert first_ok > 0, "choose a seed whose first architecture fails, so the test exercises the retry"
    run_variance_measurement(cfg)
    state = _read(tmp_path / "ctl" / MEASUREMENT_STATE_FILE)
    outcomes = [a["outcome"] for a in state["attempts"]]
    assert outcomes == ["failed"] * first_ok + ["workable"]
    for a in state["attempts"][:first_ok]:
        assert a["failure"].startswith({"crash": "crash", "nan": "nan"}[a["architecture"]["fail"]])
    assert state["workable_architecture"]["fail"] == "none"


def test_no_workable_model(tmp_path, replay_command):
    cfg = _config(tmp_path, replay_command, search_space={"choices": {"fail": ["oom"]}}, max_workable_attempts=2)
    with pytest.raises(VarianceError, match="Could not find a workable model in 2 attempts"):
        run_variance_measurement(cfg)
