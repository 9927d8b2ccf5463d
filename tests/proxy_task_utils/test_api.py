"""Public API: exported names, light imports, and the reference's trainer helpers."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import venv

import pytest

import proxy_task_utils as ptu
from proxy_task_utils.errors import ConfigurationError
from proxy_task_utils.hypertune import MetricsReporter, read_metrics_file

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

REFERENCE_NAMES = {
    "update_trial_training_accuracy_metric",
    "update_trial_training_latency_metric",
    "get_stop_training",
    "set_stop_training",
    "str_2_bool",
    "get_retrain_search_job_model_dir",
    "parse_and_save_nas_params_str",
    "compute_reward",
    "get_trial_id_from_environment",
    "get_job_dir_from_environment_if_exist",
}


def test_exported_members():
    assert REFERENCE_NAMES <= set(ptu.__all__)
    for name in ptu.__all__:
        assert hasattr(ptu, name), name
    # every public function and class is exported on purpose (modules and typing names aside)
    public = {
        n
        for n in dir(ptu)
        if not n.startswith(("_", "@")) and not inspect.ismodule(getattr(ptu, n)) and n not in ("annotations", "Any")
    }
    assert public - set(ptu.__all__) == set()


def test_import_pulls_in_nothing_heavy():
    code = (
        "import sys, proxy_task_utils, proxy_task_utils.testing;"
        "heavy = [m for m in ('scipy', 'numpy', 'torch', 'tensorflow', 'matplotlib', 'google.cloud.storage', 'google.cloud.aiplatform', 'ray', 'pydantic')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_import_in_a_bare_venv(tmp_path):
    """``import proxy_task_utils`` with the standard library alone (no site-packages at all)."""
    env_dir = tmp_path / "bare"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    code = (
        "import proxy_task_utils as p, tempfile, os;"
        "d = os.path.join(tempfile.mkdtemp(), 'nas/search/1');"
        "p.update_trial_training_accuracy_metric(d, 0.5, 0, 9, 1.0, 10);"
        "print(p.get_stop_training(d, 9, 10))"
    )
    env = {"PYTHONPATH": REPO, "PATH": os.environ.get("PATH", "")}
    out = subprocess.run([str(python), "-S", "-c", code], check=True, capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("True", True), ("TRUE ", True), ("false", False), ("1", False), ("", False)],
)
def test_str_2_bool(value, expected):
    assert ptu.str_2_bool(value) is expected


def test_str_2_bool_rejects_non_strings():
    with pytest.raises(ValueError, match="string"):
        ptu.str_2_bool(True)


def test_trial_id_from_environment(monkeypatch):
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "7")
    assert ptu.get_trial_id_from_environment() == "7"
    monkeypatch.delenv("CLOUD_ML_TRIAL_ID")
    assert ptu.get_trial_id_from_environment() == "0"
    with pytest.raises(ConfigurationError, match="CLOUD_ML_TRIAL_ID"):
        ptu.get_trial_id_from_environment(default=None)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, "/flag/dir"),
        ("gs://b/root/job_1/nas/search/12/model", "gs://b/root/job_1/nas/search/12"),
        ("/x/nas/train/3", "/x/nas/train/3"),
        ("/plain/folder/", "/plain/folder"),
    ],
)
def test_model_dir_from_environment(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv("AIP_MODEL_DIR", raising=False)
    else:
        monkeypatch.setenv("AIP_MODEL_DIR", env)
    assert ptu.get_job_dir_from_environment_if_exist("/flag/dir") == expected


def test_retrain_mapping(monkeypatch):
    assert ptu.get_map_finetune_trial_id_to_search_trial_id("123, 453, 1025") == {"1": "123", "2": "453", "3": "1025"}
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "2")
    assert ptu.get_retrain_search_job_model_dir("5,9", "gs://b/job/nas/search") == "gs://b/job/nas/search/9"
    assert ptu.get_finetune_nas_params_str("5,9", "/j") == "/j/9/nas_params_str.json"
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "3")
    with pytest.raises(ConfigurationError, match="positions 1..2"):
        ptu.get_retrain_search_job_model_dir("5,9", "/j")
    with pytest.raises(ConfigurationError, match="empty entry"):
        ptu.get_map_finetune_trial_id_to_search_trial_id("5,,9")


def test_retrain_trial_ids_cannot_escape_the_job_dir(monkeypatch):
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "1")
    with pytest.raises(ptu.UnsafePathError):
        ptu.get_retrain_search_job_model_dir("../../etc", "/j")


def test_nas_params_saved_and_read_back(tmp_path):
    trial = str(tmp_path / "1")
    params = ptu.parse_and_save_nas_params_str(None, '{"depth": [1, 2], "width": 0.5}', trial)
    assert params == {"depth": [1, 2], "width": 0.5}
    saved = os.path.join(trial, "nas_params_str.json")
    assert json.load(open(saved)) == params
    # retrain mode passes the path of a previous trial's file
    seen = []
    again = ptu.parse_and_save_nas_params_str(seen.append, saved, str(tmp_path / "2"))
    assert again == params and seen == [params]
    with pytest.raises(ConfigurationError, match="does not exist"):
        ptu.parse_and_save_nas_params_str(None, str(tmp_path / "missing.json"), trial)


def test_compute_reward():
    assert ptu.compute_reward(0.8, 10.0, 20.0) == pytest.approx(0.4)
    assert ptu.compute_reward(0.8, 10.0, 5.0) == pytest.approx(0.8)  # hard limit
    assert ptu.compute_reward(0.8, 10.0, 5.0, use_hard_limit=False) == pytest.approx(1.6)
    assert ptu.compute_reward(0.8, 10.0, 10.0, target_memory=100, measured_memory=200, weight=2) == pytest.approx(0.2)
    with pytest.raises(ConfigurationError, match="measured_latency_or_flops"):
        ptu.compute_reward(0.8, 10.0, 0.0)


def test_reward_range(caplog):
    assert ptu.check_reward_range(0.5)
    assert not ptu.check_reward_range(85.0)
    assert "outside [0.001, 10" in caplog.text
    with pytest.raises(ConfigurationError, match="outside"):
        ptu.check_reward_range(0.0, strict=True)
    with pytest.raises(ConfigurationError):
        ptu.check_reward_range(float("nan"), strict=True)


def test_metrics_file_like_the_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "4")
    path = str(tmp_path / "hp" / "output.metrics")
    reporter = MetricsReporter(path, metric_tag="top_1_accuracy")
    others = {f"m{i}": i for i in range(7)}
    dropped = reporter.report(0.0, global_step=120, other_metrics=others)
    assert dropped == {"m5": 5, "m6": 6}
    (line,) = read_metrics_file(path)
    assert line["top_1_accuracy"] == "1e-08"  # exactly 0.0 is reported as 1e-8
    assert line["trial"] == "4" and line["global_step"] == "120"
    assert [line[f"key_{i}"] for i in range(5)] == ["m0", "m1", "m2", "m3", "m4"]
    assert line["value_2"] == "2.0"
    raw = open(path).read().splitlines()[0]
    assert raw == json.dumps(json.loads(raw), sort_keys=True)
    for _ in range(150):
        reporter.report(0.5)
    assert len(read_metrics_file(path)) == 100


def test_report_reward_keeps_every_metric(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(tmp_path / "out.metrics"))
    trial = str(tmp_path / "trial")
    others = {f"m{i}": float(i) for i in range(8)}
    ptu.report_reward(trial, 0.7, global_step=5, other_metrics=others, reporter=MetricsReporter())
    assert json.load(open(os.path.join(trial, "extra_metrics.json"))) == others
    assert read_metrics_file(str(tmp_path / "out.metrics"))[0]["training/hptuning/metric"] == "0.7"
