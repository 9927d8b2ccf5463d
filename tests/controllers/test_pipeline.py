"""The whole pipeline (variance -> model selection -> search) through the CLI, on replay trainers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from controllers.config import ConfigError, parse_config
from controllers.pipeline import PipelineConfig, stage_configs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pipeline(output_dir: str) -> dict:
    return {
        "output_dir": output_dir,
        "job_name": "pipe",
        "seed": 3,
        "trainer": {
            "command": [sys.executable, "-m", "controllers.testing.replay_trainer"],
            "args": {"train_steps": 100, "cycle_steps": 10, "noise": 0.002},
            "length_flag": "train_steps",
            "decay_flag": "decay_steps",
        },
        "search_space": {
            "choices": {"quality": [round(0.3 + 0.05 * i, 2) for i in range(13)], "latency_ms": [2, 5, 9, 14, 20]}
        },
        "runner": {"max_parallel_trials": 4},
        "timeouts": {"poll_interval_secs": 0.2, "no_metrics_timeout_secs": 60, "stop_grace_secs": 20},
        "variance": {"num_copies": 3},
        "model_selection": {"start_num_models": 8, "final_num_models": 5, "num_models_to_remove_per_iter": 3},
        "search": {
            "proxy_tasks": {
                "configs": [
                    {
                        "name": "flat",
                        "args": {"curve": "table:0.5", "noise": 0},
                    },  # no signal: every model scores the same,
                    {"name": "short", "args": {"train_steps": 40, "cycle_steps": 5}},
                ]
            },
            "desired_accuracy_correlation": 0.8,
            "desired_latency_correlation": None,
            "bootstrap_resamples": 200,
            "plot_interval_secs": 0,
            # the full setup stopped early and "short" both pass here, and their wall times are a
            # near tie that the machine's load decides; the candidate has tests of its own
            "full_setup_candidate": False,
        },
    }


def test_stage_configs_inherit_the_shared_keys(tmp_path):
    config = parse_config(_pipeline(str(tmp_path / "out")), PipelineConfig)
    stages = stage_configs(config)
    assert list(stages) == ["variance", "model_selection", "search"]
    assert stages["variance"].controller_dir == str(tmp_path / "out" / "variance")
    assert stages["model_selection"].seed == 3 and stages["variance"].num_copies == 3
    assert stages["search"].reference.model_selection_dir == str(tmp_path / "out" / "model_selection")
    assert stages["search"].noise.variance_dir == str(tmp_path / "out" / "variance")
    assert stages["search"].runner.max_parallel_trials == 4


def test_stage_trainer_args_override_only_that_stage(tmp_path):
    data = _pipeline(str(tmp_path))
    data["variance"]["trainer_args"] = {"train_steps": 30}
    stages = stage_configs(parse_config(data, PipelineConfig))
    assert stages["variance"].trainer.args["train_steps"] == 30
    assert stages["model_selection"].trainer.args["train_steps"] == 100


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["variance"].__setitem__("num_copys", 5), "variance.num_copys: unknown key"),
        (lambda d: d["model_selection"].__setitem__("final_num_models", 50), "final_num_models (50) must be <="),
        (lambda d: d["search"].__setitem__("seed", 1), "search.seed: set it once at the top level"),
        (lambda d: d["search"].pop("proxy_tasks"), "search.proxy_tasks"),
        (lambda d: d.__setitem__("stages", ["search", "everything"]), "stages"),
    ],
)
def test_bad_stage_sections_name_the_field(tmp_path, mutate, message):
    data = _pipeline(str(tmp_path))
    mutate(data)
    with pytest.raises(ConfigError) as info:
        parse_config(data, PipelineConfig)
    assert message in str(info.value)


@pytest.mark.slow
def _check_design_report(out, design: str) -> None:
    import re

    headings = [line[3:] for line in design.splitlines() if line.startswith("## ")]
    for wanted in ("Summary", "Variance measurement", "Model selection", "Proxy-task search: all proxies compared"):
        assert wanted in headings, headings
    assert any(h.startswith("Search: ") for h in headings)
    assert "Best proxy task: **short**" in design
    assert "| variance |" in design and "| model selection |" in design and "| search |" in design
    assert "Seed noise: std " in design
    assert "| 0 | 8 |" in design  # round 0 of model selection: 8 trials
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", design)
    assert "search/proxy_task_comparison.png" in images and "variance/variance_curves.png" in images
    assert any(i.endswith("filtered_trial_scores.png") for i in images)
    for image in images:
        assert (out / image).stat().st_size > 0, image
    html = (out / "design_report.html").read_text()
    assert "<h2>Model selection</h2>" in html and "src='search/proxy_task_comparison.png'" in html


def test_full_pipeline_through_the_cli(tmp_path):
    out = tmp_path / "out"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(_pipeline(str(out))))
    cmd = [sys.executable, "-m", "controllers.cli", "run", str(config), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    # the three state files
    variance = json.loads((out / "variance" / "variance_and_smoothness.json").read_text())
    assert {"variance_value", "variance_info", "smoothness_value", "smoothness_info"} <= set(variance)
    selection = json.loads((out / "model_selection" / "MODEL_SELECTION_STATE.json").read_text())
    assert [it["num_trials"] for it in selection["iterations"]] == [8, 5]
    search = json.loads((out / "search" / "SEARCH_CONTROLLER_STATE.json").read_text())
    assert search["best_proxy_task_name"] == "short"
    assert search["proxy_tasks_map"]["flat"]["proxy_task_stats"]["stopping_state"] not in (
        "Met desired correlation",
        "Met desired accuracy",
    )
    # plots and report
    assert (out / "variance" / "variance_curves.png").stat().st_size > 0
    assert list((out / "model_selection").rglob("filtered_trial_scores.png"))
    assert list((out / "search").glob("proxy_task_short_*.png"))
    report = (out / "search" / "report.md").read_text()
    assert "Best proxy task: **short**" in report
    best = yaml.safe_load((out / "search" / "best_proxy_task.yaml").read_text())
    assert best["args"]["train_steps"] == best["args"]["decay_steps"] <= 40
    # one report for the whole design, every section, every image it links present
    design = (out / "design_report.md").read_text()
    _check_design_report(out, design)
    assert "design markdown: " in done.stdout
    (out / "design_report.md").unlink()
    rewritten = subprocess.run([sys.executable, "-m", "controllers.cli", "report", str(out)], cwd=REPO,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
    assert rewritten.returncode == 0 and "design_report.md" in rewritten.stdout, rewritten.stderr
    _check_design_report(out, (out / "design_report.md").read_text())
    # the closing summary
    assert "Best proxy task: short" in done.stdout
    assert "Noise ceiling" in done.stdout
    # a second run without --resume refuses to overwrite, with the hint
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert "Best proxy task: short" in resumed.stdout


def test_latency_section_is_shared(tmp_path):
    data = _pipeline(str(tmp_path))
    data["latency"] = {"mode": "none"}
    stages = stage_configs(parse_config(data, PipelineConfig))
    assert {s.latency.mode for s in stages.values()} == {"none"}
    data["search"]["latency"] = {"mode": "worker"}
    with pytest.raises(ConfigError, match="search.latency: set it once"):
        parse_config(data, PipelineConfig)


@pytest.mark.slow
def test_demo_small_runs_the_pytorch_example_end_to_end(tmp_path):
    """The README's main command, at its tiny size: the real PyTorch trainer in every stage."""
    pytest.importorskip("torch")
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "controllers.cli", "demo", "--small", "--output-dir", str(out), "--no-progress"]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: no proxy met the target (a verdict)
    assert (out / "variance" / "variance_and_smoothness.json").exists()
    selection = json.loads((out / "model_selection" / "MODEL_SELECTION_STATE.json").read_text())
    assert selection["iterations"][-1]["num_trials"] == 5
    search = json.loads((out / "search" / "SEARCH_CONTROLLER_STATE.json").read_text())
    # the proxy, and the zero-compute candidate judged on the reference's own curves (it costs nothing)
    assert list(search["proxy_tasks_map"]) == ["data50", "full_setup_stopped_early"]
    assert search["proxy_tasks_map"]["full_setup_stopped_early"]["cost_trial_hours"] == 0
    metrics = json.loads(next((out / "search").rglob("TRIAL_TRAINING_METRICS.json")).read_text())
    assert metrics["latency"] > 0 and metrics["training_accuracy_over_steps"]
    assert (out / "variance" / "variance_curves.png").exists()
    assert (out / "search" / "report.md").read_text().startswith("# Proxy-task search report")
    assert "Proxy-task design finished" in done.stdout
