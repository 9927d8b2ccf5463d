"""The reporter's records and its storage failures: retries, give-ups, the log lines, the extra files."""

from __future__ import annotations

import json
import logging
import os
import re

import pytest

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError, NotFoundError, ProtocolError, TransientStorageError
from proxy_task_utils.reporter import TrialReporter, reset_reporters
from proxy_task_utils.storage import LocalStorage


class Flaky(LocalStorage):
    """A real folder whose next ``failures`` writes/listings raise a transient error."""

    failures = 0

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise TransientStorageError("503 (injected)")

    def write(self, name, data, *, durable=True):
        self._maybe_fail()
        return super().write(name, data, durable=durable)

    def generations(self, names):
        self._maybe_fail()
        return super().generations(names)


@pytest.fixture(autouse=True)
def _fresh_reporters():
    reset_reporters()
    yield
    reset_reporters()


@pytest.fixture
def folder(tmp_path):
    return str(tmp_path / "trial")


def _metrics(folder):
    with open(os.path.join(folder, p.TRIAL_TRAINING_METRICS_FILE), "rb") as f:
        return p.TrialTrainingMetrics.from_json(f.read())


def test_retries_sleep_longer_each_time(folder):
    storage = Flaky(folder)
    sleeps: list[float] = []
    reporter = TrialReporter(folder, storage=storage, retries=4, retry_sleep_secs=0.25, sleep=sleeps.append)
    storage.failures = 3
    assert reporter.update_accuracy(0.5, 0, 9, 1.0, 20)
    assert sleeps == [0.25, 0.5, 0.75]
    assert len(_metrics(folder).training_accuracy_over_steps) == 1


def test_give_up_after_the_last_attempt_is_logged_with_what_failed(folder, caplog):
    storage = Flaky(folder)
    sleeps: list[float] = []
    reporter = TrialReporter(folder, storage=storage, retries=2, sleep=sleeps.append)
    storage.failures = 2
    with caplog.at_level(logging.WARNING, logger="proxy_task_utils"):
        assert reporter.update_accuracy(0.5, 0, 9, 1.0, 20)
    assert sleeps == [0.5]  # no sleep after the last attempt
    assert "write metrics failed after 2 attempts (503 (injected)); will try again next call" in caplog.text
    assert not os.path.exists(os.path.join(folder, p.TRIAL_TRAINING_METRICS_FILE))


def test_not_found_is_not_retried(folder):
    class Missing(LocalStorage):
        calls = 0

        def read(self, name):
            self.calls += 1
            raise NotFoundError("gone")

    storage = Missing(folder)
    TrialReporter(folder, storage=storage, sleep=lambda s: pytest.fail("slept"))
    assert storage.calls == 1  # the start-up read: missing means a new record, at once


def test_a_pending_record_is_written_by_a_dropped_cycle(folder):
    storage = Flaky(folder)
    reporter = TrialReporter(folder, storage=storage, retries=1, sleep=lambda s: None)
    storage.failures = 1
    assert reporter.update_accuracy(0.5, 0, 9, 1.0, 20)  # kept in memory only
    assert not reporter.update_accuracy(0.4, 0, 9, 1.0, 20)  # a duplicate, but it writes the record
    assert len(_metrics(folder).training_accuracy_over_steps) == 1


def test_a_written_record_is_not_rewritten_by_a_dropped_cycle(folder):
    storage = LocalStorage(folder)
    reporter = TrialReporter(folder, storage=storage)
    reporter.update_accuracy(0.5, 0, 9, 1.0, 20)
    before = storage.request_count
    assert not reporter.update_accuracy(0.4, 0, 9, 1.0, 20)
    reporter.check_stop(9, 20)
    assert storage.request_count - before == 1  # the stop check's look only


def test_a_failed_stop_check_decides_on_what_it_knew(folder):
    storage = Flaky(folder)
    reporter = TrialReporter(folder, storage=storage, retries=1, sleep=lambda s: None)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(30.0))
    assert not reporter.check_stop(9, 100).stop
    storage.failures = 1
    assert reporter.check_stop(29, 100).stop  # the look failed; the known signal still holds


def test_cycle_totals_count_steps_inclusively(folder):
    reporter = TrialReporter(folder)
    reporter.update_accuracy(0.1, 0, 4, 1.5, 20)
    reporter.update_accuracy(0.2, 5, 5, 0.5, 20)
    reporter.update_accuracy(0.3, 6, 19, 2, 20)
    m = _metrics(folder)
    assert m.training_time == p.TrainingTime(20, 4.0)
    assert [e.training_step_pct for e in m.training_accuracy_over_steps] == [25.0, 30.0, 100.0]
    assert all(isinstance(e.accuracy, float) for e in m.training_accuracy_over_steps)


def test_a_cycle_of_one_step_at_zero_and_zero_seconds(folder):
    reporter = TrialReporter(folder)
    assert reporter.update_accuracy(0, 0, 0, 0, 10)
    m = _metrics(folder)
    assert m.training_time == p.TrainingTime(1, 0.0) and m.training_accuracy_over_steps[0].accuracy == 0.0


def test_duplicate_cycle_is_logged(folder, caplog):
    reporter = TrialReporter(folder)
    reporter.update_accuracy(0.5, 0, 9, 1.0, 20)
    with caplog.at_level(logging.WARNING, logger="proxy_task_utils"):
        assert not reporter.update_accuracy(0.5, 0, 9, 1.0, 20)
    assert "cycle ending at step 9 (50.0000%) is not beyond the recorded 50.0000%; not recorded" in caplog.text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((True, 0, 9, 1.0, 10), "accuracy must be a number, but got True"),
        (("0.5", 0, 9, 1.0, 10), "accuracy must be a number, but got '0.5'"),
        ((0.5, 0, 9, float("nan"), 10), "training_cycle_time_in_secs must be finite, but got nan"),
        ((0.5, 0, 9, -0.5, 10), "training_cycle_time_in_secs must be >= 0, but got -0.5"),
        ((0.5, True, 9, 1.0, 10), "begin_training_cycle_step must be an integer >= 0, but got True"),
        ((0.5, 0, 9.0, 1.0, 10), "end_training_cycle_step must be an integer >= 0, but got 9.0"),
        ((0.5, 0, -2, 1.0, 10), "end_training_cycle_step must be an integer >= 0, but got -2"),
        ((0.5, 5, 4, 1.0, 10), "end_training_cycle_step (4) must be >= begin_training_cycle_step (5)"),
    ],
)
def test_bad_cycle_messages(folder, args, message):
    with pytest.raises(ConfigurationError) as info:
        TrialReporter(folder).update_accuracy(*args)
    assert str(info.value) == message


def test_nan_accuracy_advice_names_the_status_to_write(folder):
    with pytest.raises(ConfigurationError) as info:
        TrialReporter(folder).update_accuracy(float("inf"), 0, 9, 1.0, 10)
    assert str(info.value) == (
        "accuracy must be finite, but got inf (the model diverged: lower the learning rate or clip "
        "gradients, and write job status 'failed_with_nan_error')"
    )


def test_begin_equal_to_end_is_one_step(folder):
    assert TrialReporter(folder).update_accuracy(0.5, 3, 3, 1.0, 10)


def test_latency_is_checked_named_and_written(folder):
    reporter = TrialReporter(folder)
    with pytest.raises(ConfigurationError) as info:
        reporter.update_latency(float("nan"))
    assert str(info.value) == "latency must be finite, but got nan"
    reporter.update_latency(7)
    m = _metrics(folder)
    assert m.latency == 7.0 and isinstance(m.latency, float)


def test_extra_metrics_merge_with_the_file_from_a_previous_run(folder):
    LocalStorage(folder).write(p.EXTRA_METRICS_FILE, b'{"old": 1, "b": 0}')
    reporter = TrialReporter(folder)
    reporter.save_extra_metrics({"b": 2.5})
    reporter.save_extra_metrics({"c": "text"})
    with open(os.path.join(folder, p.EXTRA_METRICS_FILE)) as f:
        text = f.read()
    assert json.loads(text) == {"old": 1, "b": 2.5, "c": "text"}
    assert text == p.dump_json({"old": 1, "b": 2.5, "c": "text"}).decode()


def test_corrupt_extra_metrics_file_is_reported_with_its_path(folder):
    LocalStorage(folder).write(p.EXTRA_METRICS_FILE, b"[1]")
    with pytest.raises(ProtocolError) as info:
        TrialReporter(folder).save_extra_metrics({"a": 1})
    assert os.path.join(folder, p.EXTRA_METRICS_FILE) in str(info.value)


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({1: 0.5}, "extra metric names must be strings, but got 1"),
        ({"a": float("nan")}, "extra metric 'a' must be finite, but got nan"),
    ],
)
def test_bad_extra_metrics_are_refused(folder, metrics, message):
    with pytest.raises(ConfigurationError) as info:
        TrialReporter(folder).save_extra_metrics(metrics)
    assert str(info.value) == message
    assert not os.path.exists(os.path.join(folder, p.EXTRA_METRICS_FILE))


def test_extra_metrics_and_status_survive_an_outage(folder, caplog):
    storage = Flaky(folder)
    reporter = TrialReporter(folder, storage=storage, retries=1, sleep=lambda s: None)
    storage.failures = 2
    with caplog.at_level(logging.WARNING, logger="proxy_task_utils"):
        reporter.save_extra_metrics({"a": 1})
        reporter.write_job_status("failed")
    assert "write extra metrics failed after 1 attempts" in caplog.text
    assert "write job status failed after 1 attempts" in caplog.text
    reporter.save_extra_metrics({"b": 2})  # the merged content is written next time
    with open(os.path.join(folder, p.EXTRA_METRICS_FILE)) as f:
        assert json.load(f) == {"a": 1, "b": 2}


def test_job_status_is_validated_and_written(folder):
    reporter = TrialReporter(folder)
    with pytest.raises(ConfigurationError, match="job_status must be one of"):
        reporter.write_job_status("done")
    reporter.write_job_status(p.JOB_STATUS_FAILED_WITH_NAN)
    with open(os.path.join(folder, p.JOB_STATUS_FILE), "rb") as f:
        assert p.decode_job_status(f.read()) == "failed_with_nan_error"


def test_corrupt_metrics_file_is_moved_aside_and_logged(folder, caplog):
    storage = LocalStorage(folder)
    storage.write(p.TRIAL_TRAINING_METRICS_FILE, b'{"latency": 1}')
    reporter = TrialReporter(folder)
    assert reporter.metrics == p.TrialTrainingMetrics()
    assert not storage.exists(p.TRIAL_TRAINING_METRICS_FILE)
    (kept,) = [o.name for o in storage.list() if o.name.startswith(p.TRIAL_TRAINING_METRICS_FILE + ".corrupt-")]
    assert storage.read(kept)[0] == b'{"latency": 1}'
    assert f"kept it as {kept} and started a new record" in caplog.text
    assert "missing field 'training_time'" in caplog.text


def test_resumed_record_keeps_every_field(folder):
    first = TrialReporter(folder)
    first.update_accuracy(0.25, 0, 9, 3.0, 40)
    first.update_latency(1.5)
    reset_reporters()
    again = TrialReporter(folder)
    assert again.metrics == first.metrics
    assert not again.update_accuracy(0.3, 0, 9, 3.0, 40)


def test_default_is_three_attempts(folder):
    storage = Flaky(folder)
    reporter = TrialReporter(folder, storage=storage, sleep=lambda s: None)
    storage.failures = 2
    assert reporter.update_accuracy(0.5, 0, 9, 1.0, 20)
    assert len(_metrics(folder).training_accuracy_over_steps) == 1
    storage.failures = 3
    reporter.update_accuracy(0.6, 10, 19, 1.0, 20)
    assert len(_metrics(folder).training_accuracy_over_steps) == 1  # gave up after 3 attempts
    assert storage.failures == 0


def test_a_fresh_reporter_writes_nothing_before_the_first_cycle(folder):
    reporter = TrialReporter(folder)
    assert not reporter.check_stop(-1, 100).stop
    assert not os.path.exists(os.path.join(folder, p.TRIAL_TRAINING_METRICS_FILE))


def test_storage_failure_at_start_up_is_raised(folder):
    class Unreadable(LocalStorage):
        def read(self, name):
            raise TransientStorageError("503 (injected)")

    with pytest.raises(TransientStorageError, match="injected"):
        TrialReporter(folder, storage=Unreadable(folder), sleep=lambda s: None)


def test_corrupt_record_log_names_the_file_and_the_kept_copy(folder, caplog):
    storage = LocalStorage(folder)
    storage.write(p.TRIAL_TRAINING_METRICS_FILE, b'{"latency": 1}')
    TrialReporter(folder)
    (kept,) = [o.name for o in storage.list() if ".corrupt-" in o.name]
    assert re.fullmatch(re.escape(p.TRIAL_TRAINING_METRICS_FILE) + r"\.corrupt-\d{8}-\d{6}", kept)
    uri = storage.child_uri(p.TRIAL_TRAINING_METRICS_FILE)
    assert caplog.messages == [
        f"{uri} could not be parsed ({uri}: missing field 'training_time'); kept it as {kept} and started a new record"
    ]


def test_duplicate_cycle_log_line(folder, caplog):
    reporter = TrialReporter(folder)
    reporter.update_accuracy(0.5, 0, 9, 1.0, 20)
    with caplog.at_level(logging.WARNING, logger="proxy_task_utils"):
        reporter.update_accuracy(0.5, 0, 4, 1.0, 20)
    assert caplog.messages == ["cycle ending at step 4 (25.0000%) is not beyond the recorded 50.0000%; not recorded"]


def test_give_up_log_lines_name_the_operation(folder, caplog):
    storage = Flaky(folder)
    reporter = TrialReporter(folder, storage=storage, retries=1, sleep=lambda s: None)
    storage.failures = 1
    with caplog.at_level(logging.WARNING, logger="proxy_task_utils"):
        reporter.check_stop(0, 10)
    assert caplog.messages == ["stop check failed after 1 attempts (503 (injected)); will try again next call"]
