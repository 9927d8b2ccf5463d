"""The trainer contract through the CLI: every trial of every tool gets its architecture.

Two kinds of trainer run the whole pipeline: one written from the README (it requires
``--nas_params_str`` and reads nothing else for the architecture) and one written for the
reference (the re-training flags win when given). Both must end with the same, real ranking.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from controllers.selection.controller import architecture_of

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pipeline(output_dir: str, arch_from: str) -> dict:
    return {
        "output_dir": output_dir,
        "job_name": "contract",
        "seed": 5,
        "trainer": {
            "command": [sys.executable, "-m", "controllers.testing.replay_trainer"],
            "args": {"train_steps": 40, "cycle_steps": 10, "noise": 0.002, "arch_from": arch_from},
        },
        "search_space": {
            "choices": {"quality": [round(0.3 + 0.05 * i, 2) for i in range(13)], "latency_ms": [2, 5, 9, 14, 20]}
        },
        "runner": {"max_parallel_trials": 4},
        "timeouts": {"poll_interval_secs": 0.1, "no_metrics_timeout_secs": 60, "stop_grace_secs": 20},
        "variance": {"num_copies": 2, "min_successful_copies": 2},
        "model_selection": {"start_num_models": 7, "final_num_models": 5, "num_models_to_remove_per_iter": 2},
        "search": {
            "proxy_tasks": {"configs": [{"name": "short", "args": {"train_steps": 20, "cycle_steps": 5}}]},
            "desired_accuracy_correlation": 0.8,
            "desired_latency_correlation": None,
            "bootstrap_resamples": 100,
            "plot_interval_secs": 0,
        },
    }


def _saved_arch(trial_dir) -> dict:
    return json.loads((trial_dir / "nas_params_str.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("arch_from", ["nas_params_str", "retrain"])
def test_both_kinds_of_trainer_get_the_architecture_in_every_trial(tmp_path, arch_from):
    out = tmp_path / "out"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(_pipeline(str(out), arch_from)))
    cmd = [sys.executable, "-m", "controllers.cli", "run", str(config), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    # variance: the copies re-built the workable architecture
    vstate = json.loads((out / "variance" / "measurement_state.json").read_text())
    for copy in (out / "variance" / "Variance_copies_contract" / "nas" / "search").iterdir():
        assert _saved_arch(copy) == vstate["workable_architecture"]
    # model selection: every round's every trial trained the architecture it stands for
    ms = json.loads((out / "model_selection" / "MODEL_SELECTION_STATE.json").read_text())
    assert len(ms["iterations"]) == 2
    for it in ms["iterations"]:
        for t in it["job"]["trials"]:
            assert t["state"] == "succeeded"
            trial_dir = out / "model_selection" / it["search_job_name"] / "nas" / "search" / t["trial_id"]
            assert _saved_arch(trial_dir) == architecture_of(ms, it["iteration"], t["trial_id"])
    # search: proxy trial k trained reference model k, and the reference scores differ
    search = json.loads((out / "search" / "SEARCH_CONTROLLER_STATE.json").read_text())
    ref = search["reference"]
    assert len(set(ref["accuracies"])) == len(ref["accuracies"])
    job = out / "search" / "ProxyTask_contract_short" / "nas" / "search"
    for k, arch in enumerate(ref["architectures"], start=1):
        assert _saved_arch(job / str(k)) == arch
    assert search["best_proxy_task_name"] == "short"


def test_a_trainer_that_requires_nas_params_str_fails_without_it(tmp_path):
    # the README trainer kind really does depend on the flag: without it argparse exits 2
    cmd = [
        sys.executable,
        "-m",
        "controllers.testing.replay_trainer",
        f"--job-dir={tmp_path}",
        "--arch_from=nas_params_str",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--nas_params_str" in done.stderr
