"""The search config (YAML -> pydantic) and the package's public surface."""

from __future__ import annotations

import subprocess
import sys

import pytest

import controllers.search as search
from controllers.config import ConfigError, parse_config
from controllers.search.config import SearchConfig
from controllers.search.controller import load_proxy_configs
from proxy_task_utils.errors import ConfigurationError


def _data(**overrides):
    data = {
        "controller_dir": "/tmp/x",
        "trainer": {"command": ["python", "-m", "t"], "args": {"lr": 0.1, "train_steps": 1000}},
        "reference": {"job_dir": "/ref"},
        "proxy_tasks": {"grid": [{"name": "data", "arg": "train_data_pct", "values": [25, 50]}]},
    }
    data.update(overrides)
    return data


def test_defaults_follow_the_reference_cli():
    cfg = parse_config(_data(), SearchConfig)
    assert (cfg.desired_accuracy_correlation, cfg.training_time_hrs_limit, cfg.desired_latency_correlation) == (
        0.65,
        3.0,
        0.65,
    )
    assert cfg.correlation == "spearman" and cfg.stop_rule == "retrain" and cfg.early_stop_proxy_task_if_not_best
    assert (cfg.train_steps_arg, cfg.decay_steps_arg) == (None, None)  # declared in the trainer section instead
    assert cfg.proxy_score == "raw"  # extrapolation is opt-in: bench/RESULTS.md says why
    assert parse_config(_data(proxy_score="extrapolated"), SearchConfig).proxy_score == "extrapolated"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"reference": {"job_dir": "/a", "table": "/b"}}, "exactly one of 'model_selection_dir'"),
        ({"proxy_tasks": {}}, "exactly one of 'generator', 'grid' or 'configs'"),
        ({"correlation": "pearson"}, "correlation"),
        ({"desired_accuracy_correlation": 1.3}, "desired_accuracy_correlation"),
        ({"desired_accuracy_correlation": None}, "without either no proxy can succeed"),
        ({"stop_rulez": "point"}, "stop_rulez: unknown key"),
        ({"noise": {"variance_dir": "/v", "seed_std": 0.1}}, "either 'variance_dir' or 'seed_std'"),
        ({"stop_rule": "lower_bound", "bootstrap_resamples": 0}, "needs the bootstrap interval"),
        ({"proxy_score": "smoothed"}, "proxy_score"),
    ],
)
def test_bad_configs_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_data(**override), SearchConfig)


def test_zero_thresholds_are_values_not_unset():
    cfg = parse_config(_data(desired_accuracy_correlation=0.0, training_time_hrs_limit=0.0), SearchConfig)
    assert cfg.desired_accuracy_correlation == 0.0 and cfg.training_time_hrs_limit == 0.0


def test_grid_and_list_configs_merge_base_args_and_refuse_retrain_flags():
    cfg = parse_config(_data(), SearchConfig)
    configs = load_proxy_configs(cfg)
    assert [c.name for c in configs] == ["proxy_data25", "proxy_data50"]
    assert configs[0].args == {"lr": 0.1, "train_steps": 1000, "train_data_pct": 25}
    listed = parse_config(_data(proxy_tasks={"configs": [{"name": "a", "args": {"train_steps": 10}}]}), SearchConfig)
    assert load_proxy_configs(listed)[0].args == {"lr": 0.1, "train_steps": 10}
    bad = parse_config(
        _data(proxy_tasks={"configs": [{"name": "a", "args": {"retrain_search_job_dir": "/x"}}]}), SearchConfig
    )
    with pytest.raises(ConfigurationError, match="sets these itself"):
        load_proxy_configs(bad)


def test_exported_names_resolve():
    for name in search.__all__:
        assert getattr(search, name) is not None


def test_importing_the_package_stays_light():
    code = "import sys, controllers.search; print(sorted(m for m in ('scipy', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
