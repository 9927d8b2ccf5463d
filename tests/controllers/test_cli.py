"""The proxy-task CLI: config validation errors, one parser with common flags, status of a folder."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import yaml

from controllers import cli
from controllers.config import load_config, parse_config
from controllers.errors import ConfigError
from controllers.selection.config import ModelSelectionConfig
from controllers.variance.config import VarianceConfig

BASE = {"controller_dir": "/tmp/x", "trainer": {"command": ["python", "t.py"]}, "search_space": {"choices": {"a": [1]}}}


def _run(*argv):
    return subprocess.run([sys.executable, "-m", "controllers.cli", *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "change, field",
    [
        ({"num_copiess": 3}, "num_copiess: unknown key"),
        ({"num_copies": 1}, "num_copies:"),
        ({"trainer": {"command": []}}, "trainer.command:"),
        ({"timeouts": {"poll_interval_secs": -1}}, "timeouts.poll_interval_secs:"),
        ({"search_space": {"choices": {"a": [1]}, "function": "m:f"}}, "exactly one of"),
        ({"min_successful_copies": 9}, "min_successful_copies (9) must be <= num_copies"),
    ],
)
def test_bad_config_names_the_field(change, field):
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, **change}, VarianceConfig, source="cfg.yaml")
    assert field in str(info.value) and "cfg.yaml" in str(info.value)


def test_cli_reports_config_errors_with_exit_code_2(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "start_num_model": 3}))
    res = _run("select-models", str(path))
    assert res.returncode == 2 and "start_num_model: unknown key" in res.stderr
    res = _run("select-models", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "config file not found" in res.stderr


def test_load_config_reads_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "start_num_models": 12, "final_num_models": 4}))
    cfg = load_config(path, ModelSelectionConfig)
    assert cfg.start_num_models == 12 and cfg.max_failure_ratio == 0.2
    path.write_text("a: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, ModelSelectionConfig)


CONTROLLER_VERBS = ("measure-variance", "select-models", "search", "run", "demo")


def _verbs(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_one_parser_has_every_verb():
    verbs = _verbs(cli.build_parser())
    assert set(verbs) == {*CONTROLLER_VERBS, "status", "report", "analyze", "dashboard", "init", "latency-worker"}


@pytest.mark.parametrize("verb", CONTROLLER_VERBS)
def test_every_controller_verb_takes_the_common_flags(verb):
    argv = [verb] + ([] if verb == "demo" else ["c.yaml"]) + ["--resume", "--no-progress", "-v"]
    args = cli.build_parser().parse_args(argv)
    assert args.resume is True and args.no_progress is True and args.verbose is True
    quiet = cli.build_parser().parse_args([verb] + ([] if verb == "demo" else ["c.yaml"]))
    assert quiet.resume is False and quiet.no_progress is False and not getattr(quiet, "verbose", False)


def test_verbose_flag_also_before_the_verb():
    args = cli.build_parser().parse_args(["-v", "status", "d"])
    assert args.verbose is True and args._verb is cli._status


def test_version_prints_the_package_version():
    from importlib import metadata

    res = _run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"proxy-task {metadata.version('proxy-task-utils')}"


def test_status_of_folders(tmp_path):
    ms = tmp_path / "ms"
    ms.mkdir()
    it = {"iteration": 0, "num_trials": 2, "desired_training_step_pct": 50.0, "search_job_name": "job0",
          "trials_to_retrain": ["1"], "job": {"trials": [{"state": "succeeded"}, {"state": "failed"}]}}  # fmt: skip
    (ms / "MODEL_SELECTION_STATE.json").write_text(json.dumps({"iterations": [it], "status": "running"}))
    res = _run("status", str(ms))
    assert res.returncode == 0 and "model selection" in res.stdout and "failed 1, succeeded 1" in res.stdout
    var = tmp_path / "var"
    var.mkdir()
    (var / "measurement_state.json").write_text(
        json.dumps(
            {"attempts": [{"attempt": 1, "job": {"name": "Find_1"}, "outcome": "workable"}], "finished_model_dirs": []}
        )
    )
    res = _run("status", str(var))
    assert res.returncode == 0 and "variance measurement" in res.stdout and "workable" in res.stdout
    res = _run("status", str(tmp_path))
    assert res.returncode == 2 and "no controller state file" in res.stdout
    (var / "measurement_state.json").write_text("{")
    res = _run("status", str(var))
    assert res.returncode == 2 and "corrupt" in res.stdout
