"""Builders for search-controller tests: reference job folders and tables written by hand.

The reference models are "trained elsewhere": we write their TRIAL_TRAINING_METRICS.json and
nas_params_str.json directly (no model selection run), so the true ranking is known.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from controllers.config import parse_config
from controllers.search.config import SearchConfig
from proxy_task_utils import protocol as p

#: Plateau qualities of the reference architectures (the true ranking), 8 models.
QUALITIES = (0.40, 0.47, 0.55, 0.61, 0.68, 0.75, 0.82, 0.90)
#: Latencies (ms) that the replay trainer reports for them (from nas_params latency_ms).
LATENCIES = (5.0, 9.0, 12.0, 20.0, 24.0, 30.0, 35.0, 44.0)


def metrics_record(
    curve: Sequence[tuple[int, float]], total_steps: int, *, latency: float = -1.0, secs_per_step: float = 0.01
) -> p.TrialTrainingMetrics:
    m = p.TrialTrainingMetrics()
    for step, acc in curve:
        m.training_accuracy_over_steps.append(
            p.AccuracyAtStep(p.compute_training_step_pct(step, total_steps), step, acc)
        )
    done = curve[-1][0] + 1 if curve else 0
    m.training_time = p.TrainingTime(done, done * secs_per_step)
    m.latency = latency
    return m


def write_reference_job(
    job_dir: str,
    qualities: Sequence[float] = QUALITIES,
    latencies: Sequence[float] | None = LATENCIES,
    *,
    total_steps: int = 1000,
    complete: Sequence[bool] | None = None,
    secs_per_step: float = 0.01,
    noise: Sequence[float] | None = None,
) -> str:
    """A finished reference job: trial k trained ``total_steps`` steps to accuracy ~ quality."""
    for k, q in enumerate(qualities, start=1):
        trial = os.path.join(job_dir, str(k))
        os.makedirs(trial, exist_ok=True)
        params = {"quality": q}
        if latencies is not None:
            params["latency_ms"] = latencies[k - 1]
        with open(os.path.join(trial, p.NAS_PARAMS_STR_FILE), "w") as f:
            json.dump(params, f)
        last = total_steps if complete is None or complete[k - 1] else total_steps // 2
        eps = 0.0 if noise is None else noise[k - 1]
        curve = [
            (s - 1, q * (1 - 0.9 ** (s / 100)) + eps * (1 if (s // 100) % 2 else -1)) for s in range(100, last + 1, 100)
        ]
        curve[-1] = (curve[-1][0], q if last == total_steps else curve[-1][1])
        rec = metrics_record(
            curve, total_steps, latency=latencies[k - 1] if latencies is not None else -1.0, secs_per_step=secs_per_step
        )
        with open(os.path.join(trial, p.TRIAL_TRAINING_METRICS_FILE), "wb") as f:
            f.write(rec.to_json())
    return job_dir


def write_model_selection_dir(ms_dir: str, job_dir: str, num_trials: int) -> None:
    os.makedirs(ms_dir, exist_ok=True)
    state = {
        "start_num_models": 30,
        "final_num_models": 10,
        "num_models_to_remove_per_iter": 5,
        "iterations": [
            {
                "num_trials": 30,
                "trials_to_retrain": ["1"],
                "search_job_name": "x",
                "search_job_link": "",
                "latency_calculator_job_name": "",
                "latency_calculator_job_link": "",
                "desired_training_step_pct": 3.3,
            },
            {
                "num_trials": num_trials,
                "trials_to_retrain": [],
                "search_job_name": job_dir,
                "search_job_link": job_dir,
                "latency_calculator_job_name": "",
                "latency_calculator_job_link": "",
                "desired_training_step_pct": 101.0,
            },
        ],
        "accuracy_metric_id": "accuracy",
        "latency_metric_id": "None",
    }
    with open(os.path.join(ms_dir, "MODEL_SELECTION_STATE.json"), "w") as f:
        json.dump(state, f, indent=2)


def write_reference_table(
    path: str,
    qualities: Sequence[float] = QUALITIES,
    table_latencies: Sequence[float] | None = LATENCIES,
    param_latencies: Sequence[float] = LATENCIES,
) -> str:
    """CSV table: trial ids of another system, accuracy, latency, and arch params as a JSON column."""
    lines = ["trial_id,accuracy,latency,nas_params_str"]
    for k, q in enumerate(qualities):
        lat = "" if table_latencies is None else str(table_latencies[k])
        params = json.dumps({"quality": q, "latency_ms": param_latencies[k]}).replace('"', '""')
        lines.append(f'ext-{k + 10},{q},{lat},"{params}"')
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]
GOOD = {"noise": 0.002, "tau": 0.01, "train_steps": 2000, "cycle_steps": 10}  # ranks perfectly from cycle 1
NOISY = {"noise": 5.0, "tau": 0.01, "cycle_steps": 10}  # ranks at random


def search_config(tmp_path: Any, proxies: Any, **overrides: Any) -> SearchConfig:
    """The end-to-end search setup: 8 hand-written reference models, replay-trainer proxies."""
    ref_job = tmp_path / "reference" / "nas" / "search"
    if not ref_job.exists():
        write_reference_job(str(ref_job))
    data = {
        "controller_dir": str(tmp_path / "search"),
        "job_name": "t",
        "trainer": {"command": REPLAY, "args": {"cycle_steps": 10}},
        "runner": {"max_parallel_trials": 8},
        "timeouts": {
            "poll_interval_secs": 0.2,
            "no_metrics_timeout_secs": 30,
            "stop_grace_secs": 15,
            "cancel_grace_secs": 1,
            "heartbeat_interval_secs": 1.0,
        },
        "reference": {"job_dir": str(ref_job)},
        "proxy_tasks": {"configs": [{"name": n, "args": a} for n, a in proxies]},
        "desired_accuracy_correlation": 0.9,
        "training_time_hrs_limit": 30 / 3600,
        "desired_latency_correlation": 0.65,
        "bootstrap_resamples": 100,
        "plots": False,
    }
    data.update(overrides)
    return parse_config(data, SearchConfig)


def trial_metrics(job_dir: str, n: int = 8) -> list[p.TrialTrainingMetrics]:
    out = []
    for k in range(1, n + 1):
        with open(os.path.join(job_dir, str(k), p.TRIAL_TRAINING_METRICS_FILE), "rb") as f:
            out.append(p.TrialTrainingMetrics.from_json(f.read()))
    return out
