"""The search's state file is checked against its schema on load: `{}` is no fresh start."""

from __future__ import annotations

import json

import pytest

from controllers.engine.state import StateFile
from controllers.errors import StateError
from controllers.search.state import SEARCH_CONTROLLER_STATE_FILE, STATE_SCHEMA
from proxy_task_utils.storage import LocalStorage


def _load(tmp_path, content):
    (tmp_path / SEARCH_CONTROLLER_STATE_FILE).write_text(json.dumps(content))
    return StateFile(LocalStorage(str(tmp_path)), SEARCH_CONTROLLER_STATE_FILE, schema=STATE_SCHEMA).load()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({}, "key 'proxy_tasks_map' is missing"),
        ({"proxy_tasks_map": []}, "key 'proxy_tasks_map' must be an object"),
        ({"proxy_tasks_map": {"a": {"status": "half"}}}, "proxy_tasks_map['a'].status' must be one of"),
        ({"proxy_tasks_map": {"a": {"job": {"name": "j"}}}}, "proxy_tasks_map['a'].job.job_dir' is missing"),
        ({"proxy_tasks_map": {}, "cost_probe": {"proxies": {"a": {"status": "done"}}}}, "cost_probe.proxies['a'].job'"),
    ],
)
def test_a_search_state_without_its_keys_is_refused_and_left_alone(tmp_path, content, problem):
    with pytest.raises(StateError, match=SEARCH_CONTROLLER_STATE_FILE) as info:
        _load(tmp_path, content)
    assert problem in str(info.value)
    assert json.loads((tmp_path / SEARCH_CONTROLLER_STATE_FILE).read_text()) == content


def test_a_reference_state_file_still_loads(tmp_path):
    ref = {"proxy_tasks_map": {"p1": {"proxy_task_stats": {"training_steps": [10]}}}, "best_proxy_task_name": "p1"}
    assert _load(tmp_path, ref)["best_proxy_task_name"] == "p1"
