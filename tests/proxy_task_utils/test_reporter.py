"""The trainer-side reporter: records, duplicate rule, stop signals, heartbeat, failures."""

from __future__ import annotations

import json
import os

import pytest

import proxy_task_utils as ptu
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError, CorruptFileError, TransientStorageError
from proxy_task_utils.reporter import TrialReporter, reset_reporters
from proxy_task_utils.storage import LocalStorage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FlakyStorage(LocalStorage):
    """A real folder whose next ``failures`` operations raise a transient error (a storage hiccup)."""

    failures = 0

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise TransientStorageError("503 from the storage service (injected)")

    def write(self, name, data):
        self._maybe_fail()
        return super().write(name, data)

    def generations(self, names):
        self._maybe_fail()
        return super().generations(names)


@pytest.fixture(autouse=True)
def _fresh_reporters():
    reset_reporters()
    yield
    reset_reporters()


@pytest.fixture
def trial(tmp_path):
    return str(tmp_path / "job" / "nas" / "search" / "1")


def _read(trial):
    with open(os.path.join(trial, p.TRIAL_TRAINING_METRICS_FILE), "rb") as f:
        return p.TrialTrainingMetrics.from_json(f.read())


def test_cycles_accumulate_steps_and_time(trial):
    assert ptu.update_trial_training_accuracy_metric(trial, 0.3, 0, 9, 2.0, 20)
    assert ptu.update_trial_training_accuracy_metric(trial, 0.5, 10, 19, 3.0, 20)
    m = _read(trial)
    assert [(e.training_step_pct, e.training_step, e.accuracy) for e in m.training_accuracy_over_steps] == [
        (50.0, 9, 0.3),
        (100.0, 19, 0.5),
    ]
    assert m.training_time == p.TrainingTime(20, 5.0)


def test_duplicate_rule_drops_cycles_not_beyond_recorded_progress(trial):
    ptu.update_trial_training_accuracy_metric(trial, 0.5, 0, 9, 2.0, 20)
    # replayed after a restart from an older checkpoint: same and lower percentage
    assert not ptu.update_trial_training_accuracy_metric(trial, 0.9, 0, 9, 2.0, 20)
    assert not ptu.update_trial_training_accuracy_metric(trial, 0.9, 0, 4, 1.0, 20)
    m = _read(trial)
    assert len(m.training_accuracy_over_steps) == 1
    assert m.training_time == p.TrainingTime(10, 2.0)  # no time or steps for dropped cycles


def test_resume_continues_the_record_from_the_file(trial):
    ptu.update_trial_training_accuracy_metric(trial, 0.5, 0, 9, 2.0, 20)
    reset_reporters()  # a restarted trainer process
    assert not ptu.update_trial_training_accuracy_metric(trial, 0.5, 0, 9, 2.0, 20)
    assert ptu.update_trial_training_accuracy_metric(trial, 0.6, 10, 19, 2.0, 20)
    assert len(_read(trial).training_accuracy_over_steps) == 2


def test_one_write_and_no_read_per_cycle(trial):
    storage = LocalStorage(trial)
    reporter = TrialReporter(trial, storage=storage)
    before = storage.request_count
    for i in range(10):
        reporter.update_accuracy(0.1, i, i, 0.1, 10)
    assert storage.request_count - before == 10


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((float("nan"), 0, 9, 1.0, 10), "accuracy"),
        ((float("inf"), 0, 9, 1.0, 10), "accuracy"),
        ((0.5, 5, 4, 1.0, 10), "end_training_cycle_step"),
        ((0.5, -1, 4, 1.0, 10), "begin_training_cycle_step"),
        ((0.5, 0, 4, -1.0, 10), "training_cycle_time_in_secs"),
        ((0.5, 0, 4, 1.0, 0), "total_training_steps"),
    ],
)
def test_bad_cycle_input_is_refused_and_nothing_written(trial, args, field):
    with pytest.raises(ConfigurationError, match=field):
        ptu.update_trial_training_accuracy_metric(trial, *args)
    assert not os.path.exists(os.path.join(trial, p.TRIAL_TRAINING_METRICS_FILE))


def test_nan_error_gives_advice(trial):
    with pytest.raises(ConfigurationError, match="learning rate"):
        ptu.update_trial_training_accuracy_metric(trial, float("nan"), 0, 9, 1.0, 10)


def test_latency_is_kept_with_the_record(trial):
    ptu.update_trial_training_accuracy_metric(trial, 0.5, 0, 9, 2.0, 10)
    ptu.update_trial_training_latency_metric(trial, 3.25)
    m = _read(trial)
    assert m.latency == 3.25 and len(m.training_accuracy_over_steps) == 1


def test_stop_now_zero_is_honoured(trial):
    assert not ptu.get_stop_training(trial, -1, 100)
    ptu.set_stop_training(trial, desired_training_step_pct=0.0)
    assert json.loads(open(os.path.join(trial, p.DESIRED_TRAINING_PCT_FILE)).read()) == {"desired_training_pct": 0.0}
    assert ptu.get_stop_training(trial, -1, 100)
    assert "desired 0.0000%" in ptu.get_stop_reason(trial)


def test_desired_pct_uses_greater_or_equal(trial):
    ptu.set_stop_training(trial, desired_training_step_pct=50.0)
    assert not ptu.get_stop_training(trial, 48, 100)  # 49 %
    assert ptu.get_stop_training(trial, 49, 100)  # exactly 50 %


def test_signals_can_be_updated(trial):
    ptu.set_stop_training(trial, desired_training_step_pct=30.0)
    assert ptu.get_stop_training(trial, 39, 100)
    ptu.set_stop_training(trial, desired_training_step_pct=60.0)  # the reference ignores this second write
    assert not ptu.get_stop_training(trial, 39, 100)
    assert ptu.get_stop_training(trial, 59, 100)
    os.remove(os.path.join(trial, p.DESIRED_TRAINING_PCT_FILE))
    assert not ptu.get_stop_training(trial, 99, 100)


def test_max_training_time_is_strictly_greater(trial):
    ptu.set_stop_training(trial, max_training_time_in_hrs=1.0)
    ptu.update_trial_training_accuracy_metric(trial, 0.5, 0, 9, 3600.0, 100)
    assert not ptu.get_stop_training(trial, 9, 100)  # exactly 1 h is not > 1 h
    ptu.update_trial_training_accuracy_metric(trial, 0.5, 10, 19, 1.0, 100)
    assert ptu.get_stop_training(trial, 19, 100)
    assert "max 1.0000 h" in ptu.get_stop_reason(trial)


def test_both_signals_in_one_call(trial):
    ptu.set_stop_training(trial, desired_training_step_pct=80.0, max_training_time_in_hrs=0.0)
    assert json.loads(open(os.path.join(trial, p.MAX_TRAINING_TIME_FILE)).read()) == {"max_training_time_in_hrs": 0.0}
    ptu.update_trial_training_accuracy_metric(trial, 0.5, 0, 0, 0.5, 100)
    assert ptu.get_stop_training(trial, 0, 100)  # 0.5 s > 0 h


def test_stop_check_costs_one_request_and_reads_only_changed_signals(trial):
    storage = LocalStorage(trial)
    reporter = TrialReporter(trial, storage=storage)
    ptu.set_stop_training(trial, desired_training_step_pct=90.0)
    reporter.check_stop(0, 100)  # first sight: one listing + one read
    before = storage.request_count
    for step in range(1, 11):
        reporter.check_stop(step, 100)
    assert storage.request_count - before == 10


def test_throttled_stop_check_reuses_the_decision(trial):
    clock = FakeClock()
    storage = LocalStorage(trial)
    reporter = TrialReporter(trial, storage=storage, clock=clock, min_check_interval_secs=60)
    reporter.check_stop(0, 100)
    ptu.set_stop_training(trial, desired_training_step_pct=0.0)
    before = storage.request_count
    clock.now += 30
    assert not reporter.check_stop(1, 100).stop  # not looked yet
    assert storage.request_count == before
    clock.now += 31
    assert reporter.check_stop(2, 100).stop


def test_heartbeat_that_stands_still_stops_gracefully(trial):
    clock = FakeClock()
    reporter = TrialReporter(trial, clock=clock, heartbeat_timeout_secs=900)
    storage = LocalStorage(trial)
    # the controller's clock is far in the past: a wall-clock comparison would stop at once
    storage.write(p.CONTROLLER_ALIVE_TIMESTAMP_FILE, p.encode_controller_alive_timestamp(1.0))
    assert not reporter.check_stop(0, 100).stop
    clock.now += 600
    storage.write(p.CONTROLLER_ALIVE_TIMESTAMP_FILE, p.encode_controller_alive_timestamp(2.0))
    assert not reporter.check_stop(1, 100).stop
    clock.now += 800  # 800 s since the last change
    assert not reporter.check_stop(2, 100).stop
    clock.now += 200  # 1000 s since the last change
    decision = reporter.check_stop(3, 100)
    assert decision.stop and "heartbeat" in decision.reason


def test_no_heartbeat_file_never_stops(trial):
    clock = FakeClock()
    reporter = TrialReporter(trial, clock=clock)
    clock.now += 10**6
    assert not reporter.check_stop(0, 100).stop


def test_corrupt_metrics_file_is_kept_and_reported(trial, caplog):
    os.makedirs(trial)
    torn = b'{\n  "training_time": {\n    "total_training_st'
    with open(os.path.join(trial, p.TRIAL_TRAINING_METRICS_FILE), "wb") as f:
        f.write(torn)
    ptu.update_trial_training_accuracy_metric(trial, 0.5, 0, 9, 1.0, 10)
    kept = [n for n in os.listdir(trial) if n.startswith(p.TRIAL_TRAINING_METRICS_FILE + ".corrupt-")]
    assert len(kept) == 1
    assert open(os.path.join(trial, kept[0]), "rb").read() == torn
    assert len(_read(trial).training_accuracy_over_steps) == 1
    assert "could not be parsed" in caplog.text


def test_corrupt_metrics_file_raises_in_strict_mode(trial):
    os.makedirs(trial)
    with open(os.path.join(trial, p.TRIAL_TRAINING_METRICS_FILE), "w") as f:
        f.write("{not json")
    with pytest.raises(CorruptFileError):
        TrialReporter(trial, strict=True)


def test_unreadable_signal_is_ignored_and_logged(trial, caplog):
    LocalStorage(trial).write(p.DESIRED_TRAINING_PCT_FILE, b'{"desired_training_pct": "soon"}')
    assert not ptu.get_stop_training(trial, 99, 100)
    assert "ignoring unreadable stop signal" in caplog.text


def test_storage_errors_are_retried(trial):
    storage = FlakyStorage(trial)
    reporter = TrialReporter(trial, storage=storage, sleep=lambda s: None)
    storage.failures = 2  # fewer than the 3 attempts
    assert reporter.update_accuracy(0.5, 0, 9, 1.0, 20)
    assert len(_read(trial).training_accuracy_over_steps) == 1


def test_storage_outage_is_survived_and_caught_up(trial, caplog):
    storage = FlakyStorage(trial)
    reporter = TrialReporter(trial, storage=storage, sleep=lambda s: None)
    storage.failures = 100
    assert reporter.update_accuracy(0.5, 0, 9, 1.0, 20)  # recorded in memory, the write failed
    assert not reporter.check_stop(9, 20).stop  # the stop check failed too: no crash
    assert "will try again" in caplog.text
    storage.failures = 0
    assert not reporter.check_stop(9, 20).stop  # the next call writes the pending record
    assert len(_read(trial).training_accuracy_over_steps) == 1


def test_storage_outage_raises_in_strict_mode(trial):
    storage = FlakyStorage(trial)
    reporter = TrialReporter(trial, storage=storage, strict=True, sleep=lambda s: None)
    storage.failures = 100
    with pytest.raises(TransientStorageError):
        reporter.update_accuracy(0.5, 0, 9, 1.0, 20)


def test_configure_trial_updates_options(trial):
    reporter = ptu.configure_trial(trial, min_check_interval_secs=5.0, strict=True)
    assert reporter is ptu.get_reporter(trial)
    assert reporter.min_check_interval_secs == 5.0 and reporter.strict
    with pytest.raises(ConfigurationError, match="min_check_interval_secs"):
        TrialReporter(trial, min_check_interval_secs=-1)


def test_set_stop_training_refuses_negative(trial):
    with pytest.raises(ConfigurationError, match="desired_training_step_pct"):
        ptu.set_stop_training(trial, desired_training_step_pct=-1.0)


def test_extra_metrics_and_job_status(trial):
    ptu.save_extra_metrics(trial, {"a": 1.0})
    ptu.save_extra_metrics(trial, {"b": 2})
    assert json.load(open(os.path.join(trial, p.EXTRA_METRICS_FILE))) == {"a": 1.0, "b": 2}
    ptu.write_job_status(trial, "success")
    assert json.load(open(os.path.join(trial, p.JOB_STATUS_FILE))) == {"job_status": "success"}


def test_gcs_trial_costs_two_requests_per_cycle(fake_gcs):
    trial = fake_gcs.uri + "/job/nas/search/1"
    reporter = TrialReporter(trial)
    ptu.set_stop_training(trial, desired_training_step_pct=95.0, max_training_time_in_hrs=1.0)
    reporter.check_stop(-1, 100)
    before = reporter.storage.request_count
    for step in range(10):
        assert not reporter.check_stop(step * 9 - 1, 100).stop
        reporter.update_accuracy(0.1 * step, step * 9, step * 9 + 8, 0.5, 100)
    assert reporter.storage.request_count - before == 20
    assert reporter.check_stop(95, 100).stop
    data, _ = fake_gcs.storage().read("job/nas/search/1/" + p.TRIAL_TRAINING_METRICS_FILE)
    assert len(p.TrialTrainingMetrics.from_json(data).training_accuracy_over_steps) == 10
