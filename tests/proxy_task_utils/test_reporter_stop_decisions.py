"""The reporter's stop decisions: heartbeat timer, signal files coming and going, throttling, reasons."""

from __future__ import annotations

import logging

import pytest

from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError, NotFoundError, TransientStorageError
from proxy_task_utils.reporter import StopCheck, TrialReporter, get_reporter, reset_reporters
from proxy_task_utils.storage import LocalStorage


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _fresh_reporters():
    reset_reporters()
    yield
    reset_reporters()


@pytest.fixture
def folder(tmp_path):
    return str(tmp_path / "trial")


def _beat(folder: str, value: float = 1.0) -> None:
    LocalStorage(folder).write(p.CONTROLLER_ALIVE_TIMESTAMP_FILE, p.encode_controller_alive_timestamp(value))


def test_no_heartbeat_file_starts_no_timer(folder):
    """A trainer run without a controller must not stop after 15 minutes."""
    clock = FakeClock()
    reporter = TrialReporter(folder, clock=clock)
    assert not reporter.check_stop(0, 100).stop  # first look: no heartbeat file
    clock.now += 10**6
    assert reporter.check_stop(1, 100) == StopCheck(False, "")


def test_heartbeat_file_that_disappears_stops_the_timer(folder):
    clock = FakeClock()
    reporter = TrialReporter(folder, clock=clock, heartbeat_timeout_secs=100)
    _beat(folder)
    assert not reporter.check_stop(0, 100).stop
    LocalStorage(folder).delete(p.CONTROLLER_ALIVE_TIMESTAMP_FILE)  # the controller finished and cleaned up
    clock.now += 50
    assert not reporter.check_stop(1, 100).stop
    clock.now += 10**6
    assert not reporter.check_stop(2, 100).stop


def test_heartbeat_timeout_is_strictly_greater_and_says_so(folder):
    clock = FakeClock()
    reporter = TrialReporter(folder, clock=clock, heartbeat_timeout_secs=100)
    _beat(folder)
    reporter.check_stop(0, 100)
    clock.now += 100  # exactly the timeout: not yet
    assert not reporter.check_stop(1, 100).stop
    clock.now += 1
    decision = reporter.check_stop(2, 100)
    assert decision == StopCheck(
        True,
        "controller heartbeat unchanged for 101 s (> 100 s): the controller is gone, stopping gracefully",
    )


def test_heartbeat_timer_restarts_at_each_change(folder):
    clock = FakeClock()
    reporter = TrialReporter(folder, clock=clock, heartbeat_timeout_secs=100)
    _beat(folder, 1.0)
    reporter.check_stop(0, 100)
    clock.now += 90
    _beat(folder, 1.0)  # same content, new generation: it beats
    assert not reporter.check_stop(1, 100).stop
    clock.now += 90
    assert not reporter.check_stop(2, 100).stop  # 90 s since the last change, 180 s since the first


def test_heartbeat_reason_comes_before_the_other_signals(folder):
    clock = FakeClock()
    reporter = TrialReporter(folder, clock=clock, heartbeat_timeout_secs=10)
    _beat(folder)
    LocalStorage(folder).write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(0.0))
    reporter.check_stop(0, 100)
    clock.now += 11
    assert "heartbeat" in reporter.check_stop(1, 100).reason


def test_desired_pct_reason_and_removal(folder):
    reporter = TrialReporter(folder)
    LocalStorage(folder).write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(25.0))
    assert not reporter.check_stop(23, 100).stop  # 24 %
    assert reporter.check_stop(24, 100) == StopCheck(True, "reached 25.0000% >= desired 25.0000%")
    LocalStorage(folder).delete(p.DESIRED_TRAINING_PCT_FILE)
    assert not reporter.check_stop(99, 100).stop


def test_max_time_reason_and_removal(folder):
    reporter = TrialReporter(folder)
    reporter.update_accuracy(0.5, 0, 9, 7200.0, 100)  # 2 h
    LocalStorage(folder).write(p.MAX_TRAINING_TIME_FILE, p.encode_max_training_time(1.5))
    assert reporter.check_stop(9, 100) == StopCheck(True, "trained 2.0000 h > max 1.5000 h")
    LocalStorage(folder).write(p.MAX_TRAINING_TIME_FILE, p.encode_max_training_time(2.5))
    assert not reporter.check_stop(9, 100).stop
    LocalStorage(folder).write(p.MAX_TRAINING_TIME_FILE, p.encode_max_training_time(0.5))
    assert reporter.check_stop(9, 100).stop
    LocalStorage(folder).delete(p.MAX_TRAINING_TIME_FILE)
    assert not reporter.check_stop(9, 100).stop


def test_max_time_does_not_touch_the_desired_pct(folder):
    reporter = TrialReporter(folder)
    storage = LocalStorage(folder)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(50.0))
    storage.write(p.MAX_TRAINING_TIME_FILE, p.encode_max_training_time(10.0))
    assert not reporter.check_stop(10, 100).stop
    storage.delete(p.MAX_TRAINING_TIME_FILE)  # clears the time limit only
    assert reporter.check_stop(49, 100).stop


def test_stop_is_logged_with_its_reason(folder, caplog):
    LocalStorage(folder).write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(10.0))
    with caplog.at_level(logging.INFO, logger="proxy_task_utils"):
        TrialReporter(folder).check_stop(9, 100)
    assert "stopping training at 10.0000%: reached 10.0000% >= desired 10.0000%" in caplog.text


def test_throttle_boundary_and_fresh_decision_on_cached_signals(folder):
    clock = FakeClock()
    storage = LocalStorage(folder)
    reporter = TrialReporter(folder, storage=storage, clock=clock, min_check_interval_secs=60)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(50.0))
    assert not reporter.check_stop(39, 100).stop  # looked: 40 % < 50 %
    before = storage.request_count
    clock.now += 10
    # no new look, but the progress is new: the known signal decides it
    assert reporter.check_stop(49, 100) == StopCheck(True, "reached 50.0000% >= desired 50.0000%")
    assert storage.request_count == before
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(90.0))
    clock.now += 50  # exactly 60 s after the last look: look again
    assert not reporter.check_stop(49, 100).stop


def test_throttled_stop_decision_is_kept(folder):
    clock = FakeClock()
    storage = LocalStorage(folder)
    reporter = TrialReporter(folder, storage=storage, clock=clock, min_check_interval_secs=60)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(10.0))
    first = reporter.check_stop(20, 100)
    storage.delete(p.DESIRED_TRAINING_PCT_FILE)
    clock.now += 1
    assert reporter.check_stop(20, 100) is first


def test_per_call_interval_overrides_the_default(folder):
    clock = FakeClock()
    storage = LocalStorage(folder)
    reporter = TrialReporter(folder, storage=storage, clock=clock)
    reporter.check_stop(0, 100)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(0.0))
    clock.now += 5
    assert not reporter.check_stop(1, 100, min_check_interval_secs=10).stop
    assert reporter.check_stop(1, 100, min_check_interval_secs=5).stop


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_check_interval_secs": -0.5}, "min_check_interval_secs must be >= 0, but got -0.5"),
        ({"heartbeat_timeout_secs": 0}, "heartbeat_timeout_secs must be > 0, but got 0"),
        ({"retries": 0}, "retries must be >= 1, but got 0"),
    ],
)
def test_bad_options_are_refused(folder, options, message):
    with pytest.raises(ConfigurationError) as info:
        TrialReporter(folder, **options)
    assert str(info.value) == message


def test_boundary_options_are_accepted(folder):
    r = TrialReporter(folder, min_check_interval_secs=0, heartbeat_timeout_secs=0.001, retries=1)
    assert r.min_check_interval_secs == 0 and r.heartbeat_timeout_secs == 0.001 and r.strict is False
    assert r.heartbeat_timeout_secs != TrialReporter(folder).heartbeat_timeout_secs
    assert TrialReporter(folder).heartbeat_timeout_secs == 15 * 60


def test_get_reporter_shares_and_updates_one_reporter(folder):
    first = get_reporter(folder, heartbeat_timeout_secs=5.0)
    assert first.heartbeat_timeout_secs == 5.0
    assert get_reporter(folder + "/") is first  # one key per folder, however it is spelt
    again = get_reporter(folder, strict=True, min_check_interval_secs=2.0, heartbeat_timeout_secs=7.0)
    assert again is first
    assert (first.strict, first.min_check_interval_secs, first.heartbeat_timeout_secs) == (True, 2.0, 7.0)
    assert get_reporter(folder) is first and first.strict  # no options: nothing changes
    reset_reporters()
    assert get_reporter(folder) is not first


def test_stop_log_line(folder, caplog):
    LocalStorage(folder).write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(10.0))
    with caplog.at_level(logging.INFO, logger="proxy_task_utils"):
        TrialReporter(folder).check_stop(9, 100)
    assert caplog.messages == ["stopping training at 10.0000%: reached 10.0000% >= desired 10.0000%"]


def test_throttled_decision_still_watches_the_heartbeat(folder):
    clock = FakeClock()
    reporter = TrialReporter(folder, clock=clock, heartbeat_timeout_secs=10, min_check_interval_secs=100)
    _beat(folder)
    assert not reporter.check_stop(0, 100).stop
    clock.now += 11  # within the throttle interval: no new look, but the silence is judged now
    assert "heartbeat unchanged for 11 s" in reporter.check_stop(1, 100).reason


def test_a_new_signal_after_an_unchanged_one_is_read(folder):
    storage = LocalStorage(folder)
    reporter = TrialReporter(folder)
    reporter.update_accuracy(0.5, 0, 9, 60.0, 100)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(90.0))
    assert not reporter.check_stop(9, 100).stop
    storage.write(p.MAX_TRAINING_TIME_FILE, p.encode_max_training_time(0.0))  # the pct file is unchanged
    assert reporter.check_stop(9, 100).reason == "trained 0.0167 h > max 0.0000 h"


def test_an_unreadable_signal_does_not_hide_the_next_one(folder, caplog):
    storage = LocalStorage(folder)
    reporter = TrialReporter(folder)
    reporter.update_accuracy(0.5, 0, 9, 60.0, 100)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, b'{"desired_training_pct": "soon"}')
    storage.write(p.MAX_TRAINING_TIME_FILE, p.encode_max_training_time(0.0))
    assert reporter.check_stop(9, 100).stop
    uri = storage.child_uri(p.DESIRED_TRAINING_PCT_FILE)
    assert caplog.messages == [
        f"ignoring unreadable stop signal: {uri}: field 'desired_training_pct' must be a number, but got 'soon'"
    ]


def test_unreadable_max_time_names_its_file(folder, caplog):
    storage = LocalStorage(folder)
    storage.write(p.MAX_TRAINING_TIME_FILE, b"{}")
    assert not TrialReporter(folder).check_stop(9, 100).stop
    uri = storage.child_uri(p.MAX_TRAINING_TIME_FILE)
    assert caplog.messages == [f"ignoring unreadable stop signal: {uri}: missing field 'max_training_time_in_hrs'"]


def test_a_signal_deleted_between_listing_and_reading_is_unset(folder, caplog):
    class Vanishing(LocalStorage):
        def read(self, name):
            if name == p.DESIRED_TRAINING_PCT_FILE:
                raise NotFoundError("deleted just now")
            return super().read(name)

    storage = Vanishing(folder)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(0.0))
    reporter = TrialReporter(folder, storage=storage)
    assert reporter.check_stop(9, 100) == StopCheck(False, "")
    assert caplog.messages == []


def test_a_failed_signal_read_is_logged_and_read_again_next_time(folder, caplog):
    class Failing(LocalStorage):
        fail = True

        def read(self, name):
            if name == p.DESIRED_TRAINING_PCT_FILE and self.fail:
                raise TransientStorageError("503 (injected)")
            return super().read(name)

    storage = Failing(folder)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(0.0))
    reporter = TrialReporter(folder, storage=storage, retries=1)
    with caplog.at_level(logging.WARNING, logger="proxy_task_utils"):
        assert not reporter.check_stop(9, 100).stop
    assert caplog.messages == [
        f"read {p.DESIRED_TRAINING_PCT_FILE} failed after 1 attempts (503 (injected)); will try again next call"
    ]
    storage.fail = False  # the file did not change, but it was never read: a stop-now must not be lost
    assert reporter.check_stop(10, 100).stop


def test_strict_signal_read_failure_is_raised_and_read_again(folder):
    class FailingOnce(LocalStorage):
        fail = True

        def read(self, name):
            if name == p.DESIRED_TRAINING_PCT_FILE and self.fail:
                self.fail = False
                raise TransientStorageError("503 (injected)")
            return super().read(name)

    storage = FailingOnce(folder)
    storage.write(p.DESIRED_TRAINING_PCT_FILE, p.encode_desired_training_pct(0.0))
    reporter = TrialReporter(folder, storage=storage, retries=1, strict=True)
    with pytest.raises(TransientStorageError):
        reporter.check_stop(9, 100)
    assert reporter.check_stop(9, 100).stop
