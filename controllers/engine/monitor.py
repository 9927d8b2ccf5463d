"""Reads the trial folders of one job cheaply: one look per poll, re-reads only what changed.

Each :meth:`JobMonitor.poll` takes ONE look at the generations of the watched
files (``TRIAL_TRAINING_METRICS.json``, ``job_status.json``) of the trials it
is asked about, then reads only the files whose generation changed since the
last poll, so a poll costs ``1 + (number of changed files)`` storage requests
(``reads`` counts them for the benchmark), not one per trial:

* GCS (``storage.cheap_stat`` False): one ``list()`` of the job folder with
  ``glob="*/{TRIAL_TRAINING_METRICS.json,job_status.json}"``: GCS answers in
  pages of 1,000 objects, and ``matchGlob`` leaves checkpoints and the other
  files out, so a look costs ``ceil(2 * trials / 1000)`` requests (servers that
  ignore ``matchGlob``, such as fake-gcs-server, page through every object;
  the names are filtered on our side either way). Changed files are re-read on
  a thread pool.
* Local folder: one ``generations()`` call: a ``stat`` of the watched files of
  the asked trials only (microseconds each), instead of walking every file of
  every trial folder (checkpoints included).

Writes into many trial folders (heartbeats, stop signals) go out on a thread
pool too: GCS requests and local ``fsync`` calls wait on I/O, not the CPU.
Heartbeats are written with ``durable=False`` (atomic, no ``fsync`` on a local
folder): a liveness file is rewritten every interval, so a beat lost to a
machine crash costs nothing, while an ``fsync`` per beat was most of the cost of
a poll of 10,000 local trials (``bench/poll_cost.py``). Stop signals stay durable.
The last good parsed record is kept: a corrupt or torn file is reported once
per generation and never turns a trial into "no history".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import NotFoundError, ProtocolError
from proxy_task_utils.storage import Storage

__all__ = ["TrialSnapshot", "JobMonitor"]

logger = logging.getLogger("controllers")

_WATCHED = (p.TRIAL_TRAINING_METRICS_FILE, p.JOB_STATUS_FILE)
_WATCHED_GLOB = "*/{" + ",".join(_WATCHED) + "}"
_T = TypeVar("_T")

#: Threads for writes (and GCS reads) into many trial folders at once.
DEFAULT_IO_THREADS = 8


def _each(fn: Callable[[_T], object], items: Sequence[_T], threads: int) -> None:
    """``fn(item)`` for every item, on a short-lived pool when there are several; first error re-raised."""
    if threads <= 1 or len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="monitor-io") as pool:
        for _ in pool.map(fn, items):
            pass


@dataclass
class TrialSnapshot:
    """The last parsed files of one trial folder.

    Attributes:
        trial_id: The trial id (folder name).
        metrics: Last good ``TRIAL_TRAINING_METRICS.json`` (None if never read).
        metrics_generation: Generation of the file last seen (None if absent),
            whether or not it parsed.
        job_status: Last good ``job_status.json`` value ("success", ...) or None.
        errors: Messages about unreadable files (one per corrupt generation).
        changed: Whether the metrics file changed in the last poll.
        metrics_error: Why the metrics file's latest generation could not be
            read (None once a generation parses): with ``metrics`` None, no good
            record exists at all.
    """

    trial_id: str
    metrics: p.TrialTrainingMetrics | None = None
    metrics_generation: int | None = None
    job_status: str | None = None
    job_status_generation: int | None = None
    errors: list[str] = field(default_factory=list)
    changed: bool = False
    metrics_error: str | None = None


class JobMonitor:
    """Watches ``<job dir>/<trial_id>/...`` for the given trial ids.

    Args:
        job_storage: Storage rooted at the job folder (``.../nas/search``).
        trial_ids: Trials to watch; other folders are ignored.
        io_threads: Threads for batches of writes (and of reads on GCS); 1 = sequential.

    Not thread-safe: one controller thread calls it; it uses its own pool inside a call.
    """

    def __init__(self, job_storage: Storage, trial_ids: Iterable[str], *, io_threads: int = DEFAULT_IO_THREADS) -> None:
        if io_threads < 1:
            raise ValueError(f"io_threads must be >= 1, but got {io_threads}")
        self.storage = job_storage
        self.snapshots: dict[str, TrialSnapshot] = {t: TrialSnapshot(t) for t in trial_ids}
        self.io_threads = io_threads
        self.reads = 0  # storage requests for reading: looks (listings / stat batches) + file reads
        self.writes = 0  # storage requests for writing: heartbeats + signals
        self.polls = 0
        self._changed_last: list[TrialSnapshot] = []

    def poll(self, trial_ids: Iterable[str] | None = None) -> dict[str, TrialSnapshot]:
        """One look, then re-read changed files; returns all snapshots (the same objects each time).

        Args:
            trial_ids: Only these trials are looked at (the job loop passes its
                live trials, so finished ones cost nothing); None: all of them.
                The others keep their last snapshot, with ``changed`` False.
        """
        self.polls += 1
        for snap in self._changed_last:
            snap.changed = False
        ids = list(self.snapshots) if trial_ids is None else [t for t in trial_ids if t in self.snapshots]
        current = self._look(ids)
        metrics_due: list[TrialSnapshot] = []
        status_due: list[TrialSnapshot] = []
        for trial_id in ids:
            snap = self.snapshots[trial_id]
            gen = current.get(f"{trial_id}/{p.TRIAL_TRAINING_METRICS_FILE}")
            if gen != snap.metrics_generation:
                snap.metrics_generation = gen
                if gen is not None:
                    metrics_due.append(snap)
            gen = current.get(f"{trial_id}/{p.JOB_STATUS_FILE}")
            if gen != snap.job_status_generation:
                snap.job_status_generation = gen
                if gen is not None:
                    status_due.append(snap)
        threads = 1 if self.storage.cheap_stat else self.io_threads
        self.reads += len(metrics_due) + len(status_due)
        _each(self._read_metrics, metrics_due, threads)
        _each(self._read_status, status_due, threads)
        self._changed_last = [snap for snap in metrics_due if snap.changed]
        return self.snapshots

    def _look(self, ids: Sequence[str]) -> dict[str, int | None]:
        """Generation of every watched file of ``ids`` (missing files absent or None): one request."""
        if not ids:
            return {}
        self.reads += 1
        if self.storage.cheap_stat:
            return self.storage.generations([f"{t}/{name}" for t in ids for name in _WATCHED])
        wanted = set(ids)
        current: dict[str, int | None] = {}
        for obj in self.storage.list("", glob=_WATCHED_GLOB):
            trial_id, _, name = obj.name.partition("/")
            if name in _WATCHED and trial_id in wanted:
                current[obj.name] = obj.generation
        return current

    def _read(self, trial_id: str, name: str) -> bytes | None:
        try:
            data, _ = self.storage.read(f"{trial_id}/{name}")
        except NotFoundError:
            return None  # deleted between the look and the read: keep the last record
        return data

    def _read_metrics(self, snap: TrialSnapshot) -> None:
        data = self._read(snap.trial_id, p.TRIAL_TRAINING_METRICS_FILE)
        if data is None:
            return
        path = self.storage.child_uri(snap.trial_id, p.TRIAL_TRAINING_METRICS_FILE)
        try:
            snap.metrics = p.TrialTrainingMetrics.from_json(data, path=path)
            snap.changed = True
            snap.metrics_error = None
        except ProtocolError as exc:
            snap.metrics_error = str(exc)
            keep = "keeping the last good record" if snap.metrics is not None else "no good record was ever read"
            message = f"{exc} ({keep})"
            snap.errors.append(message)
            logger.warning("%s", message)

    def _read_status(self, snap: TrialSnapshot) -> None:
        data = self._read(snap.trial_id, p.JOB_STATUS_FILE)
        if data is None:
            return
        path = self.storage.child_uri(snap.trial_id, p.JOB_STATUS_FILE)
        try:
            snap.job_status = p.decode_job_status(data, path=path)
        except ProtocolError as exc:
            snap.errors.append(str(exc))
            logger.warning("%s", exc)

    def _write_all(self, names: Sequence[str], payload: bytes, *, durable: bool = True) -> int:
        self.writes += len(names)
        if durable:
            _each(lambda name: self.storage.write(name, payload), names, self.io_threads)
        else:
            _each(lambda name: self.storage.write(name, payload, durable=False), names, self.io_threads)
        return len(names)

    def write_heartbeat(self, trial_ids: Iterable[str], timestamp: float) -> int:
        """Rewrite ``controller_alive_timestamp.json`` in the given trial folders (in parallel); returns writes made.

        Trainers watch the file's generation change on their own clock; the
        timestamp inside is for humans. Atomic but not durable (no ``fsync``
        locally): the next beat replaces it anyway.
        """
        names = [f"{t}/{p.CONTROLLER_ALIVE_TIMESTAMP_FILE}" for t in trial_ids]
        return self._write_all(names, p.encode_controller_alive_timestamp(timestamp), durable=False)

    def post_signals(
        self,
        trial_ids: Iterable[str],
        *,
        desired_training_pct: float | None = None,
        max_training_time_in_hrs: float | None = None,
    ) -> None:
        """Write stop signals into trial folders, in parallel (0.0 is a value: "stop now"; None writes nothing)."""
        ids = list(trial_ids)
        if desired_training_pct is not None:
            pct = p.encode_desired_training_pct(desired_training_pct)
            self._write_all([f"{t}/{p.DESIRED_TRAINING_PCT_FILE}" for t in ids], pct)
        if max_training_time_in_hrs is not None:
            hrs = p.encode_max_training_time(max_training_time_in_hrs)
            self._write_all([f"{t}/{p.MAX_TRAINING_TIME_FILE}" for t in ids], hrs)
