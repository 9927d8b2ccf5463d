"""The pytest plugin users get: a trainer unit-tested against fake GCS with a fake controller."""

from __future__ import annotations

import os

import pytest

import proxy_task_utils as ptu
from proxy_task_utils.reporter import reset_reporters
from proxy_task_utils.testing import FakeController


@pytest.fixture(autouse=True)
def _fresh():
    reset_reporters()
    yield
    reset_reporters()


def tiny_trainer(model_dir: str, total: int = 100, cycle: int = 10) -> int:
    """What a user's training loop looks like: returns the steps trained."""
    step = 0
    while step < total and not ptu.get_stop_training(model_dir, step - 1, total):
        ptu.update_trial_training_accuracy_metric(model_dir, step / total, step, step + cycle - 1, 0.01, total)
        step += cycle
    return step


def test_fake_controller_stops_a_local_trainer(fake_controller):
    fake_controller.post_stop(30.0)
    assert tiny_trainer(fake_controller.uri) == 30
    metrics = fake_controller.read_metrics()
    assert metrics is not None and metrics.last_pct == 30.0


def test_fake_controller_on_fake_gcs(fake_gcs):
    controller = FakeController(fake_gcs.uri + "/job/nas/search/1")
    assert controller.read_metrics() is None
    controller.heartbeat()
    controller.post_stop(0.0)
    assert tiny_trainer(controller.uri) == 0
    controller.post_stop(50.0)
    reset_reporters()
    assert tiny_trainer(controller.uri) == 50
    assert controller.read_metrics().training_time.total_training_steps == 50


def test_fake_gcs_sets_and_restores_the_emulator(fake_gcs):
    assert os.environ["STORAGE_EMULATOR_HOST"] == fake_gcs.endpoint
    storage = fake_gcs.storage()
    storage.write("a.json", b"{}")
    assert storage.read("a.json")[0] == b"{}"
