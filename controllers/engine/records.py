"""The records of a job: what to run, what the state file keeps, what the loop reports.

Split from :mod:`controllers.engine.jobs` (which re-exports every name here) so the
loop module holds only the loop. Everything here is a plain record or a pure
function: no I/O, no clock.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
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
    "trial_ranges",
    "failure_summary",
    "TAIL_LINES",
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


#: How many last log lines a failure keeps and a diagnosis shows.
TAIL_LINES = 12


@dataclass
class Failure:
    """A classified failure: kind, one-line message, advice, the last log lines and the log's path."""

    kind: FailureKind
    message: str
    advice: str = ""
    log_tail: str = ""
    log_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "message": self.message, "advice": self.advice, "log_tail": self.log_tail,
                "log_path": self.log_path}  # fmt: skip

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Failure:
        return cls(FailureKind(obj["kind"]), obj.get("message", ""), obj.get("advice", ""), obj.get("log_tail", ""),
                   obj.get("log_path", ""))  # fmt: skip


def trial_ranges(trial_ids: Sequence[str]) -> str:
    """``["1", "2", "3", "7"]`` -> ``"1-3, 7"`` (numeric ids in order; others listed as they are)."""
    nums = sorted({int(t) for t in trial_ids if str(t).isdigit()})
    others = [str(t) for t in trial_ids if not str(t).isdigit()]
    parts: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ", ".join(parts + others)


def failure_summary(failures: Mapping[str, Failure | Mapping[str, Any]], *, total: int, what: str,
                    allowed: float | None = None) -> str:  # fmt: skip
    """The diagnosis of failed trials: per cause the trials, the message and the advice, then the
    last log lines of one failed trial and the path of its log.

    ``failures`` maps trial id -> :class:`Failure` (or its ``to_dict()``). ``allowed`` (a ratio)
    is named in the first line when given. Pure; an empty mapping gives one line.
    """
    items = {str(t): (f if isinstance(f, Failure) else Failure.from_dict(dict(f))) for t, f in failures.items()}
    head = f"{len(items)} of {total} trials of {what} failed"
    if allowed is not None:
        head += f" (more than the {allowed:.0%} allowed)"
    lines = [head + (":" if items else "")]
    by_kind: dict[FailureKind, list[str]] = {}
    for tid, f in items.items():
        by_kind.setdefault(f.kind, []).append(tid)
    for kind, tids in sorted(by_kind.items(), key=lambda kv: (-len(kv[1]), kv[0].value)):
        first = items[tids[0]]
        lines.append(f"  {kind.value}: trial{'s' if len(tids) > 1 else ''} {trial_ranges(tids)}: {first.message}")
        if first.advice:
            lines.append(f"    what to do: {first.advice}")
    shown = next((tid for tid, f in items.items() if f.log_tail.strip()), next(iter(items), None))
    if shown is not None:
        f = items[shown]
        tail = [line for line in f.log_tail.splitlines() if line.strip()][-TAIL_LINES:]
        where = f.log_path or "log path not recorded"
        if tail:
            lines.append(f"  last log lines of trial {shown} ({where}):")
            lines += [f"    | {line}" for line in tail]
        else:
            lines.append(f"  trial {shown} wrote no log lines ({where})")
    return "\n".join(lines)


@dataclass
class TrialRecord:
    """What the state file keeps about one trial of a job."""

    trial_id: str
    state: TrialState = TrialState.PENDING
    launch_token: str | None = None
    handle: dict[str, Any] | None = None
    exit_code: int | None = None
    failure: Failure | None = None
    launches: int = 0  # launches of the current attempt (must end at most 1 + relaunches)
    relaunches: int = 0  # launches again after the trial died with its machine (never a duplicate)
    #: earlier attempts that failed (``--retry-failed``): their failure and where their files were kept
    attempts: list[dict[str, Any]] = field(default_factory=list)

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
            "attempts": list(self.attempts),
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
            attempts=list(obj.get("attempts") or []),
        )


@dataclass
class JobRecord:
    """The resumable record of one job (the tool stores ``to_dict()`` in its state file)."""

    name: str
    job_dir_uri: str
    trials: list[TrialRecord]
    stop_reason: str | None = None  # set (and persisted) before 0.0 is posted
    finished: bool = False
    stopped_trials: list[str] = field(default_factory=list)  # still open when "stop now" was posted
    interrupted: list[str] = field(default_factory=list)  # told to stop by Ctrl-C: launched again on resume

    @classmethod
    def create(cls, name: str, job_dir_uri: str, trial_ids: Sequence[str]) -> JobRecord:
        return cls(name, job_dir_uri, [TrialRecord(str(t)) for t in trial_ids])

    def trial(self, trial_id: str) -> TrialRecord:
        for t in self.trials:
            if t.trial_id == trial_id:
                return t
        raise KeyError(f"job {self.name!r} has no trial {trial_id!r}")

    def retryable(self) -> list[TrialRecord]:
        """Trials that did not finish their training: failed, cancelled, skipped after a stop, or
        stopped early by "stop now" (they exit as succeeded, but short)."""
        short = set(self.stopped_trials)
        return [
            t
            for t in self.trials
            if t.state in (TrialState.FAILED, TrialState.CANCELLED, TrialState.SKIPPED)
            or (t.state is TrialState.SUCCEEDED and t.trial_id in short)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "job_dir": self.job_dir_uri,
            "trials": [t.to_dict() for t in self.trials],
            "stop_reason": self.stop_reason,
            "finished": self.finished,
            "stopped_trials": list(self.stopped_trials),
            "interrupted": list(self.interrupted),
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> JobRecord:
        return cls(
            name=obj["name"],
            job_dir_uri=obj["job_dir"],
            trials=[TrialRecord.from_dict(t) for t in obj["trials"]],
            stop_reason=obj.get("stop_reason"),
            finished=bool(obj.get("finished", False)),
            stopped_trials=[str(t) for t in obj.get("stopped_trials") or []],
            interrupted=[str(t) for t in obj.get("interrupted") or []],
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
