"""Shared by the tests of the tools: fast loop timing and the model-selection test setup."""

from __future__ import annotations

from typing import Any

FAST_TIMEOUTS = {
    "poll_interval_secs": 0.05,
    "no_metrics_timeout_secs": 3.0,
    "stop_grace_secs": 5.0,
    "cancel_grace_secs": 1.0,
    "heartbeat_interval_secs": 0.5,
    "nan_grace_secs": 1.0,
}


def selection_data(ctl: Any, replay_command: list[str], **over: Any) -> dict[str, Any]:
    """A model-selection config (8 -> 4 models, 2 removed per round) on replay trainers; ``over`` merges."""
    data: dict[str, Any] = {
        "controller_dir": str(ctl),
        "job_name": "ms",
        "seed": 3,
        "trainer": {"command": replay_command, "args": {"train_steps": 60, "cycle_steps": 6, "noise": 0.01}},
        "search_space": {
            "choices": {"quality": [round(0.3 + 0.05 * i, 2) for i in range(12)], "latency_ms": [5, 10, 20]}
        },
        "runner": {"max_parallel_trials": 4},
        "timeouts": FAST_TIMEOUTS,
        "start_num_models": 8,
        "final_num_models": 4,
        "num_models_to_remove_per_iter": 2,
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data
