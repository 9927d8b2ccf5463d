"""State files (versioned, atomic, corrupt = error) and the controller lease."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from controllers.engine.lease import LEASE_FILE, Lease
from controllers.engine.state import StateFile, open_state
from controllers.errors import LeaseHeldError, LeaseLostError, StateError
from controllers.runners.process import pid_alive, process_start_ticks
from proxy_task_utils.storage import LocalStorage


def test_state_roundtrip_adds_schema_version(tmp_path):
    sf = StateFile(LocalStorage(tmp_path), "S.json", "tool_a")
    assert sf.load() is None
    sf.save({"a": 1, "b": [1.5, None]})
    obj = sf.load()
    assert obj == {"a": 1, "b": [1.5, None], "schema_version": 1, "tool": "tool_a"}
    with pytest.raises(ValueError):  # NaN is not standard JSON: refused, not written
        sf.save({"x": float("nan")})
    assert sf.load()["a"] == 1


@pytest.mark.parametrize(
    "content, match",
    [
        (b'{"a": 1', "is corrupt"),
        (b'{"schema_version": 99}', "schema_version 99"),
        (b'{"tool": "other"}', "belongs to"),
    ],
)
def test_bad_state_file_raises_with_path(tmp_path, content, match):
    (tmp_path / "S.json").write_bytes(content)
    with pytest.raises(StateError, match=match) as info:
        StateFile(LocalStorage(tmp_path), "S.json", "tool_a").load()
    assert str(tmp_path / "S.json") in str(info.value)


def test_open_state_refuses_an_existing_run_without_resume(tmp_path):
    storage = LocalStorage(tmp_path)
    StateFile(storage, "S.json", "t").save({"x": 1})
    with pytest.raises(StateError, match="--resume"):
        open_state(storage, "S.json", "t", resume=False)
    assert open_state(storage, "S.json", "t", resume=True)[1]["x"] == 1


def test_second_controller_is_refused_with_the_holder_named(tmp_path):
    storage = LocalStorage(tmp_path)
    first = Lease(storage)
    first.acquire()
    second = Lease(storage)
    with pytest.raises(LeaseHeldError, match="held by another controller") as info:
        second.acquire()
    import os

    assert f"pid {os.getpid()}" in str(info.value)
    first.renew()
    first.release()
    assert not storage.exists(LEASE_FILE)
    second.acquire()
    assert second.held


def test_lease_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    storage = LocalStorage(tmp_path)
    code = (
        "import sys; from proxy_task_utils.storage import LocalStorage; from controllers.engine.lease import Lease; "
        f"Lease(LocalStorage({str(tmp_path)!r})).acquire()"
    )  # the process exits without releasing
    subprocess.run([sys.executable, "-c", code], check=True)
    holder = json.loads((tmp_path / LEASE_FILE).read_text())
    assert not pid_alive(holder["pid"], holder["pid_start_ticks"])
    lease = Lease(storage)
    lease.acquire()
    assert json.loads((tmp_path / LEASE_FILE).read_text())["token"] == lease.token


def test_other_host_lease_is_stale_only_when_its_heartbeat_stands_still(tmp_path):
    storage = LocalStorage(tmp_path)
    foreign = {"host": "other-host", "pid": 1, "pid_start_ticks": 1, "token": "t", "heartbeat": 0}
    storage.write(LEASE_FILE, json.dumps(foreign).encode())
    now = [0.0]
    beats = []

    def sleep(secs):  # fake clock; the foreign holder beats while we watch
        now[0] += secs
        if beats:
            foreign["heartbeat"] += 1
            storage.write(LEASE_FILE, json.dumps(foreign).encode())

    beats.append(True)
    with pytest.raises(LeaseHeldError):
        Lease(storage, timeout_secs=30, clock=lambda: now[0], sleep=sleep).acquire()
    beats.clear()  # the holder died: its counter stands still for the whole timeout
    lease = Lease(storage, timeout_secs=30, clock=lambda: now[0], sleep=sleep)
    lease.acquire()
    assert lease.held and now[0] >= 30


def test_renew_after_takeover_raises_lease_lost(tmp_path):
    storage = LocalStorage(tmp_path)
    lease = Lease(storage)
    lease.acquire()
    storage.write(LEASE_FILE, b'{"host": "x", "token": "intruder"}')
    with pytest.raises(LeaseLostError, match="taken over"):
        lease.renew()
    lease.release()  # not ours any more: left in place
    assert storage.exists(LEASE_FILE)


def test_process_start_ticks_of_self():
    import os

    assert process_start_ticks(os.getpid()) is not None
    assert pid_alive(os.getpid(), process_start_ticks(os.getpid()))
    assert not pid_alive(os.getpid(), -1)
