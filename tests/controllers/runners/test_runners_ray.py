"""RayRunner against a real one-node Ray cluster on 127.0.0.1 (Jobs API, real trainer subprocesses).

The cluster is started by ``ray.init`` in this test process and shut down with
``ray.shutdown()`` when this module's tests are done (never ``ray stop``, which
would kill every Ray process on the machine). Skipped when Ray is not installed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest

from controllers.runners import LaunchError, TrialHandle, TrialSpec, TrialStatus
from controllers.testing import wait_until
from proxy_task_utils import protocol as p

REPLAY = [sys.executable, "-m", "controllers.testing.replay_trainer"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_address():
    """Dashboard URL of a fresh one-node cluster (2 CPUs) for this module; shut down afterwards."""
    pytest.importorskip("ray.job_submission", reason="Ray is not installed: pip install 'proxy-task-utils[ray]'")
    import ray

    if ray.is_initialized():  # pragma: no cover - another test left one running
        ray.shutdown()
    port = _free_port()
    ray.init(
        num_cpus=2,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=port,
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        ray.shutdown()


def _runner(address, **kw):
    from controllers.runners.ray_runner import RayRunner

    return RayRunner(2, address=address, log_refresh_secs=0.0, **kw)


def _spec(tmp_path, argv, trial_id="1", token=None, env=None) -> TrialSpec:
    job_dir = tmp_path / "job" / "nas" / "search"
    return TrialSpec(
        trial_id=trial_id,
        job_dir_uri=str(job_dir),
        model_dir_uri=str(job_dir / trial_id),
        argv=argv,
        env=env or {},
        log_path=str(tmp_path / "logs" / trial_id / "trainer.log"),
        launch_token=token or uuid.uuid4().hex,
    )


def _replay(spec_dir, trial_id, params, *flags):
    return [*REPLAY, f"--job-dir={spec_dir}/{trial_id}", f"--nas_params_str={json.dumps(params)}", *flags]


def _wait_final(runner, handle):
    box = {}

    def done():
        box["r"] = runner.poll(handle)
        return box["r"].status.is_final

    wait_until(done, timeout=60, interval=0.1)
    return box["r"]


pytestmark = pytest.mark.ray


def test_replay_trials_succeed_with_env_metrics_and_logs(ray_address, tmp_path):
    runner = _runner(ray_address)
    job_dir = tmp_path / "job" / "nas" / "search"
    replay = _spec(tmp_path, _replay(job_dir, "1", {"quality": 0.7}, "--train_steps=30", "--cycle_steps=10"), "1")
    keys = ["CLOUD_ML_TRIAL_ID", "AIP_MODEL_DIR", "OMP_NUM_THREADS", "EXTRA_VAR"]
    out = tmp_path / "env.json"
    code = f"import os, json; json.dump({{k: os.environ.get(k) for k in {keys!r}}}, open({str(out)!r}, 'w')); print('hi there')"
    probe = _spec(tmp_path, [sys.executable, "-c", code], "7", env={"EXTRA_VAR": "a b=c 'quoted'"})

    h1, h7 = runner.launch(replay), runner.launch(probe)
    assert h1.runner == "ray" and h1.external_id.startswith("proxy-task-")
    r1, r7 = _wait_final(runner, h1), _wait_final(runner, h7)

    assert (r1.status, r1.exit_code) == (TrialStatus.SUCCEEDED, 0)
    metrics = p.TrialTrainingMetrics.from_json((job_dir / "1" / p.TRIAL_TRAINING_METRICS_FILE).read_bytes())
    assert [a.training_step for a in metrics.training_accuracy_over_steps] == [9, 19, 29]
    assert (r7.status, r7.exit_code) == (TrialStatus.SUCCEEDED, 0)
    env = json.loads(out.read_text())
    assert env == {
        "CLOUD_ML_TRIAL_ID": "7",
        "AIP_MODEL_DIR": probe.model_dir_uri,
        "OMP_NUM_THREADS": "1",
        "EXTRA_VAR": "a b=c 'quoted'",
    }
    assert "hi there" in open(probe.log_path).read()  # the job's log was copied to the trial's log file
    assert "hi there" in r7.log_tail


def test_crash_is_failed_with_exit_code_and_log_tail(ray_address, tmp_path):
    runner = _runner(ray_address)
    job_dir = tmp_path / "job" / "nas" / "search"
    handle = runner.launch(_spec(tmp_path, _replay(job_dir, "1", {"fail": "crash"}), "1"))
    result = _wait_final(runner, handle)
    assert (result.status, result.exit_code) == (TrialStatus.FAILED, 3)
    assert "Traceback" in result.log_tail or "crash" in result.log_tail.lower()


def test_missing_executable_fails_with_shell_exit_code(ray_address, tmp_path):
    runner = _runner(ray_address)
    handle = runner.launch(_spec(tmp_path, ["/nonexistent/trainer", "--job-dir=x"]))
    result = _wait_final(runner, handle)
    assert (result.status, result.exit_code) == (TrialStatus.FAILED, 127)


def test_cancel_is_cancelled_and_idempotent(ray_address, tmp_path):
    runner = _runner(ray_address)
    job_dir = tmp_path / "job" / "nas" / "search"
    handle = runner.launch(_spec(tmp_path, _replay(job_dir, "1", {"fail": "hang"}), "1"))
    wait_until(lambda: _info(runner, handle).status == "RUNNING", timeout=60, interval=0.1)
    runner.cancel(handle, grace_secs=1.0)
    result = _wait_final(runner, handle)
    assert result.status is TrialStatus.CANCELLED
    runner.cancel(handle)  # again, after it ended: no error
    assert runner.poll(handle).status is TrialStatus.CANCELLED


def _info(runner, handle):
    return runner._client().get_job_info(handle.external_id)


def test_reattach_and_recover_after_controller_restart(ray_address, tmp_path):
    first = _runner(ray_address)
    code = "import time; time.sleep(3); print('slept')"
    spec = _spec(tmp_path, [sys.executable, "-c", code], "4")
    handle = first.launch(spec)
    stored = json.loads(json.dumps(handle.to_dict()))  # what the state file keeps
    first.close()

    second = _runner(ray_address)  # a restarted controller
    again = TrialHandle.from_dict(stored)
    assert second.reattach(again) is True
    recovered = second.recover(spec)
    assert recovered is not None and recovered.external_id == handle.external_id
    assert second.recover(_spec(tmp_path, spec.argv, "4", token="never-launched")) is None
    # a second launch of the same token never starts a second job
    assert second.launch(spec).external_id == handle.external_id
    token_jobs = [
        j
        for j in second._client().list_jobs()
        if (j.metadata or {}).get("proxy_task_launch_token") == spec.launch_token
    ]
    assert len(token_jobs) == 1

    result = _wait_final(second, again)
    assert (result.status, result.exit_code) == (TrialStatus.SUCCEEDED, 0)
    assert second.reattach(again) is False  # ended: nothing to watch, but poll still knows how it ended
    assert _runner(ray_address).poll(again).status is TrialStatus.SUCCEEDED
    assert "slept" in open(spec.log_path).read()


def test_unknown_job_is_lost(ray_address, tmp_path):
    runner = _runner(ray_address)
    handle = TrialHandle(trial_id="1", runner="ray", external_id="proxy-task-" + uuid.uuid4().hex)
    assert runner.poll(handle).status is TrialStatus.LOST
    assert runner.reattach(handle) is False
    runner.cancel(handle)  # no error


def test_unreachable_cluster(tmp_path):
    pytest.importorskip("ray.job_submission")
    from controllers.runners.ray_runner import BackendUnreachableError, RayRunner

    now = [0.0]
    runner = RayRunner(1, address=f"http://127.0.0.1:{_free_port()}", clock=lambda: now[0], unreachable_lost_secs=60)
    spec = _spec(tmp_path, [sys.executable, "-c", "pass"])
    with pytest.raises(LaunchError, match="127.0.0.1"):
        runner.launch(spec)
    with pytest.raises(BackendUnreachableError):
        runner.recover(spec)  # never "no trace" (that would launch the trial twice)
    handle = TrialHandle(trial_id="1", runner="ray", external_id="proxy-task-x")
    assert runner.poll(handle).status is TrialStatus.RUNNING  # a blip is not a failure
    now[0] = 61.0
    assert runner.poll(handle).status is TrialStatus.LOST


def test_bad_options_name_the_field():
    from controllers.runners.ray_runner import RayRunner, submission_id_for

    with pytest.raises(ValueError, match="max_parallel_trials"):
        RayRunner(None)
    with pytest.raises(ValueError, match="num_gpus_per_trial"):
        RayRunner(1, num_gpus_per_trial=-1)
    assert submission_id_for("a/b c") == "proxy-task-a_b_c"


@pytest.mark.parametrize("module,extra", [("controllers.runners.ray_runner", "ray")])
def test_light_import_and_pip_hint_without_ray(module, extra):
    """Importing the runner module never imports Ray; using it without Ray names the extra."""
    code = (
        "import sys; sys.modules['ray'] = None\n"
        f"import {module} as m\n"
        "assert 'ray' not in [k for k in sys.modules if sys.modules[k] is not None and k.split('.')[0] == 'ray']\n"
        "try:\n    m.RayRunner(1)._client()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert f"pip install 'proxy-task-utils[{extra}]'" in out


# -- the controllers end to end on the Ray cluster (same setups as their local-runner tests) ------------

E2E_TIMEOUTS = {"poll_interval_secs": 0.2, "no_metrics_timeout_secs": 40.0}  # Ray adds ~1-2 s per launch


def _e2e_runner(address, n):
    """No CPU reservation (2 cluster CPUs would serialise the trials); logs copied when a trial ends."""
    from controllers.runners.ray_runner import RayRunner

    return RayRunner(n, address=address, num_cpus_per_trial=None, log_refresh_secs=None)


def test_model_selection_end_to_end_on_ray(ray_address, tmp_path):
    """test_model_selection's setup, smaller (5 -> 3 models), one crashing trial, the Ray runner swapped in."""
    from _tool_helpers import selection_data as _data  # the model-selection tests' config

    from controllers.config import parse_config
    from controllers.selection.config import ModelSelectionConfig
    from controllers.selection.controller import run_model_selection

    ctl = tmp_path / "ctl"
    data = _data(
        ctl,
        REPLAY,
        max_failure_ratio=0.5,
        timeouts=E2E_TIMEOUTS,
        start_num_models=5,
        final_num_models=3,
        num_models_to_remove_per_iter=2,
        runner={"max_parallel_trials": 5},
        trainer={"args": {"train_steps": 60, "cycle_steps": 6, "failure_plan": "2:crash"}},
    )
    data["trainer"]["command"] = REPLAY
    cfg = parse_config(data, ModelSelectionConfig)
    result = run_model_selection(cfg, runner=_e2e_runner(ray_address, cfg.runner.effective_max_parallel()))

    state = json.loads((ctl / "MODEL_SELECTION_STATE.json").read_text())
    assert state["status"] == "done" and result.reference_trials == ["1", "2", "3"]
    it0 = state["iterations"][0]
    assert {t: f["kind"] for t, f in it0["failures"].items()} == {"2": "crash"}  # exit code 3 through Ray
    assert "2" not in it0["trials_to_retrain"]
    assert [it["num_trials"] for it in state["iterations"]] == [5, 3]
    final = ctl / "Model_Selection_ms_iter_1/nas/search"
    for k in range(1, 4):
        m = p.TrialTrainingMetrics.from_json((final / str(k) / p.TRIAL_TRAINING_METRICS_FILE).read_bytes())
        assert m.last_pct == 100.0
    # every trial ran once, and its Ray job log landed in the trial's log file
    logs = [os.path.join(r, "trainer.log") for r, _, fs in os.walk(ctl / "logs") if "trainer.log" in fs]
    assert len(logs) == 5 + 3
    assert all(open(f).read().count("Running entrypoint for job") == 1 for f in logs)


def test_proxy_search_end_to_end_on_ray(ray_address, tmp_path):
    """test_search_e2e's setup, smaller (5 reference models, one good proxy), the Ray runner swapped in."""
    from _search_helpers import GOOD, LATENCIES, QUALITIES, write_reference_job
    from _search_helpers import search_config as _config
    from _search_helpers import trial_metrics as _trial_metrics

    from controllers.search.controller import SearchController
    from controllers.stats import MET_DESIRED_ACCURACY_CORRELATION

    ref_job = tmp_path / "reference" / "nas" / "search"
    write_reference_job(str(ref_job), QUALITIES[::2] + QUALITIES[-1:], LATENCIES[::2] + LATENCIES[-1:])
    cfg = _config(
        tmp_path,
        [("good", {**GOOD, "sleep_per_cycle": 0.05})],
        timeouts={**E2E_TIMEOUTS, "stop_grace_secs": 30, "cancel_grace_secs": 1, "heartbeat_interval_secs": 1.0},
        training_time_hrs_limit=60 / 3600,
        runner={"max_parallel_trials": 5},
    )
    state = SearchController(cfg, runner=_e2e_runner(ray_address, 5)).run()

    entry = state.proxy_tasks_map["good"]
    assert entry.proxy_task_stats.stopping_state == MET_DESIRED_ACCURACY_CORRELATION
    assert state.best_proxy_task_name == "good"
    assert [t["state"] for t in entry.job["trials"]] == ["succeeded"] * 5
    assert [t["launches"] for t in entry.job["trials"]] == [1] * 5
    assert all(t["handle"]["runner"] == "ray" for t in entry.job["trials"])
    assert entry.proxy_task_stats.posted_stop_trials_message
    for k, metrics in enumerate(_trial_metrics(entry.search_job_link, 5), start=1):
        # "stop now" reached the Ray trials through their folders: none trained its 2000 steps
        assert metrics.last_pct is not None and metrics.last_pct < 100.0
        signal_file = os.path.join(entry.search_job_link, str(k), p.DESIRED_TRAINING_PCT_FILE)
        assert json.load(open(signal_file)) == {"desired_training_pct": 0.0}


def test_config_section_builds_the_runner():
    """``runner.ray`` (RayOptions) holds exactly the runner's keyword arguments; typos are errors."""
    from pydantic import ValidationError

    from controllers.runners.ray_runner import RayOptions, RayRunner

    opts = RayOptions(address="http://10.0.0.5:8265", num_gpus_per_trial=1, runtime_env={"working_dir": "."})
    runner = RayRunner(6, **opts.model_dump())
    assert (runner.address, runner.max_parallel) == ("http://10.0.0.5:8265", 6)
    with pytest.raises(ValidationError, match="num_gpu_per_trial"):
        RayOptions(num_gpu_per_trial=1)
