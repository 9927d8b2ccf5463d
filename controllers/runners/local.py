"""Trials as local subprocesses (the default runner).

Each trial runs as ``python -s .../controllers/runners/_wrap.py ... -- <argv>`` in a
new session (its own process group), never through a shell. The wrapper
writes ``<log>.pid.json`` (pid, start time, launch token) before starting the
trainer and ``<log>.exit.json`` when it ends, so a controller restarted after
a crash can re-attach to running trials (pid + its start time, so a
recycled pid is not mistaken for ours) and still learn the exit codes of
trials that ended while it was down.

Environment given to every trial: the controller's environment, then
``CLOUD_ML_TRIAL_ID``, ``AIP_MODEL_DIR``, ``OMP_NUM_THREADS=1`` (so parallel
trials do not oversubscribe the cores), ``CLOUD_ML_HP_METRIC_FILE=<log
folder>/hypertune.metrics``, then the spec's own ``env`` (which wins).

Cancel sends SIGTERM to the process group and SIGKILL once ``grace_secs``
have passed (checked on later ``poll`` calls, so ``cancel`` never blocks).

With ``preload`` (``runner.preload`` in the config) trials are forked from a server that has
imported those modules once (:mod:`controllers.runners.warm`); they are the same kind of
process (own group, log, pid and exit files) and are watched like re-attached trials.
:meth:`LocalRunner.wait_for_exit` wakes the job loop when a trial process ends (Linux pidfds).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from controllers.runners.base import LaunchError, PollResult, Runner, TrialHandle, TrialSpec, TrialStatus
from controllers.runners.process import find_processes, pid_alive, process_start_ticks
from controllers.runners.warm import WarmStarter, warm_argv

__all__ = ["LocalRunner", "trial_env"]

_CANCEL_SUFFIX = ".cancel"
# Run by path, not ``-m``: the wrapper then imports no package (a faster start per trial).
_WRAP_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_wrap.py")


def trial_env(spec: TrialSpec, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a trial process (see the module docstring for the order)."""
    env = dict(base)
    env["CLOUD_ML_TRIAL_ID"] = spec.trial_id
    env["AIP_MODEL_DIR"] = spec.model_dir_uri
    env["OMP_NUM_THREADS"] = "1"
    env["CLOUD_ML_HP_METRIC_FILE"] = os.path.join(os.path.dirname(os.path.abspath(spec.log_path)), "hypertune.metrics")
    env.update(spec.env)
    return env


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def resolve_python(argv: list[str]) -> list[str]:
    """A trainer command starting with ``python``/``python3`` runs on the controller's interpreter.

    Locally that is what a user in a virtual environment means: the trainer sees
    the same installed packages as the controller, whatever ``PATH`` says.
    """
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return list(argv)


class LocalRunner(Runner):
    """Runs trials as subprocesses of this machine.

    Args:
        max_parallel_trials: Trials at once (default: the number of CPUs).
        python: Interpreter for the wrapper (default: this one).
        base_env: Environment the trials inherit (default: ``os.environ``).
        clock: Monotonic clock for the kill deadline (tests).
        preload: Modules to import once in a warm-start server that forks the trials
            (e.g. ``["torch", "examples.pytorch.trainer"]``); empty: every trial starts cold.
    """

    name = "local"

    def __init__(
        self,
        max_parallel_trials: int | None = None,
        *,
        python: str = sys.executable,
        base_env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        preload: Sequence[str] = (),
    ) -> None:
        n = max_parallel_trials if max_parallel_trials is not None else (os.cpu_count() or 1)
        if n < 1:
            raise ValueError(f"max_parallel_trials must be >= 1, but got {n}")
        self._max_parallel = n
        self._python = python
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._clock = clock
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._kill_at: dict[int, float] = {}
        self._warm = WarmStarter(preload, python=python, env=self._base_env) if preload else None
        self._watched: set[int] = set()  # pids of trials not yet seen ending
        self._woke: set[int] = set()  # pids whose end already woke wait_for_exit once
        self._pidfds: dict[int, int] = {}

    @property
    def max_parallel(self) -> int:
        return self._max_parallel

    # -- files beside the log -----------------------------------------------------
    @staticmethod
    def _pid_file(log_path: str) -> str:
        return log_path + ".pid.json"

    @staticmethod
    def _exit_file(log_path: str) -> str:
        return log_path + ".exit.json"

    # -- launch ---------------------------------------------------------------------
    def launch(self, spec: TrialSpec) -> TrialHandle:
        if not spec.log_path:
            raise LaunchError(f"trial {spec.trial_id}: the local runner needs a log_path")
        if not spec.argv:
            raise LaunchError(f"trial {spec.trial_id}: empty command")
        log_path = os.path.abspath(spec.log_path)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        for stale in (self._pid_file(log_path), self._exit_file(log_path), log_path + _CANCEL_SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
        trainer_argv = resolve_python(spec.argv)
        env = trial_env(spec, self._base_env)
        if self._warm is not None and warm_argv(trainer_argv, self._python):
            pid = self._warm.fork({
                "trial_id": spec.trial_id, "argv": trainer_argv, "env": env, "cwd": os.getcwd(),
                "log_path": log_path, "pid_file": self._pid_file(log_path),
                "exit_file": self._exit_file(log_path), "token": spec.launch_token or "-",
            })  # fmt: skip
            if pid is not None:
                self._watched.add(pid)
                return TrialHandle(
                    trial_id=spec.trial_id, runner=self.name, external_id=str(pid), pgid=pid,
                    start_ticks=process_start_ticks(pid), started_at=time.time(), argv=list(spec.argv),
                    log_path=log_path, extra={"token": spec.launch_token, "warm": True},
                )  # fmt: skip
        argv = [
            self._python, "-s", _WRAP_SCRIPT,
            "--token", spec.launch_token or "-",
            "--pid-file", self._pid_file(log_path),
            "--exit-file", self._exit_file(log_path),
            "--", *trainer_argv,
        ]  # fmt: skip
        try:
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True, close_fds=True,
                )  # fmt: skip
        except OSError as exc:
            raise LaunchError(f"trial {spec.trial_id}: cannot start {argv[0]}: {exc}") from exc
        self._children[proc.pid] = proc
        self._watched.add(proc.pid)
        return TrialHandle(
            trial_id=spec.trial_id,
            runner=self.name,
            external_id=str(proc.pid),
            pgid=proc.pid,
            start_ticks=process_start_ticks(proc.pid),
            started_at=time.time(),
            argv=list(spec.argv),
            log_path=log_path,
            extra={"token": spec.launch_token},
        )

    # -- poll -----------------------------------------------------------------------
    def poll(self, handle: TrialHandle) -> PollResult:
        pid = int(handle.external_id)
        child = self._children.get(pid)
        if child is not None:
            running = child.poll() is None
        else:
            running = pid_alive(pid, handle.start_ticks)
        if running:
            deadline = self._kill_at.get(pid)
            if deadline is not None and self._clock() >= deadline:
                self._signal(handle, signal.SIGKILL)
            return PollResult(TrialStatus.RUNNING)
        self._children.pop(pid, None)
        self._kill_at.pop(pid, None)
        self._unwatch(pid)
        cancelled = os.path.exists(handle.log_path + _CANCEL_SUFFIX)
        record = _read_json(self._exit_file(handle.log_path))
        tail = self.log_tail(handle)
        if record is not None and isinstance(record.get("exit_code"), int):
            code = int(record["exit_code"])
            if code == 0:
                return PollResult(TrialStatus.SUCCEEDED, 0, tail)
            return PollResult(TrialStatus.CANCELLED if cancelled else TrialStatus.FAILED, code, tail)
        if child is not None and child.returncode is not None and child.returncode != 0:
            # the wrapper itself died (killed with its group) before recording the trainer's code
            status = TrialStatus.CANCELLED if cancelled else TrialStatus.FAILED
            return PollResult(status, child.returncode, tail)
        return PollResult(TrialStatus.CANCELLED if cancelled else TrialStatus.LOST, None, tail)

    # -- cancel ---------------------------------------------------------------------
    def _signal(self, handle: TrialHandle, sig: int) -> None:
        pid = int(handle.external_id)
        pgid = handle.pgid if handle.pgid is not None else pid
        if not pid_alive(pid, handle.start_ticks) and pid not in self._children:
            return  # gone, or a recycled pid that is not ours: never signal it
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    def cancel(self, handle: TrialHandle, *, grace_secs: float = 10.0) -> None:
        pid = int(handle.external_id)
        with contextlib.suppress(OSError):
            with open(handle.log_path + _CANCEL_SUFFIX, "w", encoding="utf-8") as f:
                f.write("cancelled by the controller\n")
        if pid in self._kill_at:
            return  # already cancelling
        self._signal(handle, signal.SIGTERM if grace_secs > 0 else signal.SIGKILL)
        self._kill_at[pid] = self._clock() + grace_secs

    # -- restart --------------------------------------------------------------------
    def reattach(self, handle: TrialHandle) -> bool:
        pid = int(handle.external_id)
        if pid in self._children:
            return True
        alive = pid_alive(pid, handle.start_ticks)
        if alive:
            self._watched.add(pid)
        return alive

    # -- waiting --------------------------------------------------------------------
    def _unwatch(self, pid: int) -> None:
        self._watched.discard(pid)
        self._woke.discard(pid)
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def wait_for_exit(self, timeout: float) -> bool | None:
        if not hasattr(os, "pidfd_open"):
            return None  # not Linux >= 5.3: the job loop sleeps its poll interval
        fds: dict[int, int] = {}
        for pid in sorted(self._watched - self._woke):
            fd = self._pidfds.get(pid)
            if fd is None:
                try:
                    fd = self._pidfds[pid] = os.pidfd_open(pid)
                except OSError:  # already gone: that is an end to report now
                    self._woke.add(pid)
                    return True
            fds[fd] = pid
        if not fds:
            return None
        ready, _, _ = select.select(list(fds), [], [], max(0.0, timeout))
        self._woke.update(fds[fd] for fd in ready)
        return bool(ready)

    def recover(self, spec: TrialSpec) -> TrialHandle | None:
        if not spec.log_path:
            return None
        log_path = os.path.abspath(spec.log_path)
        record = _read_json(self._pid_file(log_path))
        if record is not None and record.get("token") in (spec.launch_token or "-",):
            pid = int(record["pid"])
            ticks = record.get("start_ticks")
        else:
            found = _find_by_token(spec.launch_token) if spec.launch_token else None
            if found is None:
                return None
            pid, ticks = found
        return TrialHandle(
            trial_id=spec.trial_id,
            runner=self.name,
            external_id=str(pid),
            pgid=pid,
            start_ticks=ticks if isinstance(ticks, int) else None,
            started_at=0.0,
            argv=list(spec.argv),
            log_path=log_path,
            extra={"token": spec.launch_token, "recovered": True},
        )

    def close(self) -> None:
        """Forget the children; they keep running (a restarted controller re-attaches)."""
        self._children.clear()
        for pid in list(self._pidfds):
            self._unwatch(pid)
        self._watched.clear()
        if self._warm is not None:
            self._warm.close()


def _find_by_token(token: str) -> tuple[int, int | None] | None:
    """A wrapper process started with ``--token <token>`` that has not written its pid file yet."""
    found = find_processes(["--token", token, _WRAP_SCRIPT])
    return found[0] if found else None
