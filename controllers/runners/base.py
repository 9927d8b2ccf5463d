"""The runner interface: launch, poll and cancel one trial process, wherever it runs.

A runner knows nothing about proxy tasks: it starts an argv list with an
environment, reports whether it is still running and how it ended, and stops
it. The job loop (:mod:`controllers.engine.jobs`) is its only caller.

Contract (every runner):

* Called from one controller thread; instances need not be thread-safe.
* ``launch`` is *not* idempotent: calling it twice starts two processes. The
  job loop therefore saves a launch intent (with ``spec.launch_token``) in the
  state file *before* calling it, and after a controller crash asks
  ``recover(spec)`` whether that launch happened before launching again.
* ``poll`` and ``cancel`` are idempotent and never raise for a trial that has
  ended or vanished (``poll`` returns ``LOST`` for a process that is gone
  without a recorded exit code).
* ``TrialHandle`` is a JSON-able record: the job loop stores
  ``handle.to_dict()`` in the state file and a restarted controller calls
  ``reattach(TrialHandle.from_dict(...))`` before polling it.
* Errors: ``launch`` raises :class:`LaunchError` when the process could not be
  started (bad executable, no permission); the loop records that as a failed
  trial and goes on.
"""

from __future__ import annotations

import abc
import enum
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from controllers.errors import LaunchError

__all__ = ["remote_handle", "TrialSpec", "TrialHandle", "TrialStatus", "PollResult", "Runner", "LaunchError"]


@dataclass(frozen=True)
class TrialSpec:
    """Everything needed to start one trial.

    Attributes:
        trial_id: Decimal trial id ("1".."N"), also ``CLOUD_ML_TRIAL_ID``.
        job_dir_uri: The job folder ``<controller_dir>/<job_name>/nas/search``.
        model_dir_uri: The trial folder ``<job_dir_uri>/<trial_id>`` (``--job-dir``, ``AIP_MODEL_DIR``).
        argv: The full command (trainer prefix + flags); never a shell string.
        env: Extra environment variables (added to the runner's own environment).
        log_path: Local file that receives stdout and stderr; the runner keeps its
            bookkeeping files (pid, exit code) beside it.
        launch_token: A unique string saved in the state before the launch, so a
            restarted controller can find the process that a crashed one started.
    """

    trial_id: str
    job_dir_uri: str
    model_dir_uri: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    log_path: str = ""
    launch_token: str = ""


@dataclass
class TrialHandle:
    """A launched trial, as stored in the state file (JSON-able).

    Attributes:
        trial_id: The trial id.
        runner: Name of the runner that launched it ("local", ...).
        external_id: Runner-specific id (local: the pid as a string).
        pgid: Process group id (local runner) or None.
        start_ticks: Process start time in 1/100 s since boot (``controllers.runners.process``
            ); tells a recycled pid from ours. None when unknown.
        started_at: Wall-clock launch time, for display only (never compared).
        argv: The launched command.
        log_path: Where the output goes.
        extra: Runner-specific JSON-able fields.
    """

    trial_id: str
    runner: str
    external_id: str
    pgid: int | None = None
    start_ticks: int | None = None
    started_at: float = 0.0
    argv: list[str] = field(default_factory=list)
    log_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> TrialHandle:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in obj.items() if k in known})


def remote_handle(
    spec: TrialSpec, *, runner: str, external_id: str, extra: dict[str, Any], recovered: bool = False
) -> TrialHandle:
    """The handle of a trial that runs on a cluster (no local pid); ``recovered`` marks one found again.

    A recovered trial's launch time is unknown (``started_at`` 0.0); it is display-only anyway.
    """
    return TrialHandle(
        trial_id=spec.trial_id,
        runner=runner,
        external_id=external_id,
        started_at=0.0 if recovered else time.time(),
        argv=list(spec.argv),
        log_path=os.path.abspath(spec.log_path) if spec.log_path else "",
        extra={**extra, "recovered": True} if recovered else dict(extra),
    )


class TrialStatus(str, enum.Enum):
    """Where a trial process stands. Only ``RUNNING`` is not final."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"  # exit code 0
    FAILED = "failed"  # non-zero exit code or killed by a signal we did not send
    CANCELLED = "cancelled"  # stopped by ``cancel``
    LOST = "lost"  # the process is gone and its exit code is unknown

    @property
    def is_final(self) -> bool:
        return self is not TrialStatus.RUNNING


@dataclass(frozen=True)
class PollResult:
    """One look at a trial: status, exit code (None while running or unknown), last log lines."""

    status: TrialStatus
    exit_code: int | None = None
    log_tail: str = ""


class Runner(abc.ABC):
    """Starts and watches trial processes (see the module docstring for the contract)."""

    #: Short name stored in handles ("local", "ray", "vertex").
    name: str = "runner"

    @property
    @abc.abstractmethod
    def max_parallel(self) -> int:
        """How many trials this runner can run at once (the job loop never exceeds it)."""

    @abc.abstractmethod
    def launch(self, spec: TrialSpec) -> TrialHandle:
        """Start the trial; raises :class:`LaunchError` if it could not start."""

    @abc.abstractmethod
    def poll(self, handle: TrialHandle) -> PollResult:
        """Current status of a launched trial (idempotent, cheap)."""

    @abc.abstractmethod
    def cancel(self, handle: TrialHandle, *, grace_secs: float = 10.0) -> None:
        """Ask the trial to stop, and kill it if it is still alive after ``grace_secs``.

        Returns without waiting the grace period when the runner can enforce it
        later (the local runner kills on a later ``poll``); idempotent.
        """

    @abc.abstractmethod
    def reattach(self, handle: TrialHandle) -> bool:
        """After a controller restart: take over watching a trial; False if it is not ours/alive.

        A False return is not an error: ``poll`` then reports the recorded exit
        code (``SUCCEEDED``/``FAILED``) or ``LOST``.
        """

    def recover(self, spec: TrialSpec) -> TrialHandle | None:
        """Whether a launch of ``spec`` (same ``launch_token``) happened before a crash.

        Returns a handle for the process (running or ended) that the crashed
        controller started, or None if there is no trace of it (launch again).
        The default knows nothing and returns None.
        """
        return None

    def log_tail(self, spec_or_handle: TrialSpec | TrialHandle, *, max_lines: int = 40) -> str:
        """The last lines of the trial's log ("" when there is no log)."""
        path = spec_or_handle.log_path
        if not path:
            return ""
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 16384))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-max_lines:])

    def wait_for_exit(self, timeout: float) -> bool | None:
        """Block up to ``timeout`` seconds, returning early when one of this runner's trials ends.

        The job loop calls it instead of sleeping between polls, so that a finished trial's slot
        is refilled at once. Returns True when a trial ended (each end is reported once), False
        when the timeout passed, and None, at once, when this runner cannot tell (the caller then
        sleeps itself); the default cannot.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release runner resources when the controller exits (trials keep running)."""
