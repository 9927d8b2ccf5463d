"""The latency worker: measure exported models on this machine's device and answer trainers.

``proxy-task latency-worker --watch DIR``
serves every trial below ``DIR`` (a controller folder, a job folder or one trial):
any ``*/saved_model/export.json`` at any depth is a model waiting to be measured.

One poll = one ``storage.list()`` of ``DIR``; the listing alone says which
models are exported, claimed, answered or failed, so nothing is re-read
unless it changed state. For each unanswered, unclaimed model:

1. **Shard, then steal.** Worker ``K`` of ``N`` takes the models whose trial
   URI hashes (SHA-256, stable across processes unlike ``hash()``) to ``K``
   first. A model of another shard left unclaimed for ``--steal-after-secs``
   (default two polls, on this worker's monotonic clock) is taken too, so a
   dead or busy worker never strands work. Stealing is safe because of (2).
2. **Claim** with one create-only write of ``saved_model/latency_worker_id.json``
   (``{"latency_worker_id": K, ...}``, reference key kept). Exactly one worker
   wins, on a folder or on GCS; the losers skip the model. No write/sleep/re-read.
   While it measures, the winner rewrites its claim (a beat counter, by
   compare-and-swap) every ``--claim-timeout-secs / 4``. A claim that stood still
   for ``--claim-timeout-secs`` (on this worker's clock; the listing gives its
   generation, so watching costs nothing) belongs to a dead worker: it is taken
   over by compare-and-swap (one winner again) and the model is measured, so the
   waiting trainer gets its answer. A claim whose answer was lost in transit
   (the create landed, a retry got 412) is recognised as ours by its content.
3. **Measure** batch-1 latency after ``--warmup`` runs: median (reported as
   ``latency_in_milliseconds``) and p90 of ``--repeats`` runs, plus memory
   (GPU: ``torch.cuda.max_memory_allocated`` growth; CPU: process RSS growth).
4. **Answer** with a create-only ``saved_model/model_latency.json``, or, when
   the model cannot be read, loaded or run, ``saved_model/latency_error.json``
   so that the trainer fails at once with the reason. Nothing is overwritten.

Exit rule (the first that holds): the controller has written
``controller_finished.json`` into its folder (``--controller-dir``, default
``--watch``); or the controller's heartbeat stopped: its lease
(``controller.lease`` in that folder), once seen, is gone or has not changed for
``--controller-timeout-secs``; or no model was pending for this worker for
``--exit-when-idle-secs``; or SIGTERM. The check runs between two models, so a
started measurement is always answered. A resumed controller must call
:func:`clear_controller_finished` before it starts workers.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import importlib
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from controllers.engine.lease import LEASE_FILE
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError, NotFoundError, PreconditionFailedError, StorageError
from proxy_task_utils.latency import (
    EXPORT_MANIFEST_FILE,
    LATENCY_ERROR_FILE,
    ExportManifest,
    LoadedModel,
    load_exported,
)
from proxy_task_utils.storage import ObjectInfo, Storage, open_storage

__all__ = [
    "CONTROLLER_FINISHED_FILE",
    "WorkerConfig",
    "WorkerSummary",
    "PollResult",
    "LatencyWorker",
    "TrialState",
    "shard_of",
    "summarize_latencies",
    "scan_exports",
    "read_trial_latency",
    "mark_controller_finished",
    "clear_controller_finished",
    "start_local_workers",
]

logger = logging.getLogger("controllers.latency.worker")

CONTROLLER_FINISHED_FILE = "controller_finished.json"
_FRAMEWORK_MODULES = {"torch": "torch", "tensorflow": "tensorflow"}


# -- pure parts ------------------------------------------------------------------------------


def shard_of(trial_uri: str, num_workers: int) -> int:
    """The worker index that owns a trial first (stable across processes and machines)."""
    digest = hashlib.sha256(trial_uri.rstrip("/").encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % num_workers


def summarize_latencies(samples_ms: Sequence[float]) -> tuple[float, float]:
    """``(median, p90)`` of the samples, linear interpolation between order statistics.

    Raises:
        ValueError: no samples.
    """
    if not samples_ms:
        raise ValueError("samples_ms must not be empty")
    xs = sorted(samples_ms)

    def quantile(q: float) -> float:
        pos = q * (len(xs) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        return xs[lo] + (pos - lo) * (xs[hi] - xs[lo])

    return quantile(0.5), quantile(0.9)


@dataclass(frozen=True)
class TrialState:
    """What one listing says about one exported model (trial prefix ends in '/' or is '')."""

    prefix: str
    claimed: bool
    answered: bool
    failed: bool
    claim_generation: int | None = None  # the claim file's generation in that listing

    @property
    def in_flight(self) -> bool:
        """Claimed, and neither answered nor failed: a worker measures it (or died doing so)."""
        return self.claimed and not (self.answered or self.failed)

    @property
    def pending(self) -> bool:
        return not (self.claimed or self.answered or self.failed)


def scan_exports(objects: Sequence[ObjectInfo]) -> tuple[dict[str, TrialState], bool]:
    """Trial states from one recursive listing, and whether the root holds the finished marker."""
    names = {o.name: o.generation for o in objects}
    states: dict[str, TrialState] = {}
    for name in names:
        if name == EXPORT_MANIFEST_FILE or name.endswith("/" + EXPORT_MANIFEST_FILE):
            prefix = name[: -len(EXPORT_MANIFEST_FILE)]
            states[prefix] = TrialState(
                prefix,
                claimed=prefix + p.LATENCY_WORKER_ID_FILE in names,
                answered=prefix + p.MODEL_LATENCY_FILE in names,
                failed=prefix + LATENCY_ERROR_FILE in names,
                claim_generation=names.get(prefix + p.LATENCY_WORKER_ID_FILE),
            )
    return dict(sorted(states.items())), CONTROLLER_FINISHED_FILE in names


# -- the worker ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerConfig:
    """Options of one worker; validated here so that the CLI and callers fail alike."""

    worker_id: int = 0
    num_workers: int = 1
    device: str = "cpu"
    repeats: int = 100
    warmup: int = 10
    poll_secs: float = 10.0
    steal_after_secs: float | None = None  # None: two polls
    exit_when_idle_secs: float | None = None  # None: never (wait for the controller's marker)
    threads: int | None = None  # torch intra-op threads
    claim_timeout_secs: float = 120.0  # a claim that stands still this long is a dead worker's
    controller_timeout_secs: float | None = 900.0  # exit when the controller's lease stands still; None: never

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise ConfigurationError(f"--workers must be >= 1, but got {self.num_workers}")
        if not 0 <= self.worker_id < self.num_workers:
            raise ConfigurationError(
                f"--worker-id must be in [0, {self.num_workers - 1}] (--workers {self.num_workers}), but got {self.worker_id}"
            )
        if self.repeats < 1:
            raise ConfigurationError(f"--repeats must be >= 1, but got {self.repeats}")
        if self.warmup < 0:
            raise ConfigurationError(f"--warmup must be >= 0, but got {self.warmup}")
        if not self.poll_secs > 0:
            raise ConfigurationError(f"--poll-secs must be > 0, but got {self.poll_secs}")
        for name, value in (
            ("--steal-after-secs", self.steal_after_secs),
            ("--exit-when-idle-secs", self.exit_when_idle_secs),
            ("--controller-timeout-secs", self.controller_timeout_secs),
        ):
            if value is not None and not value >= 0:
                raise ConfigurationError(f"{name} must be >= 0, but got {value}")
        if not (self.device == "cpu" or self.device.startswith(("cuda", "gpu"))):
            raise ConfigurationError(f"--device must be cpu, cuda, cuda:N or gpu, but got {self.device!r}")
        if not self.claim_timeout_secs > 0:
            raise ConfigurationError(f"--claim-timeout-secs must be > 0, but got {self.claim_timeout_secs}")
        if self.threads is not None and self.threads < 1:
            raise ConfigurationError(f"--threads must be >= 1, but got {self.threads}")

    @property
    def steal_after(self) -> float:
        return 2 * self.poll_secs if self.steal_after_secs is None else self.steal_after_secs


@dataclass(frozen=True)
class PollResult:
    """One poll: models this worker answered, models in sight it may not take yet, the marker."""

    handled: int
    waiting: int
    controller_finished: bool
    controller_gone: str = ""  # why the controller is considered gone ("" while it beats)


@dataclass
class WorkerSummary:
    """What a worker did (printed as one JSON line when it exits)."""

    worker_id: int
    worker_instance: str
    claimed: list[str] = field(default_factory=list)  # won claims: the models this worker timed
    measured: list[str] = field(default_factory=list)  # answers written
    errors: list[str] = field(default_factory=list)
    lost_claims: list[str] = field(default_factory=list)
    taken_over: list[str] = field(default_factory=list)  # claims of dead workers this worker took over
    polls: int = 0
    exit_reason: str = ""


def current_rss_bytes() -> int:
    """Resident memory of this process now (psutil: every platform)."""
    import psutil

    return int(psutil.Process().memory_info().rss)


class LatencyWorker:
    """Serves every exported model below ``storage`` (see the module docstring for the rules).

    Args:
        storage: the watched folder.
        config: the options.
        controller: where ``controller_finished.json`` is looked for when it is
            not ``storage`` itself (one extra request per poll).
        clock, sleep: monotonic clock and sleeper (injected by tests).
    """

    def __init__(
        self,
        storage: Storage,
        config: WorkerConfig,
        *,
        controller: Storage | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.storage = storage
        self.config = config
        self.controller = controller
        self.clock = clock
        self.sleep = sleep
        self.instance = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.summary = WorkerSummary(config.worker_id, self.instance)
        self.stop_requested = False
        self._first_seen: dict[str, float] = {}
        self._done: set[str] = set()
        self._threads_set = False
        self._claims_seen: dict[str, tuple[int, float]] = {}  # prefix -> (claim generation, since)
        self._lease_seen: tuple[int | None, float] | None = None  # (controller lease generation, since)

    def trial_uri(self, prefix: str) -> str:
        return self.storage.child_uri(prefix) if prefix else self.storage.uri

    # -- one poll -----------------------------------------------------------------------------
    def poll_once(self) -> PollResult:
        """List once, then claim and measure what is ours (and what may be stolen)."""
        self.summary.polls += 1
        listing = self.storage.list("")
        states, finished = scan_exports(listing)
        if self.controller is not None:
            finished = self.controller.exists(CONTROLLER_FINISHED_FILE)
        if finished:
            return PollResult(handled=0, waiting=0, controller_finished=True)
        now = self.clock()
        gone = self._controller_gone(listing, now)
        if gone:
            return PollResult(handled=0, waiting=0, controller_finished=False, controller_gone=gone)
        own, others, waiting = [], [], 0
        orphans = []
        for prefix, state in states.items():
            if state.in_flight and state.claim_generation is not None:
                seen = self._claims_seen.get(prefix)
                if seen is None or seen[0] != state.claim_generation:
                    self._claims_seen[prefix] = (state.claim_generation, now)  # it beats
                elif now - seen[1] >= self.config.claim_timeout_secs:
                    orphans.append(prefix)  # its worker stopped beating: take it over
                    continue
                waiting += 1  # someone measures it (or died doing so): still work in sight
                continue
            if prefix in self._done:
                continue
            if not state.pending:
                self._done.add(prefix)  # answered, failed or someone else's: never looked at again
                continue
            first = self._first_seen.setdefault(prefix, now)
            if shard_of(self.trial_uri(prefix), self.config.num_workers) == self.config.worker_id:
                own.append(prefix)
            elif now - first >= self.config.steal_after:
                others.append(prefix)
            else:
                waiting += 1  # another shard's, not stealable yet: still work in sight
        handled = 0
        for prefix in own + others + orphans:
            if self.stop_requested:
                break
            if prefix in orphans:
                generation = self._take_over(prefix, self._claims_seen.pop(prefix)[0])
            else:
                generation = self._claim(prefix)
            if generation is not None:
                with self._beating(prefix, generation):
                    self._measure_and_answer(prefix, stolen=prefix not in own)
                handled += 1
        return PollResult(handled=handled, waiting=waiting, controller_finished=False)

    def _controller_gone(self, listing: Sequence[ObjectInfo], now: float) -> str:
        """Why the controller is gone ("" while its lease beats, or before it was ever seen)."""
        timeout = self.config.controller_timeout_secs
        if timeout is None:
            return ""
        if self.controller is not None:
            generation = self.controller.generations([LEASE_FILE]).get(LEASE_FILE)
        else:  # watching the controller folder itself: the listing holds the lease
            generation = next((o.generation for o in listing if o.name == LEASE_FILE), None)
        seen = self._lease_seen
        if seen is None:
            if generation is not None:
                self._lease_seen = (generation, now)
            return ""
        if generation is None:
            return "the controller's lease is gone (it ended)"
        if generation != seen[0]:
            self._lease_seen = (generation, now)
            return ""
        if now - seen[1] >= timeout:
            return f"the controller's heartbeat (its lease) stood still for {timeout:g} s"
        return ""

    def run(self) -> WorkerSummary:
        """Poll until the exit rule holds; returns the summary."""
        idle_since = self.clock()
        while not self.stop_requested:
            try:
                result = self.poll_once()
            except StorageError as exc:  # the service hiccuped (retries exhausted): try again next poll
                logger.warning("worker %d: cannot list %s: %s", self.config.worker_id, self.storage.uri, exc)
                result = PollResult(handled=0, waiting=0, controller_finished=False)
            if result.controller_finished:
                self.summary.exit_reason = "controller finished"
                return self.summary
            if result.controller_gone:
                self.summary.exit_reason = result.controller_gone
                return self.summary
            now = self.clock()
            if result.handled or result.waiting:
                idle_since = now
                if result.handled:
                    continue  # measuring took time: look again at once
            elif self.config.exit_when_idle_secs is not None and now - idle_since >= self.config.exit_when_idle_secs:
                self.summary.exit_reason = f"idle for {self.config.exit_when_idle_secs:g} s"
                return self.summary
            self.sleep(self.config.poll_secs)
        self.summary.exit_reason = "stop requested"
        return self.summary

    # -- claim, measure, answer -----------------------------------------------------------------
    def _claim_body(self, beat: int) -> bytes:
        return p.dump_json(
            {"latency_worker_id": self.config.worker_id, "worker_instance": self.instance, "claim_beat": beat}
        )

    def _claim(self, prefix: str) -> int | None:
        """Create-only claim; the claim's generation if this worker won, else None."""
        trial = self.storage.child(prefix) if prefix else self.storage
        body = self._claim_body(0)
        self._done.add(prefix)  # won or lost, this worker never tries it again
        try:
            generation = trial.write_if_absent(p.LATENCY_WORKER_ID_FILE, body)
        except PreconditionFailedError:
            generation = self._ours(trial, body)  # a lost answer to our own create
            if generation is None:
                logger.info(
                    "worker %d: %s was claimed by another worker", self.config.worker_id, self.trial_uri(prefix)
                )
                self.summary.lost_claims.append(self.trial_uri(prefix))
                return None
        logger.info("worker %d: claimed %s", self.config.worker_id, self.trial_uri(prefix))
        self.summary.claimed.append(self.trial_uri(prefix))
        return generation

    def _take_over(self, prefix: str, generation: int) -> int | None:
        """Compare-and-swap the claim of a worker that stopped beating; the new generation if we won."""
        trial = self.storage.child(prefix) if prefix else self.storage
        body = self._claim_body(0)
        try:
            new = trial.write_if_generation(p.LATENCY_WORKER_ID_FILE, body, generation)
        except (PreconditionFailedError, NotFoundError):
            new = self._ours(trial, body)
            if new is None:
                return None  # it beat after all, or another worker took it over first
        uri = self.trial_uri(prefix)
        logger.warning("worker %d: took over %s: its claim stood still for %g s", self.config.worker_id, uri,
                       self.config.claim_timeout_secs)  # fmt: skip
        self.summary.claimed.append(uri)
        self.summary.taken_over.append(uri)
        return new

    @staticmethod
    def _ours(trial: Storage, body: bytes) -> int | None:
        try:
            data, generation = trial.read(p.LATENCY_WORKER_ID_FILE)
        except NotFoundError:
            return None
        return generation if data == body else None

    @contextlib.contextmanager
    def _beating(self, prefix: str, generation: int) -> Iterator[None]:
        """Rewrite our claim every ``claim_timeout_secs / 4`` while the model is measured (a thread)."""
        trial = self.storage.child(prefix) if prefix else self.storage
        stop = threading.Event()

        def beat() -> None:
            gen, n = generation, 0
            while not stop.wait(self.config.claim_timeout_secs / 4):
                n += 1
                try:
                    gen = trial.write_if_generation(p.LATENCY_WORKER_ID_FILE, self._claim_body(n), gen)
                except (PreconditionFailedError, NotFoundError):
                    logger.warning("worker %d: lost the claim of %s", self.config.worker_id, self.trial_uri(prefix))
                    return  # taken over: the answers are create-only, the first one stays
                except StorageError as exc:  # a hiccup: the next beat tries again
                    logger.warning("worker %d: cannot beat %s: %s", self.config.worker_id, self.trial_uri(prefix), exc)

        thread = threading.Thread(target=beat, name="claim-beat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _measure_and_answer(self, prefix: str, *, stolen: bool) -> None:
        trial = self.storage.child(prefix) if prefix else self.storage
        uri = self.trial_uri(prefix)
        stage, fmt = "reading export.json", None
        try:
            manifest = ExportManifest.from_json(
                trial.read(EXPORT_MANIFEST_FILE)[0], path=trial.child_uri(EXPORT_MANIFEST_FILE)
            )
            fmt = manifest.format
            stage = "loading the model"
            self._prepare(manifest)
            gc.collect()
            rss_before = current_rss_bytes()
            loaded = load_exported(trial, manifest, device=self.config.device)
            stage = "running the model"
            answer = self._time(loaded, manifest, rss_before)
        except Exception as exc:  # noqa: BLE001 - any failure of a user's model is recorded for its trainer
            logger.error("worker %d: cannot measure %s while %s: %s", self.config.worker_id, uri, stage, exc)
            record = {
                "error": f"{type(exc).__name__}: {exc}",
                "stage": stage,
                "format": fmt,
                "worker_id": self.config.worker_id,
                "worker_instance": self.instance,
            }
            self._write_once(trial, LATENCY_ERROR_FILE, p.dump_json(record), uri)
            self.summary.errors.append(uri)
            return
        if self._write_once(trial, p.MODEL_LATENCY_FILE, p.encode_model_latency(answer), uri):
            self.summary.measured.append(uri)
            logger.info(
                "worker %d: measured %s%s: %.3f ms (p90 %.3f ms) on %s",
                self.config.worker_id,
                uri,
                " (stolen)" if stolen else "",
                answer.latency_in_milliseconds,
                answer.extra["latency_p90_in_milliseconds"],
                answer.device_type,
            )

    def _write_once(self, trial: Storage, name: str, data: bytes, uri: str) -> bool:
        try:
            trial.write_if_absent(name, data)
            return True
        except PreconditionFailedError:
            logger.warning("worker %d: %s/%s already exists; left as recorded", self.config.worker_id, uri, name)
        except StorageError as exc:
            logger.error("worker %d: cannot write %s/%s: %s", self.config.worker_id, uri, name, exc)
        return False

    def _prepare(self, manifest: ExportManifest) -> None:
        module = "onnxruntime" if manifest.format == "onnx" else _FRAMEWORK_MODULES[manifest.framework]
        mod = importlib.import_module(module)  # before the RSS baseline: imports are not the model's memory
        if module == "torch" and self.config.threads is not None and not self._threads_set:
            mod.set_num_threads(self.config.threads)
            self._threads_set = True

    def _time(self, loaded: LoadedModel, manifest: ExportManifest, rss_before: int) -> p.ModelLatency:
        for _ in range(self.config.warmup):
            loaded.run()
        loaded.synchronize()
        samples = []
        for _ in range(self.config.repeats):
            start = time.perf_counter_ns()
            loaded.run()
            loaded.synchronize()
            samples.append((time.perf_counter_ns() - start) / 1e6)
        median, p90 = summarize_latencies(samples)
        memory = loaded.device_memory_bytes()
        if memory is None:
            memory = max(0, current_rss_bytes() - rss_before)
        return p.ModelLatency(
            latency_in_milliseconds=median,
            device_type=loaded.device_type,
            model_memory=float(memory),
            extra={
                "latency_p90_in_milliseconds": p90,
                "num_repetitions": self.config.repeats,
                "worker_id": self.config.worker_id,
                "format": manifest.format,
                "num_warmup": self.config.warmup,
                "latency_statistic": "median",
                "model_memory_unit": "bytes",
            },
        )


# -- helpers for controllers -----------------------------------------------------------------


def read_trial_latency(trial_storage: Storage, mode: str) -> float | None:
    """A trial's latency in ms for correlation, or None when it has none (yet).

    ``mode``: ``"worker"`` reads the worker's ``saved_model/model_latency.json``;
    ``"trainer"`` reads ``latency`` from ``TRIAL_TRAINING_METRICS.json`` (what
    the trainer reported; negative = none); ``"none"`` always gives None.

    Raises:
        ConfigurationError: unknown mode.
        ProtocolError: the file exists but is malformed (record and go on).
    """
    if mode == "none":
        return None
    name = {"worker": p.MODEL_LATENCY_FILE, "trainer": p.TRIAL_TRAINING_METRICS_FILE}.get(mode)
    if name is None:
        raise ConfigurationError(f"latency mode must be 'worker', 'trainer' or 'none', but got {mode!r}")
    try:
        data, _ = trial_storage.read(name)
    except NotFoundError:
        return None
    path = trial_storage.child_uri(name)
    if mode == "worker":
        return p.decode_model_latency(data, path=path).latency_in_milliseconds
    latency = p.TrialTrainingMetrics.from_json(data, path=path).latency
    return latency if latency >= 0.0 else None


def mark_controller_finished(controller_dir: str | Storage, *, reason: str = "finished") -> None:
    """Tell the workers serving this controller to exit (idempotent)."""
    storage = controller_dir if isinstance(controller_dir, Storage) else open_storage(controller_dir)
    storage.write(CONTROLLER_FINISHED_FILE, p.dump_json({"controller_finished": True, "reason": reason}))


def clear_controller_finished(controller_dir: str | Storage) -> None:
    """Remove the marker: call when a controller (re)starts, before starting workers."""
    storage = controller_dir if isinstance(controller_dir, Storage) else open_storage(controller_dir)
    storage.delete(CONTROLLER_FINISHED_FILE)


def start_local_workers(
    watch_dir: str,
    n: int = 1,
    *,
    device: str = "cpu",
    extra_args: Sequence[str] = (),
    log_dir: str | None = None,
    env: dict[str, str] | None = None,
) -> list[subprocess.Popen[bytes]]:
    """Start ``n`` worker processes (ids 0..n-1) on this machine; their stderr goes to ``log_dir``.

    The caller owns the processes: they exit by themselves on the controller's
    marker (:func:`mark_controller_finished`); terminate() them otherwise.
    """
    if n < 1:
        raise ConfigurationError(f"n (number of latency workers) must be >= 1, but got {n}")
    procs = []
    for k in range(n):
        argv = [
            sys.executable,
            "-m",
            "controllers.cli",
            "latency-worker",
            "--watch",
            watch_dir,
            "--workers",
            str(n),
            "--worker-id",
            str(k),
            "--device",
            device,
            *extra_args,
        ]
        log = None
        if log_dir is not None:
            os.makedirs(log_dir, exist_ok=True)
            log = open(os.path.join(log_dir, f"latency_worker_{k}.log"), "ab")  # noqa: SIM115 - the child keeps it
        try:
            procs.append(subprocess.Popen(argv, stdout=log, stderr=log, env=env))
        finally:
            if log is not None:
                log.close()
    return procs
