"""Trials as Ray jobs (Ray Jobs API): one submitted job per trial, on any Ray cluster.

Why jobs and not tasks/actors: a submitted job belongs to the cluster, not to
the submitting process, so trials keep running when the controller exits and
a restarted controller finds them again by their *submission id*. The
controller talks HTTP to the cluster's dashboard
(:class:`ray.job_submission.JobSubmissionClient`); it never becomes a Ray
driver. Ray tasks/actors die with their owner (the controller), which would
break the resume contract of :mod:`controllers.runners.base`.

Mapping to the runner contract:

* ``launch``: ``submit_job(entrypoint=shlex.join(argv), submission_id=<prefix>-<launch_token>,
  runtime_env={"env_vars": ...}, entrypoint_num_cpus/gpus/memory)``. The submission
  id is unique per launch token, so Ray itself refuses a second launch of the
  same trial, and ``recover`` finds the first one.
* ``poll``: job status -> :class:`TrialStatus` (PENDING/RUNNING -> RUNNING,
  SUCCEEDED, FAILED with ``driver_exit_code``, STOPPED -> CANCELLED; a job the
  cluster no longer knows, or a dead supervisor without exit code -> LOST). The
  job's logs are copied into ``spec.log_path`` every ``log_refresh_secs`` and
  once more when the job has ended.
* ``cancel``: ``stop_job`` (SIGTERM to the entrypoint's process tree, SIGKILL
  after the cluster's ``RAY_JOB_STOP_WAIT_TIME_S``, default 3 s; ``grace_secs``
  cannot be passed through the Jobs API).

Environment of a trial: the Ray node's worker environment, then ``env_vars``
of the configured ``runtime_env``, then ``CLOUD_ML_TRIAL_ID``, ``AIP_MODEL_DIR``,
``OMP_NUM_THREADS`` (the trial's CPU count), then the spec's own ``env`` (which
wins). The working directory is the node's (one-node cluster: where it was
started) unless ``runtime_env`` names a ``working_dir``. On a multi-node
cluster, ``controller_dir`` must be storage that every node reaches (``gs://``
or a shared file system).
"""

from __future__ import annotations

import copy
import math
import os
import re
import shlex
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controllers.errors import BackendUnreachableError
from controllers.runners.base import LaunchError, PollResult, Runner, TrialHandle, TrialSpec, TrialStatus, remote_handle
from proxy_task_utils.errors import MissingExtraError

__all__ = ["RayRunner", "RayOptions", "BackendUnreachableError", "submission_id_for"]

_PIP_HINT = "pip install 'proxy-task-utils[ray]'"
#: Jobs whose supervisor died with the node: the entrypoint's exit code is unknown.
_LOST_ERROR_TYPES = frozenset({"JOB_SUPERVISOR_ACTOR_DIED"})
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class RayOptions(BaseModel):
    """The ``runner.ray`` config section: keyword arguments of :class:`RayRunner` (see it)."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = None
    num_cpus_per_trial: float | None = Field(default=1.0, ge=0)
    num_gpus_per_trial: float | None = Field(default=None, ge=0)
    memory_per_trial_bytes: int | None = Field(default=None, ge=0)
    runtime_env: dict[str, Any] | None = None
    submission_id_prefix: str = Field(default="proxy-task", pattern=r"^[A-Za-z0-9_.-]+$")
    log_refresh_secs: float | None = Field(default=30.0, ge=0)
    unreachable_lost_secs: float = Field(default=600.0, gt=0)


def _job_submission() -> Any:
    try:
        from ray import job_submission
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingExtraError(f"the ray runner needs Ray, which is not installed: {_PIP_HINT}") from None
    return job_submission


def submission_id_for(launch_token: str, *, prefix: str = "proxy-task") -> str:
    """The Ray submission id of a launch: ``<prefix>-<token>`` with unsafe characters as ``_``."""
    if not launch_token:
        raise ValueError("launch_token must be a non-empty string for a recoverable Ray launch")
    return _ID_UNSAFE.sub("_", f"{prefix}-{launch_token}")


def _is_not_found(exc: BaseException) -> bool:
    text = str(exc)
    return "404" in text or "does not exist" in text


def _write_atomic(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".log.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class RayRunner(Runner):
    """Runs each trial as a Ray job on the cluster whose dashboard is at ``address``.

    Args:
        max_parallel_trials: Trials at once (jobs beyond the cluster's free
            resources wait in PENDING, which the job loop counts as running).
        address: Dashboard address, e.g. ``http://127.0.0.1:8265`` (default:
            env ``RAY_ADDRESS``, else that local default).
        num_cpus_per_trial: ``entrypoint_num_cpus`` reserved per trial (None: none).
        num_gpus_per_trial: ``entrypoint_num_gpus`` per trial (None: none).
        memory_per_trial_bytes: ``entrypoint_memory`` per trial (None: none).
        runtime_env: Extra Ray runtime env (``working_dir``, ``pip``, ``env_vars``...).
        submission_id_prefix: Prefix of the submission ids (one per launch token).
        log_refresh_secs: How often a running trial's log is copied into its log
            file (None: only when it has ended).
        unreachable_lost_secs: A trial whose cluster has not answered for this
            long is reported LOST (until then, RUNNING: a network blip is not a failure).
        headers: Extra HTTP headers for the dashboard (e.g. a proxy's auth).
        clock: Monotonic clock (tests).
    """

    name = "ray"

    def __init__(
        self,
        max_parallel_trials: int | None = None,
        *,
        address: str | None = None,
        num_cpus_per_trial: float | None = 1.0,
        num_gpus_per_trial: float | None = None,
        memory_per_trial_bytes: int | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        submission_id_prefix: str = "proxy-task",
        log_refresh_secs: float | None = 30.0,
        unreachable_lost_secs: float = 600.0,
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_parallel_trials is None or max_parallel_trials < 1:
            raise ValueError(
                f"max_parallel_trials must be >= 1 for the ray runner (set runner.max_parallel_trials), "
                f"but got {max_parallel_trials}"
            )
        for field_name, value in (
            ("num_cpus_per_trial", num_cpus_per_trial),
            ("num_gpus_per_trial", num_gpus_per_trial),
        ):
            if value is not None and value < 0:
                raise ValueError(f"{field_name} must be >= 0, but got {value}")
        if runtime_env is not None and not isinstance(runtime_env.get("env_vars", {}), Mapping):
            raise ValueError("runtime_env.env_vars must be a mapping of names to strings")
        self._max_parallel = int(max_parallel_trials)
        self.address = address or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265"
        self._num_cpus = num_cpus_per_trial
        self._num_gpus = num_gpus_per_trial
        self._memory = memory_per_trial_bytes
        self._runtime_env = dict(runtime_env or {})
        self._prefix = submission_id_prefix
        self._log_refresh = log_refresh_secs
        self._unreachable_lost = unreachable_lost_secs
        self._headers = dict(headers or {})
        self._clock = clock
        self._client_obj: Any = None
        self._last_log_fetch: dict[str, float] = {}
        self._final_logs: set[str] = set()
        self._unreachable_since: dict[str, float] = {}

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    # -- client -------------------------------------------------------------------
    def _client(self) -> Any:
        """The dashboard client, created on first use (its constructor already calls the cluster)."""
        if self._client_obj is None:
            js = _job_submission()
            try:
                self._client_obj = js.JobSubmissionClient(self.address, headers=self._headers or None)
            except (ConnectionError, OSError, RuntimeError) as exc:
                raise BackendUnreachableError(
                    f"cannot reach the Ray dashboard at {self.address} (runner.ray.address): {exc}"
                ) from exc
        return self._client_obj

    def _job_info(self, submission_id: str) -> Any | None:
        """The job's details, None when the cluster does not know it; raises when unreachable."""
        try:
            return self._client().get_job_info(submission_id)
        except BackendUnreachableError:
            raise
        except OSError as exc:
            raise BackendUnreachableError(f"Ray dashboard at {self.address} did not answer: {exc}") from exc
        except RuntimeError as exc:
            if _is_not_found(exc):
                return None
            raise BackendUnreachableError(f"Ray dashboard at {self.address} failed: {exc}") from exc

    # -- launch ---------------------------------------------------------------------
    def _env(self, spec: TrialSpec) -> dict[str, str]:
        env = {str(k): str(v) for k, v in dict(self._runtime_env.get("env_vars") or {}).items()}
        env["CLOUD_ML_TRIAL_ID"] = spec.trial_id
        env["AIP_MODEL_DIR"] = spec.model_dir_uri
        env["OMP_NUM_THREADS"] = str(max(1, math.floor(self._num_cpus or 1)))
        env.update(spec.env)
        return env

    def _handle(self, spec: TrialSpec, submission_id: str, *, recovered: bool = False) -> TrialHandle:
        extra = {"address": self.address, "token": spec.launch_token}
        return remote_handle(spec, runner=self.name, external_id=submission_id, extra=extra, recovered=recovered)

    def launch(self, spec: TrialSpec) -> TrialHandle:
        if not spec.argv:
            raise LaunchError(f"trial {spec.trial_id}: empty command")
        token = spec.launch_token or uuid.uuid4().hex
        submission_id = submission_id_for(token, prefix=self._prefix)
        runtime_env = copy.deepcopy(self._runtime_env)
        runtime_env["env_vars"] = self._env(spec)
        metadata = {"proxy_task_trial_id": spec.trial_id, "proxy_task_launch_token": token}
        kwargs: dict[str, Any] = {}
        if self._num_cpus is not None:
            kwargs["entrypoint_num_cpus"] = self._num_cpus
        if self._num_gpus is not None:
            kwargs["entrypoint_num_gpus"] = self._num_gpus
        if self._memory is not None:
            kwargs["entrypoint_memory"] = self._memory
        if spec.log_path:
            os.makedirs(os.path.dirname(os.path.abspath(spec.log_path)), exist_ok=True)
        try:
            client = self._client()
        except BackendUnreachableError as exc:  # nothing was sent: the trial did not start
            raise LaunchError(f"trial {spec.trial_id}: {exc}") from exc
        try:
            client.submit_job(
                entrypoint=shlex.join(spec.argv),
                submission_id=submission_id,
                runtime_env=runtime_env,
                metadata=metadata,
                **kwargs,
            )
        except Exception as exc:  # noqa: BLE001 - a refusal, or a failure after the job was created
            # Outcome unknown: look the job up. If the cluster cannot say, this raises
            # BackendUnreachableError (the controller stops; its resume calls ``recover``).
            info = self._job_info(submission_id)
            if info is not None and (info.metadata or {}).get("proxy_task_launch_token") == token:
                return self._handle(spec, submission_id)  # it was created, and it is ours
            raise LaunchError(f"trial {spec.trial_id}: Ray at {self.address} refused the job: {exc}") from exc
        return self._handle(spec, submission_id)

    # -- poll -----------------------------------------------------------------------
    def _copy_logs(self, handle: TrialHandle, *, final: bool) -> str | None:
        """Copy the job's whole log into ``handle.log_path`` (atomic); returns the text, None on error."""
        sid = handle.external_id
        try:
            text = self._client().get_job_logs(sid)
        except Exception:  # noqa: BLE001 - logs are best effort; the status is what counts
            return None
        if handle.log_path:
            _write_atomic(handle.log_path, text)
        self._last_log_fetch[sid] = self._clock()
        if final:
            self._final_logs.add(sid)
        return text

    def poll(self, handle: TrialHandle) -> PollResult:
        sid = handle.external_id
        try:
            info = self._job_info(sid)
        except BackendUnreachableError as exc:
            since = self._unreachable_since.setdefault(sid, self._clock())
            if self._clock() - since >= self._unreachable_lost:
                return PollResult(TrialStatus.LOST, None, str(exc))
            return PollResult(TrialStatus.RUNNING, None, str(exc))
        self._unreachable_since.pop(sid, None)
        if info is None:
            return PollResult(TrialStatus.LOST, None, f"the Ray cluster at {self.address} has no job {sid}")
        status = _value(info.status)
        if status in ("PENDING", "RUNNING"):
            last = self._last_log_fetch.get(sid)
            if self._log_refresh is not None and (last is None or self._clock() - last >= self._log_refresh):
                self._copy_logs(handle, final=False)
            return PollResult(TrialStatus.RUNNING)
        text = None
        if sid not in self._final_logs:
            text = self._copy_logs(handle, final=True)
        tail = self.log_tail(handle) if handle.log_path else _last_lines(text or "")
        code = info.driver_exit_code
        if status == "SUCCEEDED":
            return PollResult(TrialStatus.SUCCEEDED, 0 if code is None else int(code), tail)
        if status == "STOPPED":
            return PollResult(TrialStatus.CANCELLED, None if code is None else int(code), tail)
        if code is not None:
            return PollResult(TrialStatus.FAILED, int(code), tail)
        # no exit code: the entrypoint never ran (runtime env, scheduling) or its node died
        message = f"Ray job {sid} {status} ({_value(info.error_type)}): {info.message}"
        tail = (tail + "\n" + message).strip() if tail else message
        lost = _value(info.error_type) in _LOST_ERROR_TYPES
        return PollResult(TrialStatus.LOST if lost else TrialStatus.FAILED, None, tail)

    # -- cancel / restart -----------------------------------------------------------
    def cancel(self, handle: TrialHandle, *, grace_secs: float = 10.0) -> None:
        """``stop_job``; Ray sends SIGTERM and escalates to SIGKILL itself (cluster setting)."""
        try:
            self._client().stop_job(handle.external_id)
        except BackendUnreachableError:
            return  # the loop cancels again on a later poll if the trial is still running
        except Exception:  # noqa: BLE001 - ended or vanished jobs: cancel is idempotent
            return

    def reattach(self, handle: TrialHandle) -> bool:
        """True while the job runs; False when ended, unknown, not ours, or the cluster does not answer."""
        try:
            info = self._job_info(handle.external_id)
        except BackendUnreachableError:
            return False  # poll keeps reporting RUNNING until unreachable_lost_secs
        if info is None:
            return False
        if (info.metadata or {}).get("proxy_task_trial_id", handle.trial_id) != handle.trial_id:
            return False  # a job with that id that another controller started
        return _value(info.status) in ("PENDING", "RUNNING")

    def recover(self, spec: TrialSpec) -> TrialHandle | None:
        """The job a crashed controller submitted for ``spec.launch_token`` (running or ended).

        Raises :class:`BackendUnreachableError` rather than answer "no trace" when
        the cluster does not answer (a wrong None would launch the trial twice).
        """
        if not spec.launch_token:
            return None
        sid = submission_id_for(spec.launch_token, prefix=self._prefix)
        info = self._job_info(sid)
        if info is None:
            return None
        if (info.metadata or {}).get("proxy_task_launch_token") != spec.launch_token:
            return None
        return self._handle(spec, sid, recovered=True)

    def close(self) -> None:
        """Forget the client; the jobs keep running on the cluster."""
        self._client_obj = None


def _last_lines(text: str, max_lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-max_lines:])


def _value(x: Any) -> str:
    """An enum's value (Ray's str-enums print as ``Name.VALUE`` on some Pythons)."""
    return str(getattr(x, "value", x))
