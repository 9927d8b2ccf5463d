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

* the launch intents (``launch_token``) of a poll's batch of launches are
  persisted in one save *before* the first launch of the batch; the handles
  are recorded after it (with the next save), so a restarted controller
  re-attaches to the live trials, asks the runner to ``recover``
  half-recorded launches, and launches only trials that never started: no
  trial twice, none lost;
* a stop decision is persisted before the 0.0 signal is posted;
* other changes (a trial ended, handles recorded) are saved at most every
  ``JobSettings.state_save_interval_secs`` and at the end: a crash loses
  nothing, the restarted loop polls those trials again and sees them ended.

Fencing: with a ``lease``, every save, batch of launches, stop signal and cancel
is preceded by ``lease.confirm()`` (renew, then act), and the lease is renewed
before the trials' heartbeats of each poll. A controller that was frozen past the
lease timeout and taken over gets :class:`~controllers.errors.LeaseLostError` before
it acts: it writes nothing more, its trials' heartbeats stop (the new holder beats
them), and the CLI exits 3.

Cost per poll (``bench/poll_cost.py``): one look at the job folder, one read
per changed file, heartbeats for about ``live * poll / heartbeat_interval``
trials, and at most one throttled state save; never one request per trial.

Records and types live in :mod:`controllers.engine.records` and are re-exported here.

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

import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from controllers.engine import interrupt
from controllers.engine.faults import crash_point
from controllers.engine.monitor import JobMonitor, TrialSnapshot
from controllers.engine.records import (
    ADVICE,
    Failure,
    FailureKind,
    JobRecord,
    JobResult,
    JobSettings,
    JobSpec,
    JobView,
    OnPoll,
    StopAll,
    TrialPlan,
    TrialRecord,
    TrialResult,
    TrialState,
    build_argv,
    classify_failure,
)
from controllers.errors import LeaseLostError, RunInterrupted, StateError
from controllers.runners.base import LaunchError, PollResult, Runner, TrialHandle, TrialSpec, TrialStatus
from proxy_task_utils import protocol as p

if TYPE_CHECKING:
    from controllers.engine.lease import Lease
    from controllers.engine.progress import Progress

__all__ = ["run_job", "run_jobs", "JobTask", "retry_failed", "ATTEMPTS_DIR"]

logger = logging.getLogger("controllers.engine.jobs")

#: Where a retried trial's earlier attempt is kept: ``<job_dir>/failed_attempts/<trial>_attempt_<k>/``
#: (not a numeric folder, so readers of ``.../nas/search/<id>`` never take it for a trial).
ATTEMPTS_DIR = "failed_attempts"

#: Spreads the first heartbeats of a batch of launches evenly over one interval.
_GOLDEN = 0.6180339887498949


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
                 settings: JobSettings, clock: Callable[[], float], lease: Lease | None = None) -> None:  # fmt: skip
        from proxy_task_utils.storage import open_storage

        self.spec, self.runner, self.record, self._persist = spec, runner, record, persist
        self.lease = lease
        self.settings, self.clock = settings, clock
        self.plans = {t.trial_id: t for t in spec.trials}
        self.by_id: dict[str, TrialRecord] = {t.trial_id: t for t in record.trials}
        ids = [t.trial_id for t in record.trials]
        if sorted(ids) != sorted(self.plans) or len(self.by_id) != len(ids):
            raise ValueError(f"job {spec.name!r}: the record's trials {ids} differ from the spec's {list(self.plans)}")
        self.monitor = JobMonitor(open_storage(spec.job_dir_uri), ids)
        self.live: dict[str, TrialHandle] = {}
        self.last_change: dict[str, float] = {}
        self.nan_since: dict[str, float] = {}
        self.forced: dict[str, Failure] = {}  # failures decided by the loop (timeouts), applied at exit
        self.stop_deadline: float | None = None
        self.beat_due: dict[str, float] = {}  # live trial -> when its next heartbeat is due
        self.polled_all = False
        self.dirty = False
        self.last_save: float | None = None
        self.saves = 0

    # -- fencing and saving -------------------------------------------------------------
    def fence(self) -> None:
        """Prove the folder is still ours right before acting (raises LeaseLostError: act on nothing)."""
        if self.lease is not None:
            self.lease.confirm()

    def save_now(self) -> None:
        """Save at once (before an action, and at the end); fenced."""
        self.fence()
        self._persist()
        self.saves += 1
        self.dirty = False
        self.last_save = self.clock()

    def save_soon(self) -> None:
        """A bookkeeping change: saved by :meth:`maybe_save` within ``state_save_interval_secs``."""
        self.dirty = True

    def maybe_save(self) -> None:
        if not self.dirty:
            return
        if self.last_save is None or self.clock() - self.last_save >= self.settings.state_save_interval_secs:
            self.save_now()

    # -- start / resume ---------------------------------------------------------------
    def post_initial_signals(self) -> None:
        self.fence()
        open_ids = [t.trial_id for t in self.record.trials if not t.state.is_final]
        if self.record.interrupted and self.record.stop_reason is None:
            # Ctrl-C posted "stop now" to these: take it back (train to the job's own target)
            pct = self.spec.desired_training_pct
            self.monitor.post_signals(self.record.interrupted, desired_training_pct=101.0 if pct is None else pct)
        if self.record.stop_reason is not None:
            self.monitor.post_signals(open_ids, desired_training_pct=p.MIN_TRAINING_STEP_PCT)
        else:
            self.monitor.post_signals(
                open_ids,
                desired_training_pct=self.spec.desired_training_pct,
                max_training_time_in_hrs=self.spec.max_training_time_in_hrs,
            )

    def _went_live(self, tid: str, handle: TrialHandle, now: float, *, beat_now: bool) -> None:
        self.live[tid] = handle
        self.last_change[tid] = now
        hb = self.settings.heartbeat_interval_secs
        if hb is not None:
            # a re-attached trainer may have waited long for a beat: at once; fresh launches spread out
            self.beat_due[tid] = now if beat_now else now + hb * ((len(self.beat_due) * _GOLDEN) % 1.0)

    def resume(self) -> None:
        now = self.clock()
        changed = False
        for t in self.record.trials:
            if t.state is TrialState.RUNNING and t.handle is not None:
                handle = TrialHandle.from_dict(t.handle)
                self.runner.reattach(handle)  # False is fine: poll reports the outcome
                self._went_live(t.trial_id, handle, now, beat_now=True)
            elif t.state is TrialState.LAUNCHING:
                found = self.runner.recover(_trial_spec(self.spec, self.plans[t.trial_id], t.launch_token or ""))
                if found is not None:
                    t.handle, t.state = found.to_dict(), TrialState.RUNNING
                    self._went_live(t.trial_id, found, now, beat_now=True)
                else:
                    # no trace of the launch: it never happened (a batch's intent saved, the crash came
                    # before this trial's turn), so it does not count as an attempt either
                    t.state = TrialState.PENDING
                    t.launches = max(0, t.launches - 1)
                changed = True
        if self.record.stop_reason is not None:
            changed |= self._skip_pending()
            self.stop_deadline = now + self.settings.stop_grace_secs
        if changed:
            self.save_now()

    def _skip_pending(self) -> bool:
        changed = False
        for t in self.record.trials:
            if t.state is TrialState.PENDING and t.relaunches == 0:
                t.state = TrialState.SKIPPED
                changed = True
        return changed

    # -- one poll ---------------------------------------------------------------------
    def poll_trials(self) -> dict[str, TrialSnapshot]:
        polls = {tid: self.runner.poll(h) for tid, h in self.live.items()}
        # after the runner: an ended trial's files are complete. The first look covers every
        # trial (a resumed job's finished trials too); later ones only the live trials.
        snaps = self.monitor.poll(list(self.live) if self.polled_all else None)
        self.polled_all = True
        now = self.clock()
        for tid, res in polls.items():
            snap = snaps[tid]
            if res.status is TrialStatus.RUNNING:
                self._watch_running(tid, snap, now)
            else:
                self._finish(tid, res, snap)
        return snaps

    def check_finished_results(self, snaps: dict[str, TrialSnapshot]) -> None:
        """At resume: a finished trial whose metrics cannot be read stops the run before anything acts.

        Its result decided (or will decide) the tool's answer; reading it as "no metrics"
        would change the answer silently, and the trainer cannot write it again (it
        resumes from its final checkpoint).
        """
        bad = [
            (t.trial_id, snaps[t.trial_id].metrics_error)
            for t in self.record.trials
            if t.state is TrialState.SUCCEEDED
            and snaps[t.trial_id].metrics is None
            and snaps[t.trial_id].metrics_error is not None
        ]
        if bad:
            tid, why = bad[0]
            path = self.monitor.storage.child_uri(tid, p.TRIAL_TRAINING_METRICS_FILE)
            others = f" (and of trials {', '.join(t for t, _ in bad[1:])})" if len(bad) > 1 else ""
            raise StateError(
                f"job {self.spec.name}: trial {tid} finished, but its metrics file {path}{others} cannot be read "
                f"({why}); nothing was changed. Restore the file to resume; the result cannot be recomputed "
                "from it as it is, so otherwise start the run over in a new controller_dir"
            )

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
                self.fence()
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
            self.fence()
            self.runner.cancel(self.live[tid], grace_secs=s.cancel_grace_secs)

    def _finish(self, tid: str, res: PollResult, snap: TrialSnapshot) -> None:
        t = self.by_id[tid]
        if tid in self.record.interrupted and self.record.stop_reason is None:
            # it ended because Ctrl-C told it to: not a result; launched again (same folder) on resume
            self.forced.pop(tid, None)
            t.state, t.handle, t.launch_token, t.launches, t.exit_code, t.failure = (
                TrialState.PENDING,
                None,
                None,
                0,
                None,
                None,
            )
            del self.live[tid]
            self.beat_due.pop(tid, None)
            self.save_soon()
            return
        t.exit_code = res.exit_code
        forced = self.forced.pop(tid, None)
        if res.status is TrialStatus.LOST and forced is None and t.relaunches < self.settings.max_relaunches_after_loss:
            # it died with the machine (no exit record, the process gone): not its own failure.
            # A new attempt in the same folder resumes from the trainer's checkpoint.
            logger.warning("job %s trial %s: died without an exit code; launching it again (attempt %d)",
                           self.spec.name, tid, t.relaunches + 2)  # fmt: skip
            t.state, t.handle, t.launch_token, t.exit_code = TrialState.PENDING, None, None, None
            t.relaunches += 1
            del self.live[tid]
            self.beat_due.pop(tid, None)
            self.save_soon()
            return
        had_metrics = snap.metrics is not None and bool(snap.metrics.training_accuracy_over_steps)
        log_path = self.live[tid].log_path or os.path.join(self.spec.log_dir, tid, "trainer.log")
        if forced is not None:
            t.state, t.failure = TrialState.FAILED, forced
            forced.log_path = forced.log_path or log_path
        elif res.status is TrialStatus.SUCCEEDED and snap.job_status not in (
            p.JOB_STATUS_FAILED,
            p.JOB_STATUS_FAILED_WITH_NAN,
        ):
            t.state, t.failure = TrialState.SUCCEEDED, None
        elif res.status is TrialStatus.CANCELLED:
            t.state, t.failure = TrialState.CANCELLED, None
        else:
            t.state = TrialState.FAILED
            t.failure = classify_failure(
                res.exit_code, res.log_tail, job_status=snap.job_status, had_metrics=had_metrics
            )
            t.failure.log_path = log_path
        del self.live[tid]
        self.beat_due.pop(tid, None)
        self.save_soon()  # a crash before the save is harmless: the restarted loop polls it again

    def _launchable(self, t: TrialRecord) -> bool:
        # after "stop all", only trials that died with the machine go again: they read
        # the posted stop at once and end as they would have without the crash
        return t.state is TrialState.PENDING and (self.record.stop_reason is None or t.relaunches > 0)

    def wanting(self) -> int:
        """Trials waiting for a slot."""
        return sum(self._launchable(t) for t in self.record.trials)

    def launch_pending(self, room: int | None = None) -> None:
        """Launch waiting trials into ``room`` free slots (default: the runner's, less this job's live ones)."""
        room = self.runner.max_parallel - len(self.live) if room is None else room
        batch: list[TrialRecord] = []
        for t in self.record.trials:
            if len(batch) >= room:
                break
            if self._launchable(t):
                batch.append(t)
        if not batch:
            return
        for t in batch:
            t.state, t.launch_token = TrialState.LAUNCHING, uuid.uuid4().hex
            t.launches += 1
        self.save_now()  # every intent of the batch is on record before anything happens
        for t in batch:
            if interrupt.requested():  # the intent was saved, the launch never happened: pending again
                t.state, t.launch_token, t.launches = TrialState.PENDING, None, max(0, t.launches - 1)
                self.save_soon()
                continue
            if t.trial_id in self.record.interrupted:
                self.record.interrupted.remove(t.trial_id)
            crash_point("before_launch")
            tspec = _trial_spec(self.spec, self.plans[t.trial_id], t.launch_token or "")
            try:
                handle = self.runner.launch(tspec)
            except LaunchError as exc:
                t.state = TrialState.FAILED
                t.failure = Failure(FailureKind.LAUNCH_ERROR, str(exc), ADVICE[FailureKind.LAUNCH_ERROR],
                                    log_path=tspec.log_path)  # fmt: skip
                self.save_soon()
                continue
            crash_point("launched_unrecorded")
            t.handle, t.state = handle.to_dict(), TrialState.RUNNING
            self.save_soon()  # until saved, a restart finds it through runner.recover(token)
            crash_point("after_launch")
            self._went_live(t.trial_id, handle, self.clock(), beat_now=False)

    def heartbeat(self, wall_time: float) -> int:
        """Rewrite the heartbeat of the live trials whose beat is due; returns writes made."""
        hb = self.settings.heartbeat_interval_secs
        if hb is None or not self.live:
            return 0
        now = self.clock()
        due = [tid for tid, at in self.beat_due.items() if at <= now]
        if due:
            self.fence()  # a controller taken over leaves the beats to the new holder
        for tid in due:
            self.beat_due[tid] = now + hb
        return self.monitor.write_heartbeat(due, wall_time) if due else 0

    def stop_all(self, reason: str) -> None:
        self.record.stop_reason = reason
        self._skip_pending()
        open_ids = [t.trial_id for t in self.record.trials if not t.state.is_final]
        self.record.stopped_trials = open_ids
        self.save_now()  # the decision is on record before the signal goes out
        self.monitor.post_signals(open_ids, desired_training_pct=p.MIN_TRAINING_STEP_PCT)
        self.stop_deadline = self.clock() + self.settings.stop_grace_secs

    def interrupted(self) -> RunInterrupted:
        """Ctrl-C: launch nothing more; stop the live trials (or leave them, detached); save."""
        if interrupt.detach() or not self.live:
            self.save_now()
            return RunInterrupted(
                f"job {self.spec.name}: {len(self.live)} trials left running and recorded (--detach)"
                if self.live
                else f"job {self.spec.name}: no trial was running"
            )
        ids = sorted(self.live, key=lambda x: int(x) if x.isdigit() else 0)
        self.record.interrupted = sorted(set(self.record.interrupted) | set(ids))
        self.save_now()  # on record before the signal: a resume relaunches them instead of taking their result
        self.monitor.post_signals(ids, desired_training_pct=p.MIN_TRAINING_STEP_PCT)
        deadline = self.clock() + self.settings.stop_grace_secs
        cancelled = False
        while self.live:
            self.poll_trials()
            if not self.live:
                break
            if self.clock() >= deadline and not cancelled:
                for handle in self.live.values():
                    self.runner.cancel(handle, grace_secs=self.settings.cancel_grace_secs)
                cancelled = True
            time.sleep(min(self.settings.poll_interval_secs, 0.2))
        self.save_now()
        return RunInterrupted(f"job {self.spec.name}: {len(ids)} running trials were told to stop")

    def enforce_stop_deadline(self) -> None:
        if self.stop_deadline is None or self.clock() < self.stop_deadline or not self.live:
            return
        self.fence()
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


def _wait_for_an_end(runner: Runner, settings: JobSettings) -> bool:
    """Wait one poll interval or until a trial ends; Ctrl-C is seen within 0.2 s (False: the runner cannot tell)."""
    end = time.monotonic() + settings.poll_interval_secs
    while not interrupt.requested():
        left = end - time.monotonic()
        if left <= 0:
            return True
        ended = runner.wait_for_exit(min(left, 0.2))
        if ended is None:
            return False
        if ended:
            return True
    return True


def run_job(
    spec: JobSpec,
    runner: Runner,
    record: JobRecord,
    *,
    persist: Callable[[], None],
    settings: JobSettings | None = None,
    on_poll: OnPoll | None = None,
    lease: Lease | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> JobResult:
    """Run (or resume) a job until every trial has ended; return per-trial results.

    Each poll: runner status of live trials -> one look at the job folder
    (re-reading changed files of live trials) -> finish ended trials, cancel
    trials without metrics for ``no_metrics_timeout_secs`` or stuck after a
    NaN -> launch pending trials up to ``runner.max_parallel`` (one save of
    the intents first) -> heartbeats that are due, lease -> ``on_poll(view)``
    (also after the last trial ended, so the final metrics are seen) ->
    throttled save -> progress -> sleep ``poll_interval_secs`` (or less: the runner wakes the
    loop when a trial ends).

    Args:
        spec: What to run. ``spec.trials`` and ``record.trials`` list the same ids.
        runner: Where to run it.
        record: The job's resumable record; mutated in place. A record from a
            crashed run resumes: live trials are re-attached, half-recorded
            launches recovered, never-launched trials launched.
        persist: Saves the tool's state file (which embeds ``record``); called
            before every batch of launches, before "stop now" is posted, at the
            end, and for other changes at most every ``state_save_interval_secs``.
        settings: Poll interval and timeouts (default: :class:`JobSettings`).
        on_poll: Called once per poll with the fresh metrics of all trials; may
            return :class:`StopAll`.
        lease: The controller's lease, renewed every poll (a lost lease raises).
        progress: Terminal progress sink.
        clock, sleep: Injected monotonic clock and sleeper (tests).

    Returns:
        A :class:`JobResult`; failed trials are results, not exceptions.

    Raises:
        controllers.errors.LeaseLostError: another controller took the folder over.
        controllers.errors.StateError: at resume, a finished trial's metrics file cannot be read.
        ValueError: ``spec`` and ``record`` name different trials.
    """
    results: list[JobResult] = []
    task = JobTask(spec, record, persist, on_poll, on_end=results.append)
    pending = [task]

    def admit(free_slots: int, running: int) -> list[JobTask]:
        out = list(pending)
        pending.clear()
        return out

    run_jobs(admit, runner, settings=settings, lease=lease, progress=progress, clock=clock, sleep=sleep)
    return results[0]


@dataclass
class JobTask:
    """One job of a :func:`run_jobs` run: what :func:`run_job` takes, and what to do with its result.

    Attributes:
        spec, record, persist, on_poll: As for :func:`run_job`.
        on_end: Called once with the job's result, right after its final save (may raise: the
            other jobs' trials are then stopped and recorded as interrupted, so a resume
            relaunches them in their folders).
    """

    spec: JobSpec
    record: JobRecord
    persist: Callable[[], None]
    on_poll: OnPoll | None = None
    on_end: Callable[[JobResult], None] | None = None


@dataclass
class _Active:
    task: JobTask
    loop: _Loop
    start: float
    poll_index: int = 0
    snaps: dict[str, TrialSnapshot] = field(default_factory=dict)


def run_jobs(
    admit: Callable[[int, int], Sequence[JobTask]],
    runner: Runner,
    *,
    settings: JobSettings | None = None,
    lease: Lease | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run several jobs at once on one runner, sharing its ``max_parallel`` slots; ends when none is left.

    ``admit(free_slots, running_jobs)`` is asked for jobs to start: first with no job running,
    then after every poll in which slots would stay idle (every running job has launched all its
    trials). Jobs admitted earlier launch first, so a later job only fills what an earlier one
    leaves idle. Each job is the loop of :func:`run_job` (same saves, signals, fencing and
    resume); its ``on_end`` gets its result as soon as it ends, while the others go on.

    Ctrl-C stops every running job as :func:`run_job` stops one. An exception from a callback
    (``on_poll``, ``on_end``, ``admit``) stops the other jobs' trials the same way before it
    propagates (they resume in their folders), except a lost lease, after which nothing acts.
    """
    settings = JobSettings() if settings is None else settings
    active: list[_Active] = []
    nap = interrupt.interruptible_sleep(sleep)

    def live_total() -> int:
        return sum(len(a.loop.live) for a in active)

    def take_new() -> None:
        while True:
            free = runner.max_parallel - live_total() - sum(a.loop.wanting() for a in active)
            if active and free <= 0:
                return
            tasks = _call(admit, max(0, free), len(active))
            if not tasks:
                return
            for task in tasks:
                loop = _Loop(task.spec, runner, task.record, task.persist, settings, clock, lease)
                if task.record.finished:
                    snaps = loop.monitor.poll()
                    loop.check_finished_results(snaps)
                    if task.on_end is not None:
                        _call(task.on_end, loop.result(snaps))
                    continue
                loop.post_initial_signals()
                loop.resume()
                active.append(_Active(task, loop, clock()))

    def _call(fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except LeaseLostError:
            raise
        except Exception:
            _park(active)
            raise

    take_new()
    while active:
        for a in active:
            a.snaps = a.loop.poll_trials()
            if a.poll_index == 0:
                a.loop.check_finished_results(a.snaps)
        if interrupt.requested():
            raise _interrupt_all(active)
        for a in active:
            a.loop.enforce_stop_deadline()
        if lease is not None:
            lease.renew()  # the lease's own heartbeat; before the trials' beats (fencing)
        for a in active:  # in admission order: an earlier job's trials go first
            a.loop.launch_pending(room=runner.max_parallel - live_total())
        wall = time.time()
        for a in active:
            a.loop.heartbeat(wall)
        ended: list[_Active] = []
        for a in active:
            now = clock()
            view = a.loop.view(a.poll_index, now - a.start, a.snaps)
            if a.task.on_poll is not None:
                decision = _call(a.task.on_poll, view)
                if isinstance(decision, StopAll) and a.task.record.stop_reason is None:
                    a.loop.stop_all(decision.reason)
                    view = a.loop.view(a.poll_index, now - a.start, a.snaps)
            done = not a.loop.live and all(t.state.is_final for t in a.task.record.trials)
            if not done:
                a.loop.maybe_save()  # the final save follows at once otherwise
            if progress is not None:
                progress.update(view)
            if done:
                ended.append(a)
        crash_point("after_poll")
        for a in ended:
            active.remove(a)
            a.task.record.finished = True
            a.loop.save_now()
            if a.task.on_end is not None:
                _call(a.task.on_end, a.loop.result(a.snaps))
        take_new()
        if not active:
            break
        for a in active:
            a.poll_index += 1
        # A trial's end wakes the loop at once (its slot is refilled now, not at the next poll);
        # an injected sleeper (tests on a fake clock) always sleeps.
        if not (settings.wake_on_trial_end and sleep is time.sleep and _wait_for_an_end(runner, settings)):
            nap(settings.poll_interval_secs)


def _interrupt_all(active: list[_Active]) -> RunInterrupted:
    """Ctrl-C: every running job stops (or is left running, detached) and is saved; one combined error."""
    messages = [str(a.loop.interrupted()) for a in active]
    return RunInterrupted("; ".join(messages))


def _park(active: list[_Active]) -> None:
    """Before an error propagates: stop the running jobs' trials as Ctrl-C does (a resume relaunches them)."""
    for a in active:
        try:
            a.loop.interrupted()
        except LeaseLostError:
            return
        except Exception as exc:  # the original error matters more
            logger.warning("job %s: could not stop its trials: %s", a.task.spec.name, exc)


def retry_failed(record: JobRecord, *, log_dir: str) -> list[str]:
    """Make every trial of ``record`` that did not succeed a new attempt (``--resume --retry-failed``).

    The failed attempt's files are kept: its trial folder is copied to
    ``<job_dir>/failed_attempts/<trial>_attempt_<k>/`` and then removed (so the new attempt
    starts clean), its log is renamed ``trainer.attempt_<k>.log``; its failure and both
    places are appended to ``TrialRecord.attempts``. The record becomes unfinished, with no
    stop reason. The caller saves the state afterwards; a crash in between repeats the copy
    (idempotent: an existing copy is overwritten with the same bytes, nothing is lost).

    Returns:
        The ids of the trials made new attempts (in record order).
    """
    from proxy_task_utils.storage import open_storage

    storage = open_storage(record.job_dir_uri)
    again: list[str] = []
    for t in record.retryable():
        k = len(t.attempts) + 1
        aside = f"{ATTEMPTS_DIR}/{t.trial_id}_attempt_{k}"
        for info in storage.list(f"{t.trial_id}/"):
            data, _ = storage.read(info.name)
            storage.write(f"{aside}/{info.name.split('/', 1)[1]}", data)
        for info in storage.list(f"{t.trial_id}/"):
            storage.delete(info.name)
        log = os.path.join(log_dir, t.trial_id, "trainer.log")
        kept_log = os.path.join(log_dir, t.trial_id, f"trainer.attempt_{k}.log")
        if os.path.exists(log):
            os.replace(log, kept_log)
        t.attempts.append({
            "attempt": k, "state": t.state.value, "exit_code": t.exit_code,
            "failure": None if t.failure is None else t.failure.to_dict(),
            "files": storage.child_uri(aside), "log": kept_log if os.path.exists(kept_log) else "",
        })  # fmt: skip
        t.state, t.launch_token, t.handle, t.exit_code, t.failure, t.launches = (
            TrialState.PENDING,
            None,
            None,
            None,
            None,
            0,
        )
        again.append(t.trial_id)
    if again:
        record.finished = False
        record.stop_reason = None
        record.stopped_trials = []
    return again
