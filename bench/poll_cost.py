"""Controller poll cost vs the number of live trials: our job loop vs a naive poller.

N trial folders are pre-written as trainers mid-way would leave them (6 objects
each, a 20-cycle ``TRIAL_TRAINING_METRICS.json``). Between two polls a random
fraction of the trials append one cycle (an atomic rewrite of their metrics
file, by a separate storage client whose requests are not counted).

* ours: the real :func:`controllers.engine.jobs.run_job` loop (launch, runner poll,
  monitor look, re-reads, heartbeats, throttled state saves, the ``on_poll``
  view) with the config defaults ``poll_interval_secs=10``,
  ``heartbeat_interval_secs=60``, ``state_save_interval_secs=30`` on a fake
  clock; the runner is a stand-in whose trials are the simulated trainers
  (this measures the storage side; ``bench/stop_latency.py`` runs real processes).
* naive: what the reference does every poll: read and parse every trial's
  metrics file, and (its heartbeat, if it were enabled) rewrite every live
  trial's ``controller_alive_timestamp.json``.

Prints seconds and storage requests per poll (full poll, heartbeats and state
saves included), and the ratios, for a local folder (fsync on, as in
production: our heartbeats are written without fsync, ``durable=False``, the
naive poller's with it, as the reference would) and a fake GCS server over
HTTP. fake-gcs-server ignores ``matchGlob`` and answers a listing in one page,
so GCS request counts here match real GCS only while a job folder holds fewer
than 1,000 watched files. The load average is printed with the figures: the
seconds depend on it, the ratios much less.

    python bench/poll_cost.py [--sizes 100,1000,10000] [--gcs-sizes 100,1000] [--polls 6] [--heartbeat-secs 60]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._replay import BenchRunner, FakeClock, SimulatedTrainers, parallel, tracked_storages  # noqa: E402
from controllers.engine import jobs as jobs_module  # noqa: E402
from controllers.engine.jobs import run_job
from controllers.engine.monitor import JobMonitor  # noqa: E402
from controllers.engine.records import JobRecord, JobSettings, JobSpec, TrialPlan, job_dir_uri
from proxy_task_utils import protocol as p  # noqa: E402
from proxy_task_utils.storage import Storage, open_storage  # noqa: E402

SETTINGS = JobSettings(
    poll_interval_secs=10.0,
    no_metrics_timeout_secs=None,
    heartbeat_interval_secs=60.0,
    state_save_interval_secs=30.0,
)
PREWRITTEN_CYCLES = 20
IO_THREADS = 16


@contextlib.contextmanager
def _patched(module: object, name: str, value: object) -> Iterator[None]:
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


class Row:
    def __init__(self, label: str) -> None:
        self.label = label
        self.secs: list[float] = []
        self.requests: list[int] = []
        self.changed: list[int] = []
        self.parts: list[tuple[int, int, int]] = []  # (reads, heartbeat/signal writes, state saves)

    def add(self, secs: float, requests: int, changed: int, parts: tuple[int, int, int]) -> None:
        self.secs.append(secs)
        self.requests.append(requests)
        self.changed.append(changed)
        self.parts.append(parts)

    def mean_part(self, i: int) -> float:
        return statistics.fmean(x[i] for x in self.parts)

    @property
    def mean_secs(self) -> float:
        return statistics.fmean(self.secs)

    @property
    def mean_requests(self) -> float:
        return statistics.fmean(self.requests)


def _ours(root_uri: str, n: int, fractions: list[float], polls: int, trainers: SimulatedTrainers) -> list[Row]:
    """Drive run_job; one Row per fraction (steady polls) plus the start and end polls."""
    jd = job_dir_uri(root_uri, "bench")
    ids = trainers.trial_ids
    spec = JobSpec(
        name="bench", job_dir_uri=jd, log_dir=tempfile.mkdtemp(prefix="poll-cost-logs-"), trainer_command=("true",),
        trials=tuple(TrialPlan(t) for t in ids), desired_training_pct=101.0, max_training_time_in_hrs=2.0,
    )  # fmt: skip
    record = JobRecord.create("bench", jd, ids)
    clock = FakeClock()
    runner = BenchRunner(max_parallel=n)
    schedule = [f for f in fractions for _ in range(polls)]
    rows = {f: Row(f"ours, {f:.0%} changed") for f in fractions}
    start_row, end_row = Row("ours, first poll (launch all)"), Row("ours, last poll (all end)")
    monitors: list[JobMonitor] = []

    class CountingMonitor(JobMonitor):  # the loop's own monitor, kept to split reads from writes
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **kw)  # type: ignore[arg-type]
            monitors.append(self)

    with tracked_storages() as opened, _patched(jobs_module, "JobMonitor", CountingMonitor):
        state = open_storage(root_uri)
        opened.append(state)

        def persist() -> None:
            state.write("BENCH_STATE.json", p.dump_json({"job": record.to_dict()}))

        def requests() -> int:
            return sum(s.request_count for s in opened)

        def parts() -> tuple[int, int, int]:
            m = monitors[0] if monitors else None
            return (m.reads if m else 0, m.writes if m else 0, state.request_count)

        mark = {"t": time.perf_counter(), "r": requests(), "p": parts(), "i": 0, "changed": n, "row": start_row}

        def close_poll() -> None:
            now_parts = parts()
            delta = tuple(a - b for a, b in zip(now_parts, mark["p"]))
            mark["row"].add(time.perf_counter() - mark["t"], requests() - mark["r"], mark["changed"], delta)

        def sleep(secs: float) -> None:
            close_poll()
            clock.now += secs
            i = mark["i"]
            if i < len(schedule):
                changed = trainers.step(schedule[i], workers=IO_THREADS)
                mark["row"], mark["changed"] = rows[schedule[i]], len(changed)
            else:
                runner.finish_all()
                mark["row"], mark["changed"] = end_row, n
            mark["i"] = i + 1
            mark["t"], mark["r"], mark["p"] = time.perf_counter(), requests(), parts()

        run_job(spec, runner, record, persist=persist, settings=SETTINGS, clock=clock, sleep=sleep)
        close_poll()
    return [start_row, *(rows[f] for f in fractions), end_row]


def _naive(storage: Storage, n: int, fractions: list[float], polls: int, trainers: SimulatedTrainers) -> list[Row]:
    ids = trainers.trial_ids
    hb = p.encode_controller_alive_timestamp(time.time())
    rows = []
    for f in fractions:
        row = Row(f"naive, {f:.0%} changed")
        for _ in range(max(1, polls // 3)):
            changed = trainers.step(f, workers=IO_THREADS)
            before, t0 = storage.request_count, time.perf_counter()
            for t in ids:
                p.TrialTrainingMetrics.from_json(storage.read(f"{t}/{p.TRIAL_TRAINING_METRICS_FILE}")[0])
            parallel(lambda t: storage.write(f"{t}/{p.CONTROLLER_ALIVE_TIMESTAMP_FILE}", hb), ids, IO_THREADS)
            row.add(time.perf_counter() - t0, storage.request_count - before, len(changed), (n, n, 0))
        rows.append(row)
    return rows


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _print(title: str, n: int, rows: list[Row], prewrite_secs: float) -> None:
    print(f"\n{title}: N = {n} live trials (pre-written in {prewrite_secs:.1f} s); load average now {_load()}")
    print(f"{'poller':31s} {'changed':>7s} {'requests/poll':>13s} {'(reads':>7s} {'writes':>7s} {'saves)':>7s} "
          f"{'s/poll':>7s} {'fewer req.':>10s} {'faster':>7s}")  # fmt: skip
    naive = {r.label.split(", ", 1)[1]: r for r in rows if r.label.startswith("naive")}
    for r in rows:
        ref = naive.get(r.label.split(", ", 1)[1]) if r.label.startswith("ours") else None
        ratio_r = f"{ref.mean_requests / r.mean_requests:.1f}x" if ref else ""
        ratio_t = f"{ref.mean_secs / r.mean_secs:.1f}x" if ref else ""
        print(f"{r.label:31s} {statistics.fmean(r.changed):7.0f} {r.mean_requests:13.1f} {r.mean_part(0):7.1f} "
              f"{r.mean_part(1):7.1f} {r.mean_part(2):7.1f} {r.mean_secs:7.3f} {ratio_r:>10s} {ratio_t:>7s}")  # fmt: skip


def _bench(title: str, make_root: Callable[[], str], n: int, fractions: list[float], polls: int) -> None:
    root = make_root()
    trainer_storage = open_storage(job_dir_uri(root, "bench"))
    if hasattr(trainer_storage, "_fsync"):
        trainer_storage._fsync = False  # the simulated trainers' durability is not what is measured
    trainers = SimulatedTrainers(trainer_storage, [str(i) for i in range(1, n + 1)], cycles=PREWRITTEN_CYCLES)
    t0 = time.perf_counter()
    trainers.prewrite(workers=IO_THREADS)
    prewrite = time.perf_counter() - t0
    rows = _ours(root, n, fractions, polls, trainers)
    rows += _naive(open_storage(job_dir_uri(root, "bench")), n, fractions, polls, trainers)
    _print(title, n, rows, prewrite)


def main(argv: list[str] | None = None) -> int:
    global SETTINGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--gcs-sizes", default="100,1000", help="'' skips GCS")
    ap.add_argument("--fractions", default="0.01,0.1")
    ap.add_argument("--polls", type=int, default=6, help="steady polls per fraction (naive: a third of them)")
    ap.add_argument("--heartbeat-secs", type=float, default=SETTINGS.heartbeat_interval_secs)
    args = ap.parse_args(argv)
    SETTINGS = dataclasses.replace(SETTINGS, heartbeat_interval_secs=args.heartbeat_secs)
    fractions = [float(x) for x in args.fractions.split(",")]
    print(f"settings: poll {SETTINGS.poll_interval_secs:g} s, heartbeat {SETTINGS.heartbeat_interval_secs:g} s, "
          f"state save {SETTINGS.state_save_interval_secs:g} s (fake clock); {os.cpu_count()} CPUs; "
          f"load average {_load()}")  # fmt: skip
    base = tempfile.mkdtemp(prefix="poll-cost-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    try:
        for n in [int(x) for x in args.sizes.split(",") if x]:
            folder = os.path.join(base, f"local-{n}")
            _bench("local folder (ext4, fsync on)", lambda f=folder: f, n, fractions, args.polls)
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    gcs_sizes = [int(x) for x in args.gcs_sizes.split(",") if x]
    if gcs_sizes:
        from proxy_task_utils.testing import launch_fake_gcs_server

        server = launch_fake_gcs_server()
        os.environ["STORAGE_EMULATOR_HOST"] = server.endpoint
        try:
            for n in gcs_sizes:
                bucket = f"bench-poll-{n}"
                server.create_bucket(bucket)
                _bench("fake GCS server over HTTP", lambda b=bucket: f"gs://{b}", n, fractions, args.polls)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
