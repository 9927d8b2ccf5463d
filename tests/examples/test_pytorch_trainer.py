"""The PyTorch example trainer as real subprocesses on real trial folders (a few steps each)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import proxy_task_utils as ptu
from proxy_task_utils import protocol as p
from proxy_task_utils.hypertune import read_metrics_file

pytest.importorskip("torch")
pytest.importorskip("sklearn")

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # examples/ is not an installed package
    sys.path.insert(0, str(REPO))

from examples.pytorch import proxy_configs, search_space  # noqa: E402

ARCH = {
    "width_multiplier": 0.5,
    "stage0_depth": 1,
    "stage0_kernel": 3,
    "stage0_expansion": 2,
    "stage1_depth": 1,
    "stage1_kernel": 5,
    "stage1_expansion": 1,
    "stage2_depth": 2,
    "stage2_kernel": 3,
    "stage2_expansion": 4,
}
TINY = ["--train_steps=6", "--eval_every_steps=3", "--batch_size=8", "--warmup_steps=0", "--latency_repeats=3"]


def trial_dir(root: Path, job: str, trial: str = "1") -> Path:
    return root / job / "nas" / "search" / trial


def run_trainer(
    model_dir: Path, *flags: str, trial_id: str = "1", arch: dict | None = ARCH
) -> subprocess.CompletedProcess:
    env = dict(os.environ, CLOUD_ML_TRIAL_ID=trial_id, OMP_NUM_THREADS="1")
    env["CLOUD_ML_HP_METRIC_FILE"] = str(model_dir.parent / f"hypertune-{model_dir.name}.metrics")
    env.pop("AIP_MODEL_DIR", None)
    argv = [sys.executable, "-m", "examples.pytorch.trainer", f"--job-dir={model_dir}", *TINY, *flags]
    if arch is not None:
        argv.append("--nas_params_str=" + json.dumps(arch))
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def metrics(model_dir: Path) -> p.TrialTrainingMetrics:
    return p.TrialTrainingMetrics.from_json((model_dir / p.TRIAL_TRAINING_METRICS_FILE).read_bytes())


def job_status(model_dir: Path) -> str:
    return json.loads((model_dir / p.JOB_STATUS_FILE).read_text())["job_status"]


def curve(model_dir: Path) -> list[tuple[float, int]]:
    return [(e.training_step_pct, e.training_step) for e in metrics(model_dir).training_accuracy_over_steps]


@pytest.fixture(scope="module")
def stopped_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A search trial that the controller stopped at 50 %: its checkpoint is at global step 3."""
    model_dir = trial_dir(tmp_path_factory.mktemp("src"), "search_job")
    model_dir.mkdir(parents=True)
    ptu.set_stop_training(str(model_dir), desired_training_step_pct=50.0)
    result = run_trainer(model_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    return model_dir


def test_full_run_writes_the_reference_layout(tmp_path: Path) -> None:
    model_dir = trial_dir(tmp_path, "job")
    result = run_trainer(model_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    raw = json.loads((model_dir / p.TRIAL_TRAINING_METRICS_FILE).read_text())
    assert list(raw) == ["training_time", "latency", "training_accuracy_over_steps"]
    assert list(raw["training_accuracy_over_steps"][0]) == ["training_step_pct", "training_step", "accuracy"]
    assert curve(model_dir) == [(50.0, 2), (100.0, 5)]
    record = metrics(model_dir)
    assert record.training_time.total_training_steps == 6
    assert record.latency > 0  # milliseconds, batch-1 CPU
    assert all(0.0 <= e.accuracy <= 1.0 for e in record.training_accuracy_over_steps)
    assert job_status(model_dir) == "success"
    assert json.loads((model_dir / p.NAS_PARAMS_STR_FILE).read_text()) == ARCH
    assert (model_dir / "checkpoint.pt").is_file()
    assert not [f for f in os.listdir(model_dir) if ".tmp" in f]  # atomic checkpoint leaves no temp file
    (report,) = read_metrics_file(str(model_dir.parent / "hypertune-1.metrics"))
    names = {report[f"key_{i}"]: float(report[f"value_{i}"]) for i in range(5)}
    assert names["latency_milli_seconds"] == pytest.approx(record.latency)
    assert names["training_steps"] == 6 and report["global_step"] == "6"
    best = max(e.accuracy for e in record.training_accuracy_over_steps)
    assert float(report["training/hptuning/metric"]) == pytest.approx(best) == names["top_1_accuracy"]


def test_stop_now_before_the_first_cycle_exits_early_with_success(tmp_path: Path) -> None:
    model_dir = trial_dir(tmp_path, "job")
    model_dir.mkdir(parents=True)
    ptu.set_stop_training(str(model_dir), desired_training_step_pct=0.0)
    result = run_trainer(model_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert job_status(model_dir) == "success"
    assert curve(model_dir) == []  # no cycle was trained
    assert metrics(model_dir).latency > 0
    assert "stopping early at step 0" in result.stdout


def test_stop_signal_mid_run_is_honoured(stopped_source: Path) -> None:
    assert curve(stopped_source) == [(50.0, 2)]
    assert job_status(stopped_source) == "success"


def test_retrain_continues_from_the_source_checkpoint(tmp_path: Path, stopped_source: Path) -> None:
    model_dir = trial_dir(tmp_path, "retrain_job")
    result = run_trainer(
        model_dir,
        f"--retrain_search_job_dir={stopped_source.parent}",
        "--retrain_search_job_trials=1",
        "--retrain_use_search_job_checkpoint=True",
        arch=None,  # the architecture comes from the source trial
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "at global step 3" in result.stdout
    assert curve(model_dir) == [(100.0, 5)]  # steps 3..5 only: the curve goes on from the source's step
    assert metrics(model_dir).training_time.total_training_steps == 3
    assert json.loads((model_dir / p.NAS_PARAMS_STR_FILE).read_text()) == ARCH


def test_a_restarted_trial_resumes_its_own_checkpoint(tmp_path: Path, stopped_source: Path) -> None:
    model_dir = trial_dir(tmp_path, "search_job")
    shutil.copytree(stopped_source, model_dir)
    ptu.set_stop_training(str(model_dir), desired_training_step_pct=p.TRAINING_STEP_PCT_TO_COMPLETE_TRAINING)
    result = run_trainer(model_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "at global step 3" in result.stdout
    assert curve(model_dir) == [(50.0, 2), (100.0, 5)]
    assert metrics(model_dir).training_time.total_training_steps == 6  # no step trained twice


def test_nan_loss_fails_with_nan_error(tmp_path: Path) -> None:
    model_dir = trial_dir(tmp_path, "job")
    result = run_trainer(model_dir, "--inject_nan_at_step=4")
    assert result.returncode == 1, result.stdout + result.stderr
    assert job_status(model_dir) == "failed_with_nan_error"
    assert curve(model_dir) == [(50.0, 2)]  # the cycle before the NaN is kept


def test_bad_architecture_is_a_clear_error(tmp_path: Path) -> None:
    result = run_trainer(trial_dir(tmp_path, "job"), arch={**ARCH, "stage0_kernel": 7})
    assert result.returncode == 2
    assert "stage0_kernel" in result.stdout and "[3, 5]" in result.stdout
    assert job_status(trial_dir(tmp_path, "job")) == "failed"


def test_search_space_samples_are_valid_and_seeded() -> None:
    rng = random.Random(5)
    archs = [search_space.sample(rng) for _ in range(50)]
    for arch in archs:
        assert search_space.validate(arch) is arch
    assert archs == [search_space.sample(r) for r in [random.Random(5)] for _ in range(50)]
    assert len({json.dumps(a, sort_keys=True) for a in archs}) > 40
    with pytest.raises(ValueError, match="missing"):
        search_space.validate({"width_multiplier": 1.0})
    with pytest.raises(ValueError, match="unknown"):
        search_space.validate({**ARCH, "depth": 3})


def test_proxy_configs_grid_and_stricter_latency_target_for_scaled_models() -> None:
    latency = {1.0: 2.0, 0.5: 0.5}
    configs = proxy_configs.generate(
        {"train_steps": 300, "target_latency_ms": 1.0, "seed": 3},
        data_pcts=(25, 100),
        model_scales=(0.5, 1.0),
        measure_latency=latency.__getitem__,
    )
    assert [c.name for c in configs] == ["data25_scale0.5", "data25_scale1", "data100_scale0.5", "data100_scale1"]
    args = {c.name: c.args for c in configs}
    assert args["data25_scale0.5"]["target_latency_ms"] == 0.25  # 1.0 * 0.5 / 2.0
    assert args["data25_scale1"]["target_latency_ms"] == 1.0
    assert args["data25_scale1"]["training_data_pct"] == 25 and args["data25_scale1"]["seed"] == 3
    assert args["data100_scale1"]["train_steps"] == args["data100_scale1"]["decay_steps"] == 150
    no_target = proxy_configs.generate({"train_steps": 300}, measure_latency=lambda s: 1 / 0)
    assert all("target_latency_ms" not in c.args for c in no_target)


def test_baseline_latency_is_measured_and_targets_reject_bad_latencies() -> None:
    full = proxy_configs.baseline_latency_ms(1.0, repeats=20)
    assert full > 0
    assert proxy_configs.scaled_latency_target(2.0, full, full) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="scaled_ms"):
        proxy_configs.scaled_latency_target(2.0, full, 0.0)


def test_a_gcs_trial_folder_gets_metrics_and_checkpoint(fake_gcs, tmp_path: Path) -> None:  # noqa: ANN001
    model_uri = f"{fake_gcs.uri}/job/nas/search/1"
    env = dict(os.environ, CLOUD_ML_TRIAL_ID="1", OMP_NUM_THREADS="1", CLOUD_ML_HP_METRIC_FILE=str(tmp_path / "hp"))
    argv = [sys.executable, "-m", "examples.pytorch.trainer", f"--job-dir={model_uri}", *TINY]
    result = subprocess.run(
        [*argv, "--nas_params_str=" + json.dumps(ARCH)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    storage = ptu.open_storage(model_uri)
    record = p.TrialTrainingMetrics.from_json(storage.read(p.TRIAL_TRAINING_METRICS_FILE)[0])
    assert [e.training_step for e in record.training_accuracy_over_steps] == [2, 5]
    assert storage.read("checkpoint.pt")[0][:2] == b"PK"  # a torch zip archive
    assert storage.read(p.JOB_STATUS_FILE)[0] == p.encode_job_status("success")


def test_nesterov_sgd_matches_torch_optim_and_round_trips() -> None:
    import copy

    import torch

    from examples.pytorch.optim import NesterovSGD

    torch.manual_seed(0)
    ours = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    theirs = copy.deepcopy(ours)
    opt = NesterovSGD(ours.parameters(), momentum=0.9, weight_decay=1e-3)
    ref = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)
    for step in range(4):
        x = torch.randn(16, 4)
        for model in (ours, theirs):
            model(x).pow(2).mean().backward()
        opt.step(0.1 / (step + 1))
        for group in ref.param_groups:
            group["lr"] = 0.1 / (step + 1)
        ref.step()
        opt.zero_grad()
        ref.zero_grad()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b)
    clone = NesterovSGD(copy.deepcopy(ours).parameters(), momentum=0.9)
    clone.load_state_dict(opt.state_dict())
    torch.testing.assert_close(clone.buffers, opt.buffers)
    with pytest.raises(RuntimeError, match="does not match"):
        NesterovSGD(torch.nn.Linear(2, 2).parameters()).load_state_dict(opt.state_dict())


def test_latency_from_a_worker(tmp_path: Path) -> None:
    """--latency_mode=worker: the trainer exports its model; a real worker process answers."""
    from controllers.latency.worker import mark_controller_finished, start_local_workers

    model_dir = trial_dir(tmp_path, "job")
    workers = start_local_workers(
        str(tmp_path),
        1,
        extra_args=["--poll-secs", "0.2", "--repeats", "5", "--warmup", "1"],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    try:
        result = run_trainer(model_dir, "--latency_mode=worker", "--latency_timeout_secs=90")
    finally:
        mark_controller_finished(str(tmp_path), reason="test done")
        for proc in workers:
            proc.wait(timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    answer = p.decode_model_latency((model_dir / p.MODEL_LATENCY_FILE).read_bytes())
    assert answer.latency_in_milliseconds > 0
    assert metrics(model_dir).latency == answer.latency_in_milliseconds
