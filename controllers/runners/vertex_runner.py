"""Trials as Vertex AI custom jobs: one ``CustomJob`` per trial, on Google Cloud.

Real runs need a GCP project, a region, a container image in Artifact Registry
and ``controller_dir`` on ``gs://`` (the containers write their metrics there).
The tests of this module are *contract tests* against a local fake of the few
REST routes used (create, get, cancel, list): they check request shapes and the
state mapping, not Google's service.

Mapping to the runner contract:

* ``launch``: ``JobService.CreateCustomJob`` with one worker pool (machine type,
  accelerator, ``replicaCount`` 1), the container's ``args`` = the trainer flags
  (``spec.argv`` from ``--job-dir=...`` on; the local trainer prefix is replaced
  by the image's ENTRYPOINT, or by ``container_command`` when set), env
  ``CLOUD_ML_TRIAL_ID``, ``AIP_MODEL_DIR`` and the spec's ``env``,
  ``baseOutputDirectory`` = the trial folder, and a label holding the launch token.
* ``poll``: ``GetCustomJob``; QUEUED/PENDING/RUNNING/CANCELLING/UPDATING/PAUSED ->
  RUNNING, SUCCEEDED, FAILED (exit code parsed from the error message when
  Vertex gives it; the message becomes the log tail), CANCELLED, EXPIRED ->
  FAILED; a job the service does not know -> LOST.
* ``cancel``: ``CancelCustomJob`` (Vertex stops the containers; ``grace_secs``
  cannot be passed through).
* ``reattach``: by the job's resource name (``handle.external_id``);
  ``recover``: ``ListCustomJobs`` filtered on the launch-token label.

Trainer logs live in Cloud Logging; the local log file only gets the job's
name, console link and final state/error.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controllers.errors import BackendUnreachableError
from controllers.runners.base import LaunchError, PollResult, Runner, TrialHandle, TrialSpec, TrialStatus, remote_handle
from proxy_task_utils.errors import MissingExtraError

__all__ = ["VertexRunner", "VertexOptions", "BackendUnreachableError", "container_args", "token_label"]

_PIP_HINT = "pip install 'proxy-task-utils[vertex]'"
TOKEN_LABEL = "proxy_task_token"
TRIAL_LABEL = "proxy_task_trial"
_RUNNING_STATES = frozenset(
    {"JOB_STATE_UNSPECIFIED", "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING",
     "JOB_STATE_CANCELLING", "JOB_STATE_UPDATING", "JOB_STATE_PAUSED"}
)  # fmt: skip
_EXIT_CODE = re.compile(r"non-zero status of (-?\d+)")
_LABEL_UNSAFE = re.compile(r"[^a-z0-9_-]")


class VertexOptions(BaseModel):
    """The ``runner.vertex`` config section: keyword arguments of :class:`VertexRunner` (see it)."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(min_length=1)
    region: str = Field(default="us-central1", min_length=1)
    image_uri: str = Field(min_length=1)
    machine_type: str = "n1-standard-8"
    accelerator_type: str | None = None
    accelerator_count: int = Field(default=0, ge=0)
    container_command: list[str] | None = None
    service_account: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    display_name_prefix: str = "proxy-task"
    api_endpoint: str | None = None
    unreachable_lost_secs: float = Field(default=600.0, gt=0)


def _aiplatform() -> Any:
    try:
        from google.cloud import aiplatform_v1
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"the vertex runner needs google-cloud-aiplatform, which is not installed: {_PIP_HINT}"
        ) from None
    return aiplatform_v1


def _api_exceptions() -> Any:
    from google.api_core import exceptions

    return exceptions


def token_label(launch_token: str) -> str:
    """A launch token as a Vertex label value (lower case, ``[a-z0-9_-]``, at most 63 characters)."""
    if not launch_token:
        raise ValueError("launch_token must be a non-empty string for a recoverable Vertex launch")
    return _LABEL_UNSAFE.sub("-", launch_token.lower())[:63]


def container_args(argv: Sequence[str]) -> list[str]:
    """The trainer flags of an argv: everything from the ``--job-dir=`` flag on.

    Raises:
        LaunchError: no ``--job-dir=`` flag (the controller always adds it first).
    """
    for i, arg in enumerate(argv):
        if arg.startswith(("--job-dir=", "--job_dir=")):
            return list(argv[i:])
    raise LaunchError(f"the vertex runner needs a --job-dir=<gs://...> flag in the trainer argv, but got {list(argv)}")


class VertexRunner(Runner):
    """Runs each trial as one Vertex AI custom job.

    Args:
        max_parallel_trials: Trials at once (mind the project's accelerator quota).
        project: GCP project id.
        region: Vertex region, e.g. ``us-central1``.
        image_uri: Trainer image (``<region>-docker.pkg.dev/<project>/<repo>/<image>:<tag>``).
        machine_type: Worker machine type.
        accelerator_type: e.g. ``NVIDIA_TESLA_T4`` (None: CPU only).
        accelerator_count: Accelerators per trial (needs ``accelerator_type``).
        container_command: Replaces the image's ENTRYPOINT (None: keep it).
        service_account: Service account the trials run as (None: the default).
        labels: Extra labels on every job.
        display_name_prefix: Jobs are named ``<prefix>-trial-<id>``.
        api_endpoint: Vertex API endpoint (default ``<region>-aiplatform.googleapis.com``;
            tests: ``http://127.0.0.1:<port>``).
        credentials: google-auth credentials (default: application default credentials).
        unreachable_lost_secs: A trial whose API has not answered for this long is LOST.
        clock: Monotonic clock (tests).
    """

    name = "vertex"

    def __init__(
        self,
        max_parallel_trials: int | None = None,
        *,
        project: str,
        region: str = "us-central1",
        image_uri: str,
        machine_type: str = "n1-standard-8",
        accelerator_type: str | None = None,
        accelerator_count: int = 0,
        container_command: Sequence[str] | None = None,
        service_account: str | None = None,
        labels: Mapping[str, str] | None = None,
        display_name_prefix: str = "proxy-task",
        api_endpoint: str | None = None,
        credentials: Any = None,
        unreachable_lost_secs: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_parallel_trials is None or max_parallel_trials < 1:
            raise ValueError(
                f"max_parallel_trials must be >= 1 for the vertex runner (set runner.max_parallel_trials), "
                f"but got {max_parallel_trials}"
            )
        for field_name, value in (("project", project), ("region", region), ("image_uri", image_uri)):
            if not value:
                raise ValueError(f"{field_name} is required for the vertex runner (runner.vertex.{field_name})")
        if accelerator_count < 0:
            raise ValueError(f"accelerator_count must be >= 0, but got {accelerator_count}")
        if accelerator_count > 0 and not accelerator_type:
            raise ValueError("accelerator_count > 0 needs accelerator_type (e.g. 'NVIDIA_TESLA_T4')")
        self._max_parallel = int(max_parallel_trials)
        self.project, self.region, self.image_uri = project, region, image_uri
        self._machine_type = machine_type
        self._accelerator_type = accelerator_type
        self._accelerator_count = accelerator_count if accelerator_type else 0
        self._command = list(container_command) if container_command else None
        self._service_account = service_account
        self._labels = dict(labels or {})
        self._prefix = display_name_prefix
        self.api_endpoint = api_endpoint or f"{region}-aiplatform.googleapis.com"
        self._credentials = credentials
        self._unreachable_lost = unreachable_lost_secs
        self._clock = clock
        self._client_obj: Any = None
        self._unreachable_since: dict[str, float] = {}
        self._final_logged: set[str] = set()

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def _client(self) -> Any:
        if self._client_obj is None:
            aip = _aiplatform()
            self._client_obj = aip.JobServiceClient(
                credentials=self._credentials,
                transport="rest",
                client_options={"api_endpoint": self.api_endpoint},
            )
        return self._client_obj

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run one API call; NotFound -> None; transient or auth errors -> BackendUnreachableError."""
        exc_mod = _api_exceptions()
        try:
            return fn()
        except exc_mod.NotFound:
            return None
        except (exc_mod.ServerError, exc_mod.TooManyRequests, exc_mod.Unauthenticated,
                exc_mod.PermissionDenied, exc_mod.RetryError, OSError) as exc:  # fmt: skip
            raise BackendUnreachableError(f"Vertex AI at {self.api_endpoint}: {what} failed: {exc}") from exc

    # -- launch -----------------------------------------------------------------------
    def custom_job(self, spec: TrialSpec, token: str) -> Any:
        """The ``CustomJob`` message of a trial (public so its shape can be reviewed and tested)."""
        aip = _aiplatform()
        if not spec.model_dir_uri.startswith(("gs://", "/gcs/")):
            raise LaunchError(
                f"trial {spec.trial_id}: the vertex runner needs the trial folder on Cloud Storage "
                f"(controller_dir: gs://<bucket>/...), but got {spec.model_dir_uri!r}"
            )
        output = (
            "gs://" + spec.model_dir_uri[len("/gcs/") :]
            if spec.model_dir_uri.startswith("/gcs/")
            else spec.model_dir_uri
        )
        env = {"CLOUD_ML_TRIAL_ID": spec.trial_id, "AIP_MODEL_DIR": spec.model_dir_uri, **spec.env}
        machine: dict[str, Any] = {"machine_type": self._machine_type}
        if self._accelerator_type:
            machine["accelerator_type"] = aip.AcceleratorType[self._accelerator_type]
            machine["accelerator_count"] = self._accelerator_count or 1
        container: dict[str, Any] = {
            "image_uri": self.image_uri,
            "args": container_args(spec.argv),
            "env": [{"name": k, "value": v} for k, v in env.items()],
        }
        if self._command:
            container["command"] = self._command
        job_spec: dict[str, Any] = {
            "worker_pool_specs": [{"machine_spec": machine, "replica_count": 1, "container_spec": container}],
            "base_output_directory": {"output_uri_prefix": output},
        }
        if self._service_account:
            job_spec["service_account"] = self._service_account
        labels = {**self._labels, TOKEN_LABEL: token_label(token), TRIAL_LABEL: token_label(spec.trial_id)}
        return aip.CustomJob(display_name=f"{self._prefix}-trial-{spec.trial_id}", labels=labels, job_spec=job_spec)

    def _handle(self, spec: TrialSpec, job_name: str, token: str, *, recovered: bool = False) -> TrialHandle:
        extra = {"token": token, "api_endpoint": self.api_endpoint}
        return remote_handle(spec, runner=self.name, external_id=job_name, extra=extra, recovered=recovered)

    def launch(self, spec: TrialSpec) -> TrialHandle:
        token = spec.launch_token or os.urandom(16).hex()
        try:
            job = self.custom_job(spec, token)
        except KeyError as exc:
            raise LaunchError(f"accelerator_type {self._accelerator_type!r} is not a Vertex AcceleratorType") from exc
        exc_mod = _api_exceptions()
        try:
            created = self._client().create_custom_job(parent=self.parent, custom_job=job)
        except (exc_mod.ClientError, ValueError) as exc:  # 4xx: the job was not created
            raise LaunchError(f"trial {spec.trial_id}: Vertex AI refused the job: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - outcome unknown (timeout, 5xx): look it up by label
            # If the API cannot say either, this raises BackendUnreachableError: the controller
            # stops with the launch intent on record and its resume calls ``recover``.
            found = self._find(token)
            if found is not None:
                return self._handle(spec, found, token)
            raise LaunchError(f"trial {spec.trial_id}: creating the Vertex job failed: {exc}") from exc
        handle = self._handle(spec, created.name, token)
        self._log(handle, f"vertex custom job: {created.name}\nconsole: {self._console_link(created.name)}\n")
        return handle

    # -- poll -------------------------------------------------------------------------
    def _console_link(self, job_name: str) -> str:
        job_id = job_name.rsplit("/", 1)[-1]
        return f"https://console.cloud.google.com/vertex-ai/locations/{self.region}/training/{job_id}/cpu?project={self.project}"

    @staticmethod
    def _log(handle: TrialHandle, text: str) -> None:
        if not handle.log_path:
            return
        try:
            os.makedirs(os.path.dirname(handle.log_path), exist_ok=True)
            with open(handle.log_path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError:
            pass  # the log is for people; the status is what counts

    def poll(self, handle: TrialHandle) -> PollResult:
        name = handle.external_id
        try:
            job = self._call("get", lambda: self._client().get_custom_job(name=name))
        except BackendUnreachableError as exc:
            since = self._unreachable_since.setdefault(name, self._clock())
            status = TrialStatus.LOST if self._clock() - since >= self._unreachable_lost else TrialStatus.RUNNING
            return PollResult(status, None, str(exc))
        self._unreachable_since.pop(name, None)
        if job is None:
            return PollResult(TrialStatus.LOST, None, f"Vertex AI has no job {name}")
        state = job.state.name
        if state in _RUNNING_STATES:
            return PollResult(TrialStatus.RUNNING)
        message = job.error.message if job.error and job.error.message else ""
        if name not in self._final_logged:
            self._final_logged.add(name)
            self._log(handle, f"{state}" + (f": {message}" if message else "") + "\n")
        tail = message or self.log_tail(handle)
        if state == "JOB_STATE_SUCCEEDED":
            return PollResult(TrialStatus.SUCCEEDED, 0, tail)
        if state == "JOB_STATE_CANCELLED":
            return PollResult(TrialStatus.CANCELLED, None, tail)
        match = _EXIT_CODE.search(message)
        code = int(match.group(1)) if match else None
        # FAILED, EXPIRED (never scheduled), PARTIALLY_SUCCEEDED: a failure Vertex recorded
        return PollResult(TrialStatus.FAILED, code, tail or state)

    # -- cancel / restart -------------------------------------------------------------
    def cancel(self, handle: TrialHandle, *, grace_secs: float = 10.0) -> None:
        exc_mod = _api_exceptions()
        try:
            self._call("cancel", lambda: self._client().cancel_custom_job(name=handle.external_id))
        except BackendUnreachableError:
            return  # the loop cancels again later if the trial is still running
        except exc_mod.ClientError:
            return  # already ended (400 FAILED_PRECONDITION) or gone: cancel is idempotent

    def reattach(self, handle: TrialHandle) -> bool:
        """True while the job runs; False when ended, unknown, or the API does not answer."""
        try:
            job = self._call("get", lambda: self._client().get_custom_job(name=handle.external_id))
        except BackendUnreachableError:
            return False  # poll keeps reporting RUNNING until unreachable_lost_secs
        return job is not None and job.state.name in _RUNNING_STATES

    def _find(self, token: str) -> str | None:
        """Resource name of the job labelled with ``token`` (the oldest if several), None if none."""
        label = token_label(token)
        flt = f'labels.{TOKEN_LABEL}="{label}"'
        pager = self._call(
            "list", lambda: self._client().list_custom_jobs(request={"parent": self.parent, "filter": flt})
        )
        if pager is None:
            return None
        jobs = [j for j in self._call("list", lambda: list(pager)) or [] if j.labels.get(TOKEN_LABEL) == label]
        if not jobs:
            return None
        jobs.sort(key=lambda j: (j.create_time.timestamp() if j.create_time else 0.0, j.name))
        return jobs[0].name

    def recover(self, spec: TrialSpec) -> TrialHandle | None:
        """The job a crashed controller created for ``spec.launch_token``; raises when the API does not answer."""
        if not spec.launch_token:
            return None
        found = self._find(spec.launch_token)
        return None if found is None else self._handle(spec, found, spec.launch_token, recovered=True)

    def close(self) -> None:
        self._client_obj = None
