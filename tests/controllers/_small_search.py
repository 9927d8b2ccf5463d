"""A small real proxy-task search (replay-trainer subprocess trials, 8 hand-written reference models).

Used by the tests of the tools that read a search folder (TensorBoard scalars, the dashboard):
they read what a real controller wrote, finished or still running.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from _search_helpers import write_reference_job

REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]
#: Ranks the references from its first cycles (passes); ranks them at random (runs to the end).
GOOD = {"noise": 0.002, "tau": 0.01, "train_steps": 400, "cycle_steps": 10, "sleep_per_cycle": 0.05}
NOISY = {"noise": 5.0, "tau": 0.01, "train_steps": 100, "cycle_steps": 10, "sleep_per_cycle": 0.02}


def search_config(tmp_path: Path, proxies: list[tuple[str, dict[str, Any]]], **overrides: Any) -> dict[str, Any]:
    """The config dict of a search in ``tmp_path/search`` against references in ``tmp_path/reference``."""
    ref_job = tmp_path / "reference" / "nas" / "search"
    if not ref_job.exists():
        write_reference_job(str(ref_job))
    data: dict[str, Any] = {
        "controller_dir": str(tmp_path / "search"),
        "job_name": "t",
        "trainer": {"command": REPLAY, "args": {"cycle_steps": 10}},
        "runner": {"max_parallel_trials": 8},
        "timeouts": {
            "poll_interval_secs": 0.2,
            "no_metrics_timeout_secs": 60,
            "stop_grace_secs": 15,
            "cancel_grace_secs": 1,
            "heartbeat_interval_secs": 1.0,
        },
        "reference": {"job_dir": str(ref_job)},
        "proxy_tasks": {"configs": [{"name": n, "args": a} for n, a in proxies]},
        "desired_accuracy_correlation": 0.9,
        "desired_latency_correlation": None,
        "bootstrap_resamples": 50,
        "plots": True,
        "plot_interval_secs": 0,
    }
    data.update(overrides)
    return data


def write_config(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def run_small_search(tmp_path: Path) -> str:
    """Runs a two-proxy search to the end in this process; returns the controller folder."""
    from controllers.config import parse_config
    from controllers.search.config import SearchConfig
    from controllers.search.controller import SearchController

    cfg = parse_config(search_config(tmp_path, [("noisy", NOISY), ("good", GOOD)]), SearchConfig)
    SearchController(cfg).run()
    return cfg.controller_dir


def read_state(controller_dir: str) -> dict[str, Any]:
    with open(os.path.join(controller_dir, "SEARCH_CONTROLLER_STATE.json")) as f:
        return json.load(f)
