"""Latency workers through faults: a worker killed after its claim, a controller that stops beating,
a claim whose answer is lost on GCS."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from controllers.engine.lease import LEASE_FILE, Lease
from controllers.latency.worker import LatencyWorker, WorkerConfig, start_local_workers
from controllers.testing import wait_until
from controllers.testing.fault_proxy import FaultProxy
from proxy_task_utils import protocol as p
from proxy_task_utils.latency import wait_for_latency
from proxy_task_utils.storage import LocalStorage
from proxy_task_utils.storage.gcs import GCSStorage

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_latency_worker import FAST, _summary, export_trials  # noqa: E402


def _kill_all(procs):
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_model_claimed_by_a_killed_worker_is_taken_over_and_the_trainer_answered(tmp_path):
    ctl = tmp_path / "ctl"
    root = LocalStorage(ctl)
    (trial,) = export_trials(root, 1)
    slow = ["--repeats", "5", "--warmup", "100000000", "--poll-secs", "0.1", "--threads", "1"]
    args = ["--claim-timeout-secs", "1", "--controller-timeout-secs", "0"]
    (first,) = start_local_workers(str(ctl), 1, extra_args=[*slow, *args], log_dir=str(tmp_path / "a"))
    procs = [first]
    try:
        wait_until(lambda: trial.exists(p.LATENCY_WORKER_ID_FILE), timeout=60)
        g0 = trial.read(p.LATENCY_WORKER_ID_FILE)[1]
        wait_until(lambda: trial.read(p.LATENCY_WORKER_ID_FILE)[1] != g0, timeout=30)  # it beats while it measures
        first.send_signal(signal.SIGKILL)  # killed after its claim, in the middle of the measurement
        first.wait()
        procs += start_local_workers(str(ctl), 1, extra_args=[*FAST, *args], log_dir=str(tmp_path / "b"))
        latency = wait_for_latency(trial.uri, timeout_secs=60, poll_secs=0.1)  # the waiting trainer's answer
        assert latency.device_type == "CPU" and latency.latency_in_milliseconds > 0
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(timeout=30) == 0
    finally:
        _kill_all(procs)
    summary = _summary(tmp_path / "b" / "latency_worker_0.log")
    assert summary["taken_over"] == [trial.uri] and summary["measured"] == [trial.uri]
    assert json.loads(trial.read(p.LATENCY_WORKER_ID_FILE)[0])["worker_instance"] == summary["worker_instance"]


def test_workers_exit_when_the_controller_stops_beating(tmp_path):
    ctl = tmp_path / "ctl"
    root = LocalStorage(ctl)
    lease = Lease(root)
    lease.acquire()  # a controller that is killed now: its lease stays, unchanged
    args = [*FAST, "--controller-timeout-secs", "1"]
    procs = start_local_workers(str(ctl), 2, extra_args=args, log_dir=str(tmp_path / "logs"))
    try:
        assert [proc.wait(timeout=60) for proc in procs] == [0, 0]
    finally:
        _kill_all(procs)
    for k in (0, 1):
        assert "stood still for 1 s" in _summary(tmp_path / "logs" / f"latency_worker_{k}.log")["exit_reason"]
    assert (ctl / LEASE_FILE).exists()


def test_a_worker_exits_when_the_controller_lease_is_gone(tmp_path):
    root = LocalStorage(tmp_path / "ctl")
    lease = Lease(root)
    lease.acquire()

    class Clock:
        now = 0.0

    def sleep(secs):
        Clock.now += secs
        lease.renew()  # the controller beats...
        if Clock.now >= 5:
            lease.release()  # ...then ends without its marker (killed between renewal and marker)

    worker = LatencyWorker(root, WorkerConfig(poll_secs=1.0, controller_timeout_secs=3.0),
                           clock=lambda: Clock.now, sleep=sleep)  # fmt: skip
    summary = worker.run()
    assert summary.exit_reason == "the controller's lease is gone (it ended)" and 5 <= Clock.now < 7


def test_a_claim_whose_answer_is_lost_on_gcs_is_still_ours(fake_gcs, monkeypatch):
    with FaultProxy(fake_gcs.endpoint) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.endpoint)
        root = GCSStorage(fake_gcs.bucket, "ctl", retry_timeout=30)
        (trial,) = export_trials(root, 1)
        proxy.drop_next(lambda method, path: method == "POST" and "ifGenerationMatch=0" in path)  # the claim
        config = WorkerConfig(poll_secs=1.0, exit_when_idle_secs=0, repeats=3, warmup=1, controller_timeout_secs=None)
        summary = LatencyWorker(root, config, sleep=lambda s: None).run()
        assert proxy.counts["dropped"] == 1
        assert summary.claimed == [trial.uri] and summary.measured == [trial.uri] and summary.lost_claims == []
        assert p.decode_model_latency(trial.read(p.MODEL_LATENCY_FILE)[0]).latency_in_milliseconds > 0
