"""Model selection spreads in (accuracy, latency) whenever every candidate has a latency."""

from __future__ import annotations

import json
import sys

import pytest

from controllers.config import parse_config
from controllers.errors import ModelSelectionAborted
from controllers.selection.config import ModelSelectionConfig
from controllers.selection.controller import run_model_selection

REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]
FAST = {"poll_interval_secs": 0.05, "no_metrics_timeout_secs": 10.0, "stop_grace_secs": 5.0, "cancel_grace_secs": 1.0}


def _config(tmp_path, latencies, **over) -> ModelSelectionConfig:
    data = {
        "controller_dir": str(tmp_path / "ms"),
        "job_name": "ms",
        "seed": 2,
        "trainer": {"command": REPLAY, "args": {"train_steps": 20, "cycle_steps": 5, "noise": 0.002}},
        "search_space": {"choices": {"quality": [0.4, 0.5, 0.6, 0.7, 0.8], "latency_ms": latencies}},
        "runner": {"max_parallel_trials": 3},
        "timeouts": FAST,
        "start_num_models": 5,
        "final_num_models": 3,
        "num_models_to_remove_per_iter": 2,
        **over,
    }
    return parse_config(data, ModelSelectionConfig)


def _first_round(tmp_path) -> dict:
    return json.loads((tmp_path / "ms" / "MODEL_SELECTION_STATE.json").read_text())["iterations"][0]


def test_every_latency_present_spreads_in_accuracy_and_latency(tmp_path):
    run_model_selection(_config(tmp_path, [1, 3, 9, 27]))
    it = _first_round(tmp_path)
    assert it["spread"] == "accuracy, latency"
    assert all(s["latency"] is not None for s in it["scores"].values())


def test_a_missing_latency_falls_back_to_accuracy_and_require_latency_makes_it_an_error(tmp_path):
    run_model_selection(_config(tmp_path / "a", [-1, 5]))  # -1: the trainer records "no latency"
    it = _first_round(tmp_path / "a")
    assert any(s["latency"] is None for s in it["scores"].values()) and it["spread"] == "accuracy"
    with pytest.raises(ModelSelectionAborted, match=r"require_latency is true but trials .* have no latency"):
        run_model_selection(_config(tmp_path / "b", [-1, 5], require_latency=True))
