"""The controller lease: what it writes, when it takes over, and what it never touches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from controllers.engine.lease import LEASE_FILE, Lease
from controllers.errors import LeaseHeldError, LeaseLostError
from controllers.runners.process import process_start_ticks
from proxy_task_utils.storage import LocalStorage

FOREIGN = {"host": "other-host", "pid": 1, "pid_start_ticks": 1, "token": "theirs", "heartbeat": 0}


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _lease_file(storage: LocalStorage) -> dict:
    return json.loads(storage.read(LEASE_FILE)[0])


class FakeTime:
    """A monotonic clock that only the sleeper moves; records each sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, secs: float) -> None:
        self.sleeps.append(secs)
        self.now += secs


def test_acquire_writes_who_holds_it(tmp_path):
    storage = LocalStorage(tmp_path)
    lease = Lease(storage)
    assert not lease.held
    lease.acquire()
    assert lease.held
    holder = _lease_file(storage)
    assert holder["host"] == socket.gethostname()
    assert holder["pid"] == os.getpid()
    assert holder["pid_start_ticks"] == process_start_ticks(os.getpid())
    assert holder["token"] == lease.token and len(lease.token) == 16
    assert holder["heartbeat"] == 0
    assert isinstance(holder["acquired_at"], float)


def test_two_leases_have_different_tokens(tmp_path):
    assert Lease(LocalStorage(tmp_path)).token != Lease(LocalStorage(tmp_path)).token


def test_renew_bumps_the_counter_in_the_file(tmp_path):
    storage = LocalStorage(tmp_path)
    lease = Lease(storage)
    lease.acquire()
    lease.renew()
    lease.renew()
    assert lease.counter == 2
    assert _lease_file(storage)["heartbeat"] == 2
    assert lease.held


def test_renew_without_holding_raises(tmp_path):
    with pytest.raises(LeaseLostError, match="not held"):
        Lease(LocalStorage(tmp_path)).renew()


def test_renew_after_the_file_is_gone_loses_the_lease(tmp_path):
    storage = LocalStorage(tmp_path)
    lease = Lease(storage)
    lease.acquire()
    storage.delete(LEASE_FILE)  # another controller took it over and finished, or a user removed it
    with pytest.raises(LeaseLostError, match="was removed"):
        lease.renew()
    assert not lease.held and not storage.exists(LEASE_FILE)  # not written again


def test_release_leaves_another_controllers_lease_in_place(tmp_path):
    storage = LocalStorage(tmp_path)
    lease = Lease(storage)
    lease.acquire()
    # another controller took over (it holds the file now); we still think we hold it
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    assert lease.held
    lease.release()
    assert _lease_file(storage)["token"] == "theirs"
    assert not lease.held


def test_release_deletes_our_own_lease_and_is_idempotent(tmp_path):
    storage = LocalStorage(tmp_path)
    lease = Lease(storage)
    lease.acquire()
    lease.release()
    assert not storage.exists(LEASE_FILE)
    assert not lease.held
    storage.write(LEASE_FILE, json.dumps({**FOREIGN, "token": lease.token}).encode())
    lease.release()  # not held any more: nothing is read or deleted
    assert storage.exists(LEASE_FILE)


def test_release_survives_a_missing_or_corrupt_file(tmp_path):
    storage = LocalStorage(tmp_path)
    lease = Lease(storage)
    lease.acquire()
    storage.delete(LEASE_FILE)
    lease.release()
    assert not lease.held
    lease.acquire()
    storage.write(LEASE_FILE, b"{torn")
    lease.release()  # unreadable: ours (a taker-over writes a readable lease), so removed
    assert not lease.held and not storage.exists(LEASE_FILE)


def test_context_manager_acquires_and_releases(tmp_path):
    storage = LocalStorage(tmp_path)
    with Lease(storage) as lease:
        assert lease.held and _lease_file(storage)["token"] == lease.token
    assert not storage.exists(LEASE_FILE)


def test_watch_secs_zero_refuses_a_live_foreign_lease_at_once(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    t = FakeTime()
    lease = Lease(storage, timeout_secs=30, clock=t.clock, sleep=t.sleep)
    with pytest.raises(LeaseHeldError, match="other-host") as info:
        lease.acquire(watch_secs=0)
    assert "pid 1" in str(info.value) and str(tmp_path / LEASE_FILE) in str(info.value)
    assert t.sleeps == []  # no watching at all
    assert not lease.held
    assert _lease_file(storage)["token"] == "theirs"


def test_negative_watch_secs_also_refuses(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    t = FakeTime()
    with pytest.raises(LeaseHeldError):
        Lease(storage, clock=t.clock, sleep=t.sleep).acquire(watch_secs=-1)
    assert t.sleeps == []


def test_a_still_foreign_lease_is_taken_over_after_the_watch(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    t = FakeTime()
    lease = Lease(storage, timeout_secs=900, clock=t.clock, sleep=t.sleep)
    lease.acquire(watch_secs=12)  # watch_secs wins over timeout_secs
    assert lease.held and _lease_file(storage)["token"] == lease.token
    assert t.sleeps == [5.0, 5.0, 5.0]  # polls every 5 s until 12 s have passed
    assert t.now == 15.0


def test_short_watch_sleeps_no_longer_than_the_watch(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    t = FakeTime()
    Lease(storage, timeout_secs=2, clock=t.clock, sleep=t.sleep).acquire()
    assert t.sleeps == [2.0]


def test_default_watch_is_timeout_secs(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    t = FakeTime()
    Lease(storage, timeout_secs=10, clock=t.clock, sleep=t.sleep).acquire()
    assert t.now == 10.0


def test_a_foreign_lease_that_beats_once_is_alive(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    t = FakeTime()
    beats = [3]  # it beats on the third look only

    def sleep(secs: float) -> None:
        t.sleep(secs)
        beats[0] -= 1
        if beats[0] == 0:
            storage.write(LEASE_FILE, json.dumps({**FOREIGN, "heartbeat": 1}).encode())

    with pytest.raises(LeaseHeldError):
        Lease(storage, timeout_secs=60, clock=t.clock, sleep=sleep).acquire()
    assert t.now == 15.0  # it stopped watching at the beat, long before 60 s
    assert _lease_file(storage)["heartbeat"] == 1


def test_lease_of_a_live_process_on_this_host_is_refused(tmp_path):
    storage = LocalStorage(tmp_path)
    me = os.getpid()
    storage.write(
        LEASE_FILE,
        json.dumps({"host": socket.gethostname(), "pid": me, "pid_start_ticks": process_start_ticks(me)}).encode(),
    )
    t = FakeTime()
    with pytest.raises(LeaseHeldError):
        Lease(storage, clock=t.clock, sleep=t.sleep).acquire()
    assert t.sleeps == []  # a local holder is judged by its pid, not by watching


def test_live_pid_without_start_ticks_is_still_alive(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode())
    with pytest.raises(LeaseHeldError):
        Lease(storage).acquire(watch_secs=0)


def test_reused_pid_on_this_host_is_dead(tmp_path):
    storage = LocalStorage(tmp_path)
    me = os.getpid()
    storage.write(
        LEASE_FILE,
        json.dumps({"host": socket.gethostname(), "pid": me, "pid_start_ticks": -5}).encode(),
    )
    lease = Lease(storage)
    lease.acquire(watch_secs=0)
    assert _lease_file(storage)["token"] == lease.token


@pytest.mark.parametrize("holder", [b"{torn", b"{}", b'{"host": "%s", "pid": "12"}'])
def test_unreadable_or_ownerless_lease_is_held_until_it_stands_still(tmp_path, holder):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, holder.replace(b"%s", socket.gethostname().encode()))
    with pytest.raises(LeaseHeldError, match="unknown controller"):  # its live holder may rewrite it
        Lease(storage).acquire(watch_secs=0)
    t = FakeTime()
    lease = Lease(storage, timeout_secs=30, clock=t.clock, sleep=t.sleep)
    lease.acquire()
    assert lease.held and _lease_file(storage)["token"] == lease.token and t.now >= 30


def test_lease_released_between_create_and_read_is_retried(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())

    class Vanishing(LocalStorage):
        reads = 0

        def read(self, name):
            self.reads += 1
            if self.reads == 1:
                self.delete(name)  # the holder released it just now
            return super().read(name)

    lease = Lease(Vanishing(tmp_path))
    lease.acquire(watch_secs=0)
    assert lease.held and _lease_file(storage)["token"] == lease.token


def test_losing_the_takeover_race_looks_again(tmp_path):
    storage = LocalStorage(tmp_path)
    dead = {**FOREIGN, "host": socket.gethostname(), "pid": _dead_pid(), "token": "dead"}
    storage.write(LEASE_FILE, json.dumps(dead).encode())

    class Raced(LocalStorage):
        raced = False

        def write_if_generation(self, name, data, generation):
            if not self.raced:  # a third controller moves first
                self.raced = True
                LocalStorage.write(self, name, json.dumps(FOREIGN).encode())
            return super().write_if_generation(name, data, generation)

    with pytest.raises(LeaseHeldError, match="other-host"):
        Lease(Raced(tmp_path)).acquire(watch_secs=0)


def test_defaults():
    lease = Lease(LocalStorage("/nonexistent-lease-folder"))
    assert lease.timeout_secs == 900.0 and lease.counter == 0 and not lease.held


def test_refusal_message_says_what_to_do(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    with pytest.raises(LeaseHeldError) as info:
        Lease(storage).acquire(watch_secs=0)
    assert str(info.value) == (
        f"{tmp_path / LEASE_FILE} is held by another controller (host 'other-host', pid 1); "
        "wait for it to finish, or stop it; a dead holder's lease is taken over automatically"
    )


def test_renew_messages(tmp_path):
    storage = LocalStorage(tmp_path)
    lease = Lease(storage)
    with pytest.raises(LeaseLostError) as info:
        lease.renew()
    assert str(info.value) == "the lease is not held"
    lease.acquire()
    storage.delete(LEASE_FILE)
    with pytest.raises(LeaseLostError) as info:
        lease.renew()
    assert str(info.value) == (
        f"{tmp_path / LEASE_FILE} was removed while this controller held it; "
        "another controller may have run meanwhile: this one stops acting on the folder"
    )
    lease = Lease(storage)
    lease.acquire()
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    with pytest.raises(LeaseLostError) as info:
        lease.renew()
    assert str(info.value) == (
        f"{tmp_path / LEASE_FILE} was taken over by another controller (host 'other-host', pid 1); "
        "this controller stops acting on the folder"
    )


def test_live_local_holder_with_unreadable_start_ticks_is_alive(tmp_path):
    storage = LocalStorage(tmp_path)
    holder = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start_ticks": "soon"}
    storage.write(LEASE_FILE, json.dumps(holder).encode())
    with pytest.raises(LeaseHeldError):
        Lease(storage).acquire(watch_secs=0)


def test_a_one_second_watch_still_watches(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.write(LEASE_FILE, json.dumps(FOREIGN).encode())
    t = FakeTime()
    lease = Lease(storage, clock=t.clock, sleep=t.sleep)
    lease.acquire(watch_secs=1)
    assert t.sleeps == [1.0] and lease.held
