"""State files: the keys they add, the versions and owners they accept, and what errors say."""

from __future__ import annotations

import json

import pytest

from controllers.engine.state import SCHEMA_VERSION, StateFile, open_state
from controllers.errors import StateError
from proxy_task_utils.storage import LocalStorage


def _raw(tmp_path, name="S.json"):
    return json.loads((tmp_path / name).read_bytes())


def test_uri_and_exists(tmp_path):
    sf = StateFile(LocalStorage(tmp_path), "S.json", "t")
    assert sf.uri == str(tmp_path / "S.json")
    assert not sf.exists()
    sf.save({})
    assert sf.exists()


def test_save_writes_indented_standard_json_with_version_and_tool(tmp_path):
    StateFile(LocalStorage(tmp_path), "S.json", "t").save({"a": 1})
    text = (tmp_path / "S.json").read_text()
    assert json.loads(text) == {"a": 1, "schema_version": SCHEMA_VERSION, "tool": "t"}
    assert text.startswith('{\n  "a": 1')  # indent=2, the caller's keys first


def test_save_without_kind_adds_no_tool_and_keeps_given_keys(tmp_path):
    storage = LocalStorage(tmp_path)
    StateFile(storage, "S.json").save({"schema_version": 0, "x": 1})
    assert _raw(tmp_path) == {"schema_version": 0, "x": 1}
    StateFile(storage, "T.json", "t").save({"tool": "t", "schema_version": 1})
    assert _raw(tmp_path, "T.json") == {"tool": "t", "schema_version": 1}


def test_save_does_not_change_the_callers_dict(tmp_path):
    obj = {"a": 1}
    StateFile(LocalStorage(tmp_path), "S.json", "t").save(obj)
    assert obj == {"a": 1}


@pytest.mark.parametrize("version", [0, 1])
def test_current_and_older_versions_load(tmp_path, version):
    (tmp_path / "S.json").write_text(json.dumps({"schema_version": version, "tool": "t", "k": 2}))
    assert StateFile(LocalStorage(tmp_path), "S.json", "t").load()["k"] == 2


def test_file_without_version_or_tool_loads(tmp_path):
    (tmp_path / "S.json").write_text('{"k": 3}')
    assert StateFile(LocalStorage(tmp_path), "S.json", "t").load() == {"k": 3}


@pytest.mark.parametrize("version", ["1", 1.0, None, 2])
def test_version_must_be_an_int_not_above_ours(tmp_path, version):
    (tmp_path / "S.json").write_text(json.dumps({"schema_version": version}))
    with pytest.raises(StateError, match=r"schema_version .*; this version reads up to 1") as info:
        StateFile(LocalStorage(tmp_path), "S.json", "t").load()
    assert repr(version) in str(info.value)


def test_another_tools_file_is_refused_with_both_names(tmp_path):
    (tmp_path / "S.json").write_text('{"tool": "other"}')
    with pytest.raises(StateError, match="belongs to tool 'other', not 't'"):
        StateFile(LocalStorage(tmp_path), "S.json", "t").load()
    assert StateFile(LocalStorage(tmp_path), "S.json").load() == {"tool": "other"}  # no kind: no check


@pytest.mark.parametrize("content", [b"[1, 2]", b"", b'{"a": NaN}'])
def test_corrupt_file_names_the_fix(tmp_path, content):
    (tmp_path / "S.json").write_bytes(content)
    with pytest.raises(StateError, match="is corrupt .*fix or move it away to start over") as info:
        StateFile(LocalStorage(tmp_path), "S.json", "t").load()
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_open_state_of_a_fresh_folder(tmp_path):
    state, obj = open_state(LocalStorage(tmp_path), "S.json", "t", resume=False)
    assert obj is None and state.name == "S.json" and state.kind == "t"
    state, obj = open_state(LocalStorage(tmp_path), "S.json", "t", resume=True)
    assert obj is None


def test_open_state_refusal_names_the_file_and_both_ways_out(tmp_path):
    StateFile(LocalStorage(tmp_path), "S.json", "t").save({})
    with pytest.raises(StateError) as info:
        open_state(LocalStorage(tmp_path), "S.json", "t", resume=False)
    msg = str(info.value)
    assert msg.startswith(str(tmp_path / "S.json") + " already exists")
    assert "--resume" in msg and "new controller_dir" in msg


def test_open_state_checks_the_tool_even_on_resume(tmp_path):
    StateFile(LocalStorage(tmp_path), "S.json", "a").save({})
    with pytest.raises(StateError, match="belongs to tool"):
        open_state(LocalStorage(tmp_path), "S.json", "b", resume=True)


def test_corrupt_file_message_holds_the_parser_error_with_the_path(tmp_path):
    (tmp_path / "S.json").write_bytes(b"{")
    sf = StateFile(LocalStorage(tmp_path), "S.json", "t")
    with pytest.raises(StateError) as info:
        sf.load()
    assert str(info.value).startswith(f"state file {sf.uri} is corrupt ({sf.uri} is not valid JSON (")
