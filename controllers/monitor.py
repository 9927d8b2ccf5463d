"""Reads the trial folders of one job cheaply: one listing per poll, re-reads only what changed.

Each :meth:`JobMonitor.poll` makes ONE ``list()`` request over the job folder,
then reads only the ``TRIAL_TRAINING_METRICS.json`` / ``job_status.json``
objects whose generation changed since the last poll, so a poll costs
``1 + (number of changed files)`` storage requests (``reads`` counts them for
the benchmark). The last good parsed record is kept: a corrupt or torn file is
reported once per generation and never turns a trial into "no history".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import NotFoundError, ProtocolError
from proxy_task_utils.storage import Storage

__all__ = ["TrialSnapshot", "JobMonitor"]

logger = logging.getLogger("controllers")

_WATCHED = (p.TRIAL_TRAINING_METRICS_FILE, p.JOB_STATUS_FILE)


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
    """

    trial_id: str
    metrics: p.TrialTrainingMetrics | None = None
    metrics_generation: int | None = None
    job_status: str | None = None
    job_status_generation: int | None = None
    errors: list[str] = field(default_factory=list)
    changed: bool = False


class JobMonitor:
    """Watches ``<job dir>/<trial_id>/...`` for the given trial ids.

    Args:
        job_storage: Storage rooted at the job folder (``.../nas/search``).
        trial_ids: Trials to watch; other folders are ignored.
    """

    def __init__(self, job_storage: Storage, trial_ids: Iterable[str]) -> None:
        self.storage = job_storage
        self.snapshots: dict[str, TrialSnapshot] = {t: TrialSnapshot(t) for t in trial_ids}
        self.reads = 0  # storage requests made by this monitor (listings + reads)
        self.polls = 0

    def poll(self) -> dict[str, TrialSnapshot]:
        """One listing, then re-read changed files; returns the snapshots (same objects each time)."""
        self.polls += 1
        self.reads += 1
        listing = self.storage.list("")
        current: dict[tuple[str, str], int] = {}
        for obj in listing:
            trial_id, _, name = obj.name.partition("/")
            if name in _WATCHED and trial_id in self.snapshots:
                current[(trial_id, name)] = obj.generation
        for trial_id, snap in self.snapshots.items():
            snap.changed = False
            gen = current.get((trial_id, p.TRIAL_TRAINING_METRICS_FILE))
            if gen != snap.metrics_generation:
                snap.metrics_generation = gen
                if gen is not None:
                    self._read_metrics(snap)
            gen = current.get((trial_id, p.JOB_STATUS_FILE))
            if gen != snap.job_status_generation:
                snap.job_status_generation = gen
                if gen is not None:
                    self._read_status(snap)
        return self.snapshots

    def _read(self, trial_id: str, name: str) -> bytes | None:
        self.reads += 1
        try:
            data, _ = self.storage.read(f"{trial_id}/{name}")
        except NotFoundError:
            return None  # deleted between the listing and the read: keep the last record
        return data

    def _read_metrics(self, snap: TrialSnapshot) -> None:
        data = self._read(snap.trial_id, p.TRIAL_TRAINING_METRICS_FILE)
        if data is None:
            return
        path = self.storage.child_uri(snap.trial_id, p.TRIAL_TRAINING_METRICS_FILE)
        try:
            snap.metrics = p.TrialTrainingMetrics.from_json(data, path=path)
            snap.changed = True
        except ProtocolError as exc:
            message = f"{exc} (keeping the last good record)"
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

    def write_heartbeat(self, trial_ids: Iterable[str], timestamp: float) -> int:
        """Rewrite ``controller_alive_timestamp.json`` in the given trial folders; returns writes made.

        Trainers watch the file's generation change on their own clock; the
        timestamp inside is for humans.
        """
        payload = p.encode_controller_alive_timestamp(timestamp)
        n = 0
        for trial_id in trial_ids:
            self.storage.write(f"{trial_id}/{p.CONTROLLER_ALIVE_TIMESTAMP_FILE}", payload)
            n += 1
        return n

    def post_signals(
        self,
        trial_ids: Iterable[str],
        *,
        desired_training_pct: float | None = None,
        max_training_time_in_hrs: float | None = None,
    ) -> None:
        """Write stop signals into trial folders (0.0 is a value: "stop now"; None writes nothing)."""
        pct = None if desired_training_pct is None else p.encode_desired_training_pct(desired_training_pct)
        hrs = None if max_training_time_in_hrs is None else p.encode_max_training_time(max_training_time_in_hrs)
        for trial_id in trial_ids:
            if pct is not None:
                self.storage.write(f"{trial_id}/{p.DESIRED_TRAINING_PCT_FILE}", pct)
            if hrs is not None:
                self.storage.write(f"{trial_id}/{p.MAX_TRAINING_TIME_FILE}", hrs)
