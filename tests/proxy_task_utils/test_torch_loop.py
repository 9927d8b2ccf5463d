"""ProxyTaskLoop on a real trial folder: cycles, stop signals, metrics and job status."""

from __future__ import annotations

import json
import math

import pytest

import proxy_task_utils as ptu
from proxy_task_utils import protocol as p
from proxy_task_utils.torch_loop import ProxyTaskLoop, TrainingDivergedError


def read(path, name: str) -> dict:  # noqa: ANN001
    return json.loads((path / name).read_text())


def test_cycles_are_aligned_to_absolute_steps(tmp_path) -> None:  # noqa: ANN001
    loop = ProxyTaskLoop(str(tmp_path), total_steps=250, cycle_steps=100)
    assert loop.cycle_end(0) == 99
    assert loop.cycle_end(150) == 199  # a resumed run ends its cycle where a fresh one would
    assert loop.cycle_end(200) == 249  # the last cycle is short
    with pytest.raises(ptu.ConfigurationError, match="global_step"):
        loop.cycle_end(250)


def test_bad_arguments_name_the_field(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(ptu.ConfigurationError, match="cycle_steps"):
        ProxyTaskLoop(str(tmp_path), 10, 0)
    with pytest.raises(ptu.ConfigurationError, match="total_steps"):
        ProxyTaskLoop(str(tmp_path), 0, 5)
    with pytest.raises(ptu.ConfigurationError, match="latency_ms"):
        ProxyTaskLoop(str(tmp_path), 10, 5).report_latency(0.0)


def test_a_full_run_records_cycles_and_succeeds(tmp_path) -> None:  # noqa: ANN001
    with ProxyTaskLoop(str(tmp_path), total_steps=20, cycle_steps=10) as loop:
        step = 0
        for accuracy in (0.5, 0.4):
            assert not loop.should_stop(step)
            begin, end = step, loop.cycle_end(step)
            step = end + 1
            assert loop.report_cycle(accuracy, begin, end, 1.0)
        assert loop.should_stop(step)
        loop.report_latency(2.5)
    assert not loop.stopped_early and loop.exit_code == 0
    assert (loop.best_accuracy, loop.last_accuracy) == (0.5, 0.4)
    metrics = p.TrialTrainingMetrics.from_json((tmp_path / p.TRIAL_TRAINING_METRICS_FILE).read_bytes())
    assert [(e.training_step_pct, e.training_step) for e in metrics.training_accuracy_over_steps] == [
        (50.0, 9),
        (100.0, 19),
    ]
    assert metrics.latency == 2.5
    assert read(tmp_path, p.JOB_STATUS_FILE) == {"job_status": "success"}


def test_stop_now_signal_stops_before_the_next_cycle_and_still_succeeds(tmp_path) -> None:  # noqa: ANN001
    with ProxyTaskLoop(str(tmp_path), total_steps=100, cycle_steps=10) as loop:
        assert not loop.should_stop(0)
        loop.report_cycle(0.3, 0, 9, 0.1)
        ptu.set_stop_training(str(tmp_path), desired_training_step_pct=0.0)
        assert loop.should_stop(10)
    assert loop.stopped_early and "desired" in loop.stop_reason
    assert read(tmp_path, p.JOB_STATUS_FILE) == {"job_status": "success"}


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nan_metric_fails_with_nan_error_and_records_nothing(tmp_path, bad: float) -> None:  # noqa: ANN001
    with ProxyTaskLoop(str(tmp_path), total_steps=10, cycle_steps=5) as loop:
        loop.report_cycle(bad, 0, 4, 0.1)
    assert loop.exit_code == 1
    assert read(tmp_path, p.JOB_STATUS_FILE) == {"job_status": "failed_with_nan_error"}
    assert not (tmp_path / p.TRIAL_TRAINING_METRICS_FILE).exists()


def test_nan_loss_fails_with_nan_error(tmp_path) -> None:  # noqa: ANN001
    with ProxyTaskLoop(str(tmp_path), total_steps=10, cycle_steps=5) as loop:
        loop.check_loss(1.0, 0)
        loop.check_loss(math.nan, 1)
        raise AssertionError("not reached")  # pragma: no cover
    assert loop.status == p.JOB_STATUS_FAILED_WITH_NAN and loop.exit_code == 1


def test_other_errors_fail_the_job_and_propagate(tmp_path) -> None:  # noqa: ANN001
    loop = ProxyTaskLoop(str(tmp_path), total_steps=10, cycle_steps=5)
    with pytest.raises(KeyError), loop:
        raise KeyError("boom")
    assert read(tmp_path, p.JOB_STATUS_FILE) == {"job_status": "failed"}
    assert loop.exit_code == 1
    with pytest.raises(TrainingDivergedError):
        loop.check_loss(math.inf, 3)
