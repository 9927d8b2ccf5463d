"""The records of a job: what to run, what the state file keeps, what the loop reports.

Split from :mod:`controllers.engine.jobs` (which re-exports every name here) so the
loop module holds only the loop. Everything here is a plain record or a pure
function: no I/O, no clock.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from controllers.engine.monitor import TrialSnapshot
from proxy_task_utils import protocol as p

__all__ = [
    "JOB_SUBDIR",
    "TrialPlan",
    "JobSpec",
    "JobSettings",
    "TrialState",
    "TrialRecord",
    "JobRecord",
    "FailureKind",
    "ADVICE",
    "Failure",
    "TrialResult",
    "JobResult",
    "JobView",
    "StopAll",
    "OnPoll",
    "job_dir_uri",
    "build_argv",
    "classify_failure",
]

#: A job folder is ``<controller_dir>/<job_name>/nas/search`` (reference regex ``.*nas/search/\d+``).
JOB_SUBDIR = ("nas", "search")


def job_dir_uri(controller_dir_uri: str, job_name: str) -> str:
    """``<controller_dir>/<job_name>/nas/search``."""
    from proxy_task_utils.storage import join_uri

    return join_uri(controller_dir_uri, job_name, *JOB_SUBDIR)


def build_argv(trainer_command: Sequence[str], model_dir_uri: str, flags: Sequence[tuple[str, str]]) -> list[str]:
    """``trainer_command + ["--job-dir=<model_dir>"] + ["--key=value", ...]`` (values may contain '=').

    Booleans are the caller's business: pass ``"True"``/``"False"`` as the reference does.
    """
    argv = list(trainer_command) + [f"--job-dir={model_dir_uri}"]
    argv += [f"--{key}={value}" for key, value in flags]
    return argv


# -- what to run ------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialPlan:
    """One trial of a job: its id and the flags after ``--job-dir`` (``--key=value`` each).

    Typical flags: ``("nas_params_str", json)``, proxy args, and for re-training
    ``("retrain_search_job_dir", dir)``, ``("retrain_search_job_trials", "3,7")``,
    ``("retrain_use_search_job_checkpoint", "True")``.
    """

    trial_id: str
    flags: tuple[tuple[str, str], ...] = ()
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class JobSpec:
    """A job to run: where, what, and which stop signals to post.

    Attributes:
        name: The job name (folder name under the controller folder).
        job_dir_uri: ``<controller_dir>/<name>/nas/search`` (see :func:`job_dir_uri`).
        log_dir: Local folder for per-trial logs (``<log_dir>/<trial_id>/trainer.log``).
        trainer_command: The trainer argv prefix, e.g. ``["python", "-m", "examples.pytorch.trainer"]``.
        trials: The trials, in launch order.
        desired_training_pct: Posted to every trial folder before any launch
            (``DESIRED_TRAINING_PCT.json``); None posts nothing. 101.0 = train to completion.
        max_training_time_in_hrs: Posted likewise (``MAX_TRAINING_TIME.json``); None posts nothing.
        env: Extra environment for every trial.
    """

    name: str
    job_dir_uri: str
    log_dir: str
    trainer_command: tuple[str, ...]
    trials: tuple[TrialPlan, ...]
    desired_training_pct: float | None = None
    max_training_time_in_hrs: float | None = None
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class JobSettings:
    """Timing of the loop (all seconds on the controller's monotonic clock).

    Attributes:
        poll_interval_secs: Time between polls (reference: 60; tests: ~0.1).
        no_metrics_timeout_secs: A running trial whose metrics file has not
            changed for this long (since launch or its last change) is cancelled
            and recorded as ``NO_METRICS``. None disables the check.
        stop_grace_secs: After "stop all" (0.0 posted), trials still running
            after this long are cancelled.
        cancel_grace_secs: Between SIGTERM and SIGKILL when cancelling.
        heartbeat_interval_secs: Each live trial's ``controller_alive_timestamp.json``
            is rewritten at most this often (None: never). Writes are spread over
            the polls, so a poll rewrites about ``live * poll / heartbeat`` files.
            Trainers stop after 900 s without a change (on their own clock), so
            the default 60 s leaves 14 missed beats of margin for a stalled
            controller or a slow storage retry, and costs little: beats are
            atomic but not fsync'd locally, and 10,000 live trials still poll in
            well under 2 s (``bench/poll_cost.py``). 300 s (3 missed beats of
            margin) cuts the writes 5x; worth it on GCS with thousands of
            trials, where every beat is a billed request.
        nan_grace_secs: A trial that wrote ``failed_with_nan_error`` but keeps
            running is cancelled after this long.
        state_save_interval_secs: Bookkeeping saves (a trial ended, a handle was
            recorded) are batched to at most one per this many seconds. Saves that
            must precede an action (the launch intents before a launch, the stop
            decision before "stop now" is posted) and the final save always
            happen at once. 0 saves after every change.
        max_relaunches_after_loss: A trial that died without an exit code
            (``LOST``: it died with the controller's machine, or its whole
            process group was killed) did not fail by itself: it is launched
            again as a new attempt in the same folder, so the trainer resumes
            from its checkpoint, at most this many times; after that it is a
            ``lost`` failure.
        wake_on_trial_end: Poll again as soon as a trial process ends (when the runner can
            tell), so its slot is refilled at once instead of at the next poll.
    """

    poll_interval_secs: float = 60.0
    no_metrics_timeout_secs: float | None = 3600.0
    stop_grace_secs: float = 600.0
    cancel_grace_secs: float = 30.0
    heartbeat_interval_secs: float | None = 60.0
    nan_grace_secs: float = 60.0
    state_save_interval_secs: float = 30.0
    max_relaunches_after_loss: int = 5
    wake_on_trial_end: bool = True


# -- what is recorded (JSON-able, embedded in the tool's state file) ------------------


class TrialState(str, enum.Enum):
    """Life cycle of a trial in a :class:`JobRecord`."""

    PENDING = "pending"  # not launched
    LAUNCHING = "launching"  # intent saved; the launch may or may not have happened
    RUNNING = "running"  # handle saved
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped by the controller (stop-all grace exceeded)
    SKIPPED = "skipped"  # never launched because the job was stopped first

    @property
    def is_final(self) -> bool:
        return self in (TrialState.SUCCEEDED, TrialState.FAILED, TrialState.CANCELLED, TrialState.SKIPPED)


class FailureKind(str, enum.Enum):
    """Why a trial failed; :data:`ADVICE` says what the user can do about it."""

    OOM = "oom"
    NAN = "nan"
    CRASH = "crash"
    NO_METRICS = "no_metrics"
    LOST = "lost"
    LAUNCH_ERROR = "launch_error"


ADVICE: dict[FailureKind, str] = {
    FailureKind.OOM: "out of memory: use a smaller batch size or a smaller model",
    FailureKind.NAN: "the loss became NaN: lower the learning rate or clip gradients",
    FailureKind.CRASH: "the trainer exited with an error: see the last log lines",
    FailureKind.NO_METRICS: "no metrics arrived in time: check that the trainer calls "
    "update_trial_training_accuracy_metric after every cycle, or raise no_metrics_timeout_secs",
    FailureKind.LOST: "the trial process vanished without an exit code (machine restart or killed)",
    FailureKind.LAUNCH_ERROR: "the trainer could not be started: check trainer.command",
}


@dataclass
class Failure:
    """A classified failure: kind, one-line message, advice, and the last log lines."""

    kind: FailureKind
    message: str
    advice: str = ""
    log_tail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "message": self.message, "advice": self.advice, "log_tail": self.log_tail}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Failure:
        return cls(FailureKind(obj["kind"]), obj.get("message", ""), obj.get("advice", ""), obj.get("log_tail", ""))


@dataclass
class TrialRecord:
    """What the state file keeps about one trial of a job."""

    trial_id: str
    state: TrialState = TrialState.PENDING
    launch_token: str | None = None
    handle: dict[str, Any] | None = None
    exit_code: int | None = None
    failure: Failure | None = None
    launches: int = 0  # how many times a launch was attempted (must end at most 1 + relaunches)
    relaunches: int = 0  # new attempts after the trial died with its machine (never a duplicate)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "state": self.state.value,
            "launch_token": self.launch_token,
            "handle": self.handle,
            "exit_code": self.exit_code,
            "failure": None if self.failure is None else self.failure.to_dict(),
            "launches": self.launches,
            "relaunches": self.relaunches,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> TrialRecord:
        return cls(
            trial_id=str(obj["trial_id"]),
            state=TrialState(obj.get("state", "pending")),
            launch_token=obj.get("launch_token"),
            handle=obj.get("handle"),
            exit_code=obj.get("exit_code"),
            failure=None if obj.get("failure") is None else Failure.from_dict(obj["failure"]),
            launches=int(obj.get("launches", 0)),
            relaunches=int(obj.get("relaunches", 0)),
        )


@dataclass
class JobRecord:
    """The resumable record of one job (the tool stores ``to_dict()`` in its state file)."""

    name: str
    job_dir_uri: str
    trials: list[TrialRecord]
    stop_reason: str | None = None  # set (and persisted) before 0.0 is posted
    finished: bool = False

    @classmethod
    def create(cls, name: str, job_dir_uri: str, trial_ids: Sequence[str]) -> JobRecord:
        return cls(name, job_dir_uri, [TrialRecord(str(t)) for t in trial_ids])

    def trial(self, trial_id: str) -> TrialRecord:
        for t in self.trials:
            if t.trial_id == trial_id:
                return t
        raise KeyError(f"job {self.name!r} has no trial {trial_id!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "job_dir": self.job_dir_uri,
            "trials": [t.to_dict() for t in self.trials],
            "stop_reason": self.stop_reason,
            "finished": self.finished,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> JobRecord:
        return cls(
            name=obj["name"],
            job_dir_uri=obj["job_dir"],
            trials=[TrialRecord.from_dict(t) for t in obj["trials"]],
            stop_reason=obj.get("stop_reason"),
            finished=bool(obj.get("finished", False)),
        )


# -- what the loop reports -------------------------------------------------------------


@dataclass
class TrialResult:
    """How one trial ended: final state, last metrics read, failure (None if it succeeded)."""

    trial_id: str
    state: TrialState
    metrics: p.TrialTrainingMetrics | None
    job_status: str | None = None
    exit_code: int | None = None
    failure: Failure | None = None

    @property
    def succeeded(self) -> bool:
        return self.state is TrialState.SUCCEEDED


@dataclass
class JobResult:
    """All trials of a job, in the order of the record."""

    name: str
    job_dir_uri: str
    trials: list[TrialResult]
    stop_reason: str | None = None

    def by_id(self) -> dict[str, TrialResult]:
        return {t.trial_id: t for t in self.trials}

    @property
    def failed(self) -> list[TrialResult]:
        return [t for t in self.trials if t.state is TrialState.FAILED]


@dataclass(frozen=True)
class JobView:
    """What ``on_poll`` sees each poll: the fresh metrics and state of every trial.

    Attributes:
        name: Job name.
        poll_index: 0, 1, 2, ... within this run of the loop (restarts at 0 on resume).
        elapsed_secs: Monotonic seconds since this run of the loop started.
        snapshots: trial id -> last parsed files of the trial folder (metrics may be None).
        states: trial id -> current :class:`TrialState`.
        failures: trial id -> failure, for the trials failed so far.
    """

    name: str
    poll_index: int
    elapsed_secs: float
    snapshots: dict[str, TrialSnapshot]
    states: dict[str, TrialState]
    failures: dict[str, Failure] = field(default_factory=dict)


@dataclass(frozen=True)
class StopAll:
    """``on_poll`` verdict: post 0.0 ("stop now") to every trial; launch nothing more.

    Trials exit gracefully at their next stop check; those still running after
    ``JobSettings.stop_grace_secs`` are cancelled. ``reason`` is stored in the record.
    """

    reason: str


OnPoll = Callable[[JobView], "StopAll | None"]


_OOM_PATTERNS = (
    "out of memory",
    "memoryerror",
    "resourceexhaustederror",
    "resource_exhausted",
    "oom-kill",
    "cannot allocate memory",
)
_NAN_PATTERN = re.compile(r"(loss (is|became) nan|nan loss|loss[:=] ?nan|must be finite, but got nan|diverged)", re.I)


def classify_failure(
    exit_code: int | None, log_tail: str, *, job_status: str | None = None, had_metrics: bool = True
) -> Failure:
    """Name the failure of a trial from its exit code, job status and last log lines.

    Order: NaN (``failed_with_nan_error`` status or a NaN message in the log) ->
    OOM ("out of memory", ``MemoryError``, ... in the log, or SIGKILL from
    outside, exit -9/137) -> LOST (no exit code) -> CRASH. Pure function.
    """
    low = log_tail.lower()
    last_line = next((line.strip() for line in reversed(log_tail.splitlines()) if line.strip()), "")
    code = "unknown" if exit_code is None else str(exit_code)
    if job_status == p.JOB_STATUS_FAILED_WITH_NAN or _NAN_PATTERN.search(log_tail):
        kind, message = FailureKind.NAN, f"NaN during training (exit code {code})"
    elif any(pat in low for pat in _OOM_PATTERNS):
        kind, message = FailureKind.OOM, f"out of memory (exit code {code}): {last_line}"
    elif exit_code in (-9, 137):
        kind, message = FailureKind.OOM, "killed by SIGKILL from outside (likely the kernel's out-of-memory killer)"
    elif exit_code is None:
        kind, message = FailureKind.LOST, "the process is gone and no exit code was recorded"
    else:
        kind, message = FailureKind.CRASH, f"exit code {code}: {last_line}" if last_line else f"exit code {code}"
    if not had_metrics and kind is FailureKind.CRASH:
        message += " (before any metrics were written)"
    return Failure(kind, message, ADVICE[kind], log_tail)
