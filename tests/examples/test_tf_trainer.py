"""The TensorFlow example trainer as real subprocess trials, at a tiny size (a few steps of a tiny network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

from proxy_task_utils import protocol as p  # noqa: E402
from proxy_task_utils.hypertune import read_metrics_file  # noqa: E402
from proxy_task_utils.testing import FakeController, FakeGCS  # noqa: E402

pytestmark = [pytest.mark.tf, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "width_multiplier": 0.25,
    **{f"stage{i}_{k}": v for i in range(3) for k, v in (("depth", 1), ("kernel", 3), ("expansion", 1))},
}
FLAGS = ["--train_steps=8", "--eval_every_steps=2", "--batch_size=16", "--latency_repeats=3"]


def run_trainer(
    job_dir: Path | str, *args: str, trial_id: str = "1", metric_file: Path | None = None
) -> subprocess.CompletedProcess:
    env = dict(os.environ)  # carries STORAGE_EMULATOR_HOST for the fake GCS test
    env.pop("AIP_MODEL_DIR", None)
    if metric_file is None:
        assert isinstance(job_dir, Path)
        metric_file = job_dir.parent / f"hypertune-{job_dir.name}.metrics"
    env.update(CLOUD_ML_TRIAL_ID=trial_id, CLOUD_ML_HP_METRIC_FILE=str(metric_file), TF_CPP_MIN_LOG_LEVEL="2")
    cmd = [sys.executable, "-m", "examples.tf_vision.trainer", f"--job-dir={job_dir}", *FLAGS, *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


def metrics(trial: Path) -> p.TrialTrainingMetrics:
    return p.TrialTrainingMetrics.from_json((trial / p.TRIAL_TRAINING_METRICS_FILE).read_bytes())


def status(trial: Path) -> str:
    return json.loads((trial / p.JOB_STATUS_FILE).read_text())["job_status"]


def steps(trial: Path) -> list[int]:
    return [e.training_step for e in metrics(trial).training_accuracy_over_steps]


@pytest.fixture(scope="module")
def stopped_search_trial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A search trial told to stop at 50 %: it trains 4 of its 8 steps and succeeds."""
    trial = tmp_path_factory.mktemp("job") / "nas" / "search" / "1"
    trial.mkdir(parents=True)
    (trial / p.DESIRED_TRAINING_PCT_FILE).write_bytes(p.encode_desired_training_pct(50.0))
    done = run_trainer(trial, f"--nas_params_str={json.dumps(TINY)}")
    assert done.returncode == 0, done.stdout + done.stderr
    return trial


def test_stop_signal_is_honoured_with_success(stopped_search_trial: Path) -> None:
    trial = stopped_search_trial
    assert steps(trial) == [1, 3]
    record = metrics(trial)
    assert record.training_time.total_training_steps == 4
    assert record.training_time.total_training_time_in_secs > 0
    assert record.latency > 0  # batch-1 CPU inference, milliseconds
    assert status(trial) == p.JOB_STATUS_SUCCESS
    assert json.loads((trial / p.NAS_PARAMS_STR_FILE).read_text()) == TINY
    (report,) = read_metrics_file(str(trial.parent / "hypertune-1.metrics"))
    assert report["global_step"] == "4"
    best = max(e.accuracy for e in record.training_accuracy_over_steps)
    assert float(report["training/hptuning/metric"]) == pytest.approx(best)


def test_own_checkpoint_resume_continues_the_curve(stopped_search_trial: Path, tmp_path: Path) -> None:
    trial = tmp_path / "nas" / "search" / "1"
    shutil.copytree(stopped_search_trial, trial)
    (trial / p.DESIRED_TRAINING_PCT_FILE).unlink()  # the controller lets it run to the end
    before = metrics(trial).training_accuracy_over_steps
    done = run_trainer(trial, f"--nas_params_str={json.dumps(TINY)}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed from" in done.stdout and "global step 4" in done.stdout
    assert steps(trial) == [1, 3, 5, 7]
    assert metrics(trial).training_accuracy_over_steps[:2] == before
    assert metrics(trial).training_time.total_training_steps == 8
    assert metrics(trial).training_accuracy_over_steps[-1].training_step_pct == 100.0
    assert status(trial) == p.JOB_STATUS_SUCCESS


def test_retrain_from_the_search_checkpoint_continues_the_curve(stopped_search_trial: Path, tmp_path: Path) -> None:
    retrain = tmp_path / "nas" / "search" / "1"
    retrain.mkdir(parents=True)
    # the model-selection controller carries the source's record over
    shutil.copy(stopped_search_trial / p.TRIAL_TRAINING_METRICS_FILE, retrain / p.TRIAL_TRAINING_METRICS_FILE)
    done = run_trainer(
        retrain,
        f"--retrain_search_job_dir={stopped_search_trial.parent}",
        "--retrain_search_job_trials=1",
        "--retrain_use_search_job_checkpoint=True",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed from {stopped_search_trial}" in done.stdout
    assert json.loads((retrain / p.NAS_PARAMS_STR_FILE).read_text()) == TINY
    assert steps(retrain) == [1, 3, 5, 7]
    assert (retrain / "checkpoint.npz").exists()
    assert status(retrain) == p.JOB_STATUS_SUCCESS


def test_stop_now_exits_early_with_success(tmp_path: Path) -> None:
    trial = tmp_path / "nas" / "search" / "3"
    trial.mkdir(parents=True)
    (trial / p.DESIRED_TRAINING_PCT_FILE).write_bytes(p.encode_desired_training_pct(0.0))
    done = run_trainer(trial, f"--nas_params_str={json.dumps(TINY)}", trial_id="3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert status(trial) == p.JOB_STATUS_SUCCESS
    assert metrics(trial).training_accuracy_over_steps == []  # no cycle was trained
    assert metrics(trial).latency > 0
    assert "no reward reported" in done.stdout


def test_nan_loss_fails_with_nan_status(tmp_path: Path) -> None:
    trial = tmp_path / "nas" / "search" / "4"
    trial.mkdir(parents=True)
    done = run_trainer(trial, f"--nas_params_str={json.dumps(TINY)}", "--inject_nan_at_step=3", trial_id="4")
    assert done.returncode == 1, done.stdout + done.stderr
    assert status(trial) == p.JOB_STATUS_FAILED_WITH_NAN
    assert steps(trial) == [1]  # the cycle before the NaN was recorded, nothing after it


def test_bad_architecture_fails_with_a_clear_message(tmp_path: Path) -> None:
    trial = tmp_path / "nas" / "search" / "5"
    trial.mkdir(parents=True)
    bad = dict(TINY, stage1_kernel=7)
    done = run_trainer(trial, f"--nas_params_str={json.dumps(bad)}", trial_id="5")
    assert done.returncode == 2  # a config error, as in the PyTorch example (1 is the NaN exit)
    assert "stage1_kernel" in done.stdout and "[3, 5]" in done.stdout
    assert status(trial) == p.JOB_STATUS_FAILED


def test_trial_folder_on_gcs(fake_gcs: FakeGCS, tmp_path: Path) -> None:
    trial = f"{fake_gcs.uri}/job/nas/search/2"
    controller = FakeController(trial)
    controller.post_stop(50.0)
    done = run_trainer(
        trial, f"--nas_params_str={json.dumps(TINY)}", "--train_steps=4", trial_id="2", metric_file=tmp_path / "m"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    record = controller.read_metrics()
    assert record is not None and [e.training_step for e in record.training_accuracy_over_steps] == [1]
    assert record.latency > 0
    storage = fake_gcs.storage("job", "nas", "search", "2")
    assert storage.exists("checkpoint.npz") and storage.exists(p.NAS_PARAMS_STR_FILE)
    assert p.decode_job_status(storage.read(p.JOB_STATUS_FILE)[0]) == p.JOB_STATUS_SUCCESS
