"""The proxy-task protocol around a user's own training loop (PyTorch or any other).

A loop written against the protocol must get a handful of details right: stop
checks before each cycle with ``global_step - 1``, cycles aligned to absolute
steps so that a resumed run records the same points, NaN handled as
``failed_with_nan_error`` rather than a crash or a bogus metric, and a
``success`` status also after an early stop. :class:`ProxyTaskLoop` does that::

    loop = ProxyTaskLoop(model_dir, total_steps=600, cycle_steps=100)
    with loop:
        while not loop.should_stop(step):
            begin, end = step, loop.cycle_end(step)
            ...train steps begin..end, loop.check_loss(loss)...
            step = end + 1
            loop.report_cycle(accuracy, begin, end, train_secs)
    sys.exit(loop.exit_code)

The module imports no framework; it is named for the PyTorch example that uses it.
"""

from __future__ import annotations

import logging
import math
from types import TracebackType

import proxy_task_utils as ptu
from proxy_task_utils import protocol as p
from proxy_task_utils.errors import ConfigurationError, TrainingDivergedError

__all__ = ["ProxyTaskLoop", "TrainingDivergedError"]

logger = logging.getLogger("proxy_task_utils")


class ProxyTaskLoop:
    """Cycle bookkeeping, stop checks, metrics and job status for one trial.

    Args:
        model_dir: the trial folder (local path or ``gs://``).
        total_steps: the run's full step count (100 % of training).
        cycle_steps: steps per train+eval cycle; cycles end at multiples of it
            (and at ``total_steps``), whatever step a resumed run starts from.
        min_check_interval_secs: throttle for stop checks (None = library default).

    As a context manager it writes ``job_status.json`` on exit: ``success``
    (also after an early stop), ``failed_with_nan_error`` for
    :class:`TrainingDivergedError` (swallowed, ``exit_code`` 1) and ``failed``
    for any other exception (re-raised).
    """

    def __init__(
        self,
        model_dir: str,
        total_steps: int,
        cycle_steps: int,
        *,
        min_check_interval_secs: float | None = None,
    ) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ConfigurationError(f"total_steps must be an integer >= 1, but got {total_steps!r}")
        if isinstance(cycle_steps, bool) or not isinstance(cycle_steps, int) or cycle_steps < 1:
            raise ConfigurationError(
                f"cycle_steps must be an integer >= 1 (the eval interval), but got {cycle_steps!r}"
            )
        self.model_dir = model_dir
        self.total_steps = total_steps
        self.cycle_steps = cycle_steps
        self.min_check_interval_secs = min_check_interval_secs
        self.best_accuracy: float | None = None
        self.last_accuracy: float | None = None
        self.stopped_early = False
        self.stop_reason = ""
        self.status: str | None = None
        self.exit_code = 0

    # -- cycles -------------------------------------------------------------
    def cycle_end(self, global_step: int) -> int:
        """The 0-based last step of the cycle that starts at ``global_step``."""
        if global_step < 0 or global_step >= self.total_steps:
            raise ConfigurationError(f"global_step must be in [0, {self.total_steps}), but got {global_step}")
        return min(self.total_steps, (global_step // self.cycle_steps + 1) * self.cycle_steps) - 1

    def should_stop(self, global_step: int) -> bool:
        """Before a cycle: True when training is complete or the controller says stop.

        ``global_step`` is the number of steps done. The controller's signal is
        checked with ``global_step - 1``, as the reference does.
        """
        if global_step >= self.total_steps:
            return True
        if ptu.get_stop_training(
            self.model_dir, global_step - 1, self.total_steps, min_check_interval_secs=self.min_check_interval_secs
        ):
            self.stopped_early = True
            self.stop_reason = ptu.get_stop_reason(self.model_dir)
            logger.info("stopping early at step %d: %s", global_step, self.stop_reason)
            return True
        return False

    def check_loss(self, loss: float, step: int) -> None:
        """Raise :class:`TrainingDivergedError` when the training loss is not finite."""
        if not math.isfinite(loss):
            raise TrainingDivergedError(f"training loss is {loss} at step {step}: the model diverged")

    def report_cycle(self, accuracy: float, begin: int, end: int, train_secs: float) -> bool:
        """Record one cycle's evaluation; False when the duplicate rule dropped it.

        Raises:
            TrainingDivergedError: ``accuracy`` is NaN/inf (nothing is recorded).
        """
        if not math.isfinite(accuracy):
            raise TrainingDivergedError(f"evaluation metric is {accuracy} after step {end}: the model diverged")
        self.last_accuracy = accuracy
        if self.best_accuracy is None or accuracy > self.best_accuracy:
            self.best_accuracy = accuracy
        return ptu.update_trial_training_accuracy_metric(
            self.model_dir, accuracy, begin, end, train_secs, self.total_steps
        )

    def report_latency(self, latency_ms: float) -> None:
        """Record the model's latency in milliseconds (must be > 0)."""
        if not math.isfinite(latency_ms) or latency_ms <= 0:
            raise ConfigurationError(f"latency_ms must be a finite number > 0, but got {latency_ms}")
        ptu.update_trial_training_latency_metric(self.model_dir, latency_ms)

    # -- status ----------------------------------------------------------------
    def finish(self, status: str = p.JOB_STATUS_SUCCESS) -> None:
        """Write ``job_status.json`` once (later calls are ignored)."""
        if self.status is not None:
            return
        self.status = status
        self.exit_code = 0 if status == p.JOB_STATUS_SUCCESS else 1
        ptu.write_job_status(self.model_dir, status)

    def __enter__(self) -> ProxyTaskLoop:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            self.finish(p.JOB_STATUS_SUCCESS)
            return False
        if isinstance(exc, TrainingDivergedError):
            logger.error("%s; job status %s", exc, p.JOB_STATUS_FAILED_WITH_NAN)
            self.finish(p.JOB_STATUS_FAILED_WITH_NAN)
            return True
        if isinstance(exc, Exception):
            self.finish(p.JOB_STATUS_FAILED)
        return False
