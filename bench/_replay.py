"""Shared helpers of the controller benchmarks: pre-written trial folders, simulated trainers.

Not a test helper: the benchmarks use these to build *realistic* job folders
quickly (a thread pool on GCS) and to let a fraction of the trials append a
training cycle between two polls, exactly as a trainer would (one atomic
rewrite of ``TRIAL_TRAINING_METRICS.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from controllers.runners.base import PollResult, Runner, TrialHandle, TrialSpec, TrialStatus  # noqa: E402
from proxy_task_utils import protocol as p  # noqa: E402
from proxy_task_utils import storage as storage_module  # noqa: E402
from proxy_task_utils.storage import Storage  # noqa: E402

T = TypeVar("T")

TOTAL_STEPS = 10_000
CYCLE_STEPS = 100  # 100 cycles to completion


def parallel(fn: Callable[[T], object], items: Iterable[T], workers: int) -> None:
    """Run ``fn`` over ``items`` (a thread pool when ``workers > 1``); re-raise the first error."""
    items = list(items)
    if workers <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(fn, items):
            pass


class SimulatedTrainers:
    """The trainer side of N trial folders: each keeps its record in memory and rewrites its file.

    Args:
        storage: Storage rooted at the job folder (a separate instance from the
            controller's, so its requests are not counted as the controller's).
        trial_ids: The trials.
        cycles: Cycles already recorded when the folders are pre-written.
        seed: Seed of the curves and of which trials change.
    """

    def __init__(self, storage: Storage, trial_ids: Sequence[str], *, cycles: int, seed: int = 0) -> None:
        self.storage = storage
        self.trial_ids = list(trial_ids)
        self.rng = random.Random(seed)
        self.metrics: dict[str, p.TrialTrainingMetrics] = {}
        self.quality = {t: 0.3 + 0.6 * self.rng.random() for t in self.trial_ids}
        for t in self.trial_ids:
            m = p.TrialTrainingMetrics()
            for _ in range(cycles):
                self._append(t, m)
            self.metrics[t] = m

    def _append(self, trial_id: str, m: p.TrialTrainingMetrics) -> None:
        done = len(m.training_accuracy_over_steps)
        end = min((done + 1) * CYCLE_STEPS, TOTAL_STEPS) - 1
        acc = self.quality[trial_id] * (1.0 - 0.97 ** (done + 1)) + 0.01 * self.rng.gauss(0.0, 1.0)
        pct = p.compute_training_step_pct(end, TOTAL_STEPS)
        m.training_accuracy_over_steps.append(p.AccuracyAtStep(pct, end, acc))
        m.training_time.total_training_steps = end + 1
        m.training_time.total_training_time_in_secs += 12.5

    def prewrite(self, *, workers: int) -> None:
        """Write every trial folder as a trainer mid-way would leave it (6 objects each)."""

        def one(t: str) -> None:
            s = self.storage
            s.write(f"{t}/{p.NAS_PARAMS_STR_FILE}", json.dumps({"quality": round(self.quality[t], 4)}).encode())
            s.write(f"{t}/{p.DESIRED_TRAINING_PCT_FILE}", p.encode_desired_training_pct(101.0))
            s.write(f"{t}/{p.MAX_TRAINING_TIME_FILE}", p.encode_max_training_time(2.0))
            s.write(f"{t}/{p.CONTROLLER_ALIVE_TIMESTAMP_FILE}", p.encode_controller_alive_timestamp(0.0))
            s.write(f"{t}/replay_checkpoint.json", b'{"step": 0}')
            s.write(f"{t}/{p.TRIAL_TRAINING_METRICS_FILE}", self.metrics[t].to_json())

        parallel(one, self.trial_ids, workers)

    def step(self, fraction: float, *, workers: int) -> list[str]:
        """A random ``fraction`` of the trials append one cycle; returns their ids."""
        k = max(1, round(fraction * len(self.trial_ids))) if fraction > 0 else 0
        chosen = self.rng.sample(self.trial_ids, k)

        def one(t: str) -> None:
            self._append(t, self.metrics[t])
            self.storage.write(f"{t}/{p.TRIAL_TRAINING_METRICS_FILE}", self.metrics[t].to_json())

        parallel(one, chosen, workers)
        return chosen


class BenchRunner(Runner):
    """A runner whose trials are the simulated trainers above (storage-cost benchmarks only).

    ``launch`` returns at once; ``poll`` says RUNNING until :meth:`finish_all`.
    The stop-latency benchmark uses the real :class:`LocalRunner` instead.
    """

    name = "bench"

    def __init__(self, max_parallel: int) -> None:
        self._max = max_parallel
        self.finished = False
        self.launches = 0

    @property
    def max_parallel(self) -> int:
        return self._max

    def launch(self, spec: TrialSpec) -> TrialHandle:
        self.launches += 1
        return TrialHandle(spec.trial_id, self.name, spec.trial_id, None, None, 0.0, [], "", {})

    def poll(self, handle: TrialHandle) -> PollResult:
        return PollResult(TrialStatus.SUCCEEDED, 0, "") if self.finished else PollResult(TrialStatus.RUNNING)

    def cancel(self, handle: TrialHandle, *, grace_secs: float = 10.0) -> None:
        self.finished = True

    def reattach(self, handle: TrialHandle) -> bool:
        return True

    def recover(self, spec: TrialSpec) -> TrialHandle | None:
        return None

    def log_tail(self, handle: TrialHandle, max_bytes: int = 4096) -> str:
        return ""

    def finish_all(self) -> None:
        self.finished = True


@contextlib.contextmanager
def tracked_storages() -> Iterator[list[Storage]]:
    """Every storage that ``open_storage`` hands out inside the block (to sum their requests)."""
    opened: list[Storage] = []
    original = storage_module.open_storage

    def tracking(uri: str | os.PathLike[str]) -> Storage:
        s = original(uri)
        opened.append(s)
        return s

    storage_module.open_storage = tracking  # type: ignore[assignment]
    try:
        yield opened
    finally:
        storage_module.open_storage = original  # type: ignore[assignment]


class FakeClock:
    """Monotonic seconds that only move when the benchmark says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
