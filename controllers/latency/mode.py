"""The controllers' side of ``latency: {mode: ...}``: worker lifecycle and reading a trial's latency.

Model selection and the search controller both do, after taking the lease and
before their first launch (a resumed run too)::

    with latency_workers(config) as workers:
        ... launch and monitor trials ...

which removes a stale ``controller_finished.json`` (a resumed run's workers
must not exit at once), starts the local worker processes when the config says
so, and at the end (success, failure, abort, Ctrl-C; not a lost lease: the folder is
then another controller's) writes the marker, waits
``latency.exit_timeout_secs`` for the workers to exit and stops the rest.

:func:`trial_latency` reads a trial's latency from the source the mode names,
so a reference and its proxies are always read the same way.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Iterator

from controllers.config import ControllerConfig
from controllers.errors import LeaseLostError
from controllers.latency.worker import (
    clear_controller_finished,
    mark_controller_finished,
    read_trial_latency,
    start_local_workers,
)
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ProtocolError, StorageError
from proxy_task_utils.storage import Storage, open_storage

__all__ = ["latency_workers", "trial_latency", "missing_latency_hint", "stop_workers"]

logger = logging.getLogger("controllers.latency.mode")

_TERMINATE_GRACE_SECS = 10.0


def trial_latency(trial: Storage, mode: str) -> tuple[float | None, str | None]:
    """``(latency in ms, problem)`` of one trial read the way ``mode`` says.

    A malformed file gives ``(None, why)``: the caller records the reason and
    treats the latency as missing (never a guessed number). A missing file gives
    ``(None, None)``. Only values >= 0 count (the trainer's -1 means "none").
    """
    try:
        value = read_trial_latency(trial, mode)
    except (ProtocolError, StorageError) as exc:
        return None, str(exc)
    if value is None or not value >= 0.0:  # also drops NaN
        return None, None
    return value, None


def missing_latency_hint(trial: Storage, mode: str) -> str:
    """Why a finished trial has no latency in ``mode`` (for the recorded reasons)."""
    if mode == "worker":
        return (
            f"no {trial.child_uri(p.MODEL_LATENCY_FILE)}: the trainer did not export its model for the latency "
            "worker (give it its --latency_mode=worker flag in trainer.args) or no worker answered"
        )
    return (
        f"no latency in {trial.child_uri(p.TRIAL_TRAINING_METRICS_FILE)}: the trainer did not call "
        "update_trial_training_latency_metric"
    )


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout_secs: float) -> list[int | None]:
    """Wait up to ``timeout_secs`` (monotonic) for the workers, then SIGTERM, then SIGKILL; their exit codes."""
    deadline = time.monotonic() + timeout_secs
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    late = [proc for proc in procs if proc.poll() is None]
    for proc in late:
        logger.warning("latency worker pid %d did not exit within %g s: stopping it", proc.pid, timeout_secs)
        proc.terminate()  # the worker finishes the model it measures, then exits
    for proc in late:
        try:
            proc.wait(timeout=_TERMINATE_GRACE_SECS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return [proc.returncode for proc in procs]


@contextlib.contextmanager
def latency_workers(config: ControllerConfig) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The latency workers of one controller run (see the module docstring); yields the local processes.

    Call it holding the controller's lease. Outside ``latency.mode: worker`` it
    does nothing. The marker also tells workers started by hand on other machines to exit.
    """
    lat = config.latency
    if lat.mode != "worker":
        yield []
        return
    storage = open_storage(config.controller_dir)
    clear_controller_finished(storage)
    procs: list[subprocess.Popen[bytes]] = []
    reason: str | None = "finished"
    try:
        if lat.starts_local_workers(config.controller_dir):
            procs = start_local_workers(
                storage.uri,
                lat.num_workers,
                device=lat.device,
                # the workers stop when this controller's lease stops beating (a killed controller)
                extra_args=["--controller-timeout-secs", f"{config.timeouts.lease_timeout_secs:g}", *lat.worker_args],
                log_dir=config.runner.log_dir_for(config.controller_dir),
            )
            logger.info("started %d latency worker(s) on %s: pids %s", len(procs), lat.device, [w.pid for w in procs])
        else:
            logger.warning(
                "latency.mode is worker: start the latency workers on the measuring machines: "
                "proxy-task latency-worker --watch %s --workers %d --worker-id K --device %s",
                storage.uri,
                lat.num_workers,
                lat.device,
            )
        yield procs
    except LeaseLostError:
        reason = None  # the folder is another controller's now: its workers serve it, write nothing
        raise
    except BaseException as exc:
        reason = f"failed: {type(exc).__name__}: {exc}"[:500]
        raise
    finally:
        try:
            if reason is not None:
                mark_controller_finished(storage, reason=reason)
        except StorageError as exc:  # the workers must still be stopped
            logger.error("cannot write the controller_finished marker in %s: %s", storage.uri, exc)
        finally:
            if procs:
                stop_workers(procs, lat.exit_timeout_secs)
