"""Scores that cannot be ranked, and scores on two scales, stop the tools with the reason (CLI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from controllers.stats import check_same_scale, degenerate_scores, score_scale

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]
FAST = {"poll_interval_secs": 0.05, "no_metrics_timeout_secs": 10.0, "stop_grace_secs": 5.0, "cancel_grace_secs": 1.0}


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controllers.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=180)  # fmt: skip


# -- pure checks ----------------------------------------------------------------------------


def test_all_equal_scores_say_what_to_check():
    check = degenerate_scores([0.595] * 10, what="reference models")
    assert check is not None and check.kind == "all_equal"
    assert check.reason.startswith("all 10 reference models scored 0.5950: does the trainer read --nas_params_str")


@pytest.mark.parametrize(
    ("scores", "kw", "kind"),
    [
        ([0.09, 0.1, 0.105, None], {"chance": 0.1}, "at_chance"),
        ([9.0, 10.0, 10.5], {"chance": 10.0}, "at_chance"),  # percent: the margin scales too
        ([0.60, 0.605, 0.61], {"seed_std": 0.02}, "within_noise"),
        ([0.5, 0.6, 0.7], {"seed_std": 0.02, "chance": 0.1}, None),
        ([0.5], {}, None),
        ([0.11, 0.5, 0.9], {"chance": 0.1}, None),
    ],
)
def test_degenerate_kinds(scores, kw, kind):
    check = degenerate_scores(scores, **kw)
    assert (check.kind if check else None) == kind


def test_scales():
    assert score_scale([0.1, 0.95]) == "fraction"
    assert score_scale([12.0, 95.5]) == "percent"
    assert score_scale([None]) is None
    assert check_same_scale([0.5, 0.7], "ref", [0.6], "noise") is None
    message = check_same_scale([55.0, 72.3], "the reference (table r.csv)", [0.6, 0.61], "the seed noise (v.json)")
    assert (
        "the reference (table r.csv) is in percent" in message and "the seed noise (v.json) is in fractions" in message
    )


# -- through the CLI -----------------------------------------------------------------------


def _search(tmp_path, accuracies, **over) -> str:
    table = tmp_path / "ref.csv"
    rows = ["trial_id,accuracy,quality"] + [f"{k},{a},{0.3 + 0.05 * k:.2f}" for k, a in enumerate(accuracies, 1)]
    table.write_text("\n".join(rows) + "\n")
    data = {
        "controller_dir": str(tmp_path / "s"),
        "job_name": "s",
        "trainer": {"command": REPLAY, "args": {"train_steps": 20, "cycle_steps": 5}},
        "timeouts": FAST,
        "reference": {"table": str(table)},
        "proxy_tasks": {"configs": [{"name": "p", "args": {}}]},
        "desired_latency_correlation": None,
        "bootstrap_resamples": 50,
        "plot_interval_secs": 0,
        **over,
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_search_refuses_reference_models_that_all_scored_the_same(tmp_path):
    done = _cli("search", _search(tmp_path, [0.595] * 6), "--no-progress")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "all 6 reference models scored 0.5950: does the trainer read --nas_params_str" in done.stderr
    assert not (tmp_path / "s" / "ProxyTask_s_p").exists()  # nothing was spent
    assert "status: aborted" in _cli("status", str(tmp_path / "s")).stdout


def test_search_refuses_reference_scores_within_the_seed_noise(tmp_path):
    cfg = _search(tmp_path, [0.60, 0.602, 0.604, 0.606, 0.608, 0.61], noise={"seed_std": 0.02})
    done = _cli("search", cfg, "--no-progress")
    assert done.returncode == 1 and "within the seed noise" in done.stderr, done.stderr


def test_search_refuses_reference_scores_at_chance(tmp_path):
    cfg = _search(tmp_path, [0.095, 0.1, 0.1, 0.102, 0.104, 0.101], chance_accuracy=0.1)
    done = _cli("search", cfg, "--no-progress")
    assert done.returncode == 1 and "at chance level" in done.stderr, done.stderr


def test_noise_ceiling_refuses_a_percent_reference_with_a_fraction_variance_folder(tmp_path):
    variance = tmp_path / "variance"
    variance.mkdir()
    result = {"variance_value": 0.02, "seed_std": 0.012, "final_accuracies": {"1": 0.60, "2": 0.61, "3": 0.62},
              "mean_final_accuracy": 0.61}  # fmt: skip
    (variance / "variance_and_smoothness.json").write_text(json.dumps(result))
    cfg = _search(tmp_path, [55.0, 60.1, 64.3, 68.0, 71.2, 75.5], noise={"variance_dir": str(variance)})
    done = _cli("search", cfg, "--no-progress")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "is in percent" in done.stderr and "variance_and_smoothness.json) is in fractions" in done.stderr
    assert "ref.csv" in done.stderr


def test_model_selection_stops_when_every_model_scores_the_same(tmp_path):
    # a trainer that ignores the architecture: every model learns the same curve
    data = {
        "controller_dir": str(tmp_path / "ms"),
        "job_name": "ms",
        "trainer": {
            "command": REPLAY,
            "args": {"train_steps": 20, "cycle_steps": 5, "curve": "table:0.595", "noise": 0},
        },  # fmt: skip
        "search_space": {"choices": {"quality": [0.3, 0.5, 0.7, 0.9]}},
        "timeouts": FAST,
        "start_num_models": 4,
        "final_num_models": 2,
        "num_models_to_remove_per_iter": 2,
    }
    path = tmp_path / "ms.yaml"
    path.write_text(yaml.safe_dump(data))
    done = _cli("select-models", str(path), "--no-progress")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "all 4 models of round 0 scored 0.5950: does the trainer read --nas_params_str" in done.stderr


def test_search_refuses_proxy_scores_on_another_scale_than_the_reference(tmp_path):
    # the reference table is in percent, the trainer reports fractions
    cfg = _search(tmp_path, [40.0, 45.0, 50.0, 55.0, 60.0, 65.0], desired_accuracy_correlation=0.99)
    done = _cli("search", cfg, "--no-progress")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the reference (table" in done.stderr and "is in percent" in done.stderr
    assert "the trial scores of proxy task p is in fractions" in done.stderr
    state = json.loads((tmp_path / "s" / "SEARCH_CONTROLLER_STATE.json").read_text())
    assert state["status"] == "aborted" and state["best_proxy_task_name"] == ""
