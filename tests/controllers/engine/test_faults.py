"""Faults the engine survives: lost answers, damaged leases, takeovers (fencing), machine crashes,
corrupt state and corrupt results. Real processes, the real fake GCS server behind a fault proxy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from controllers.engine.jobs import run_job
from controllers.engine.lease import LEASE_FILE, Lease
from controllers.engine.records import JobRecord, JobSpec, TrialPlan, TrialState, job_dir_uri
from controllers.engine.state import JOB_RECORD_SCHEMA, StateFile
from controllers.errors import LeaseHeldError, LeaseLostError, StateError
from controllers.runners import LocalRunner
from controllers.runners.base import TrialHandle
from controllers.runners.process import find_processes, pid_alive, pid_stopped, process_start_ticks
from controllers.testing import wait_until
from controllers.testing.fault_proxy import FaultProxy
from proxy_task_utils import protocol as p
from proxy_task_utils.storage import LocalStorage
from proxy_task_utils.storage.gcs import GCSStorage

# -- the lease -----------------------------------------------------------------------------------


def _other_host_lease(storage, token="theirs", pid=4242, heartbeat=0):
    body = {"host": "elsewhere", "pid": pid, "pid_start_ticks": 1, "token": token, "heartbeat": heartbeat}
    return storage.write(LEASE_FILE, json.dumps(body).encode())


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, secs):
        self.now += secs


def test_a_live_holder_rewrites_its_garbled_lease(tmp_path):
    storage = LocalStorage(str(tmp_path))
    lease = Lease(storage)
    lease.acquire()
    (tmp_path / LEASE_FILE).write_bytes(b'{"host": "x", "tok')  # truncated by a disk or a hand
    lease.renew()  # no "taken over": it knows its own token
    assert json.loads((tmp_path / LEASE_FILE).read_text())["token"] == lease.token
    (tmp_path / LEASE_FILE).write_bytes(b"\x00\xff garbage")
    lease.confirm()
    lease.renew()
    assert json.loads((tmp_path / LEASE_FILE).read_text())["token"] == lease.token
    (tmp_path / LEASE_FILE).write_bytes(b"{")
    lease.release()  # garbled at the very end: still ours to remove, not left to block the next run
    assert not (tmp_path / LEASE_FILE).exists()


def test_a_newcomer_holds_off_an_unreadable_lease_until_it_stands_still(tmp_path):
    storage = LocalStorage(str(tmp_path))
    (tmp_path / LEASE_FILE).write_bytes(b"{garbled")
    with pytest.raises(LeaseHeldError, match="unknown controller .the lease file is unreadable"):
        Lease(storage, timeout_secs=30).acquire(watch_secs=0)
    clock = _Clock()
    rewritten = []

    def holder_rewrites(secs):  # the live holder repairs it while the newcomer watches
        clock.sleep(secs)
        if not rewritten:
            rewritten.append(_other_host_lease(storage, pid=777))

    with pytest.raises(LeaseHeldError, match="pid 777"):
        Lease(storage, timeout_secs=30, clock=clock, sleep=holder_rewrites).acquire()
    (tmp_path / LEASE_FILE).write_bytes(b"{garbled")
    clock = _Clock()
    lease = Lease(storage, timeout_secs=30, clock=clock, sleep=clock.sleep)
    lease.acquire()  # nobody beat for 30 s: nobody holds it
    assert clock.now >= 30 and json.loads((tmp_path / LEASE_FILE).read_text())["token"] == lease.token


def test_the_loser_of_a_takeover_race_names_the_winner(tmp_path):
    storage = LocalStorage(str(tmp_path))
    _other_host_lease(storage, pid=1111)  # a dead holder on another host
    clock = _Clock()

    def winner_takes_it(secs):
        clock.sleep(secs)
        if clock.now >= 30:  # just as we would declare it dead, another newcomer takes it
            _other_host_lease(storage, token="winner", pid=2222)

    with pytest.raises(LeaseHeldError) as info:
        Lease(storage, timeout_secs=30, clock=clock, sleep=winner_takes_it).acquire()
    assert "pid 2222" in str(info.value) and "1111" not in str(info.value)


def test_a_lease_removed_under_its_holder_is_lost_and_stays_lost(tmp_path):
    storage = LocalStorage(str(tmp_path))
    lease = Lease(storage)
    lease.acquire()
    (tmp_path / LEASE_FILE).unlink()  # another controller took it over, finished and released it
    with pytest.raises(LeaseLostError, match="was removed"):
        lease.renew()
    with pytest.raises(LeaseLostError, match="was removed"):  # every later action is refused too
        lease.confirm()
    assert not (tmp_path / LEASE_FILE).exists()  # and nothing was written


def test_a_frozen_holder_on_this_host_is_taken_over_after_the_timeout(tmp_path):
    code = (
        "import sys, time; from proxy_task_utils.storage import LocalStorage; "
        "from controllers.engine.lease import Lease; "
        f"Lease(LocalStorage({str(tmp_path)!r})).acquire(); print('held', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=os.environ)
    try:
        assert holder.stdout.readline().strip() == b"held"
        storage = LocalStorage(str(tmp_path))
        with pytest.raises(LeaseHeldError, match=f"pid {holder.pid}"):
            Lease(storage, timeout_secs=0.3).acquire()  # alive and running: held, refused at once
        os.kill(holder.pid, signal.SIGSTOP)
        wait_until(lambda: pid_stopped(holder.pid))
        lease = Lease(storage, timeout_secs=0.3)
        lease.acquire()  # frozen, its counter stood still for the timeout: taken over
        assert json.loads((tmp_path / LEASE_FILE).read_text())["token"] == lease.token
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def proxied_gcs(fake_gcs, monkeypatch):
    with FaultProxy(fake_gcs.endpoint) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
        yield proxy, GCSStorage(fake_gcs.bucket, "ctl", retry_timeout=30)


def test_lost_answers_never_turn_our_own_lease_against_us(proxied_gcs):
    proxy, storage = proxied_gcs
    lease = Lease(storage)
    proxy.drop_next()
    lease.acquire()  # the create landed, its answer was lost: ours, not "held by pid <ours>"
    for _ in range(3):
        proxy.drop_next()
        lease.renew()  # not "taken over by another controller"
    assert proxy.counts["dropped"] == 4
    holder = json.loads(storage.read(LEASE_FILE)[0])
    assert holder["token"] == lease.token and holder["heartbeat"] == 3
    lease.release()
    assert not storage.exists(LEASE_FILE)


# -- liveness ----------------------------------------------------------------------------------


def test_liveness_is_portable_and_tells_a_recycled_pid(tmp_path):
    token = "tok-" + os.urandom(4).hex()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "--token", token])
    try:
        ticks = process_start_ticks(proc.pid)
        assert ticks is not None and pid_alive(proc.pid, ticks) and pid_alive(proc.pid, None)
        assert not pid_alive(proc.pid, ticks + 500)  # same pid, another start time: not ours
        assert find_processes(["--token", token]) == [(proc.pid, ticks)]
    finally:
        proc.kill()
        proc.wait()
    assert not pid_alive(proc.pid, ticks) and process_start_ticks(proc.pid) is None
    assert find_processes(["--token", token]) == []


# -- state files -----------------------------------------------------------------------------------

SCHEMA = {"status": str, "iterations": [{"job": JOB_RECORD_SCHEMA, "done": bool}]}


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ({}, "'status' is missing"),
        ({"status": "running"}, "'iterations' is missing"),
        ({"status": "running", "iterations": [{"done": False}]}, "'iterations[0].job' is missing"),
        ({"status": 3, "iterations": []}, "'status' must be a string"),
        (
            {"status": "running", "iterations": [{"done": False, "job": {"name": "j", "job_dir": "d",
                                                                          "trials": [{"trial_id": "1"}]}}]},
            "'iterations[0].job.trials[0].state' is missing",
        ),
    ],
)  # fmt: skip
def test_a_state_file_without_its_keys_is_refused_naming_the_key_and_left_alone(tmp_path, content, key):
    path = tmp_path / "STATE.json"
    path.write_text(json.dumps(content))
    before = path.read_bytes()
    with pytest.raises(StateError, match="STATE.json") as info:
        StateFile(LocalStorage(str(tmp_path)), "STATE.json", schema=SCHEMA).load()
    assert key in str(info.value)
    assert path.read_bytes() == before


def test_a_fenced_state_file_writes_nothing_once_the_lease_is_lost(tmp_path):
    storage = LocalStorage(str(tmp_path))
    lease = Lease(storage)
    lease.acquire()
    state = StateFile(storage, "STATE.json", fence=lease.renew)
    state.save({"status": "running"})
    _other_host_lease(storage, token="new-holder")  # taken over while we were frozen
    with pytest.raises(LeaseLostError, match="taken over"):
        state.save({"status": "overwritten"})
    assert json.loads((tmp_path / "STATE.json").read_text())["status"] == "running"


# -- the job loop ----------------------------------------------------------------------------------


def _job(tmp_path, command, n, **flags):
    jd = job_dir_uri(str(tmp_path), "job")
    fl = tuple((k, str(v)) for k, v in flags.items())
    plans = tuple(TrialPlan(str(i), (("nas_params_str", json.dumps({"quality": 0.5 + i / 20})), *fl))
                  for i in range(1, n + 1))  # fmt: skip
    spec = JobSpec(name="job", job_dir_uri=jd, log_dir=str(tmp_path / "logs"), trainer_command=tuple(command),
                   trials=plans, desired_training_pct=101.0)  # fmt: skip
    return spec, JobRecord.create("job", jd, [t.trial_id for t in plans])


def _starts(tmp_path, tid):
    return (tmp_path / "logs" / tid / "trainer.log").read_text().count("replay trainer: start")


def test_trials_that_died_with_the_machine_are_relaunched_and_resume(tmp_path, replay_command, fast_settings):
    spec, record = _job(tmp_path, replay_command + ["--train_steps=40", "--cycle_steps=4"], 2,
                        sleep_per_cycle=0.15)  # fmt: skip
    saved = []

    def persist():
        saved.append(json.dumps(record.to_dict()))

    runner = LocalRunner(2)
    handles = {}

    def crash_when_half_done(view):  # the machine goes down: trials die with the controller, no exit record
        m = view.snapshots["1"].metrics
        if m is not None and m.last_pct >= 40.0 and not handles:
            persist()
            for t in record.trials:
                handles[t.trial_id] = t.handle
                os.killpg(t.handle["pgid"], signal.SIGKILL)
            raise KeyboardInterrupt  # stands for the controller's own death

    with pytest.raises(KeyboardInterrupt):
        run_job(spec, runner, record, persist=persist, settings=fast_settings, on_poll=crash_when_half_done)
    for h in handles.values():
        wait_until(lambda h=h: not pid_alive(h["external_id"] and int(h["external_id"]), h["start_ticks"]))
    resumed = JobRecord.from_dict(json.loads(saved[-1]))
    assert [t.state for t in resumed.trials] == [TrialState.RUNNING, TrialState.RUNNING]
    result = run_job(spec, LocalRunner(2), resumed, persist=lambda: None, settings=fast_settings)
    assert [t.state for t in result.trials] == [TrialState.SUCCEEDED, TrialState.SUCCEEDED]
    assert [(t.launches, t.relaunches) for t in resumed.trials] == [(2, 1), (2, 1)]
    for t in result.trials:  # resumed from the checkpoint: the curve is whole, each step once
        pcts = [e.training_step_pct for e in t.metrics.training_accuracy_over_steps]
        assert pcts == [10.0 * i for i in range(1, 11)] and _starts(tmp_path, t.trial_id) == 2
        log = (tmp_path / "logs" / t.trial_id / "trainer.log").read_text()
        assert "start trial" in log and t.failure is None


def test_a_trial_that_fails_by_itself_is_not_relaunched(tmp_path, replay_command, fast_settings):
    spec, record = _job(tmp_path, replay_command + ["--train_steps=20"], 1, failure_plan="1:crash")
    result = run_job(spec, LocalRunner(1), record, persist=lambda: None, settings=fast_settings)
    assert result.trials[0].state is TrialState.FAILED and result.trials[0].failure.kind.value == "crash"
    assert (record.trials[0].launches, record.trials[0].relaunches) == (1, 0)


def test_a_finished_trial_with_corrupt_metrics_at_resume_stops_the_run_untouched(tmp_path, replay_command,
                                                                                  fast_settings):  # fmt: skip
    spec, record = _job(tmp_path, replay_command + ["--train_steps=20"], 2)
    saved = []
    run_job(spec, LocalRunner(2), record, persist=lambda: saved.append(json.dumps(record.to_dict())),
            settings=fast_settings)  # fmt: skip
    resumed = JobRecord.from_dict(json.loads(saved[-1]))
    resumed.finished = False  # the crash came before the final save
    metrics = tmp_path / "job/nas/search/2" / p.TRIAL_TRAINING_METRICS_FILE
    metrics.write_bytes(metrics.read_bytes()[:40])  # torn by the disk
    before = metrics.read_bytes()
    runner = LocalRunner(2)
    with pytest.raises(StateError, match=r"trial 2 finished, but its metrics file .*TRIAL_TRAINING_METRICS"):
        run_job(spec, runner, resumed, persist=lambda: saved.append("resumed"), settings=fast_settings)
    assert metrics.read_bytes() == before and saved[-1] != "resumed"
    assert [t.launches for t in resumed.trials] == [1, 1]


class _TakenOverRunner(LocalRunner):
    """Counts launches; the folder is taken over by another controller right after the first batch."""

    def __init__(self, storage):
        super().__init__(1)
        self.storage, self.launched = storage, []

    def launch(self, spec):
        self.launched.append(spec.trial_id)
        handle = super().launch(spec)
        _other_host_lease(self.storage, token="new-holder", pid=31337)
        return handle


def test_a_controller_taken_over_launches_saves_and_beats_nothing_more(tmp_path, replay_command, fast_settings):
    spec, record = _job(tmp_path, replay_command + ["--train_steps=20"], 3, sleep_per_cycle=0.05)
    storage = LocalStorage(str(tmp_path))
    lease = Lease(storage, timeout_secs=0)  # 0: every confirm renews (a takeover needs no silence here)
    lease.acquire()
    saves = []
    runner = _TakenOverRunner(storage)
    with pytest.raises(LeaseLostError, match="pid 31337"):
        run_job(spec, runner, record, persist=lambda: saves.append(time.monotonic()), settings=fast_settings,
                lease=lease)  # fmt: skip
    assert runner.launched == ["1"] and len(saves) == 1  # the intent of the first batch, then nothing
    beat = tmp_path / "job/nas/search/1" / p.CONTROLLER_ALIVE_TIMESTAMP_FILE
    assert not beat.exists()  # its first beat was due later: the new holder beats the trials
    assert json.loads((tmp_path / LEASE_FILE).read_text())["token"] == "new-holder"
    runner.cancel(TrialHandle.from_dict(record.trials[0].handle), grace_secs=0)
