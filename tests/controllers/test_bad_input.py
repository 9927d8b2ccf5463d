"""Bad input through the CLI: exit 2 and one line that names the field and the fix, no traceback,
nothing started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from _search_helpers import write_reference_job

REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]


def _selection_config(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "controller_dir": str(tmp_path / "ctl"),
        "trainer": {"command": REPLAY},
        "search_space": {"choices": {"quality": [0.5, 0.6, 0.7, 0.8]}},
        "start_num_models": 4,
        "final_num_models": 2,
        "num_models_to_remove_per_iter": 2,
    }
    config.update(changes)
    return config


def _cli(tmp_path: Path, verb: str, config: dict[str, Any], env: dict[str, str] | None = None):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "controllers.cli", verb, str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
    )


def _assert_usage_error(res: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for needle in needles:
        assert needle in last, last
    return last


def test_a_typo_in_the_search_space_function(tmp_path):
    config = _selection_config(tmp_path, search_space={"function": "examples.pytorch.serch_space:sample"})
    res = _cli(tmp_path, "select-models", config)
    _assert_usage_error(res, "search_space.function", "examples.pytorch.serch_space", "check the spelling")
    assert not (tmp_path / "ctl" / "MODEL_SELECTION_STATE.json").exists()


def test_a_search_space_module_without_that_function(tmp_path):
    (tmp_path / "my_space.py").write_text("def sample(rng):\n    return {'a': 1}\n")
    config = _selection_config(tmp_path, search_space={"function": "my_space:sampel"})
    _assert_usage_error(_cli(tmp_path, "select-models", config), "search_space.function", "no function 'sampel'")


def test_a_search_space_module_that_fails_to_import(tmp_path):
    (tmp_path / "broken_space.py").write_text("raise RuntimeError('no data here')\n")
    config = _selection_config(tmp_path, search_space={"function": "broken_space:sample"})
    for key in ("start_num_models", "final_num_models", "num_models_to_remove_per_iter"):
        config.pop(key)
    res = _cli(tmp_path, "measure-variance", config | {"num_copies": 2, "min_successful_copies": 2})
    _assert_usage_error(res, "search_space.function", "RuntimeError: no data here")


def test_a_gs_folder_without_the_gcs_extra(tmp_path):
    # A real interpreter in which google-cloud-storage cannot be imported, as without the extra.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\nsys.modules['google.cloud.storage'] = None\n")
    pythonpath = os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH")) if p)
    config = _selection_config(tmp_path, controller_dir="gs://my-bucket/ctl")
    res = _cli(tmp_path, "select-models", config, env={"PYTHONPATH": pythonpath})
    _assert_usage_error(res, "gs://my-bucket/ctl", "pip install 'proxy-task-utils[gcs]'")


@pytest.mark.parametrize(
    "trainer, field",
    [
        ({"command": REPLAY, "args": {"data": "a\x00b"}}, "trainer.args"),
        ({"command": REPLAY, "args": {"da\x00ta": "ab"}}, "trainer.args"),
        ({"command": REPLAY, "env": {"DATA": "a\x00b"}}, "trainer.env"),
        ({"command": [*REPLAY, "--x=\x00"]}, "trainer.command"),
    ],
)
def test_a_nul_byte_in_the_trainer_section(tmp_path, trainer, field):
    res = _cli(tmp_path, "select-models", _selection_config(tmp_path, trainer=trainer))
    _assert_usage_error(res, field, "NUL byte", "remove it")


def test_a_job_name_too_long_for_a_file_name(tmp_path):
    res = _cli(tmp_path, "select-models", _selection_config(tmp_path, job_name="j" * 250))
    _assert_usage_error(res, "job_name", "at most 100 characters", "keep it short")
    assert not (tmp_path / "ctl").exists()


def test_a_proxy_name_too_long_for_a_file_name(tmp_path):
    ref_job = tmp_path / "reference" / "nas" / "search"
    write_reference_job(str(ref_job))
    config = {
        "controller_dir": str(tmp_path / "search"),
        "trainer": {"command": REPLAY},
        "reference": {"job_dir": str(ref_job)},
        "proxy_tasks": {"configs": [{"name": "p" * 250, "args": {"train_steps": 10}}]},
    }
    res = _cli(tmp_path, "search", config)
    _assert_usage_error(res, "proxy task 0", "250 characters", "at most 100")
