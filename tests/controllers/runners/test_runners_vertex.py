"""VertexRunner CONTRACT tests against a local fake of the Vertex AI REST API.

This is the one place in the project where a fake service stands in for the
real one: real runs need a GCP project, credentials and money. The fake is a
small ``http.server`` on 127.0.0.1 that implements the four REST routes the
runner uses (create / get / cancel / list customJobs) the way the public API
documents them. The real ``google-cloud-aiplatform`` client (REST transport,
AnonymousCredentials) talks to it, so these tests check what goes over the
wire (URLs, JSON bodies, the label filter) and how job states and errors map to
:class:`TrialStatus`, not Google's service itself. Skipped when
google-cloud-aiplatform is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from controllers.runners import LaunchError, TrialHandle, TrialSpec, TrialStatus

pytest.importorskip("google.cloud.aiplatform_v1", reason="pip install 'proxy-task-utils[vertex]'")

from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import aiplatform_v1  # noqa: E402

from controllers.runners.vertex_runner import BackendUnreachableError, VertexRunner, container_args  # noqa: E402

PROJECT, REGION = "my-proj", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
FINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


class FakeVertex:
    """The customJobs routes of Vertex AI v1, in memory; ``requests`` records every call."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.fail_next_create: int | None = None  # HTTP status for the next create (after storing the job)
        self.down = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, obj: dict) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                fake.requests.append({"method": method, "path": url.path, "query": parse_qs(url.query), "body": body})
                if fake.down:
                    return self._send(503, _error(503, "UNAVAILABLE", "backend down"))
                code, obj = fake.handle(method, url.path, parse_qs(url.query), body)
                self._send(code, obj)

            def do_GET(self):  # noqa: N802
                self._route("GET")

            def do_POST(self):  # noqa: N802
                self._route("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _out(self, job: dict, query: dict) -> dict:
        """Enums as numbers when the client asks for ``enum-encoding=int`` (the REST transport does)."""
        out = json.loads(json.dumps(job))
        if any("enum-encoding=int" in v for v in query.get("$alt", [])):
            out["state"] = aiplatform_v1.JobState[out["state"]].value
        return out

    def handle(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict]:
        prefix = f"/v1/{PARENT}/customJobs"
        if method == "POST" and path == prefix:
            name = f"{PARENT}/customJobs/{len(self.jobs) + 1000}"
            job = dict(body or {}, name=name, state="JOB_STATE_PENDING",
                       createTime=f"2026-01-01T00:00:{len(self.jobs):02d}Z")  # fmt: skip
            self.jobs[name] = job
            if self.fail_next_create is not None:
                code, self.fail_next_create = self.fail_next_create, None
                return code, _error(code, "UNAVAILABLE", "deadline exceeded after the job was stored")
            return 200, self._out(job, query)
        if method == "GET" and path == prefix:
            flt = query.get("filter", [""])[0]
            key, _, value = flt.partition("=")
            key, value = key.strip().removeprefix("labels."), value.strip().strip('"')
            hits = [self._out(j, query) for j in self.jobs.values() if j.get("labels", {}).get(key) == value]
            return 200, {"customJobs": hits} if hits else {}
        name = path.removeprefix("/v1/")
        if method == "POST" and name.endswith(":cancel"):
            name = name.removesuffix(":cancel")
            if name not in self.jobs:
                return 404, _error(404, "NOT_FOUND", f"{name} not found")
            if self.jobs[name]["state"] in FINAL:
                return 400, _error(400, "FAILED_PRECONDITION", "job already ended")
            self.jobs[name]["state"] = "JOB_STATE_CANCELLING"
            return 200, {}
        if method == "GET" and name in self.jobs:
            return 200, self._out(self.jobs[name], query)
        return 404, _error(404, "NOT_FOUND", f"{name} not found")

    def set_state(self, name: str, state: str, message: str | None = None) -> None:
        self.jobs[name]["state"] = state
        if message is not None:
            self.jobs[name]["error"] = {"code": 3, "message": message}


def _error(code: int, status: str, message: str) -> dict:
    return {"error": {"code": code, "status": status, "message": message}}


@pytest.fixture
def fake():
    server = FakeVertex()
    yield server
    server.close()


def _runner(fake, **kw) -> VertexRunner:
    opts = {"project": PROJECT, "region": REGION, "image_uri": "us-central1-docker.pkg.dev/my-proj/nas/trainer:1"}
    opts.update(kw)
    return VertexRunner(4, api_endpoint=fake.endpoint, credentials=AnonymousCredentials(), **opts)


def _spec(tmp_path, trial_id="3", token=None) -> TrialSpec:
    job_dir = "gs://bucket/ctl/proxy_1/nas/search"
    return TrialSpec(
        trial_id=trial_id,
        job_dir_uri=job_dir,
        model_dir_uri=f"{job_dir}/{trial_id}",
        argv=[
            sys.executable,
            "-m",
            "examples.pytorch.trainer",
            f"--job-dir={job_dir}/{trial_id}",
            '--nas_params_str={"a": 1, "b": "x=y"}',
            "--lr=0.1",
        ],
        env={"EXTRA": "1"},
        log_path=str(tmp_path / "logs" / trial_id / "trainer.log"),
        launch_token=token or uuid.uuid4().hex,
    )


def test_create_request_shape(fake, tmp_path):
    runner = _runner(
        fake,
        machine_type="n1-highmem-8",
        accelerator_type="NVIDIA_TESLA_T4",
        accelerator_count=2,
        service_account="sa@my-proj.iam.gserviceaccount.com",
        labels={"team": "nas"},
    )
    spec = _spec(tmp_path)
    handle = runner.launch(spec)

    req = fake.requests[-1]
    assert (req["method"], req["path"]) == ("POST", f"/v1/{PARENT}/customJobs")
    body = req["body"]
    assert body["displayName"] == "proxy-task-trial-3"
    assert body["labels"] == {"team": "nas", "proxy_task_token": spec.launch_token, "proxy_task_trial": "3"}
    js = body["jobSpec"]
    assert js["baseOutputDirectory"] == {"outputUriPrefix": spec.model_dir_uri}
    assert js["serviceAccount"] == "sa@my-proj.iam.gserviceaccount.com"
    (pool,) = js["workerPoolSpecs"]
    assert int(pool["replicaCount"]) == 1
    machine = pool["machineSpec"]
    assert machine["machineType"] == "n1-highmem-8" and machine["acceleratorCount"] == 2
    assert machine["acceleratorType"] in ("NVIDIA_TESLA_T4", aiplatform_v1.AcceleratorType.NVIDIA_TESLA_T4.value)
    container = pool["containerSpec"]
    assert container["imageUri"] == "us-central1-docker.pkg.dev/my-proj/nas/trainer:1"
    assert "command" not in container  # the image's ENTRYPOINT runs the trainer
    assert container["args"] == spec.argv[3:]  # the flags, from --job-dir on; values keep their '='
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "CLOUD_ML_TRIAL_ID": "3", "AIP_MODEL_DIR": spec.model_dir_uri, "EXTRA": "1"}  # fmt: skip

    assert handle.runner == "vertex" and handle.external_id == f"{PARENT}/customJobs/1000"
    assert json.loads(json.dumps(handle.to_dict()))["external_id"] == handle.external_id
    assert handle.external_id in open(spec.log_path).read()  # the log file names the job and its console link


def test_cpu_only_and_custom_command(fake, tmp_path):
    runner = _runner(fake, container_command=["python", "-m", "my.trainer"])
    runner.launch(_spec(tmp_path))
    pool = fake.requests[-1]["body"]["jobSpec"]["workerPoolSpecs"][0]
    assert pool["machineSpec"] == {"machineType": "n1-standard-8"}
    assert pool["containerSpec"]["command"] == ["python", "-m", "my.trainer"]


@pytest.mark.parametrize(
    "state,status,code",
    [
        ("JOB_STATE_QUEUED", TrialStatus.RUNNING, None),
        ("JOB_STATE_PENDING", TrialStatus.RUNNING, None),
        ("JOB_STATE_RUNNING", TrialStatus.RUNNING, None),
        ("JOB_STATE_CANCELLING", TrialStatus.RUNNING, None),
        ("JOB_STATE_SUCCEEDED", TrialStatus.SUCCEEDED, 0),
        ("JOB_STATE_CANCELLED", TrialStatus.CANCELLED, None),
        ("JOB_STATE_EXPIRED", TrialStatus.FAILED, None),
    ],
)
def test_state_mapping(fake, tmp_path, state, status, code):
    runner = _runner(fake)
    handle = runner.launch(_spec(tmp_path))
    fake.set_state(handle.external_id, state)
    result = runner.poll(handle)
    assert (result.status, result.exit_code) == (status, code)
    assert fake.requests[-1]["method"] == "GET" and fake.requests[-1]["path"] == "/v1/" + handle.external_id


def test_failed_job_error_message_is_the_log_tail_with_exit_code(fake, tmp_path):
    runner = _runner(fake)
    handle = runner.launch(_spec(tmp_path))
    msg = "The replica workerpool0-0 exited with a non-zero status of 3. Termination reason: Error."
    fake.set_state(handle.external_id, "JOB_STATE_FAILED", msg)
    result = runner.poll(handle)
    assert (result.status, result.exit_code, result.log_tail) == (TrialStatus.FAILED, 3, msg)
    assert msg in open(handle.log_path).read()
    fake.set_state(handle.external_id, "JOB_STATE_FAILED", "Resources are insufficient in region")
    assert runner.poll(handle).exit_code is None  # no exit code in the message: unknown, not a guess


def test_cancel_posts_cancel_and_is_idempotent(fake, tmp_path):
    runner = _runner(fake)
    handle = runner.launch(_spec(tmp_path))
    runner.cancel(handle, grace_secs=5)
    req = fake.requests[-1]
    assert (req["method"], req["path"]) == ("POST", f"/v1/{handle.external_id}:cancel")
    assert runner.poll(handle).status is TrialStatus.RUNNING  # CANCELLING until Vertex has stopped it
    fake.set_state(handle.external_id, "JOB_STATE_CANCELLED")
    assert runner.poll(handle).status is TrialStatus.CANCELLED
    runner.cancel(handle)  # already ended (400 FAILED_PRECONDITION): no error
    runner.cancel(TrialHandle("9", "vertex", f"{PARENT}/customJobs/404"))  # unknown job: no error


def test_reattach_and_recover_after_restart(fake, tmp_path):
    spec = _spec(tmp_path)
    handle = _runner(fake).launch(spec)
    stored = json.loads(json.dumps(handle.to_dict()))

    fresh = _runner(fake)  # a restarted controller
    again = TrialHandle.from_dict(stored)
    assert fresh.reattach(again) is True
    found = fresh.recover(spec)
    assert found is not None and found.external_id == handle.external_id
    req = fake.requests[-1]
    assert (req["method"], req["path"]) == ("GET", f"/v1/{PARENT}/customJobs")
    assert req["query"]["filter"] == [f'labels.proxy_task_token="{spec.launch_token}"']
    assert fresh.recover(_spec(tmp_path, token="never-launched")) is None
    fake.set_state(handle.external_id, "JOB_STATE_SUCCEEDED")
    assert fresh.reattach(again) is False
    assert fresh.poll(again).status is TrialStatus.SUCCEEDED
    gone = TrialHandle("3", "vertex", f"{PARENT}/customJobs/999")
    assert fresh.reattach(gone) is False and fresh.poll(gone).status is TrialStatus.LOST


def test_create_that_failed_after_storing_returns_the_stored_job(fake, tmp_path):
    fake.fail_next_create = 503
    spec = _spec(tmp_path)
    handle = _runner(fake).launch(spec)  # the label lookup finds the job: no second create
    assert handle.external_id == f"{PARENT}/customJobs/1000"
    assert [r["method"] for r in fake.requests].count("POST") == 1 and len(fake.jobs) == 1


def test_api_down(fake, tmp_path):
    now = [0.0]
    runner = _runner(fake, clock=lambda: now[0], unreachable_lost_secs=60)
    spec = _spec(tmp_path)
    handle = runner.launch(spec)
    fake.down = True
    assert runner.poll(handle).status is TrialStatus.RUNNING  # a blip is not a failure
    now[0] = 61.0
    assert runner.poll(handle).status is TrialStatus.LOST
    with pytest.raises(BackendUnreachableError):
        runner.recover(spec)  # never "no trace": that would launch the trial twice
    with pytest.raises(BackendUnreachableError):
        runner.launch(_spec(tmp_path, "4"))  # outcome unknown: stop rather than guess


def test_bad_input_is_refused_with_the_field(fake, tmp_path):
    with pytest.raises(ValueError, match="image_uri"):
        _runner(fake, image_uri="")
    with pytest.raises(ValueError, match="accelerator_type"):
        _runner(fake, accelerator_count=1)
    with pytest.raises(ValueError, match="max_parallel_trials"):
        VertexRunner(0, project=PROJECT, image_uri="x")
    with pytest.raises(LaunchError, match="gs://"):
        _runner(fake).launch(TrialSpec("1", "/tmp/j", "/tmp/j/1", ["t", "--job-dir=/tmp/j/1"]))
    with pytest.raises(LaunchError, match="AcceleratorType"):
        _runner(fake, accelerator_type="NVIDIA_NOPE", accelerator_count=1).launch(_spec(tmp_path))
    with pytest.raises(LaunchError, match="--job-dir"):
        container_args(["python", "train.py"])
    assert not fake.requests


def test_light_import_and_pip_hint_without_aiplatform():
    """Importing the runner module never imports aiplatform; using it without the package names the extra."""
    code = (
        "import sys; sys.modules['google.cloud.aiplatform_v1'] = None\n"
        "import controllers.runners.vertex_runner as m\n"
        "r = m.VertexRunner(1, project='p', image_uri='i')\n"
        "try:\n    r._client()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'proxy-task-utils[vertex]'" in out


def test_config_section_builds_the_runner():
    """``runner.vertex`` (VertexOptions) holds exactly the runner's keyword arguments; typos are errors."""
    from pydantic import ValidationError

    from controllers.runners.vertex_runner import VertexOptions

    opts = VertexOptions(project=PROJECT, image_uri="img", accelerator_type="NVIDIA_L4", accelerator_count=1)
    runner = VertexRunner(3, **opts.model_dump())
    assert (runner.parent, runner.api_endpoint) == (PARENT, "us-central1-aiplatform.googleapis.com")
    with pytest.raises(ValidationError, match="image_uri"):
        VertexOptions(project=PROJECT)
    with pytest.raises(ValidationError, match="machine"):
        VertexOptions(project=PROJECT, image_uri="img", machine="n1")
