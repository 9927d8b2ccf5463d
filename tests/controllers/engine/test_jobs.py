"""The shared job loop with real replay-trainer subprocesses."""

from __future__ import annotations

import dataclasses
import json

from controllers.engine.jobs import JobTask, run_job, run_jobs
from controllers.engine.records import (
    FailureKind,
    JobRecord,
    JobSpec,
    StopAll,
    TrialPlan,
    TrialState,
    classify_failure,
    job_dir_uri,
)
from controllers.runners import LocalRunner
from proxy_task_utils import protocol as p


def _job(tmp_path, command, trials, **kw):
    jd = job_dir_uri(str(tmp_path), "job")
    spec = JobSpec(
        name="job", job_dir_uri=jd, log_dir=str(tmp_path / "logs"), trainer_command=tuple(command),
        trials=tuple(trials), **kw,
    )  # fmt: skip
    record = JobRecord.create("job", jd, [t.trial_id for t in trials])
    saved = []
    return spec, record, saved, (lambda: saved.append(json.dumps(record.to_dict())))


def _plan(tid, quality=0.5, **flags):
    fl = [("nas_params_str", json.dumps({"quality": quality}))] + [(k, str(v)) for k, v in flags.items()]
    return TrialPlan(tid, tuple(fl))


class _IntentCheckingRunner(LocalRunner):
    """The real local runner; at each launch it checks the last save holds that trial's launch intent."""

    def __init__(self, n, saved):
        super().__init__(n)
        self.saved, self.launched, self.saves_at_launch = saved, [], []

    def launch(self, spec):
        last = json.loads(self.saved[-1])["trials"]
        entry = next(t for t in last if t["trial_id"] == spec.trial_id)
        assert (entry["state"], entry["launch_token"]) == ("launching", spec.launch_token)
        self.launched.append(spec.trial_id)
        self.saves_at_launch.append(len(self.saved))
        return super().launch(spec)


def test_job_runs_trials_and_classifies_failures(tmp_path, replay_command, fast_settings):
    plans = [
        _plan("1", 0.6),
        _plan("2", 0.7, failure_plan="2:crash"),
        _plan("3", 0.7, failure_plan="3:nan", fail_at_cycle=1),
        _plan("4", 0.7, failure_plan="4:hang"),
        _plan("5", 0.7, failure_plan="5:oom"),
    ]
    spec, record, saved, persist = _job(tmp_path, replay_command + ["--train_steps=40"], plans,
                                        desired_training_pct=50.0)  # fmt: skip
    polls = []
    runner = _IntentCheckingRunner(3, saved)
    settings = dataclasses.replace(fast_settings, state_save_interval_secs=3600.0)  # throttle all bookkeeping
    result = run_job(spec, runner, record, persist=persist, settings=settings,
                     on_poll=lambda v: polls.append(v.poll_index))  # fmt: skip
    by = result.by_id()
    assert by["1"].state is TrialState.SUCCEEDED
    assert by["1"].metrics.last_pct == 50.0  # stopped by the posted 50 %
    assert {t: by[t].failure.kind for t in "2345"} == {
        "2": FailureKind.CRASH, "3": FailureKind.NAN, "4": FailureKind.NO_METRICS, "5": FailureKind.OOM,
    }  # fmt: skip
    assert by["2"].exit_code == 3 and "crash requested" in by["2"].failure.log_tail
    assert "learning rate" in by["3"].failure.advice and by["3"].metrics.last_pct == 25.0
    assert "batch size" in by["5"].failure.advice
    assert all(t.launches == 1 for t in record.trials) and record.finished
    assert polls == sorted(polls) and len(polls) >= 2
    # the launch intent was saved before every launch (checked inside launch); with bookkeeping
    # throttled, the only saves are one per batch of launches and the final one
    assert sorted(runner.launched) == list("12345")
    batches = len(set(runner.saves_at_launch))
    assert 2 <= batches < 5 and len(saved) == batches + 1
    assert json.loads(saved[-1])["finished"] is True
    assert all(t["state"] != "launching" for t in json.loads(saved[-1])["trials"])


def test_stop_all_posts_zero_and_skips_pending(tmp_path, replay_command, fast_settings):
    plans = [_plan(str(i), 0.5) for i in range(1, 5)]
    spec, record, _, persist = _job(tmp_path, replay_command + ["--sleep_per_cycle=0.05"], plans)

    def on_poll(view):
        snap = view.snapshots["1"]
        if snap.metrics is not None and snap.metrics.training_accuracy_over_steps:
            return StopAll("enough")
        return None

    result = run_job(spec, LocalRunner(2), record, persist=persist, settings=fast_settings, on_poll=on_poll)
    states = {t.trial_id: t.state for t in result.trials}
    assert states["3"] is TrialState.SKIPPED and states["4"] is TrialState.SKIPPED
    assert states["1"] is TrialState.SUCCEEDED  # exited gracefully on 0.0
    assert result.by_id()["1"].metrics.last_pct < 100.0
    assert record.stop_reason == "enough"
    data = (tmp_path / "job/nas/search/1" / p.DESIRED_TRAINING_PCT_FILE).read_bytes()
    assert p.decode_desired_training_pct(data) == 0.0


def test_classify_failure_rules():
    assert classify_failure(1, "x", job_status="failed_with_nan_error").kind is FailureKind.NAN
    assert classify_failure(1, "RuntimeError: CUDA out of memory").kind is FailureKind.OOM
    assert classify_failure(-9, "").kind is FailureKind.OOM
    assert classify_failure(None, "").kind is FailureKind.LOST
    f = classify_failure(2, "line\nValueError: bad\n", had_metrics=False)
    assert f.kind is FailureKind.CRASH and "ValueError: bad" in f.message and "before any metrics" in f.message


def test_a_finished_trial_frees_its_slot_at_once_not_at_the_next_poll(tmp_path, replay_command, fast_settings):
    # One slot, three short trials and a 10-minute poll interval: the job only ends (within the
    # test timeout) because each trial's end wakes the loop, which then launches the next one.
    settings = dataclasses.replace(fast_settings, poll_interval_secs=600.0, heartbeat_interval_secs=None)
    plans = [_plan(str(k), 0.5 + 0.1 * k, train_steps=3, cycle_steps=3) for k in range(1, 4)]
    spec, record, saved, persist = _job(tmp_path, replay_command, plans)
    result = run_job(spec, LocalRunner(1), record, persist=persist, settings=settings)
    assert [r.state for r in result.trials] == [TrialState.SUCCEEDED] * 3
    assert [t.launches for t in record.trials] == [1, 1, 1]


class _CountingRunner(LocalRunner):
    """The real local runner; it records how many trials were live at each launch, and of which job."""

    def __init__(self, n):
        super().__init__(n)
        self.handles, self.live_at_launch, self.jobs = [], [], []

    def launch(self, spec):
        self.live_at_launch.append(sum(self.poll(h).status.value == "running" for h in self.handles))
        self.jobs.append(spec.job_dir_uri)
        handle = super().launch(spec)
        self.handles.append(handle)
        return handle


def _two_jobs(tmp_path, replay_command, n_trials, *, sleep=0.05):
    out = []
    for name in ("a", "b"):
        jd = job_dir_uri(str(tmp_path), name)
        plans = tuple(_plan(str(k), 0.5) for k in range(1, n_trials + 1))
        spec = JobSpec(name=name, job_dir_uri=jd, log_dir=str(tmp_path / "logs" / name),
                       trainer_command=tuple(replay_command + [f"--sleep_per_cycle={sleep}", "--train_steps=60"]),
                       trials=plans)  # fmt: skip
        record = JobRecord.create(name, jd, [t.trial_id for t in plans])
        out.append((spec, record))
    return out


def test_run_jobs_shares_the_slots_and_a_later_job_fills_what_an_earlier_leaves_idle(
    tmp_path, replay_command, fast_settings
):
    jobs = _two_jobs(tmp_path, replay_command, 3)
    runner = _CountingRunner(4)
    asked, ended = [], []
    queue = list(jobs)

    def admit(free, running):
        asked.append((free, running))
        if not queue:
            return []
        spec, record = queue.pop(0)
        return [JobTask(spec, record, lambda: None, on_end=ended.append)]

    run_jobs(admit, runner, settings=fast_settings)
    assert sorted(r.name for r in ended) == ["a", "b"]
    assert all(t.state is TrialState.SUCCEEDED for r in ended for t in r.trials)
    assert max(runner.live_at_launch) < 4  # never a fifth trial while four ran
    assert asked[0] == (4, 0) and asked[1] == (1, 1)  # job b is offered the one slot job a leaves idle
    # b's first trial started while a's trials ran
    first_b = runner.jobs.index(jobs[1][0].job_dir_uri)
    assert first_b < len(runner.jobs) - 1 and runner.jobs[:first_b] == [jobs[0][0].job_dir_uri] * 3


def test_an_error_in_one_jobs_callback_stops_the_others_trials_for_a_resume(tmp_path, replay_command, fast_settings):
    (spec_a, rec_a), (spec_b, rec_b) = _two_jobs(tmp_path, replay_command, 2, sleep=0.2)
    tasks = [JobTask(spec_a, rec_a, lambda: None), JobTask(spec_b, rec_b, lambda: None)]

    def boom(view):
        if any(s.metrics is not None for s in view.snapshots.values()):
            raise RuntimeError("the tool failed")
        return None

    tasks[1] = dataclasses.replace(tasks[1], on_poll=boom)
    given = list(tasks)
    try:
        run_jobs(lambda free, running: [given.pop(0) for _ in range(len(given))], LocalRunner(4),
                 settings=fast_settings)  # fmt: skip
    except RuntimeError as exc:
        assert "the tool failed" in str(exc)
    else:
        raise AssertionError("the callback's error must propagate")
    # job a's trials were told to stop and recorded as interrupted: a resume relaunches them
    assert sorted(rec_a.interrupted) == ["1", "2"] and rec_a.stop_reason is None
    assert all(t.state is TrialState.PENDING for t in rec_a.trials)
    data = (tmp_path / "a/nas/search/1" / p.DESIRED_TRAINING_PCT_FILE).read_bytes()
    assert p.decode_desired_training_pct(data) == 0.0
