"""LocalRunner with real subprocesses: launch, env, exit codes, cancel, re-attach, recover."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from controllers.runners import LaunchError, LocalRunner, TrialHandle, TrialSpec, TrialStatus
from controllers.runners.process import process_start_ticks
from controllers.testing import wait_until


def _spec(tmp_path, argv, trial_id="1", token=None) -> TrialSpec:
    return TrialSpec(
        trial_id=trial_id,
        job_dir_uri=str(tmp_path / "job/nas/search"),
        model_dir_uri=str(tmp_path / f"job/nas/search/{trial_id}"),
        argv=argv,
        env={"EXTRA_VAR": "x=y"},
        log_path=str(tmp_path / "logs" / trial_id / "trainer.log"),
        launch_token=token or uuid.uuid4().hex,
    )


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _wait_final(runner, handle):
    box = {}

    def done():
        box["r"] = runner.poll(handle)
        return box["r"].status is not TrialStatus.RUNNING

    wait_until(done)
    return box["r"]


def test_launch_sets_environment_and_succeeds(tmp_path):
    out = tmp_path / "env.json"
    keys = ["CLOUD_ML_TRIAL_ID", "AIP_MODEL_DIR", "OMP_NUM_THREADS", "CLOUD_ML_HP_METRIC_FILE", "EXTRA_VAR"]
    code = f"import os, json; json.dump({{k: os.environ.get(k) for k in {keys!r}}}, open({str(out)!r}, 'w')); print('hello')"
    runner = LocalRunner(2)
    spec = _spec(tmp_path, _py(code), trial_id="7")
    handle = runner.launch(spec)
    result = _wait_final(runner, handle)
    assert result.status is TrialStatus.SUCCEEDED and result.exit_code == 0
    env = json.loads(out.read_text())
    assert env["CLOUD_ML_TRIAL_ID"] == "7"
    assert env["AIP_MODEL_DIR"] == spec.model_dir_uri
    assert env["OMP_NUM_THREADS"] == "1"
    assert env["CLOUD_ML_HP_METRIC_FILE"] == str(tmp_path / "logs" / "7" / "hypertune.metrics")
    assert env["EXTRA_VAR"] == "x=y"
    assert "hello" in result.log_tail
    assert TrialHandle.from_dict(json.loads(json.dumps(handle.to_dict()))) == handle


def test_nonzero_exit_is_failed_with_code(tmp_path):
    runner = LocalRunner(1)
    handle = runner.launch(_spec(tmp_path, _py("import sys; print('boom'); sys.exit(3)")))
    result = _wait_final(runner, handle)
    assert (result.status, result.exit_code) == (TrialStatus.FAILED, 3)
    assert "boom" in result.log_tail


def test_missing_trainer_executable_fails_with_127(tmp_path):
    runner = LocalRunner(1)
    result = _wait_final(runner, runner.launch(_spec(tmp_path, [str(tmp_path / "no-such-trainer")])))
    assert (result.status, result.exit_code) == (TrialStatus.FAILED, 127)


def test_missing_interpreter_raises_launch_error(tmp_path):
    with pytest.raises(LaunchError, match="cannot start"):
        LocalRunner(1, python=str(tmp_path / "no-python")).launch(_spec(tmp_path, _py("pass")))


def test_cancel_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); open({str(pidfile)!r}, 'w').write(str(p.pid)); "
        "time.sleep(60)"
    )
    runner = LocalRunner(1)
    handle = runner.launch(_spec(tmp_path, _py(code)))
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    grandchild = int(pidfile.read_text())
    runner.cancel(handle, grace_secs=5.0)
    result = _wait_final(runner, handle)
    assert result.status is TrialStatus.CANCELLED
    wait_until(lambda: process_start_ticks(grandchild) is None or _is_zombie(grandchild))


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_cancel_escalates_to_sigkill_after_grace(tmp_path):
    ready = tmp_path / "ready"
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, lambda *a: None); "
        f"open({str(ready)!r}, 'w').write('1'); time.sleep(60)"
    )
    now = [0.0]
    runner = LocalRunner(1, clock=lambda: now[0])
    handle = runner.launch(_spec(tmp_path, _py(code)))
    wait_until(ready.exists)
    runner.cancel(handle, grace_secs=10.0)
    assert runner.poll(handle).status is TrialStatus.RUNNING  # SIGTERM ignored, grace not over
    now[0] = 11.0
    result = _wait_final(runner, handle)
    assert result.status is TrialStatus.CANCELLED


def test_reattach_after_restart_gets_exit_code_from_file(tmp_path):
    go = tmp_path / "go"
    code = f"import os, sys, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\nsys.exit(5)"
    first = LocalRunner(1)
    handle = first.launch(_spec(tmp_path, _py(code)))
    stored = json.loads(json.dumps(handle.to_dict()))
    first.close()  # the controller "dies": a new runner is not the parent
    second = LocalRunner(1)
    restored = TrialHandle.from_dict(stored)
    assert second.reattach(restored)
    assert second.poll(restored).status is TrialStatus.RUNNING
    go.write_text("1")
    # the first runner's Popen object is gone; reap the wrapper so /proc shows it ended
    wait_until(lambda: _reap(int(restored.external_id)))
    result = _wait_final(second, restored)
    assert (result.status, result.exit_code) == (TrialStatus.FAILED, 5)


def _reap(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def test_recycled_pid_is_not_taken_for_ours(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        ticks = process_start_ticks(other.pid)
        fake = TrialHandle(
            trial_id="1", runner="local", external_id=str(other.pid), pgid=other.pid,
            start_ticks=(ticks or 0) + 12345, log_path=str(tmp_path / "none.log"),
        )  # fmt: skip
        runner = LocalRunner(1)
        assert not runner.reattach(fake)
        assert runner.poll(fake).status is TrialStatus.LOST
        runner.cancel(fake, grace_secs=0)
        assert other.poll() is None  # not signalled
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()


def test_recover_finds_a_launch_that_was_not_recorded(tmp_path):
    token = uuid.uuid4().hex
    first = LocalRunner(1)
    spec = _spec(tmp_path, _py("import time; time.sleep(0.3)"), token=token)
    handle = first.launch(spec)
    wait_until(lambda: os.path.exists(spec.log_path + ".pid.json"))
    second = LocalRunner(1)
    found = second.recover(spec)
    assert found is not None and found.external_id == handle.external_id
    other = _spec(tmp_path / "other", _py("pass"), token=uuid.uuid4().hex)
    assert second.recover(other) is None
    assert _wait_final(first, handle).status is TrialStatus.SUCCEEDED


def test_python_means_the_controllers_interpreter():
    from controllers.runners.local import resolve_python

    assert resolve_python(["python", "-m", "x"]) == [sys.executable, "-m", "x"]
    assert resolve_python(["python3", "t.py"]) == [sys.executable, "t.py"]
    assert resolve_python(["/usr/bin/python", "t.py"]) == ["/usr/bin/python", "t.py"]
