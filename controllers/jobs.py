"""A job of N trials and the monitoring loop that all three tools share.

A *job* is a named set of trials under ``<controller_dir>/<job_name>/nas/search/<id>``
(the reference's ``.*nas/search/\\d+`` layout). :func:`run_job` launches the
trials (at most ``runner.max_parallel`` at a time), polls the runner and the
trial folders, posts stop signals, writes the controller heartbeat, detects
and classifies failures, and returns one :class:`TrialResult` per trial. A
failed trial never raises: it is recorded and the loop goes on.

Decide vs do: tools decide through the ``on_poll`` callback (pure decisions
from the fresh metrics), the loop acts.

Crash safety: everything needed to resume lives in a :class:`JobRecord`
that the tool embeds in its own state file; the loop mutates it and calls
``persist()``:

* the launch intent (``launch_token``) is persisted *before* each launch and
  the handle right after it, so a restarted controller re-attaches to the
  live trials, asks the runner to ``recover`` half-recorded launches, and
  launches only trials that never started: no trial twice, none lost;
* a stop decision is persisted before the 0.0 signal is posted.

Usage (the search controller)::

    record = JobRecord.create("proxy_1", job_dir_uri, trial_ids=["1", ..., "10"])
    state["jobs"]["proxy_1"] = record.to_dict(); save()          # the tool's state file
    spec = JobSpec(name="proxy_1", job_dir_uri=..., log_dir=..., trainer_command=[...],
                   trials=[TrialPlan("1", flags=[("retrain_search_job_dir", ref_dir), ...]), ...],
                   desired_training_pct=None, max_training_time_in_hrs=2.0)
    def on_poll(view: JobView) -> StopAll | None:
        corr = ...  # from view.snapshots[trial_id].metrics
        return StopAll("correlation 0.71 >= 0.65 at 12 %") if ... else None
    result = run_job(spec, runner, record, persist=lambda: save_state(record), settings=settings,
                     on_poll=on_poll)
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from controllers.monitor import TrialSnapshot
from controllers.runners.base import Runner, TrialHandle
from proxy_task_utils import protocol as p

if TYPE_CHECKING:
    from controllers.progress import Progress
    from controllers.state import Lease

__all__ = [
    "JOB_SUBDIR",
    "TrialPlan",
    "JobSpec",
    "JobSettings",
    "TrialState",
    "TrialRecord",
    "JobRecord",
    "FailureKind",
    "Failure",
    "TrialResult",
    "JobResult",
    "JobView",
    "StopAll",
    "OnPoll",
    "run_job",
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
        heartbeat_interval_secs: How often ``controller_alive_timestamp.json`` is
            rewritten in live trial folders (None: never).
        nan_grace_secs: A trial that wrote ``failed_with_nan_error`` but keeps
            running is cancelled after this long.
    """

    poll_interval_secs: float = 60.0
    no_metrics_timeout_secs: float | None = 3600.0
    stop_grace_secs: float = 600.0
    cancel_grace_secs: float = 30.0
    heartbeat_interval_secs: float | None = 60.0
    nan_grace_secs: float = 60.0


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
    launches: int = 0  # how many times a launch was attempted (must end at most 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "state": self.state.value,
            "launch_token": self.launch_token,
            "handle": self.handle,
            "exit_code": self.exit_code,
            "failure": None if self.failure is None else self.failure.to_dict(),
            "launches": self.launches,
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

    @property
    def all_final(self) -> bool:
        return all(s.is_final for s in self.states.values())


@dataclass(frozen=True)
class StopAll:
    """``on_poll`` verdict: post 0.0 ("stop now") to every trial; launch nothing more.

    Trials exit gracefully at their next stop check; those still running after
    ``JobSettings.stop_grace_secs`` are cancelled. ``reason`` is stored in the record.
    """

    reason: str


OnPoll = Callable[[JobView], "StopAll | None"]


def classify_failure(
    exit_code: int | None, log_tail: str, *, job_status: str | None = None, had_metrics: bool = True
) -> Failure:
    """Name the failure of a trial from its exit code, job status and last log lines.

    Order: NaN (``failed_with_nan_error`` status or a NaN message in the log) ->
    OOM ("out of memory", ``MemoryError``, or SIGKILL by the kernel, exit -9/137) ->
    LOST (no exit code) -> CRASH. Pure function.
    """
    raise NotImplementedError  # implemented below in the next commit


def run_job(
    spec: JobSpec,
    runner: Runner,
    record: JobRecord,
    *,
    persist: Callable[[], None],
    settings: JobSettings = JobSettings(),
    on_poll: OnPoll | None = None,
    lease: Lease | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> JobResult:
    """Run (or resume) a job until every trial has ended; return per-trial results.

    Args:
        spec: What to run. ``spec.trials`` and ``record.trials`` list the same ids.
        runner: Where to run it.
        record: The job's resumable record; mutated in place. A record from a
            crashed run resumes: live trials are re-attached, half-recorded
            launches recovered, never-launched trials launched.
        persist: Saves the tool's state file (which embeds ``record``); called
            before every launch, after every state change.
        settings: Poll interval and timeouts.
        on_poll: Called once per poll with the fresh metrics of all trials; may
            return :class:`StopAll`.
        lease: The controller's lease, renewed every poll (a lost lease raises).
        progress: Terminal progress sink.
        clock, sleep: Injected monotonic clock and sleeper (tests).

    Returns:
        A :class:`JobResult`; failed trials are results, not exceptions.

    Raises:
        controllers.state.LeaseLostError: another controller took the folder over.
    """
    raise NotImplementedError  # implemented in the next commit


_ = (TrialHandle, asdict)
