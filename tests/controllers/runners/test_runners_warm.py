"""Warm start of the local runner: trials forked from a server that preloaded modules, shaped like
cold trials (argv, env, cwd, log, exit code, process group, pid/exit files, cancel, re-attach)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from controllers.runners.base import TrialSpec, TrialStatus
from controllers.runners.local import LocalRunner
from controllers.runners.warm import warm_argv
from controllers.testing import wait_until

REPO = Path(__file__).resolve().parents[3]

PROBE = (
    "import json, os, sys\n"
    "json.dump({'argv': sys.argv[1:], 'env': os.environ.get('PROBE_VALUE'), 'cwd': os.getcwd(),\n"
    "           'group_led_by_wrapper': os.getpgid(0) == os.getppid() == os.getsid(0),\n"
    "           'preloaded': 'decimal' in sys.modules, 'trial': os.environ['CLOUD_ML_TRIAL_ID']},\n"
    "          open(sys.argv[1], 'w'))\n"
    "print('probe ran')\n"
    "sys.exit(int(sys.argv[2]))\n"
)


def _spec(tmp_path: Path, trial_id: str, argv: list[str], **env: str) -> TrialSpec:
    return TrialSpec(
        trial_id=trial_id,
        argv=argv,
        model_dir_uri=str(tmp_path / "job" / trial_id),
        job_dir_uri=str(tmp_path / "job"),
        env=dict(env),
        log_path=str(tmp_path / "logs" / trial_id / "trainer.log"),
        launch_token=f"token-{trial_id}",
    )


def _wait_final(runner: LocalRunner, handle, timeout: float = 60.0):
    result = None

    def final() -> bool:
        nonlocal result
        result = runner.poll(handle)
        return result.status.is_final

    wait_until(final, timeout=timeout, interval=0.05)
    return result


def test_which_commands_can_be_forked():
    py = sys.executable
    assert warm_argv([py, "-m", "examples.pytorch.trainer", "--x=1"], py)
    assert warm_argv([py, "train.py", "--x=1"], py)
    assert not warm_argv([py, "-c", "print(1)"], py)
    assert not warm_argv([py, "-X", "dev", "-m", "m"], py)
    assert not warm_argv(["/usr/bin/env", "python", "-m", "m"], py)
    assert not warm_argv([py, "-m"], py)


def test_a_warm_trial_is_shaped_like_a_cold_one(tmp_path, monkeypatch):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    workdir = tmp_path / "work"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    runner = LocalRunner(2, preload=["decimal"])
    try:
        results = {}
        for kind, r in (("warm", runner), ("cold", LocalRunner(2))):
            out = tmp_path / f"{kind}.json"
            spec = _spec(tmp_path, kind, ["python", str(script), str(out), "3"], PROBE_VALUE=f"v-{kind}")
            handle = r.launch(spec)
            assert handle.extra.get("warm", False) is (kind == "warm")
            res = _wait_final(r, handle)
            assert res.status is TrialStatus.FAILED and res.exit_code == 3
            assert "probe ran" in res.log_tail
            exit_record = json.loads(Path(spec.log_path + ".exit.json").read_text())
            pid_record = json.loads(Path(spec.log_path + ".pid.json").read_text())
            assert exit_record["exit_code"] == 3 and pid_record["token"] == spec.launch_token
            results[kind] = json.loads(out.read_text())
        warm, cold = results["warm"], results["cold"]
        assert warm["argv"] == [str(tmp_path / "warm.json"), "3"]
        assert warm["env"] == "v-warm" and warm["trial"] == "warm"
        assert warm["cwd"] == cold["cwd"] == str(workdir)
        assert warm["group_led_by_wrapper"] and cold["group_led_by_wrapper"]
        assert warm["preloaded"] is True  # the module came from the server, not from an import
    finally:
        runner.close()


def test_a_warm_trial_is_cancelled_and_reattached(tmp_path):
    script = tmp_path / "sleeper.py"
    script.write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    runner = LocalRunner(1, preload=["json"])
    try:
        handle = runner.launch(_spec(tmp_path, "1", ["python", str(script)]))
        wait_until(lambda: "sleeping" in runner.log_tail(handle), timeout=30)
        # a restarted controller (a new runner) re-attaches to it and can cancel it
        other = LocalRunner(1)
        assert other.reattach(handle)
        assert other.poll(handle).status is TrialStatus.RUNNING
        other.cancel(handle, grace_secs=5)
        res = _wait_final(other, handle, timeout=30)
        assert res.status is TrialStatus.CANCELLED and res.exit_code == -15
    finally:
        runner.close()


def test_a_failing_preload_falls_back_to_cold_starts(tmp_path, caplog):
    runner = LocalRunner(1, preload=["no_such_module_for_warm_start"])
    try:
        handle = runner.launch(_spec(tmp_path, "1", ["python", "-c", "print('cold')"]))
        handle2 = runner.launch(_spec(tmp_path, "2", ["python", "-m", "json.tool", "--help"]))
        assert "warm" not in handle2.extra
        assert _wait_final(runner, handle).status is TrialStatus.SUCCEEDED
        assert _wait_final(runner, handle2).status is TrialStatus.SUCCEEDED
        assert "warm start is off" in caplog.text and "no_such_module_for_warm_start" in caplog.text
    finally:
        runner.close()


def test_wait_for_exit_wakes_when_a_trial_ends(tmp_path):
    runner = LocalRunner(2)
    assert runner.wait_for_exit(0.01) is None  # nothing to watch: the caller sleeps
    short = runner.launch(_spec(tmp_path, "1", ["python", "-c", "import time; time.sleep(0.3)"]))
    long = runner.launch(_spec(tmp_path, "2", ["python", "-c", "import time; time.sleep(120)"]))
    try:
        # no sleeping through the timeout: if the end of "1" did not wake it, this would block
        # for 10 minutes and the test would time out
        assert runner.wait_for_exit(600.0) is True
        assert runner.poll(short).status is TrialStatus.SUCCEEDED
        assert runner.poll(long).status is TrialStatus.RUNNING
        # an end that was seen is not watched any more: only "2" can wake the next wait
        assert runner._watched == {int(long.external_id)}
    finally:
        runner.cancel(long, grace_secs=0)
        _wait_final(runner, long)
        runner.close()


@pytest.mark.slow
def test_a_preloaded_trainer_gives_the_same_results_as_a_cold_one(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    monkeypatch.chdir(REPO)
    arch = {
        "width_multiplier": 0.5, "stage0_depth": 1, "stage0_kernel": 3, "stage0_expansion": 2,
        "stage1_depth": 1, "stage1_kernel": 5, "stage1_expansion": 1,
        "stage2_depth": 1, "stage2_kernel": 3, "stage2_expansion": 4,
    }  # fmt: skip
    flags = ["--train_steps=8", "--eval_every_steps=4", "--batch_size=8", "--warmup_steps=0", "--latency_repeats=3"]
    curves = {}
    warm = LocalRunner(
        1, preload=["torch", "examples.pytorch.trainer"], base_env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    try:
        for kind, runner in (
            ("warm", warm),
            ("cold", LocalRunner(1, base_env={**os.environ, "PYTHONPATH": str(REPO)})),
        ):
            spec = _spec(tmp_path / kind, "1", [
                "python", "-m", "examples.pytorch.trainer", f"--job-dir={tmp_path / kind / 'job' / '1'}",
                *flags, "--seed=5", "--nas_params_str=" + json.dumps(arch),
            ])  # fmt: skip
            handle = runner.launch(spec)
            assert handle.extra.get("warm", False) is (kind == "warm")
            res = _wait_final(runner, handle, timeout=180)
            assert res.status is TrialStatus.SUCCEEDED, res.log_tail
            metrics = json.loads((tmp_path / kind / "job" / "1" / "TRIAL_TRAINING_METRICS.json").read_text())
            curves[kind] = [(e["training_step"], e["accuracy"]) for e in metrics["training_accuracy_over_steps"]]
    finally:
        warm.close()
    assert curves["warm"] == curves["cold"] and len(curves["warm"]) >= 2
