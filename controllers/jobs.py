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
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controllers.monitor import JobMonitor, TrialSnapshot
from controllers.runners.base import LaunchError, PollResult, Runner, TrialHandle, TrialSpec, TrialStatus
from controllers.testing import crash_point
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


def _trial_spec(spec: JobSpec, plan: TrialPlan, token: str) -> TrialSpec:
    from proxy_task_utils.storage import join_uri

    model_dir = join_uri(spec.job_dir_uri, plan.trial_id)
    env = dict(spec.env)
    env.update(plan.env)
    return TrialSpec(
        trial_id=plan.trial_id,
        job_dir_uri=spec.job_dir_uri,
        model_dir_uri=model_dir,
        argv=build_argv(spec.trainer_command, model_dir, plan.flags),
        env=env,
        log_path=os.path.join(spec.log_dir, plan.trial_id, "trainer.log"),
        launch_token=token,
    )


class _Loop:
    """State of one run of :func:`run_job` (not persisted: rebuilt from the record on resume)."""

    def __init__(self, spec: JobSpec, runner: Runner, record: JobRecord, persist: Callable[[], None],
                 settings: JobSettings, clock: Callable[[], float]) -> None:  # fmt: skip
        from proxy_task_utils.storage import open_storage

        self.spec, self.runner, self.record, self.persist = spec, runner, record, persist
        self.settings, self.clock = settings, clock
        self.plans = {t.trial_id: t for t in spec.trials}
        ids = [t.trial_id for t in record.trials]
        if sorted(ids) != sorted(self.plans):
            raise ValueError(f"job {spec.name!r}: the record's trials {ids} differ from the spec's {list(self.plans)}")
        self.monitor = JobMonitor(open_storage(spec.job_dir_uri), ids)
        self.live: dict[str, TrialHandle] = {}
        self.last_change: dict[str, float] = {}
        self.nan_since: dict[str, float] = {}
        self.forced: dict[str, Failure] = {}  # failures decided by the loop (timeouts), applied at exit
        self.stop_deadline: float | None = None

    # -- start / resume ---------------------------------------------------------------
    def post_initial_signals(self) -> None:
        open_ids = [t.trial_id for t in self.record.trials if not t.state.is_final]
        if self.record.stop_reason is not None:
            self.monitor.post_signals(open_ids, desired_training_pct=p.MIN_TRAINING_STEP_PCT)
        else:
            self.monitor.post_signals(
                open_ids,
                desired_training_pct=self.spec.desired_training_pct,
                max_training_time_in_hrs=self.spec.max_training_time_in_hrs,
            )

    def resume(self) -> None:
        now = self.clock()
        changed = False
        for t in self.record.trials:
            if t.state is TrialState.RUNNING and t.handle is not None:
                handle = TrialHandle.from_dict(t.handle)
                self.runner.reattach(handle)  # False is fine: poll reports the outcome
                self.live[t.trial_id] = handle
                self.last_change[t.trial_id] = now
            elif t.state is TrialState.LAUNCHING:
                found = self.runner.recover(_trial_spec(self.spec, self.plans[t.trial_id], t.launch_token or ""))
                if found is not None:
                    t.handle, t.state = found.to_dict(), TrialState.RUNNING
                    self.live[t.trial_id] = found
                    self.last_change[t.trial_id] = now
                else:
                    t.state = TrialState.PENDING  # no trace of the launch: it never happened
                changed = True
        if self.record.stop_reason is not None:
            changed |= self._skip_pending()
            self.stop_deadline = now + self.settings.stop_grace_secs
        if changed:
            self.persist()

    def _skip_pending(self) -> bool:
        changed = False
        for t in self.record.trials:
            if t.state is TrialState.PENDING:
                t.state = TrialState.SKIPPED
                changed = True
        return changed

    # -- one poll ---------------------------------------------------------------------
    def poll_trials(self) -> dict[str, TrialSnapshot]:
        polls = {tid: self.runner.poll(h) for tid, h in self.live.items()}
        snaps = self.monitor.poll()  # after the runner: an ended trial's files are complete
        now = self.clock()
        for tid, res in polls.items():
            snap = snaps[tid]
            if res.status is TrialStatus.RUNNING:
                self._watch_running(tid, snap, now)
            else:
                self._finish(tid, res, snap)
        return snaps

    def _watch_running(self, tid: str, snap: TrialSnapshot, now: float) -> None:
        if snap.changed:
            self.last_change[tid] = now
        if tid in self.forced:
            return
        s = self.settings
        if snap.job_status == p.JOB_STATUS_FAILED_WITH_NAN:
            since = self.nan_since.setdefault(tid, now)
            if now - since >= s.nan_grace_secs:
                self.forced[tid] = classify_failure(None, "", job_status=snap.job_status)
                self.runner.cancel(self.live[tid], grace_secs=s.cancel_grace_secs)
            return
        silent = now - self.last_change.get(tid, now)
        if s.no_metrics_timeout_secs is not None and silent > s.no_metrics_timeout_secs:
            tail = self.runner.log_tail(self.live[tid])
            what = "no metrics file" if snap.metrics_generation is None else "metrics file unchanged"
            self.forced[tid] = Failure(
                FailureKind.NO_METRICS,
                f"{what} for {silent:.0f} s (> no_metrics_timeout_secs {s.no_metrics_timeout_secs:g}); cancelled",
                ADVICE[FailureKind.NO_METRICS],
                tail,
            )
            self.runner.cancel(self.live[tid], grace_secs=s.cancel_grace_secs)

    def _finish(self, tid: str, res: PollResult, snap: TrialSnapshot) -> None:
        t = self.record.trial(tid)
        t.exit_code = res.exit_code
        forced = self.forced.pop(tid, None)
        had_metrics = snap.metrics is not None and bool(snap.metrics.training_accuracy_over_steps)
        if forced is not None:
            t.state, t.failure = TrialState.FAILED, forced
        elif res.status is TrialStatus.SUCCEEDED and snap.job_status not in (
            p.JOB_STATUS_FAILED,
            p.JOB_STATUS_FAILED_WITH_NAN,
        ):
            t.state, t.failure = TrialState.SUCCEEDED, None
        elif res.status is TrialStatus.CANCELLED:
            t.state, t.failure = TrialState.CANCELLED, None
        else:
            t.state = TrialState.FAILED
            t.failure = classify_failure(res.exit_code, res.log_tail, job_status=snap.job_status, had_metrics=had_metrics)
        del self.live[tid]
        self.persist()

    def launch_pending(self) -> None:
        if self.record.stop_reason is not None:
            return
        for t in self.record.trials:
            if len(self.live) >= self.runner.max_parallel:
                return
            if t.state is not TrialState.PENDING:
                continue
            t.state, t.launch_token = TrialState.LAUNCHING, uuid.uuid4().hex
            t.launches += 1
            self.persist()  # the intent is on record before anything happens
            crash_point("before_launch")
            tspec = _trial_spec(self.spec, self.plans[t.trial_id], t.launch_token)
            try:
                handle = self.runner.launch(tspec)
            except LaunchError as exc:
                t.state = TrialState.FAILED
                t.failure = Failure(FailureKind.LAUNCH_ERROR, str(exc), ADVICE[FailureKind.LAUNCH_ERROR])
                self.persist()
                continue
            crash_point("launched_unrecorded")
            t.handle, t.state = handle.to_dict(), TrialState.RUNNING
            self.persist()
            crash_point("after_launch")
            self.live[t.trial_id] = handle
            self.last_change[t.trial_id] = self.clock()

    def stop_all(self, reason: str) -> None:
        self.record.stop_reason = reason
        self._skip_pending()
        self.persist()  # the decision is on record before the signal goes out
        open_ids = [t.trial_id for t in self.record.trials if not t.state.is_final]
        self.monitor.post_signals(open_ids, desired_training_pct=p.MIN_TRAINING_STEP_PCT)
        self.stop_deadline = self.clock() + self.settings.stop_grace_secs

    def enforce_stop_deadline(self) -> None:
        if self.stop_deadline is None or self.clock() < self.stop_deadline:
            return
        for handle in self.live.values():
            self.runner.cancel(handle, grace_secs=self.settings.cancel_grace_secs)

    def view(self, poll_index: int, elapsed: float, snaps: dict[str, TrialSnapshot]) -> JobView:
        return JobView(
            name=self.spec.name,
            poll_index=poll_index,
            elapsed_secs=elapsed,
            snapshots=dict(snaps),
            states={t.trial_id: t.state for t in self.record.trials},
            failures={t.trial_id: t.failure for t in self.record.trials if t.failure is not None},
        )

    def result(self, snaps: dict[str, TrialSnapshot]) -> JobResult:
        trials = []
        for t in self.record.trials:
            snap = snaps.get(t.trial_id)
            trials.append(
                TrialResult(
                    trial_id=t.trial_id,
                    state=t.state,
                    metrics=snap.metrics if snap else None,
                    job_status=snap.job_status if snap else None,
                    exit_code=t.exit_code,
                    failure=t.failure,
                )
            )
        return JobResult(self.spec.name, self.spec.job_dir_uri, trials, self.record.stop_reason)


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

    Each poll: runner status of live trials -> one listing of the job folder
    (re-reading changed files) -> finish ended trials, cancel trials without
    metrics for ``no_metrics_timeout_secs`` or stuck after a NaN -> launch
    pending trials up to ``runner.max_parallel`` -> heartbeat, lease ->
    ``on_poll(view)`` (also after the last trial ended, so the final metrics are
    seen) -> progress -> sleep ``poll_interval_secs``.

    Args:
        spec: What to run. ``spec.trials`` and ``record.trials`` list the same ids.
        runner: Where to run it.
        record: The job's resumable record; mutated in place. A record from a
            crashed run resumes: live trials are re-attached, half-recorded
            launches recovered, never-launched trials launched.
        persist: Saves the tool's state file (which embeds ``record``); called
            before every launch and after every change of the record.
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
        ValueError: ``spec`` and ``record`` name different trials.
    """
    loop = _Loop(spec, runner, record, persist, settings, clock)
    start = clock()
    if record.finished:
        return loop.result(loop.monitor.poll())
    loop.post_initial_signals()
    loop.resume()
    last_heartbeat: float | None = None
    poll_index = 0
    while True:
        snaps = loop.poll_trials()
        loop.enforce_stop_deadline()
        loop.launch_pending()
        now = clock()
        hb = settings.heartbeat_interval_secs
        if hb is not None and loop.live and (last_heartbeat is None or now - last_heartbeat >= hb):
            loop.monitor.write_heartbeat(list(loop.live), time.time())
            last_heartbeat = now
        if lease is not None:
            lease.renew()
        view = loop.view(poll_index, now - start, snaps)
        if on_poll is not None:
            decision = on_poll(view)
            if isinstance(decision, StopAll) and record.stop_reason is None:
                loop.stop_all(decision.reason)
                view = loop.view(poll_index, now - start, snaps)
        if progress is not None:
            progress.update(view)
        crash_point("after_poll")
        if not loop.live and all(t.state.is_final for t in record.trials):
            break
        poll_index += 1
        sleep(settings.poll_interval_secs)
    record.finished = True
    persist()
    return loop.result(snaps)
