"""The latency worker: pure rules, one worker in-process, real worker processes, racing workers, gs://."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from controllers.latency.worker import (
    CONTROLLER_FINISHED_FILE,
    LatencyWorker,
    WorkerConfig,
    clear_controller_finished,
    mark_controller_finished,
    read_trial_latency,
    scan_exports,
    shard_of,
    start_local_workers,
    summarize_latencies,
)
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError
from proxy_task_utils.latency import (
    EXPORT_MANIFEST_FILE,
    LATENCY_ERROR_FILE,
    LatencyError,
    export_and_wait_for_latency,
    export_for_latency,
    wait_for_latency,
)
from proxy_task_utils.storage import LocalStorage, ObjectInfo, Storage, open_storage

torch = pytest.importorskip("torch")

SHARDS_OF_1_TO_8 = [0, 0, 0, 1, 2, 1, 2, 2]
FAST = ["--repeats", "5", "--warmup", "1", "--poll-secs", "0.1", "--threads", "1"]


REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:  # examples/ is not an installed package
    sys.path.insert(0, str(REPO_ROOT))


def example_model(seed: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """A sampled architecture of the PyTorch example's search space (8x8 digit images)."""
    from examples.pytorch.model import build_model
    from examples.pytorch.search_space import sample

    return build_model(sample(random.Random(seed))), torch.zeros(1, 1, 8, 8)


def tiny_model(seed: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """A tiny Sequential for the in-process tests (cheap to trace and to warm up)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)), torch.zeros(1, 8)


def export_trials(root: Storage, n: int, model_fn=tiny_model, job: str = "job/nas/search") -> list[Storage]:
    trials = []
    for i in range(1, n + 1):
        trial = root.child(job, str(i))
        model, x = model_fn(i)
        export_for_latency(model, trial, x)
        trials.append(trial)
    return trials


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, secs: float) -> None:
        self.now += secs


def claim_of(trial: Storage) -> dict:
    return json.loads(trial.read(p.LATENCY_WORKER_ID_FILE)[0])


def answer_of(trial: Storage) -> p.ModelLatency:
    return p.decode_model_latency(trial.read(p.MODEL_LATENCY_FILE)[0])


# -- pure rules ------------------------------------------------------------------------------


def test_summarize_latencies_median_and_p90() -> None:
    assert summarize_latencies([5.0, 1.0, 3.0, 2.0, 4.0]) == (3.0, pytest.approx(4.6))
    assert summarize_latencies([2.0]) == (2.0, 2.0)
    assert summarize_latencies([1.0, 2.0]) == (1.5, pytest.approx(1.9))
    with pytest.raises(ValueError, match="must not be empty"):
        summarize_latencies([])


def test_shard_is_stable_and_spreads() -> None:
    # SHA-256, not the salted hash(): these literals hold in every process on every machine.
    assert [shard_of(f"gs://b/ctl/job/nas/search/{i}", 3) for i in range(1, 9)] == SHARDS_OF_1_TO_8
    assert {shard_of(f"gs://b/ctl/job/nas/search/{i}", 3) for i in range(1, 41)} == {0, 1, 2}
    assert shard_of("a/b/", 3) == shard_of("a/b", 3)


def test_scan_exports_reads_states_and_marker_from_one_listing() -> None:
    names = [
        "j/nas/search/1/saved_model/export.json",
        "j/nas/search/1/saved_model/model.pt",
        "j/nas/search/2/saved_model/export.json",
        "j/nas/search/2/saved_model/latency_worker_id.json",
        "j/nas/search/3/saved_model/export.json",
        "j/nas/search/3/saved_model/latency_worker_id.json",
        "j/nas/search/3/saved_model/model_latency.json",
        "j/nas/search/4/saved_model/export.json",
        "j/nas/search/4/saved_model/latency_error.json",
        "j/nas/search/5/saved_model/model.pt",  # half an export: no manifest yet
        "j/nas/search/6/saved_model/export.json.tmp",
    ]
    states, finished = scan_exports([ObjectInfo(n, 1) for n in names])
    assert list(states) == [f"j/nas/search/{i}/" for i in (1, 2, 3, 4)]
    assert [s.pending for s in states.values()] == [True, False, False, False]
    assert states["j/nas/search/3/"].answered and states["j/nas/search/4/"].failed
    assert not finished
    _, finished = scan_exports([ObjectInfo(CONTROLLER_FINISHED_FILE, 1)])
    assert finished
    states, _ = scan_exports([ObjectInfo(EXPORT_MANIFEST_FILE, 1)])  # watching one trial folder
    assert list(states) == [""]


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"num_workers": 0}, "--workers"),
        ({"num_workers": 2, "worker_id": 2}, "--worker-id"),
        ({"repeats": 0}, "--repeats"),
        ({"warmup": -1}, "--warmup"),
        ({"poll_secs": 0}, "--poll-secs"),
        ({"exit_when_idle_secs": -1}, "--exit-when-idle-secs"),
        ({"device": "tpu"}, "--device"),
    ],
)
def test_config_errors_name_the_flag(kwargs: dict, flag: str) -> None:
    with pytest.raises(ConfigurationError, match=flag):
        WorkerConfig(**kwargs)


def test_bad_flags_exit_2_with_the_reason(tmp_path, capsys) -> None:
    from controllers.cli import main

    assert main(["latency-worker", "--watch", str(tmp_path), "--workers", "2", "--worker-id", "2"]) == 2
    assert "--worker-id must be in [0, 1]" in capsys.readouterr().err


def test_registered_in_the_proxy_task_cli(tmp_path) -> None:
    from controllers.cli import build_parser

    args = build_parser().parse_args(["latency-worker", "--watch", str(tmp_path), "--workers", "3", "--worker-id", "1"])
    assert (args.watch, args.workers, args.worker_id, args.device) == (str(tmp_path), 3, 1, "cpu")


# -- one worker, in-process ------------------------------------------------------------------


def test_worker_measures_its_shard_first_and_steals_after_the_delay(tmp_path) -> None:
    root = LocalStorage(tmp_path / "ctl")
    trials: list[Storage] = []
    while len(trials) < 3 or len({shard_of(t.uri, 2) for t in trials}) < 2:  # models in both shards
        trials.append(root.child("job/nas/search", str(len(trials) + 1)))
        export_for_latency(*tiny_model(len(trials))[:1], trials[-1], tiny_model(0)[1])
    owners = [shard_of(t.uri, 2) for t in trials]
    clock = FakeClock()
    worker = LatencyWorker(
        root,
        WorkerConfig(worker_id=0, num_workers=2, repeats=3, warmup=1, poll_secs=1.0, steal_after_secs=5.0),
        clock=clock,
        sleep=clock.sleep,
    )
    first = worker.poll_once()
    assert first.handled == owners.count(0) and first.waiting == owners.count(1)
    assert [t.exists(p.MODEL_LATENCY_FILE) for t in trials] == [o == 0 for o in owners]
    clock.now += 5.0
    assert worker.poll_once().handled == owners.count(1)  # stolen: nobody claimed them
    for trial in trials:
        ans = answer_of(trial)
        assert ans.device_type == "CPU" and ans.latency_in_milliseconds > 0 and ans.model_memory >= 0
        assert ans.extra["latency_p90_in_milliseconds"] >= ans.latency_in_milliseconds
        assert (
            ans.extra["num_repetitions"] == 3 and ans.extra["worker_id"] == 0 and ans.extra["format"] == "torchscript"
        )
        assert claim_of(trial)["latency_worker_id"] == 0
    assert read_trial_latency(trials[0], "worker") == answer_of(trials[0]).latency_in_milliseconds


def test_answered_models_and_beating_claims_are_left_alone_a_dead_claim_is_taken_over(tmp_path) -> None:
    root = LocalStorage(tmp_path / "ctl")
    claimed, answered = export_trials(root, 2)
    claimed.write_if_absent(p.LATENCY_WORKER_ID_FILE, p.dump_json({"latency_worker_id": 7}))
    recorded = p.encode_model_latency(p.ModelLatency(9.0, "GPU", 1.0))
    answered.write(p.MODEL_LATENCY_FILE, recorded)
    clock = FakeClock()

    def sleep_while_worker_7_beats(secs: float) -> None:
        clock.sleep(secs)
        if clock.now <= 30.0:  # worker 7 measures, beating; then it dies
            claimed.write(p.LATENCY_WORKER_ID_FILE, p.dump_json({"latency_worker_id": 7, "claim_beat": clock.now}))

    config = WorkerConfig(poll_secs=1.0, exit_when_idle_secs=3.0, claim_timeout_secs=10.0, repeats=3, warmup=1)
    summary = LatencyWorker(root, config, clock=clock, sleep=sleep_while_worker_7_beats).run()
    assert summary.taken_over == [claimed.uri] and summary.measured == [claimed.uri]
    assert 40.0 <= clock.now < 50.0  # not while it beat; 10 s after its last beat
    assert claim_of(claimed)["latency_worker_id"] == 0 and answer_of(claimed).extra["worker_id"] == 0
    assert answered.read(p.MODEL_LATENCY_FILE)[0] == recorded and not answered.exists(p.LATENCY_WORKER_ID_FILE)
    assert summary.exit_reason == "idle for 3 s"


def test_a_model_that_does_not_load_gets_an_error_file_and_the_trainer_fails_at_once(tmp_path) -> None:
    root = LocalStorage(tmp_path / "ctl")
    (trial,) = export_trials(root, 1)
    trial.write("saved_model/model.pt", b"not a torchscript archive")
    clock = FakeClock()
    summary = LatencyWorker(
        root, WorkerConfig(poll_secs=1.0, exit_when_idle_secs=0), clock=clock, sleep=clock.sleep
    ).run()
    assert summary.errors == [trial.uri] and summary.measured == []
    assert not trial.exists(p.MODEL_LATENCY_FILE)
    record = json.loads(trial.read(LATENCY_ERROR_FILE)[0])
    assert record["stage"] == "loading the model" and record["format"] == "torchscript" and record["worker_id"] == 0
    with pytest.raises(LatencyError, match="while loading the model"):
        wait_for_latency(trial, timeout_secs=60)


def test_worker_exits_when_its_controller_finished(tmp_path) -> None:
    root = LocalStorage(tmp_path / "ctl")
    export_trials(root, 1)
    mark_controller_finished(root, reason="search done")
    clock = FakeClock()
    summary = LatencyWorker(root, WorkerConfig(poll_secs=1.0), clock=clock, sleep=clock.sleep).run()
    assert summary.exit_reason == "controller finished" and summary.measured == [] and summary.polls == 1
    clear_controller_finished(root)
    assert not root.exists(CONTROLLER_FINISHED_FILE)
    # Watching a job folder: the marker is looked for in the controller folder given.
    job = root.child("job/nas/search")
    mark_controller_finished(str(tmp_path / "ctl"))
    summary = LatencyWorker(job, WorkerConfig(), controller=root, clock=clock, sleep=clock.sleep).run()
    assert summary.exit_reason == "controller finished"


def test_trainer_helper_records_the_answer_in_its_metrics(tmp_path) -> None:
    root = LocalStorage(tmp_path / "ctl")
    worker = LatencyWorker(root, WorkerConfig(repeats=3, warmup=1, poll_secs=0.05))
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        trial = str(tmp_path / "ctl" / "job" / "nas" / "search" / "1")
        model, x = tiny_model(1)
        latency = export_and_wait_for_latency(model, trial, x, timeout_secs=60, poll_secs=0.05)
    finally:
        mark_controller_finished(root)
        thread.join(timeout=30)
    assert worker.summary.exit_reason == "controller finished"
    assert read_trial_latency(open_storage(trial), "trainer") == latency.latency_in_milliseconds
    assert read_trial_latency(open_storage(trial), "worker") == latency.latency_in_milliseconds


def test_read_trial_latency_modes(tmp_path) -> None:
    trial = LocalStorage(tmp_path / "trial")
    assert read_trial_latency(trial, "worker") is None and read_trial_latency(trial, "trainer") is None
    trial.write(p.TRIAL_TRAINING_METRICS_FILE, p.TrialTrainingMetrics().to_json())
    assert read_trial_latency(trial, "trainer") is None  # -1.0: none reported
    trial.write(p.TRIAL_TRAINING_METRICS_FILE, p.TrialTrainingMetrics(latency=0.0).to_json())
    assert read_trial_latency(trial, "trainer") == 0.0  # a value, not "unset"
    trial.write(p.MODEL_LATENCY_FILE, p.encode_model_latency(p.ModelLatency(2.5, "CPU")))
    assert read_trial_latency(trial, "worker") == 2.5 and read_trial_latency(trial, "none") is None
    with pytest.raises(ConfigurationError, match="'worker', 'trainer' or 'none'"):
        read_trial_latency(trial, "flops")


# -- real worker processes ---------------------------------------------------------------------


def _summary(log: Path) -> dict:
    lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert len(lines) == 1, log.read_text()
    return json.loads(lines[0])


def test_worker_process_answers_a_waiting_trainer_and_exits_on_the_controller_marker(tmp_path) -> None:
    ctl = tmp_path / "ctl"
    root = LocalStorage(ctl)
    (procs,) = [start_local_workers(str(ctl), 1, extra_args=FAST, log_dir=str(tmp_path / "logs"))]
    try:
        (trial,) = export_trials(root, 1, example_model)  # exported while the worker already polls
        latency = wait_for_latency(trial.uri, timeout_secs=60, poll_secs=0.1)
        assert latency.device_type == "CPU" and latency.extra["worker_id"] == 0
        mark_controller_finished(str(ctl))
        assert procs[0].wait(timeout=30) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    summary = _summary(tmp_path / "logs" / "latency_worker_0.log")
    assert summary["measured"] == [trial.uri] and summary["exit_reason"] == "controller finished"


def test_two_racing_workers_measure_each_model_exactly_once(tmp_path) -> None:
    ctl = tmp_path / "ctl"
    root = LocalStorage(ctl)
    trials = export_trials(root, 3, example_model)
    # Stealing at once makes both workers go for every model from their first poll: a real race.
    args = [*FAST, "--steal-after-secs", "0", "--exit-when-idle-secs", "1"]
    procs = start_local_workers(str(ctl), 2, extra_args=args, log_dir=str(tmp_path / "logs"))
    try:
        assert [proc.wait(timeout=60) for proc in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    summaries = [_summary(tmp_path / "logs" / f"latency_worker_{k}.log") for k in (0, 1)]
    claimed = [uri for s in summaries for uri in s["claimed"]]
    measured = [uri for s in summaries for uri in s["measured"]]
    assert sorted(claimed) == sorted(measured) == sorted(t.uri for t in trials)  # every model timed once, none twice
    assert sum(len(s["lost_claims"]) for s in summaries) >= 1, "the workers never raced; the test proves nothing"
    for trial in trials:
        names = [o.name for o in trial.list("saved_model/")]
        assert names.count("saved_model/model_latency.json") == 1 and "saved_model/latency_error.json" not in names
        owner = claim_of(trial)["latency_worker_id"]
        assert answer_of(trial).extra["worker_id"] == owner
        assert trial.uri in summaries[owner]["measured"] and trial.uri not in summaries[1 - owner]["measured"]
    logs = "".join((tmp_path / "logs" / f"latency_worker_{k}.log").read_text() for k in (0, 1))
    for trial in trials:
        assert logs.count(f"claimed {trial.uri}\n") == 1
        assert logs.count(f"measured {trial.uri}:") + logs.count(f"measured {trial.uri} (stolen):") == 1


def test_gcs_trial_folders_through_a_worker_process(fake_gcs) -> None:
    root = open_storage(fake_gcs.uri + "/ctl")
    (trial,) = export_trials(root, 1, example_model)
    assert trial.uri.startswith("gs://")
    args = [
        sys.executable,
        "-m",
        "controllers.cli",
        "latency-worker",
        "--watch",
        root.uri,
        *FAST,
        "--exit-when-idle-secs",
        "0.5",
    ]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["measured"] == [trial.uri]
    latency = wait_for_latency(trial.uri, timeout_secs=0)
    assert latency.extra["format"] == "torchscript" and claim_of(trial)["latency_worker_id"] == 0
